"""``tinyopt analyze | generate | supported-ops``: from a model file to firmware without Python.

- ``tinyopt analyze MODEL [--flash 256k] [--ram 64k] [--json]``: the per-step table of the C
  export (op, shapes, MACs, weight and parameter bytes, tensor bytes live at that step), from
  the same memory plan :func:`tinyopt.codegen.export_c` writes (the export is made in a
  temporary folder), the totals (arena, flash constants, the compiled library's flash when the
  Cortex-M7 toolchain is installed) and whether they fit the budgets. Exit 0 fits (or no
  budget), 1 does not fit, 2 bad input.
- ``tinyopt generate MODEL --name kws --out DIR [--target m7|portable]``: a self-contained C
  library (:func:`tinyopt.deploy.library.generate`), checked on the host first.
- ``tinyopt supported-ops [--json]``: the ops each path accepts, read from the code's own tables
  (:data:`tinyopt.integer.from_litert.HANDLERS`, :data:`tinyopt.deploy.steps.SUPPORTED_KINDS`,
  :data:`tinyopt.mixed.dag.SUPPORTED`).

MODEL is a full-int8 ``.tflite`` or an IntegerGraph ``.npz`` (:meth:`IntegerGraph.save`); a Keras
model is refused with the conversion to use. Every op of a ``.tflite`` outside the supported set
is listed at once.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

EXAMPLES = {
    "analyze": "tinyopt analyze kws_dscnn_int8.tflite --flash 256k --ram 64k",
    "generate": "tinyopt generate kws_dscnn_int8.tflite --name kws --out build/kws",
    "supported-ops": "tinyopt supported-ops --json",
}
KERAS_SUFFIXES = (".h5", ".keras", ".hdf5")


class ModelFileError(ValueError):
    """MODEL is missing, not a model, or has ops tinyopt cannot run; the message says why."""


def parse_bytes(text: str, what: str) -> int:
    """``"256k"`` -> 262144: an integer with an optional k/K (x1024) or m/M (x1024^2) suffix.

    Raises:
        ValueError: anything else, naming ``what`` and the form expected.
    """
    found = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)[bB]?\s*", str(text))
    if found is None:
        raise ValueError(f"{what} {text!r} is not a byte count; give e.g. 262144, 256k or 1M")
    return int(found.group(1)) << {"": 0, "k": 10, "m": 20}[found.group(2).lower()]


def load_model(path, flavour: str = "tflm"):
    """The IntegerGraph of MODEL.

    Arguments:
        path: a full-int8 ``.tflite`` or an IntegerGraph ``.npz``.
        flavour: for a ``.tflite``: "tflm" (TensorFlow Lite Micro with CMSIS-NN, what a firmware
            runs) or "litert" (LiteRT's reference kernels).

    Returns:
        (graph, path).

    Raises:
        ModelFileError: no such file, a Keras model, not a TFLite flatbuffer or graph file, or
            ops outside the supported set (all listed).
        ValueError: a malformed ``.tflite`` (:class:`TFLiteFileError`, naming the field) or a
            form of a supported op that is not.
    """
    from tinyopt.integer.from_litert import TFLITE_OPS, graph_from_tflite, tflite_ops
    from tinyopt.integer.graph import IntegerGraph
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{path}: no such file")
    if p.is_dir() or p.suffix.lower() in KERAS_SUFFIXES:
        raise ModelFileError(
            f"{path} is a Keras model; this command takes a full-int8 .tflite or an IntegerGraph "
            ".npz. Convert it first: tinyopt.convert.to_tflite(model, 'int8', ...) for int8, or "
            "tinyopt.icn.convert(...).save('m.npz') for a sub-byte model")
    if p.suffix.lower() == ".npz":
        return IntegerGraph.load(p), p
    raw = p.read_bytes()
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier at byte "
                             "4); give a full-int8 .tflite or an IntegerGraph .npz")
    bad = [(op, out) for op, out in tflite_ops(raw) if op not in TFLITE_OPS]
    if bad:
        listed = "; ".join(f"{op} (writing {out!r})" for op, out in bad)
        raise ModelFileError(f"{path}: {len(bad)} unsupported op(s): {listed}. Supported: "
                             f"{', '.join(TFLITE_OPS)} (tinyopt supported-ops)")
    return graph_from_tflite(raw, flavour=flavour), p


def analyze(graph, flash: int | None = None, ram: int | None = None,
            kernels: str = "m7") -> dict:
    """The per-step table and totals of ``graph``'s C export (see the module docstring).

    Returns:
        {"steps": [row dicts], "totals": {...}, "budget": {...}, "fits": bool or None}.
    """
    from tinyopt.deploy import codegen, library
    with tempfile.TemporaryDirectory(prefix="tinyopt_analyze_") as tmp:
        export = codegen.export_c(graph, tmp, kernels=kernels)
        code = library.library_sizes(export)
    members = [m for b in export.memory.buffers for m in b.members]
    rows = []
    for k, s in enumerate(export.steps):
        lay = s.layer
        op = lay.kind + (f"+{s.pool.kind}" if s.pool is not None else "") + \
            ("+add" if s.add is not None else "")
        rows.append({
            "step": k, "name": s.name, "op": op,
            "in_shapes": [list(t.shape) for t in s.in_specs],
            "out_shape": list(s.out_shape),
            "macs": codegen.layer_macs(lay),
            "weight_bytes": int(lay.weights.nbytes) if lay.weights is not None else 0,
            "live_bytes": int(sum(m.bytes for m in members if m.first <= k <= m.last)),
            "kernel": export.kernels[k]})
    totals = {"steps": len(rows), "macs": int(sum(r["macs"] for r in rows)),
              "arena_bytes": int(export.arena_bytes),
              "flash_constant_bytes": library.flash_constant_bytes(export),
              "weight_bytes": int(export.param_bytes.get("w", 0)),
              "param_bytes": {k: int(v) for k, v in export.param_bytes.items()},
              "flash_library_bytes": code,
              "scratch_stack_bytes": int(export.scratch_bytes),
              "input_bytes": int(export.in_bytes), "output_bytes": int(export.out_bytes)}
    flash_need = code["total"] if code else totals["flash_constant_bytes"]
    budget = {"flash": flash, "ram": ram, "flash_needed": flash_need,
              "flash_counts": ("compiled library (code + constants, before --gc-sections)"
                               if code else "constants only (no arm-none-eabi-gcc for the code)"),
              "ram_needed": totals["arena_bytes"]}
    fits = None
    if flash is not None or ram is not None:
        fits = ((flash is None or flash_need <= flash)
                and (ram is None or totals["arena_bytes"] <= ram))
    return {"steps": rows, "totals": totals, "budget": budget, "fits": fits}


def _print_analysis(model: Path, report: dict) -> None:
    import pandas as pd
    table = pd.DataFrame(report["steps"])
    table["in_shapes"] = [" ".join("x".join(map(str, s)) for s in v) for v in table["in_shapes"]]
    table["out_shape"] = ["x".join(map(str, v)) for v in table["out_shape"]]
    table["name"] = [n if len(n) <= 32 else n[:29] + "..." for n in table["name"]]
    with pd.option_context("display.width", 200, "display.max_rows", None,
                           "display.max_columns", None):
        print(table.to_string(index=False))
    t, b = report["totals"], report["budget"]
    print("(live_bytes: the step's input and output tensors and those kept for later steps; the "
          "arena can be smaller where a layer writes over its input as it reads it)")
    print(f"\n{model.name}: {t['steps']} steps, {t['macs']:,} MACs")
    print(f"  RAM   activation arena {t['arena_bytes']:,} B (+ up to {t['scratch_stack_bytes']} B "
          f"of stack scratch); input {t['input_bytes']} B, output {t['output_bytes']} B "
          "inside it")
    print(f"  flash constants {t['flash_constant_bytes']:,} B (weights {t['weight_bytes']:,})")
    if t["flash_library_bytes"]:
        c = t["flash_library_bytes"]
        print(f"  flash compiled library (Cortex-M7, -O2, before --gc-sections): code "
              f"{c['code']:,} + constants {c['constants']:,} + data {c['data']:,} = "
              f"{c['total']:,} B")
    if report["fits"] is not None:
        parts = []
        if b["flash"] is not None:
            parts.append(f"flash {b['flash_needed']:,} of {b['flash']:,} B ({b['flash_counts']})")
        if b["ram"] is not None:
            parts.append(f"RAM {b['ram_needed']:,} of {b['ram']:,} B")
        print(f"  {'FITS' if report['fits'] else 'DOES NOT FIT'}: " + "; ".join(parts))


def supported_ops() -> dict:
    """What each path accepts, from the code's own tables."""
    from tinyopt.deploy.steps import ALIAS_KINDS, STEP_KINDS
    from tinyopt.integer.from_litert import TFLITE_OPS
    from tinyopt.mixed.dag import SUPPORTED
    return {"int8 .tflite import (tinyopt.integer.from_litert.HANDLERS)": list(TFLITE_OPS),
            "C export steps (tinyopt.deploy.steps.STEP_KINDS; reshapes cost nothing)":
                list(STEP_KINDS) + list(ALIAS_KINDS),
            "Keras sub-byte path (tinyopt.mixed.dag.SUPPORTED)": SUPPORTED}


def add_parsers(sub) -> None:
    """Add the analyze, generate and supported-ops sub-commands to ``sub``."""
    import argparse
    fmt = argparse.RawDescriptionHelpFormatter
    an = sub.add_parser("analyze", help="per-layer MACs, flash and RAM of a model's C export",
                        formatter_class=fmt,
                        description="Per-step table (op, shapes, MACs, weight bytes, tensor "
                        "bytes live at that step) of MODEL's C export, from the memory plan the "
                        "export uses; totals and whether they fit. Exit 0 fits (or no budget), "
                        f"1 does not fit, 2 bad input.\n\nexample:\n  {EXAMPLES['analyze']}")
    an.add_argument("model", help="a full-int8 .tflite or an IntegerGraph .npz")
    an.add_argument("--flash", default=None, help="flash budget in bytes (256k, 1M, 262144)")
    an.add_argument("--ram", default=None, help="RAM budget for the activation arena (64k)")
    an.add_argument("--target", choices=("m7", "portable"), default="m7",
                    help="kernels: m7 (specialised, default) or portable")
    an.add_argument("--flavour", choices=("tflm", "litert"), default="tflm",
                    help="a .tflite's arithmetic: tflm (TFLite Micro + CMSIS-NN, default) or "
                    "litert (LiteRT reference kernels)")
    an.add_argument("--json", action="store_true", help="print the report as JSON")
    gen = sub.add_parser("generate", help="a self-contained C library for a firmware",
                         formatter_class=fmt,
                         description="Write a C library of MODEL into OUT: NAME.h / NAME.c and "
                         "the library's own kernels (every symbol prefixed NAME_), "
                         "CMakeLists.txt, NAME.mk, README.md and metadata.json; built and "
                         "checked bit-exact against the simulator on the host first.\n\n"
                         f"example:\n  {EXAMPLES['generate']}")
    gen.add_argument("model", help="a full-int8 .tflite or an IntegerGraph .npz")
    gen.add_argument("--name", required=True,
                     help="C prefix of every symbol and file (a plain C identifier, e.g. kws)")
    gen.add_argument("--out", required=True, help="the library's folder (created)")
    gen.add_argument("--target", choices=("m7", "portable"), default="m7",
                     help="m7: kernels specialised for the Cortex-M7 (plain C elsewhere); "
                     "portable: the reference kernels")
    gen.add_argument("--flavour", choices=("tflm", "litert"), default="tflm",
                     help="a .tflite's arithmetic to reproduce (default tflm)")
    gen.add_argument("--check", type=int, default=32, metavar="N",
                     help="random inputs of the host check (default 32; 0: no check)")
    ops = sub.add_parser("supported-ops", help="the ops each path accepts",
                         formatter_class=fmt,
                         description="The ops of the int8 .tflite import, the C export and the "
                         f"Keras sub-byte path.\n\nexample:\n  {EXAMPLES['supported-ops']}")
    ops.add_argument("--json", action="store_true", help="print as JSON")


def run(args) -> int:
    """Run one of this module's sub-commands; returns the exit code (2: bad input)."""
    from tinyopt.deploy.mcu import BuildError
    try:
        if args.command == "supported-ops":
            table = supported_ops()
            if args.json:
                print(json.dumps(table, indent=2))
            else:
                for path, ops in table.items():
                    print(f"{path}:\n  " + (", ".join(ops) if isinstance(ops, list) else ops))
            return 0
        if args.command == "analyze":
            flash = None if args.flash is None else parse_bytes(args.flash, "--flash")
            ram = None if args.ram is None else parse_bytes(args.ram, "--ram")
            graph, path = load_model(args.model, args.flavour)
            report = analyze(graph, flash, ram, kernels=args.target)
            if args.json:
                print(json.dumps({"model": str(path), **report}, indent=2))
            else:
                _print_analysis(path, report)
            return 1 if report["fits"] is False else 0
        if args.command == "generate":
            from tinyopt.deploy import codegen, library
            codegen.check_prefix(args.name)  # before the model is read
            if args.check < 0:
                raise ValueError(f"--check must be >= 0, got {args.check}")
            graph, path = load_model(args.model, args.flavour)
            meta = library.generate(graph, args.out, args.name, target=args.target,
                                    source=path, check_images=args.check)
            out = Path(args.out)
            print(f"wrote {out}/: {', '.join(meta['sources'])}, {meta['header']}, "
                  f"{args.name}_params.h, kernels, CMakeLists.txt, {args.name}.mk, README.md, "
                  "metadata.json")
            print(f"  arena {meta['arena_bytes']:,} B; flash constants "
                  f"{meta['flash_constant_bytes']:,} B"
                  + (f"; compiled library (Cortex-M7) {meta['flash_library_bytes']['total']:,} B"
                     if meta["flash_library_bytes"] else ""))
            c = meta["check"]
            print("  not checked (--check 0)" if c is None else
                  f"  checked on the host: {c['exact_images']}/{c['images']} random inputs "
                  f"bit-exact with the simulator ({c['compiler']})")
            return 0
    except (ValueError, TypeError, FileNotFoundError, BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
