"""``tinyopt analyze | validate | generate | supported-ops``: from a model file to firmware
without Python.

- ``tinyopt analyze MODEL [--flash 256k] [--ram 64k] [--json]``: the per-step table of the C
  export (op, shapes, MACs, weight and parameter bytes, tensor bytes live at that step), from
  the same memory plan :func:`tinyopt.export_c` writes (the export is made in a
  temporary folder), the totals (arena, flash constants, the compiled library's flash when the
  Cortex-M7 toolchain is installed) and whether they fit the budgets. Exit 0 fits (or no
  budget), 1 does not fit, 2 bad input.
- ``tinyopt validate MODEL [--data FILE.npy|.npz] [--target host|m7] [--images N] [--json]``:
  the simulator (both engines), LiteRT REF, TFLite Micro, the host C and the Cortex-M7 under
  QEMU side by side on the same inputs (:mod:`tinyopt.workbench.validate`). Exit 0 all
  bit-exact, 1 a mismatch, 2 bad input or a missing tool.
- ``tinyopt generate MODEL --name kws --out DIR [--target m7|portable]``: a self-contained C
  library (:func:`tinyopt.deploy.library.generate`), checked on the host first.
- ``tinyopt supported-ops [--json]``: the ops each path accepts, read from the code's own tables
  (:data:`tinyopt.integer.from_litert.HANDLERS`, :data:`tinyopt.integer.steps.SUPPORTED_KINDS`,
  :data:`tinyopt.mixed.dag.SUPPORTED`).

MODEL is a full-int8 ``.tflite``, an IntegerGraph ``.npz`` (:meth:`IntegerGraph.save`) or a float
Keras model (``.h5``, ``.keras``, a SavedModel folder), quantized with ``--bits w8a8|mixed``
(mixed: the memory-driven rule under ``--flash`` / ``--ram``) on ``--calibration`` data, or on
random data, said so (:mod:`tinyopt.workbench.keras_model`). Every op of a ``.tflite``, and
every layer of a Keras model, outside the supported set is listed at once. Progress bars (on
stderr) show the builds and QEMU runs of validate and generate when stdout is a terminal;
``--no-progress`` turns them off. ``--arena-budget 64k`` (analyze, validate and generate alike:
one plan) lets a Keras model's faster kernels take arena scratch up to that many bytes instead
of keeping the smallest arena (:func:`tinyopt.export_c`'s ``arena_budget``).
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
    "validate": "tinyopt validate kws_dscnn_int8.tflite --data kws_test.npy --target m7",
}
KERAS_EXAMPLES = {  # a float Keras model, quantized by the command
    "analyze": "tinyopt analyze ad_fcae.h5 --flash 160k --ram 4k --calibration calib.npy",
    "validate": "tinyopt validate ad_fcae.h5 --bits mixed --flash 160k --ram 4k --target m7",
    "generate": "tinyopt generate ad_fcae.h5 --bits w8a8 --name ad --out build/ad",
}
KERAS_SUFFIXES = (".h5", ".keras", ".hdf5")
MODEL_HELP = ("a full-int8 .tflite, an IntegerGraph .npz or a float Keras model (.h5, .keras, "
              "SavedModel folder)")
# the sub-commands tinyopt.workbench.cli hands over to run()
COMMANDS = ("analyze", "validate", "generate", "supported-ops")
RANDOM_IMAGES = 10  # validate's random inputs by default (TFLM and QEMU run one at a time)


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
        ModelFileError: no such file, a Keras model (:func:`load_any` takes those), not a
            TFLite flatbuffer or graph file, or ops outside the supported set (all listed).
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
            f"{path} is a Keras model; load_model takes a full-int8 .tflite or an IntegerGraph "
            ".npz (load_any, and so the commands, take Keras models too)")
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


def _budgets(args) -> tuple[int | None, int | None]:
    flash = None if getattr(args, "flash", None) is None else parse_bytes(args.flash, "--flash")
    ram = None if getattr(args, "ram", None) is None else parse_bytes(args.ram, "--ram")
    return flash, ram


def load_any(args) -> tuple:
    """The IntegerGraph of ``args.model``: a ``.tflite`` / ``.npz`` (:func:`load_model`) or a
    Keras model (.h5, .keras, SavedModel folder), quantized to ``args.bits`` (default: "mixed"
    when both --flash and --ram are given, else "w8a8") on ``args.calibration`` (or random data,
    said so) and lowered (:mod:`tinyopt.workbench.keras_model`).

    Returns:
        (graph, path, keras info: None for a .tflite / .npz, else {"model", "policy", "bits",
        "calibration"}).

    Raises:
        ModelFileError, ValueError: as :func:`load_model`; a Keras file that is not a model or
            holds unsupported layers (all listed); --bits/--calibration given for a .tflite.
    """
    from tinyopt.workbench import keras_model
    p = Path(args.model)
    bits = getattr(args, "bits", None)
    calib = getattr(args, "calibration", None)
    if not p.exists():
        raise ModelFileError(f"{args.model}: no such file")
    if not keras_model.is_keras_path(p):
        if bits is not None or calib is not None:
            raise ValueError(f"--bits and --calibration are for Keras models; {p.name} is "
                             "already quantized")
        graph, path = load_model(p, args.flavour)
        return graph, path, None
    flash, ram = _budgets(args)
    if bits is None:
        bits = "mixed" if flash is not None and ram is not None else "w8a8"
    model = keras_model.load(p)
    keras_model.check(model, p)
    policy = keras_model.policy_for(model, bits, flash, ram)
    x, how = keras_model.calibration_data(model, calib, seed=getattr(args, "seed", 0))
    from tinyopt.names import path_slug
    graph = keras_model.to_graph(model, policy, x, path_slug(p.stem or "model", "model name"))
    return graph, p, {"model": model, "policy": policy, "bits": bits, "calibration": how}


def analyze(graph, flash: int | None = None, ram: int | None = None,
            kernels: str = "m7", arena_budget: int | None = None) -> dict:
    """The per-step table and totals of ``graph``'s C export (see the module docstring;
    ``arena_budget``: :func:`tinyopt.export_c`'s, the export ``generate`` writes with it).

    Returns:
        {"steps": [row dicts], "totals": {...}, "budget": {...}, "fits": bool or None}.
    """
    from tinyopt.deploy import codegen, library
    with tempfile.TemporaryDirectory(prefix="tinyopt_analyze_") as tmp:
        export = codegen.export_c(graph, tmp, kernels=kernels, arena_budget=arena_budget)
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
              "scratch_arena_bytes": int(export.scratch_bytes),
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
    print(f"  RAM   activation arena {t['arena_bytes']:,} B (of which up to "
          f"{t['scratch_arena_bytes']} B kernel scratch at a step); input {t['input_bytes']} B, "
          f"output {t['output_bytes']} B inside it")
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


def keras_analysis(info: dict, flash: int | None, ram: int | None) -> dict:
    """The memory model's per-layer tables of a Keras model: w8a8 and, with both budgets, the
    memory-driven mixed policy (:func:`tinyopt.memory_driven`)."""
    from tinyopt.workbench import keras_model
    model = info["model"]
    out = {"calibration": info["calibration"], "graph_bits": info["bits"], "policies": {}}
    policies = {"w8a8": keras_model.policy_for(model, "w8a8")}
    if flash is not None and ram is not None:
        policies["mixed"] = (info["policy"] if info["bits"] == "mixed"
                             else keras_model.policy_for(model, "mixed", flash, ram))
    for label, policy in policies.items():
        rows, totals = keras_model.memory_rows(model, policy)
        out["policies"][label] = {"layers": rows, "totals": totals}
    return out


def _print_keras(path: Path, k: dict) -> None:
    import pandas as pd
    for label, part in k["policies"].items():
        t = part["totals"]
        print(f"{path.name}, policy {label} (memory model, tinyopt.memory_report):")
        with pd.option_context("display.width", 200, "display.max_rows", None,
                               "display.max_columns", None):
            print(pd.DataFrame(part["layers"]).to_string(index=False))
        print(f"  flash (weights + bias/ICN) {t['flash_bytes']:,} B; peak RAM "
              f"{t['peak_ram_bytes']:,} B at {t['peak_step']}; {t['macs']:,} MACs\n")
    print(f"C export of the {k['graph_bits']} integer graph ({k['calibration']}):")


def supported_ops() -> dict:
    """What each path accepts, from the code's own tables."""
    from tinyopt.integer.steps import ALIAS_KINDS, STEP_KINDS
    from tinyopt.integer.from_litert import TFLITE_OPS
    from tinyopt.mixed.dag import SUPPORTED
    return {"int8 .tflite import (tinyopt.integer.from_litert.HANDLERS)": list(TFLITE_OPS),
            "C export steps (tinyopt.integer.steps.STEP_KINDS; reshapes cost nothing)":
                list(STEP_KINDS) + list(ALIAS_KINDS),
            "Keras sub-byte path (tinyopt.mixed.dag.SUPPORTED)": SUPPORTED}


def show_progress(wanted: bool) -> bool:
    """Progress bars only when asked for and stdout is a terminal (not in pipes and logs)."""
    return bool(wanted) and sys.stdout.isatty()


class _stage_bar:
    """A tqdm bar over named stages (``bar.stage("host build")`` starts the next one)."""

    def __init__(self, wanted: bool, total: int):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="stage", leave=False, disable=not show_progress(wanted))
        self.started = False

    def stage(self, name: str) -> None:
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_description(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        return False


def _validate(args) -> int:
    """``tinyopt validate``: 0 every engine bit-exact, 1 a mismatch (2 is raised as an error)."""
    from tinyopt.workbench import validate as val
    if args.images is not None and args.images < 1:
        raise ValueError(f"--images must be >= 1, got {args.images}")
    if args.target == "m7":  # before any work: the install command, not a build error
        val.toolchain_or_raise()
    graph, path, info = load_any(args)
    keras = None if info is None else {"bits": info["bits"], "calibration": info["calibration"]}
    if keras is not None and not args.json:
        print(f"{path.name}: {info['bits']} policy, {info['calibration']}")
    if args.data is not None:
        x = val.input_codes(graph, val.read_data(args.data), args.images,
                            what=f"--data {args.data}")
        inputs = f"from {args.data}"
    else:
        n = args.images or RANDOM_IMAGES
        x = val.random_codes(graph, n, args.seed)
        inputs = f"RANDOM input codes, seed {args.seed}: no --data given"
    tflite = path.read_bytes() if path.suffix.lower() == ".tflite" else None
    report = val.validate(graph, x, tflite=tflite, flavour=args.flavour, target=args.target,
                          kernels=args.kernels, progress=show_progress(not args.no_progress),
                          arena_budget=_arena_budget(args))
    if args.json:
        print(json.dumps({"model": str(path), "inputs": inputs, "keras": keras, **report},
                         indent=2))
    else:
        val.print_report(path, report, inputs)
    return 1 if report["mismatch"] else 0


def _arena_budget(args) -> int | None:
    value = getattr(args, "arena_budget", None)
    return None if value is None else parse_bytes(value, "--arena-budget")


def _arena_option(parser) -> None:
    parser.add_argument("--arena-budget", default=None, metavar="BYTES",
                        help="RAM the C may use for its activation arena (64k): a Keras "
                        "model's faster kernels (sub-byte convolutions, 3x3 depthwise rows) "
                        "take scratch up to it; default: the smallest arena. No effect on a "
                        ".tflite (its fast kernels always run)")


def _keras_options(parser, budgets: bool) -> None:
    """--bits, --calibration (and --flash / --ram) for a Keras MODEL."""
    parser.add_argument("--bits", choices=("w8a8", "mixed"), default=None,
                        help="a Keras model's bit policy: w8a8, or mixed (the memory-driven "
                        "rule under --flash and --ram); default mixed when both are given, "
                        "else w8a8")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help="a Keras model's PTQ calibration inputs (.npy, float, model-ready "
                        "[N, *input shape]); default: random [0, 1) values (said so)")
    if budgets:
        parser.add_argument("--flash", default=None, help="a Keras model's flash budget for "
                            "--bits mixed (64k)")
        parser.add_argument("--ram", default=None, help="a Keras model's RAM budget for "
                            "--bits mixed (16k)")


def add_parsers(sub) -> None:
    """Add the analyze, generate and supported-ops sub-commands to ``sub``."""
    import argparse
    fmt = argparse.RawDescriptionHelpFormatter
    an = sub.add_parser("analyze", help="per-layer MACs, flash and RAM of a model's C export",
                        formatter_class=fmt,
                        description="Per-step table (op, shapes, MACs, weight bytes, tensor "
                        "bytes live at that step) of MODEL's C export, from the memory plan the "
                        "export uses; totals and whether they fit. A Keras model first gets the "
                        "memory model's per-layer tables (w8a8 and, with --flash and --ram, the "
                        "memory-driven mixed policy under them), then is quantized (--bits) and "
                        "analyzed as its C export. Exit 0 fits (or no budget), "
                        f"1 does not fit, 2 bad input.\n\nexample:\n  {EXAMPLES['analyze']}\n"
                         f"a Keras model:\n  {KERAS_EXAMPLES['analyze']}")
    an.add_argument("model", help=MODEL_HELP)
    an.add_argument("--flash", default=None, help="flash budget in bytes (256k, 1M, 262144); "
                    "for a Keras model also the mixed policy's budget of weights and parameters")
    an.add_argument("--ram", default=None, help="RAM budget for the activation arena (64k); "
                    "for a Keras model also the mixed policy's RAM budget")
    an.add_argument("--target", choices=("m7", "portable"), default="m7",
                    help="kernels: m7 (specialised, default) or portable")
    an.add_argument("--flavour", choices=("tflm", "litert"), default="tflm",
                    help="a .tflite's arithmetic: tflm (TFLite Micro + CMSIS-NN, default) or "
                    "litert (LiteRT reference kernels)")
    an.add_argument("--json", action="store_true", help="print the report as JSON")
    _arena_option(an)
    _keras_options(an, budgets=False)
    gen = sub.add_parser("generate", help="a self-contained C library for a firmware",
                         formatter_class=fmt,
                         description="Write a C library of MODEL into OUT: NAME.h / NAME.c and "
                         "the library's own kernels (every symbol prefixed NAME_), "
                         "CMakeLists.txt, NAME.mk, README.md and metadata.json; built and "
                         "checked bit-exact against the simulator on the host first.\n\n"
                         f"example:\n  {EXAMPLES['generate']}\n"
                         f"a Keras model:\n  {KERAS_EXAMPLES['generate']}")
    gen.add_argument("model", help=MODEL_HELP)
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
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    _arena_option(gen)
    _keras_options(gen, budgets=True)
    val = sub.add_parser("validate", help="the C (host, Cortex-M7) against the simulator and "
                         "the interpreters, on data", formatter_class=fmt,
                         description="Run MODEL on the same inputs with the simulator "
                         "(reference and fast engines), LiteRT's reference kernels and TFLite "
                         "Micro (a .tflite), the exported C on the host and, with --target m7, "
                         "the Cortex-M7 under QEMU; count the differing output values of each "
                         "against the simulator's reference engine and name the first layer "
                         "that differs. --data: integer arrays are input codes (int8 for an "
                         "int8 input), float arrays real values quantized with the model's "
                         "input scale and zero point; without --data, seeded random codes "
                         "(said so). Exit 0 all bit-exact, 1 a mismatch, 2 bad input or a "
                         f"missing tool.\n\nexample:\n  {EXAMPLES['validate']}\n"
                         f"a Keras model:\n  {KERAS_EXAMPLES['validate']}")
    val.add_argument("model", help=MODEL_HELP)
    val.add_argument("--data", default=None, metavar="FILE",
                     help=".npy (or .npz with one array, or one named x) of shape "
                     "[N, *input shape]; default: random input codes")
    val.add_argument("--images", type=int, default=None, metavar="N",
                     help=f"images to run (default: all of --data, else {RANDOM_IMAGES})")
    val.add_argument("--target", choices=("host", "m7"), default="host",
                     help="host: the C with gcc; m7: also the Cortex-M7 under QEMU (flash, "
                     "RAM, instructions)")
    val.add_argument("--kernels", choices=("m7", "portable"), default="m7",
                     help="the C kernels (default m7: specialised, plain C on the host)")
    val.add_argument("--flavour", choices=("tflm", "litert"), default="tflm",
                     help="a .tflite's arithmetic the C reproduces (default tflm)")
    val.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    val.add_argument("--json", action="store_true", help="print the report as JSON")
    val.add_argument("--no-progress", action="store_true", help="no progress bar")
    _arena_option(val)
    _keras_options(val, budgets=True)
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
            flash, ram = _budgets(args)
            graph, path, info = load_any(args)
            report = analyze(graph, flash, ram, kernels=args.target,
                             arena_budget=_arena_budget(args))
            if info is not None:
                report = {"keras": keras_analysis(info, flash, ram), **report}
            if args.json:
                print(json.dumps({"model": str(path), **report}, indent=2))
            else:
                if info is not None:
                    _print_keras(path, report["keras"])
                _print_analysis(path, report)
            return 1 if report["fits"] is False else 0
        if args.command == "generate":
            from tinyopt.deploy import codegen, library
            codegen.check_prefix(args.name)  # before the model is read
            if args.check < 0:
                raise ValueError(f"--check must be >= 0, got {args.check}")
            graph, path, info = load_any(args)
            if info is not None:
                print(f"{path.name}: {info['bits']} policy, {info['calibration']}")
            with _stage_bar(not args.no_progress, 3) as bar:
                meta = library.generate(graph, args.out, args.name, target=args.target,
                                        source=path, check_images=args.check,
                                        progress=bar.stage,
                                        arena_budget=_arena_budget(args))
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
        if args.command == "validate":
            return _validate(args)
    except (ValueError, TypeError, FileNotFoundError, BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
