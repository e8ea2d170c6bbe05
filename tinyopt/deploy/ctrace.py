"""Every step's output of an exported C model on the host, to find the first step where the C
and the simulator part ways (``tinyopt validate``).

The export's per-step hook (``MODEL_PROFILE``: ``model_profile_hook(k)`` after step ``k``,
:func:`tinyopt.export_c`) is defined by a harness written here: it copies step ``k``'s
output out of the arena (its offset and bytes come from the export's memory plan) into a trace
file, image after image. The output of step ``k`` is whole right after step ``k`` (a later step
may overwrite it, never an earlier one's write), so the trace holds exactly what each step
computed. :func:`run_host_traced` returns the final outputs, as :func:`tinyopt.deploy.mcu.run_host`,
and those per-step outputs unpacked; :func:`first_difference` compares them with
:func:`tinyopt.simulate`'s trace. No TensorFlow (the deployment stage).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tinyopt.deploy import mcu, objcache
from tinyopt.deploy.codegen import Export, unpack_tensor

HARNESS = """/* trace_host.c: written by tinyopt.deploy.ctrace. Runs the exported model on images
 * from a file and writes, after every step, that step's output bytes (from the arena) to a
 * trace file.
 * usage: model_trace IN_FILE N_IMAGES OUT_FILE TRACE_FILE */
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

#define TRACE_IN_OFFSET {in_offset}u
static const unsigned long trace_offset[MODEL_N_STEPS] = {{{offsets}}};
static const unsigned long trace_bytes[MODEL_N_STEPS] = {{{sizes}}};
static FILE *trace_file;
static int trace_failed;
static uint8_t in_buf[MODEL_IN_BYTES];
static uint8_t out_buf[MODEL_OUT_BYTES];

void model_profile_hook(int step)
{{
    /* the arena's base: the input lives at TRACE_IN_OFFSET inside it */
    const uint8_t *arena = model_input_buffer() - TRACE_IN_OFFSET;
    if (step < 0) return;
    if (fwrite(arena + trace_offset[step], 1, trace_bytes[step], trace_file)
        != trace_bytes[step]) trace_failed = 1;
}}

int main(int argc, char **argv)
{{
    FILE *fin, *fout;
    long n, i;
    if (argc != 5) {{
        fprintf(stderr, "usage: %s IN_FILE N_IMAGES OUT_FILE TRACE_FILE\\n", argv[0]);
        return 2;
    }}
    n = strtol(argv[2], NULL, 10);
    fin = fopen(argv[1], "rb");
    fout = fopen(argv[3], "wb");
    trace_file = fopen(argv[4], "wb");
    if (fin == NULL || fout == NULL || trace_file == NULL || n < 0) {{
        fprintf(stderr, "cannot open the files (or bad count %s)\\n", argv[2]);
        return 2;
    }}
    for (i = 0; i < n; i++) {{
        if (fread(in_buf, 1, MODEL_IN_BYTES, fin) != MODEL_IN_BYTES) return 3;
        if (model_run(in_buf, out_buf) != 0) return 4;
        if (fwrite(out_buf, 1, MODEL_OUT_BYTES, fout) != MODEL_OUT_BYTES) return 5;
    }}
    fclose(fin);
    if (fclose(trace_file) != 0 || trace_failed) return 6;
    return fclose(fout) == 0 ? 0 : 5;
}}
"""


def harness_text(export: Export) -> str:
    """The trace harness of ``export`` (an export with the default prefix ``model``).

    Raises:
        ValueError: an export with another prefix (a generated library: trace an export of
            the same graph instead).
    """
    if export.prefix != "model":
        raise ValueError(f"the trace harness needs an export with prefix 'model', got "
                         f"{export.prefix!r}")
    return HARNESS.format(in_offset=int(export.in_offset),
                          offsets=", ".join(f"{int(s.out_offset)}ul" for s in export.steps),
                          sizes=", ".join(f"{int(s.out_bytes)}ul" for s in export.steps))


def build_host_traced(export: Export, build_dir, cc: str = "gcc") -> Path:
    """Compile ``export`` with the trace harness (``-DMODEL_PROFILE``, the host flags of
    :data:`tinyopt.deploy.mcu.HOST_CFLAGS`, warnings are errors).

    Returns:
        Path of the executable ``model_trace``.

    Raises:
        FileNotFoundError: no such compiler (the message says what to install).
        tinyopt.BuildError: a compiler error or warning.
    """
    if shutil.which(cc) is None:
        raise FileNotFoundError(f"C compiler {cc!r} not found; install gcc (apt-get install gcc)")
    build = Path(build_dir)
    build.mkdir(parents=True, exist_ok=True)
    harness = build / "trace_host.c"
    harness.write_text(harness_text(export))
    exe = build / "model_trace"
    src = Path(export.out_dir)
    flags = (*mcu.HOST_CFLAGS, "-DMODEL_PROFILE")
    # each source (and the harness, keyed by its bytes) from the object cache: validate runs
    # the same export more than once (each --m7 / --host pass, the CLI and the notebooks)
    objs = [objcache.compiled_object(cc, flags, Path(f), [src], "host build (traced)")
            for f in (*export.sources, harness)]
    objcache.compile_c([cc, *flags, "-I", src, *objs, "-o", exe], "host build (traced)")
    return exe


def run_host_traced(exe, export: Export, graph, x: np.ndarray, work_dir=None,
                    timeout: float = 600) -> tuple[np.ndarray, dict]:
    """Run the traced executable on integer images ``x`` [N, ...].

    Returns:
        (int64 outputs [N, elements], {step's output tensor name: int64 values [N, elements]}
        in step order).

    Raises:
        RuntimeError: the program failed, or wrote a trace of the wrong size.
    """
    work = Path(work_dir or Path(exe).parent)
    work.mkdir(parents=True, exist_ok=True)
    n = len(x)
    (work / "in.bin").write_bytes(mcu.pack_inputs(export, x))
    proc = objcache.run([exe, work / "in.bin", n, work / "out.bin", work / "trace.bin"],
                    timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} failed with exit {proc.returncode}: {proc.stderr}")
    out = mcu.unpack_outputs(export, (work / "out.bin").read_bytes(), n)
    raw = np.frombuffer((work / "trace.bin").read_bytes(), np.uint8)
    per_image = sum(int(s.out_bytes) for s in export.steps)
    if raw.size != n * per_image:
        raise RuntimeError(f"trace file has {raw.size} bytes, expected {n} x {per_image}")
    raw = raw.reshape(n, per_image)
    steps, at = {}, 0
    for s in export.steps:
        t = graph.tensor(s.output)
        steps[s.output] = unpack_tensor(raw[:, at:at + s.out_bytes], s.out_bits, t.signed,
                                        int(np.prod(s.out_shape)))
        at += int(s.out_bytes)
    return out, steps


def first_difference(got: dict, want: dict, order=None) -> dict | None:
    """The first tensor (in ``order``, default ``got``'s order) whose values differ.

    Arguments:
        got, want: {tensor name: array [N, ...]}; names missing from either are skipped.
        order: the names in execution order.

    Returns:
        None when every compared tensor is equal, else {"tensor", "differing_values",
        "values", "compared"} (``compared``: how many tensors were compared up to and including
        it).
    """
    compared = 0
    for name in (order if order is not None else list(got)):
        if name not in got or name not in want:
            continue
        a = np.asarray(got[name]).reshape(len(got[name]), -1).astype(np.int64)
        b = np.asarray(want[name]).reshape(len(want[name]), -1).astype(np.int64)
        compared += 1
        if a.shape != b.shape:
            return {"tensor": name, "differing_values": int(max(a.size, b.size)),
                    "values": int(max(a.size, b.size)), "compared": compared,
                    "note": f"shapes differ: {a.shape} vs {b.shape}"}
        bad = int((a != b).sum())
        if bad:
            return {"tensor": name, "differing_values": bad, "values": int(a.size),
                    "compared": compared}
    return None
