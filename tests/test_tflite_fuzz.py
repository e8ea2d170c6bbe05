"""Hostile .tflite files: seeded mutations of two MLPerf Tiny int8 models (KWS DS-CNN, AD
autoencoder), each imported in a child process (a crash or a hang cannot take pytest down and is
attributed to the mutant it happened on), and classified:

- ``accepted-identical``: imported, and ``run_tflite`` on 3 random inputs equals LiteRT
  BUILTIN_REF's output bit for bit (LiteRT runs in the child too);
- ``clear-error``: refused with a ValueError (TFLiteFileError or the importer's own) and a
  message;
- ``other``: a crash, a hang, a bare non-ValueError exception, accepted but computing other
  outputs than LiteRT, or accepted although LiteRT refuses the file. There must be none.
"""
from __future__ import annotations

import collections
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tinyopt.front import zoo

MODELS = ("kws_dscnn", "ad_fcae")
BATCH = 25  # mutants per child process
PER_MUTANT_S = 20  # generous: a mutant takes well under a second

CHILD = r'''
import json, sys, traceback
from pathlib import Path
import numpy as np
from tinyopt.integer import sim
from tinyopt.integer.from_litert import graph_from_tflite


def litert_out(b, x):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=b, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for img in x:
        it.set_tensor(inp["index"], img[None])
        it.invoke()
        res.append(it.get_tensor(out["index"]).copy().reshape(-1))
    return np.stack(res)


for path in sys.argv[1:]:
    b = Path(path).read_bytes()
    rec = {"file": Path(path).name}
    try:
        g = graph_from_tflite(b)
    except ValueError as e:
        rec.update(outcome="clear-error" if str(e).strip() else "other",
                   detail=f"{type(e).__name__}: {str(e)[:300]}")
    except BaseException:
        rec.update(outcome="other", detail="bare exception: " + traceback.format_exc()[-1200:])
    else:
        x = np.random.default_rng(0).integers(-128, 128, (3, *g.input_shape)).astype(np.int8)
        try:
            ours = sim.run_tflite(b, x).reshape(3, -1)
        except BaseException:
            rec.update(outcome="other", detail="accepted, simulator failed: "
                       + traceback.format_exc()[-1200:])
        else:
            try:
                ref = litert_out(b, x)
            except BaseException as e:
                rec.update(outcome="other", detail=f"accepted but LiteRT refuses: {e}"[:500])
            else:
                same = ours.shape == ref.shape and bool(np.array_equal(ours, ref))
                rec.update(outcome="accepted-identical" if same else "other",
                           detail="" if same else f"accepted but differs from LiteRT: ours "
                           f"{ours.shape} {ours[0, :6].tolist()} vs {ref.shape} "
                           f"{ref[0, :6].tolist()}")
    print(json.dumps(rec), flush=True)
'''


# ------------------------------------------------------------------------------ mutations
def _fields(raw: bytes) -> dict[str, list[int]]:
    """Byte offsets of fields worth mutating: scale (f32), zero_point (i64), shape (i32),
    index (tensor buffer / operator input and output / opcode index, i32), qdim (i32)."""
    from ai_edge_litert import schema_py_generated as s
    buf = bytearray(raw)
    sg = s.Model.GetRootAs(buf, 0).Subgraphs(0)
    out: dict[str, list[int]] = {k: [] for k in ("scale", "zero_point", "shape", "index",
                                                  "qdim")}

    def vector(tab, field, width, kind):
        o = tab.Offset(field)
        if o:
            start = tab.Vector(o)
            out[kind] += [start + width * j for j in range(tab.VectorLen(o))]

    def scalar(tab, field, kind):
        o = tab.Offset(field)
        if o:
            out[kind].append(tab.Pos + o)

    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        vector(t._tab, 4, 4, "shape")
        scalar(t._tab, 8, "index")  # buffer
        q = t.Quantization()
        if q is not None:
            vector(q._tab, 8, 4, "scale")
            vector(q._tab, 10, 8, "zero_point")
            scalar(q._tab, 16, "qdim")
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        scalar(op._tab, 4, "index")  # opcode_index
        vector(op._tab, 6, 4, "index")
        vector(op._tab, 8, 4, "index")
    return out


def mutate(raw: bytes, seed: int, fields: dict) -> tuple[str, bytes]:
    """One seeded mutant of raw: (what was done, bytes)."""
    rng = np.random.default_rng(seed)
    b = bytearray(raw)
    kinds = ("truncate", "bitflip", "byterun", "header", "int32max", "scale", "zero_point",
             "shape", "index", "qdim")
    kind = kinds[seed % len(kinds)]
    if kind in fields and not fields[kind]:
        kind = "bitflip"
    if kind == "truncate":
        n = int(rng.choice([rng.integers(0, 32), rng.integers(0, len(b))]))
        return f"truncate to {n}", bytes(b[:n])
    if kind == "bitflip":
        pos = rng.integers(0, len(b), int(rng.integers(1, 5)))
        for p in pos:
            b[p] ^= 1 << int(rng.integers(0, 8))
        return f"bitflip at {pos.tolist()}", bytes(b)
    if kind == "byterun":
        n = int(rng.integers(1, 33))
        p = int(rng.integers(0, len(b) - n))
        b[p:p + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return f"{n} random bytes at {p}", bytes(b)
    if kind == "header":
        pos = rng.integers(0, 32, int(rng.integers(1, 4)))
        for p in pos:
            b[p] = int(rng.integers(0, 256))
        return f"header bytes {pos.tolist()}", bytes(b)
    if kind == "int32max":
        p = 4 * int(rng.integers(0, len(b) // 4))
        v = int(rng.choice([0x7FFFFFFF, 0xFFFFFFFF, 0x80000000]))
        struct.pack_into("<I", b, p, v)
        return f"{v:#x} at {p}", bytes(b)
    p = int(rng.choice(fields[kind]))
    if kind == "scale":
        v = float(rng.choice([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30, 2.0,
                              struct.unpack_from("<f", b, p)[0] * 2]))
        struct.pack_into("<f", b, p, v)
    elif kind == "zero_point":
        v = int(rng.choice([16, -1, 1, 127, 128, -129, 255, 1 << 40, -(1 << 63)]))
        struct.pack_into("<q", b, p, v)
    else:
        old = struct.unpack_from("<i", b, p)[0]
        choices = {"shape": [-1, 0, 2, 0x7FFFFFFF, old + 1, old * 2],
                   "index": [-1, -2, 0, 1, 0x7FFFFFFF, old + 1, old - 1, 1000],
                   "qdim": [-1, 1, 2, 3, 4, 100]}[kind]
        v = int(rng.choice(choices))
        struct.pack_into("<i", b, p, v)
    return f"{kind} at {p} := {v}", bytes(b)


# ------------------------------------------------------------------------------ the harness
def _run_children(paths: list, tmp_path) -> dict:
    """{file name: record} for every mutant; a child that crashes or hangs is restarted after
    the mutant it was on, which is reported as ``other``."""
    results: dict = {}
    pending = list(paths)
    while pending:
        batch, pending = pending[:BATCH], pending[BATCH:]
        while batch:
            try:
                r = subprocess.run([sys.executable, "-c", CHILD, *map(str, batch)],
                                   capture_output=True, text=True, cwd=tmp_path,
                                   timeout=10 + PER_MUTANT_S * len(batch))
                stdout, died = r.stdout, (f"child exited {r.returncode}: {r.stderr[-400:]}"
                                          if r.returncode else "")
            except subprocess.TimeoutExpired as e:
                stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                died = "child timed out (hang)"
            for line in stdout.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    results[rec["file"]] = rec
            batch = [p for p in batch if p.name not in results]
            if batch:  # the child died on the first mutant it did not report
                results[batch[0].name] = {"file": batch[0].name, "outcome": "other",
                                          "detail": died or "child gave no result"}
                batch = batch[1:]
    return results


def fuzz(tmp_path, n_per_model: int, seed0: int) -> tuple[dict, list]:
    """Outcome counts per model and the ``other`` cases (with what was mutated)."""
    table: dict = {}
    others: list = []
    for name in MODELS:
        raw = zoo.mlperf_tiny_tflite(name)
        fields = _fields(raw)
        folder = tmp_path / name
        folder.mkdir()
        what, paths = {}, []
        for k in range(n_per_model):
            desc, mutant = mutate(raw, seed0 + k, fields)
            path = folder / f"{name}_{k:04d}.tflite"
            path.write_bytes(mutant)
            what[path.name] = desc
            paths.append(path)
        results = _run_children(paths, tmp_path)
        table[name] = collections.Counter(results[p.name]["outcome"] for p in paths)
        others += [(p.name, what[p.name], results[p.name]["detail"]) for p in paths
                   if results[p.name]["outcome"] == "other"]
    return table, others


def _report(table: dict, others: list) -> str:
    classes = ("accepted-identical", "clear-error", "other")
    lines = [f"{'model':<12}" + "".join(f"{c:>20}" for c in classes)]
    lines += [f"{m:<12}" + "".join(f"{t[c]:>20}" for c in classes) for m, t in table.items()]
    lines += [f"OTHER {f} ({what}): {detail}" for f, what, detail in others[:20]]
    return "\n".join(lines)


def _check(tmp_path, n_per_model: int, seed0: int) -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    try:
        zoo.mlperf_tiny_path("kws_dscnn")
    except zoo.ModelNotFound as exc:
        if os.environ.get("TINYOPT_REQUIRE_DATA"):
            pytest.fail(f"{exc} (TINYOPT_REQUIRE_DATA is set)")
        pytest.skip(str(exc))
    table, others = fuzz(tmp_path, n_per_model, seed0)
    report = _report(table, others)
    print("\n" + report)
    assert sum(t["other"] for t in table.values()) == 0, report
    # the mutations are not all refused nor all harmless: the fuzz exercises both paths
    assert sum(t["clear-error"] for t in table.values()) > 0, report
    assert sum(t["accepted-identical"] for t in table.values()) > 0, report


def test_fuzz_small(tmp_path):
    """15 mutants per model (every mutation kind), part of make test-fast."""
    _check(tmp_path, 15, seed0=1000)


@pytest.mark.slow
def test_fuzz_mlperf_300_mutants(tmp_path):
    _check(tmp_path, 100, seed0=0)
