"""``tinyopt validate``: every engine that runs a model, side by side on the same inputs.

For one IntegerGraph (from an int8 ``.tflite``, an IntegerGraph ``.npz`` or a Keras model) and
one batch of input codes, :func:`validate` runs

- the simulator's reference engine (numpy, :func:`tinyopt.simulate` ``engine="reference"``): the
  reference everything else is compared with;
- the simulator's fast engine (``engine="fast"``);
- for a ``.tflite``: LiteRT's reference kernels (``BUILTIN_REF``) and the TFLite Micro
  interpreter (:mod:`tinyopt.litert.reference`), each compared with the simulator of its own
  arithmetic (``flavour="litert"`` / ``"tflm"``: the two runtimes round some ops differently,
  so each is held to its own flavour; the C computes the flavour chosen with ``--flavour``);
- the exported C on the host (gcc), with every step's output traced
  (:mod:`tinyopt.deploy.ctrace`);
- with ``target="m7"``, the same C on the Cortex-M7 under QEMU (flash, RAM and instructions
  per inference measured).

Each row counts the differing output values; on a mismatch it names the first layer (tensor)
that differs: from the simulator's trace (fast engine), the interpreters' preserved tensors
(LiteRT, TFLite Micro) or the C's per-step trace (host). The Cortex-M7 returns only the
output: a mismatch there is localised on the host C, which is the same source.

Input data (:func:`input_codes`): integer arrays are the input's codes (int8 for a signed
8-bit input, uint8 for an unsigned one, any integer type for other widths, every value in the
input's range); float arrays are real values, quantized with the model's input scale and zero
point as the model's own QUANTIZE would. A shape must be ``[N, *input shape]`` (or one image).
"""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

RANDOM_IMAGES = 10  # default images when no data is given (TFLM and QEMU run them one by one)


class DataFileError(ValueError):
    """The data file is missing, unreadable, or of the wrong shape or dtype for the model."""


# ------------------------------------------------------------------------------ inputs

def read_data(path) -> np.ndarray:
    """The array of a ``.npy``, or of a ``.npz`` holding one array (or one named ``x``).

    Raises:
        DataFileError: no such file, another suffix, an unreadable file, or an ``.npz`` with
            several arrays and none named ``x`` (the names are listed).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"--data {path}: no such file")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataFileError(f"--data {path}: give a .npy file (one array [N, *input shape]) or "
                            f"a .npz holding one array (or an array named 'x'), not {suffix!r}")
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        with np.load(p, allow_pickle=False) as z:
            names = list(z.files)
            if len(names) == 1:
                return z[names[0]]
            if "x" in names:
                return z["x"]
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"--data {path}: not a readable numpy file ({exc}); object arrays "
                            "(pickles) are refused") from None
    raise DataFileError(f"--data {path} holds {len(names)} arrays ({', '.join(names[:10])}); "
                        "name the input array 'x' or save one array")


def input_codes(graph, data, images: int | None = None, what: str = "--data") -> np.ndarray:
    """``data`` as the graph's integer input codes (see the module docstring).

    Arguments:
        graph: the IntegerGraph.
        data: an array [N, *input shape] or [*input shape].
        images: keep the first ``images`` (None: all).
        what: how the data is named in messages.

    Returns:
        int64 codes [N, *input shape].

    Raises:
        DataFileError: wrong shape (expected vs got), an ambiguous or unsupported dtype, codes
            outside the input's range, NaN / Inf, or float values far outside what the input
            represents.
    """
    x = np.asarray(data)
    shape = tuple(int(d) for d in graph.input_shape)
    if x.shape == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or x.shape[1:] != shape or len(x) == 0:
        raise DataFileError(f"{what} has shape {x.shape}; the model's input {graph.input_name!r} "
                            f"expects (N, {', '.join(map(str, shape))}) with N >= 1 "
                            f"(or one image {shape})")
    if images is not None:
        x = x[:int(images)]
    bits, signed = int(graph.input_bits), bool(graph.input_signed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    kind = f"{bits}-bit {'signed' if signed else 'unsigned'}"
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataFileError(f"{what} holds {int((~np.isfinite(x)).sum())} NaN/Inf values")
        s, zp = float(graph.input_scale), int(graph.input_zero_point)
        rlo, rhi = (lo - zp) * s, (hi - zp) * s
        span = rhi - rlo
        vmin, vmax = float(x.min()), float(x.max())
        if vmax > rhi + span / 2 or vmin < rlo - span / 2:
            raise DataFileError(
                f"{what} spans [{vmin:g}, {vmax:g}] but the model's input represents "
                f"[{rlo:g}, {rhi:g}] (scale {s:g}, zero point {zp}); scale the data as the "
                f"model was trained, or pass the {kind} input codes as an integer array")
        rounding = "half_away" if graph.meta.get("flavour") else "half_even"
        return graph.quantize_input(x.astype(np.float32), rounding).astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        raise DataFileError(f"{what} has dtype {x.dtype}; give {kind} input codes as integers "
                            "or real values as floats")
    want = {(8, True): np.int8, (8, False): np.uint8}.get((bits, signed))
    if want is not None and x.dtype != want:
        raise DataFileError(
            f"{what} has dtype {x.dtype}, the model's input takes {kind} codes: give them as "
            f"{np.dtype(want).name} (x.astype(np.{np.dtype(want).name}) if they are codes), or "
            "real values as a float array (quantized with the input's scale and zero point)")
    if x.min() < lo or x.max() > hi:
        raise DataFileError(f"{what} codes span [{x.min()}, {x.max()}], outside the input's "
                            f"{kind} range [{lo}, {hi}]")
    return x.astype(np.int64)


def random_codes(graph, images: int, seed: int = 0) -> np.ndarray:
    """``images`` seeded random codes over the whole input range (int64)."""
    from tinyopt.deploy.library import random_inputs
    return random_inputs(graph, images, seed).astype(np.int64)


# ------------------------------------------------------------------------------ engines

def _row(engine, against, out_name, got, want, first=None, note="", seconds=None) -> dict:
    n = len(want)
    g = np.asarray(got).reshape(n, -1).astype(np.int64)
    w = np.asarray(want).reshape(n, -1).astype(np.int64)
    bad = int((g != w).sum()) if g.shape == w.shape else int(w.size)
    return {"engine": engine, "compared_with": against, "output": out_name,
            "images": int(n), "values": int(w.size), "differing_values": bad,
            "differing_images": int((g != w).any(axis=1).sum()) if g.shape == w.shape else n,
            "first_differing_layer": first, "note": note,
            "seconds": None if seconds is None else round(float(seconds), 2)}


def _skipped(engine, why) -> dict:
    return {"engine": engine, "compared_with": None, "output": None, "images": 0, "values": 0,
            "differing_values": None, "differing_images": None, "first_differing_layer": None,
            "note": f"skipped: {why}", "seconds": None}


def _tensors(graph) -> list[tuple[str, str, str]]:
    """(node name, its output tensor name, kind) in execution order."""
    wiring = graph.wiring()
    return [(graph.layers[i].name, wiring[i][1][0], graph.layers[i].kind) for i in graph.order()]


def _sim_trace(graph, x, engine: str) -> dict:
    """:func:`tinyopt.simulate`'s trace keyed by output tensor (the interpreters' and the C
    trace's keys; a node's name and its tensor's differ when the node names its outputs)."""
    from tinyopt.integer import sim
    trace = sim.run(graph, x, trace=True, engine=engine)
    return {t: trace[node] for node, t, _ in _tensors(graph) if node in trace}


def _first(got: dict, want: dict, graph) -> dict | None:
    from tinyopt.deploy.ctrace import first_difference
    nodes = _tensors(graph)
    found = first_difference(got, want, [t for _, t, _ in nodes])
    if found is not None:
        found["kind"] = next((k for _, t, k in nodes if t == found["tensor"]), None)
    return found


def _interpreters(tflite: bytes, graph, x, ref_trace, flavour: str, bar) -> list[dict]:
    """LiteRT REF and TFLite Micro against the simulator of their own flavour."""
    from tinyopt.integer.from_litert import graph_from_tflite
    from tinyopt.litert import reference
    rows = []
    x8 = x.astype(np.int8)
    out = graph.output_names()[0]
    for fl, engine, fn in (("litert", "LiteRT REF interpreter", reference.litert_reference),
                           ("tflm", "TFLite Micro interpreter", reference.tflm_reference)):
        bar.set_description(engine)
        t0 = time.perf_counter()
        try:
            got = fn(tflite, x8)
        except ImportError as exc:
            rows.append(_skipped(engine, f"{exc} (pip install tflite-micro)"))
            bar.update()
            continue
        if fl == flavour:
            g, want = graph, ref_trace
        else:
            g = graph_from_tflite(tflite, flavour=fl)
            want = _sim_trace(g, x, "reference")
        rows.append(_row(engine, f"simulator, reference engine, flavour {fl}", out, got[out],
                         want[out], _first(got, want, g), seconds=time.perf_counter() - t0))
        bar.update()
    return rows


def toolchain_or_raise() -> None:
    """Raise a clear error when the Cortex-M7 toolchain or QEMU is missing.

    Raises:
        FileNotFoundError: naming what is missing and the install command.
    """
    from tinyopt.deploy import mcu
    ok, why = mcu.toolchain()
    if not ok:
        raise FileNotFoundError(
            f"--target m7 needs the Cortex-M7 toolchain and QEMU: {why}. Install them with "
            f"`make mcu-tools` (or: sudo apt-get install {' '.join(mcu.APT_PACKAGES)}), or "
            "validate with --target host")


def validate(graph, x: np.ndarray, tflite: bytes | None = None, flavour: str | None = None,
             target: str = "host", kernels: str = "m7", work_dir=None,
             progress: bool = False, arena_budget: int | None = None) -> dict:
    """Run every engine on ``x`` and compare each with the simulator's reference engine.

    Arguments:
        graph: the IntegerGraph (for a ``.tflite``: imported with ``flavour``).
        x: integer input codes [N, *input shape] (:func:`input_codes`).
        tflite: the flatbuffer, to run the interpreters too (None: a graph without one).
        flavour: the flavour ``graph`` was imported with ("litert" or "tflm").
        target: "host" or "m7" (also the Cortex-M7 under QEMU).
        kernels: the C export's kernels ("m7" or "portable").
        work_dir: where the C is exported and built (default: a temporary folder, removed).
        progress: show a progress bar over the engines (on stderr).
        arena_budget: the C export's arena budget (:func:`tinyopt.export_c`; None: the
            smallest arena).

    Returns:
        {"rows": [one dict per engine], "mismatch": bool, "memory": {...}, "images": N}.

    Raises:
        ValueError: a target or kernels value that is not one of the choices; a graph the C
            export cannot run.
        FileNotFoundError: no host compiler, or ``target="m7"`` without the toolchain.
        tinyopt.BuildError, RuntimeError: a build or a run failed.
    """
    from tqdm import tqdm

    from tinyopt.deploy import codegen, ctrace, library, mcu
    if target not in ("host", "m7"):
        raise ValueError(f"target must be 'host' or 'm7', got {target!r}")
    if target == "m7":
        toolchain_or_raise()
    x = np.asarray(x)
    out = graph.output_names()[0]
    stages = 4 + (2 if tflite is not None else 0) + (2 if target == "m7" else 0)
    bar = tqdm(total=stages, unit="stage", disable=not progress, leave=False)
    rows = []
    try:
        bar.set_description("simulator (reference engine)")
        t0 = time.perf_counter()
        ref = _sim_trace(graph, x, "reference")
        rows.append(_row("simulator, reference engine", "itself (the reference)", out, ref[out],
                         ref[out], seconds=time.perf_counter() - t0))
        bar.update()
        bar.set_description("simulator (fast engine)")
        t0 = time.perf_counter()
        fast = _sim_trace(graph, x, "fast")
        rows.append(_row("simulator, fast engine", "simulator, reference engine", out,
                         fast[out], ref[out], _first(fast, ref, graph),
                         seconds=time.perf_counter() - t0))
        bar.update()
        if tflite is not None:
            rows += _interpreters(tflite, graph, x, ref, flavour, bar)
        else:
            rows += [_skipped(e, "no .tflite (an IntegerGraph or a Keras model): nothing for "
                                 "the interpreter to run")
                     for e in ("LiteRT REF interpreter", "TFLite Micro interpreter")]
        with tempfile.TemporaryDirectory(prefix="tinyopt_validate_") as tmp:
            base = Path(work_dir) if work_dir is not None else Path(tmp)
            bar.set_description("C export and host build (gcc)")
            t0 = time.perf_counter()
            export = codegen.export_c(graph, base / "src", kernels=kernels,
                                      arena_budget=arena_budget)
            exe = ctrace.build_host_traced(export, base / "host")
            bar.update()
            bar.set_description(f"host C: {len(x)} images")
            got, steps = ctrace.run_host_traced(exe, export, graph, x, base / "host")
            rows.append(_row("C on the host (gcc)", "simulator, reference engine", out, got,
                             ref[out], _first(steps, ref, graph),
                             note=f"{len(export.steps)} steps traced",
                             seconds=time.perf_counter() - t0))
            bar.update()
            memory = {"arena_bytes": int(export.arena_bytes),
                      "flash_constant_bytes": library.flash_constant_bytes(export)}
            if target == "m7":
                bar.set_description("Cortex-M7 build (arm-none-eabi-gcc)")
                t0 = time.perf_counter()
                elf = mcu.build_mcu(export, base / "mcu")
                bar.update()
                bar.set_description(f"Cortex-M7 under QEMU: {len(x)} images")
                run = mcu.run_qemu(elf, export, x, work_dir=base / "mcu")
                host_first = rows[-1]["first_differing_layer"]
                row = _row("Cortex-M7 under QEMU", "simulator, reference engine", out,
                           run.outputs, ref[out], seconds=time.perf_counter() - t0,
                           note="output only; a layer is named by the host C trace")
                if row["differing_values"]:
                    row["note"] = ("output only (no per-layer trace on the target); "
                                   + ("the host C, the same source, first differs at "
                                      f"{host_first['tensor']!r}" if host_first else
                                      "the host C matches: a target-specific difference "
                                      "(kernels, compiler)"))
                rows.append(row)
                bar.update()
                sizes = mcu.section_sizes(elf)
                arena = mcu.symbol_sizes(elf, ["model_arena"]).get("model_arena", 0)
                insns = run.image_insns
                memory.update({
                    "m7_flash_bytes": sizes[".text"] + sizes[".rodata"] + sizes[".ARM.exidx"]
                    + sizes[".data"],
                    "m7_code_model_bytes": mcu.code_bytes(elf)["code_model"],
                    "m7_arena_bytes": int(arena), "m7_stack_model_run_bytes":
                        int(run.stack_peak - run.stack_at_call),
                    "m7_ram_bytes": sizes[".data"] + sizes[".bss"] + int(run.stack_peak),
                    # as mcu.deploy: the exact mean, rounded half to even (QEMU counts ints)
                    "m7_insns_per_inference_mean": int(round(Fraction(int(insns.sum()),
                                                                      len(insns)))),
                    "m7_insns_per_inference_min": int(insns.min()),
                    "m7_insns_per_inference_max": int(insns.max())})
    finally:
        bar.close()
    mismatch = any(r["differing_values"] for r in rows)
    return {"images": int(len(x)), "output": out, "rows": rows, "mismatch": bool(mismatch),
            "memory": memory}


# ------------------------------------------------------------------------------ printing

def print_report(model: Path, report: dict, inputs: str) -> None:
    """The side-by-side table and the verdict, for a terminal."""
    rows = []
    for r in report["rows"]:
        f = r["first_differing_layer"]
        rows.append({
            "engine": r["engine"], "compared with": r["compared_with"] or "-",
            "differing values": ("-" if r["differing_values"] is None else
                                 f"{r['differing_values']}/{r['values']}"),
            "first differing layer": ("-" if not f else
                                      f"{f['tensor']} ({f.get('kind') or '?'}: "
                                      f"{f['differing_values']}/{f['values']} values)"),
            "s": "-" if r["seconds"] is None else f"{r['seconds']:.1f}"})
    print(f"{model.name}: {report['images']} images ({inputs}); output {report['output']!r}")
    cut = (lambda v: v if len(v) <= 60 else v[:57] + "...")
    widths = {k: max(len(k), *(len(cut(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(k.ljust(w) for k, w in widths.items()).rstrip())
    for r in rows:
        print("  ".join(cut(r[k]).ljust(w) for k, w in widths.items()).rstrip())
    for r in report["rows"]:
        f = r["first_differing_layer"]
        if f:  # whole: the table may cut long tensor names
            print(f"  {r['engine']}: first differing layer {f['tensor']!r} "
                  f"({f.get('kind') or '?'}; {f['differing_values']} of {f['values']} values "
                  "differ)")
        if r["note"].startswith("skipped") or (r["differing_values"]
                                               and r["note"].startswith("output only")):
            print(f"  {r['engine']}: {r['note']}")
    m = report["memory"]
    print(f"  C: arena {m['arena_bytes']:,} B, flash constants {m['flash_constant_bytes']:,} B")
    if "m7_flash_bytes" in m:
        print(f"  Cortex-M7: {m['m7_insns_per_inference_mean']:,} instructions per inference "
              "(QEMU -icount)")
        print(f"    flash {m['m7_flash_bytes']:,} B (the whole image with the test harness; "
              f"model code {m['m7_code_model_bytes']:,} B)")
        print(f"    RAM {m['m7_ram_bytes']:,} B (arena {m['m7_arena_bytes']:,} B, model_run "
              f"stack {m['m7_stack_model_run_bytes']:,} B, the harness's stack and data)")
    bad = [r["engine"] for r in report["rows"] if r["differing_values"]]
    print("MISMATCH: " + ", ".join(bad) if bad else
          "OK: every engine bit-exact with the simulator's reference engine")
