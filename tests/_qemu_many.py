"""Several exported test graphs in ONE Cortex-M7 program (and one host program), their model
sources in one translation unit, for the tests that check kernel forms on many small graphs.

Why: a Cortex-M7 build of a model is mostly GCC optimising the kernels' forced-inline bodies
(tn_m7.h), once per translation unit, whatever the model: ~1.5 s of a ~2 s build of a small
graph, against ~0.2-0.3 s for each further step with other constants in the same unit (session
19, seed CNN w2a2 / w4a4 / w8a8: three builds 6.8 s, one unit 3.8 s). The kernels' code for each
step is what ``mcu.build_mcu`` builds (the same sources, flags and forms, chosen at export); what
differs is only the program around them. So this is for tests of kernel forms; a test of what a
user deploys (sizes, RAM, instruction counts) goes through ``mcu.deploy`` / ``mcu.build_mcu``.

Each export (default prefix ``model``, its own folder) has its ``model`` names renamed ``mK_``
(``MODEL_`` -> ``MK_``) into ``mK.c`` / ``mK.h`` / ``mK_params.h``; ``unity.c`` includes every
``mK.c``; each model gets its own copy of ``harness_mcu.c`` (renamed the same way, ``main`` ->
``mK_main``, files ``mK_in.bin``, ``mK_out.bin``, ``mK_stats.txt``) and ``main`` runs them in
turn. The kernel files must be the same in every export (they are, from one checkout).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from tinyopt.deploy import codegen, kernels_m7, mcu, objcache


def _rename(text: str, k: int) -> str:
    text = text.replace('"model.h"', f'"m{k}.h"')
    text = re.sub(r"\bmodel_", f"m{k}_", text)
    return re.sub(r"\bMODEL_", f"M{k}_", text)


def _harness(k: int) -> str:
    text = _rename((mcu.MCU_DIR / "harness_mcu.c").read_text(), k)
    text = text.replace("int main(void)", f"int m{k}_main(void)")
    for name in ("in.bin", "out.bin", "stats.txt"):
        assert f'"{name}"' in text, f"harness_mcu.c no longer opens {name}"
        text = text.replace(f'"{name}"', f'"m{k}_{name}"')
    return text


def _write_sources(exports: list, src: Path) -> list[str]:
    """The kernel files (the same in every export), the ops' kernel files and each model's
    renamed sources into ``src``, ``unity.c`` including every ``mK.c``; returns the op files."""
    src.mkdir(parents=True)
    first = Path(exports[0].out_dir)
    kernels = {f: (first / f).read_text() for f in codegen.KERNEL_FILES}
    ops: dict[str, str] = {}
    for e in exports:
        assert e.prefix == "model", e.prefix
        out = Path(e.out_dir)
        assert all((out / f).read_text() == t for f, t in kernels.items()), out
        for f in e.op_sources:
            assert ops.setdefault(f, (out / f).read_text()) == (out / f).read_text(), f
    for f, t in {**kernels, **ops}.items():
        (src / f).write_text(t)
    for k, e in enumerate(exports):
        out = Path(e.out_dir)
        for f in ("model.c", "model.h", "model_params.h"):
            (src / f.replace("model", f"m{k}")).write_text(_rename((out / f).read_text(), k))
    # the union of the models' kernel forms first: the kernels are parsed at the first include
    forms = kernels_m7.union_forms(*(e.forms for e in exports))
    (src / "unity.c").write_text(kernels_m7.forms_defines(forms) + "".join(
        f'#include "m{k}.c"\n' for k in range(len(exports))))
    return list(ops)


def run_on_host(exports: list, xs: list, work) -> list[np.ndarray]:
    """The host twin of :func:`run_under_qemu`: one host program (``mcu.HOST_CFLAGS``), the
    models in one unit, each run by its own renamed ``harness_host.c`` (``prog K IN N OUT``)."""
    work = Path(work)
    src = work / "src"
    ops = _write_sources(exports, src)
    n = len(exports)
    for k in range(n):
        text = _rename((codegen.C_DIR / "harness_host.c").read_text(), k)
        main = "int main(int argc, char **argv)"
        assert main in text, "harness_host.c's main changed"
        (src / f"m{k}_harness.c").write_text(text.replace(main, main.replace("main", f"m{k}_main")))
    (src / "main.c").write_text(
        "#include <stdlib.h>\n"
        + "".join(f"int m{k}_main(int argc, char **argv);\n" for k in range(n))
        + "int main(int argc, char **argv)\n{\n    if (argc < 2) return 2;\n"
        + "    switch (atoi(argv[1])) {\n"
        + "".join(f"    case {k}: return m{k}_main(argc - 1, argv + 1);\n" for k in range(n))
        + "    default: return 2;\n    }\n}\n")
    obj = objcache.compiled_object
    objects = [obj("gcc", mcu.HOST_CFLAGS, src / f, [src], f"host build ({f})")
               for f in ("unity.c", "tinyopt_nn.c", *ops, *[f"m{k}_harness.c" for k in range(n)],
                         "main.c")]
    exe = work / "many_host"
    # (-I: with the object cache off, TINYOPT_OBJ_CACHE=off, the objects are the sources)
    objcache.compile_c(["gcc", *mcu.HOST_CFLAGS, "-I", src, *objects, "-o", exe],
                       "host build (many)")
    outs = []
    for k, (e, x) in enumerate(zip(exports, xs)):
        (work / f"m{k}_in.bin").write_bytes(mcu.pack_inputs(e, x))
        proc = objcache.run([exe, str(k), work / f"m{k}_in.bin", len(x), work / f"m{k}_out.bin"],
                            timeout=600)
        assert proc.returncode == 0, (k, proc.stderr)
        outs.append(mcu.unpack_outputs(e, (work / f"m{k}_out.bin").read_bytes(), len(x)))
    return outs


def run_under_qemu(exports: list, xs: list, work) -> list[np.ndarray]:
    """Build the exports into one program, run each on its images under QEMU.

    Arguments:
        exports: :class:`tinyopt.codegen.Export` s with the default prefix.
        xs: each export's integer input images.
        work: an empty folder.

    Returns:
        Each export's outputs, as ``mcu.run_qemu`` returns them.

    Raises:
        AssertionError: the exports' kernel files differ, or a model did not run all images.
        BuildError, RuntimeError: the build or QEMU failed.
    """
    work = Path(work)
    src = work / "src"
    ops = _write_sources(exports, src)
    mains = list(range(len(exports)))
    for k in mains:
        (src / f"m{k}_harness.c").write_text(_harness(k))
    (src / "main.c").write_text(
        "".join(f"int m{k}_main(void);\n" for k in mains)
        + "int main(void)\n{\n    int r;\n"
        + "".join(f"    if ((r = m{k}_main()) != 0) return r;\n" for k in mains)
        + "    return 0;\n}\n")
    cc = "arm-none-eabi-gcc"
    ok, why = mcu.toolchain()
    if not ok:
        raise objcache.BuildError(why)
    flags = tuple(f for f in mcu.MCU_CFLAGS if f != "-DMODEL_PROFILE") + tuple(
        f"-DM{k}_PROFILE" for k in mains)
    inc = [src, mcu.MCU_DIR]
    obj = objcache.compiled_object
    objects = [obj(cc, flags, src / "unity.c", inc, "Cortex-M7 build (models)"),
               obj(cc, flags, src / "tinyopt_nn.c", inc, "Cortex-M7 build (kernels)"),
               *[obj(cc, flags, src / f, inc, f"Cortex-M7 build ({f})") for f in ops],
               *[obj(cc, flags, src / f"m{k}_harness.c", inc, "Cortex-M7 build (harness)")
                 for k in mains],
               obj(cc, flags, src / "main.c", inc, "Cortex-M7 build (main)"),
               obj(cc, flags, mcu.MCU_DIR / "startup.c", [mcu.MCU_DIR],
                   "Cortex-M7 build (startup)")]
    elf = work / "many.elf"
    # (-I: with the object cache off, TINYOPT_OBJ_CACHE=off, the objects are the sources)
    objcache.compile_c([cc, *flags, *[a for d in inc for a in ("-I", d)], *objects, "-nostdlib",
                        "-T", mcu.LINKER_SCRIPT,
                        f"-Wl,--defsym=STACK_SIZE={mcu.STACK_SIZE}", "-Wl,--gc-sections",
                        "-o", elf, "-lgcc"], "Cortex-M7 build (many models)")
    for k, (e, x) in enumerate(zip(exports, xs)):
        (work / f"m{k}_in.bin").write_bytes(mcu.pack_inputs(e, x))
    proc = objcache.run(["qemu-system-arm", *mcu.QEMU_ARGS, "-kernel", elf.resolve()], cwd=work,
                        timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"QEMU exited {proc.returncode}: {proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    outs = []
    for k, (e, x) in enumerate(zip(exports, xs)):
        stats = (work / f"m{k}_stats.txt").read_text().splitlines()
        assert f"images {len(x)}" in stats, (k, stats[:5])
        outs.append(mcu.unpack_outputs(e, (work / f"m{k}_out.bin").read_bytes(), len(x)))
    return outs


def check_many(graphs: dict, xs: dict, tmp_path, host_images: int = 6,
               mcu_images: int = 3, exports: dict | None = None, reference=None) -> dict:
    """Export each graph (``codegen.export_c``'s defaults, as ``mcu.deploy``; or take
    ``exports``), check it on the host (one program: :func:`run_on_host`; ``host_images=0``:
    not) and under QEMU (one program: :func:`run_under_qemu`) against ``reference(graph, x)``
    (default ``codegen.reference_output``); asserts 0 differing values and returns the exports
    by name."""
    reference = reference or codegen.reference_output
    if exports is None:
        exports = {n: codegen.export_c(g, Path(tmp_path) / n / "src") for n, g in graphs.items()}
    assert set(exports) == set(graphs) == set(xs)
    names = list(exports)
    if host_images:
        outs = run_on_host([exports[n] for n in names], [xs[n][:host_images] for n in names],
                           Path(tmp_path) / "many_host")
        for n, got in zip(names, outs):
            want = reference(graphs[n], xs[n][:host_images])
            assert np.array_equal(got, want), f"{n}: host C differs from the simulator"
    outs = run_under_qemu([exports[n] for n in names], [xs[n][:mcu_images] for n in names],
                          Path(tmp_path) / "many")
    for n, got in zip(names, outs):
        want = reference(graphs[n], xs[n][:mcu_images])
        assert np.array_equal(got, want), f"{n}: the Cortex-M7 differs from the simulator"
    return exports


# ------------------------------------------------------------------------------ host batches
def host_inputs(g, n: int = 40) -> np.ndarray:
    """``n`` random integer input images of graph ``g`` (its whole input range; seeded)."""
    lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
    return np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits), (n, *g.input_shape))


def _export_key(e, x: np.ndarray) -> str:
    """What a host run's outputs are a function of: the export's C sources and the inputs."""
    h = hashlib.sha256()
    out = Path(e.out_dir)
    for f in ("model.c", "model.h", "model_params.h", *sorted(e.op_sources)):
        h.update(f.encode() + b"\0" + (out / f).read_bytes() + b"\0")
    h.update(np.ascontiguousarray(x, np.int64).tobytes())
    return h.hexdigest()


class HostBatch:
    """The host builds of a module's parametrized host checks as ONE host program
    (:func:`run_on_host`), built when the batch is made; each case's test looks its outputs up.

    Why: a host build of a small test graph is ~0.3 s of GCC optimising the kernels' bodies once
    per translation unit, and the parametrized kernel tests build hundreds of them (about half of
    ``make test-fast``'s CPU in session 19); in one unit each further graph costs a few
    hundredths of a second.

    ``makes`` maps test function names to ``make(mp, **params)``: the graph of one case of that
    test (or the graph and its number of inputs, default ``n``; or the graph and its inputs,
    for a test that draws its own; or a list of these, for a test that checks several graphs),
    its module-level patches (the forced kernel plans the test sets with ``monkeypatch``)
    applied on ``mp``, a ``pytest.MonkeyPatch`` undone after that case's export. The cases are
    the selected (not deselected) items of those tests in the requesting module. The test then
    calls :meth:`outputs` (through ``host_check(g, tmp_path, batch=...)``, or with its inputs)
    on the export of ``g`` it makes under its own patches; the outputs are looked up by the
    exported C's content and the inputs: a case whose export or inputs differ from what the
    test has (its setup differs from ``make``'s) is a lookup failure, never another case's
    outputs. A case whose ``make`` or export raised is left out (its test raises the same when
    it runs its own setup)."""

    def __init__(self, request, makes: dict, tmp, n: int = 40):
        cases = [(makes[item.originalname], item.callspec.params)
                 for item in request.session.items
                 if item.module is request.module and item.originalname in makes]
        assert cases, f"no selected item of {sorted(makes)} in {request.module.__name__}"
        tmp = Path(tmp)
        self.n, self.failed, self._outs = n, {}, {}
        exports, xs, keys = [], [], []
        for k, (make, params) in enumerate(cases):
            with pytest.MonkeyPatch.context() as mp:
                try:
                    made = make(mp, **params)
                    built = []
                    for j, g in enumerate(made if isinstance(made, list) else [made]):
                        g, m = g if isinstance(g, tuple) else (g, n)
                        x = host_inputs(g, m) if isinstance(m, int) else np.asarray(m)
                        built.append((codegen.export_c(g, tmp / f"case{k}" / str(j) / "src"), x))
                except Exception as exc:  # noqa: BLE001 (the case's own test raises it)
                    self.failed[repr(params)] = f"{type(exc).__name__}: {exc}"
                    continue
            for e, x in built:
                key = _export_key(e, x)
                if key not in keys:  # cases whose C is the same build once
                    exports.append(e)
                    xs.append(x)
                    keys.append(key)
        if exports:
            for key, got in zip(keys, run_on_host(exports, xs, tmp / "many_host")):
                self._outs[key] = got

    def outputs(self, e, x: np.ndarray) -> np.ndarray:
        """The host C's outputs of export ``e`` on ``x``, from the batch's program.

        Raises:
            AssertionError: the batch built no export with these C sources on these inputs.
        """
        key = _export_key(e, x)
        assert key in self._outs, (
            f"the host batch built no export with the C of {e.out_dir} on these {len(x)} "
            f"inputs: the test's setup differs from its batch's make() (cases that failed "
            f"there: {self.failed or 'none'})")
        return self._outs[key]


def host_batch_fixture(makes: dict):
    """The module-scoped fixture ``host_batch`` of a test module: a :class:`HostBatch` of
    ``makes`` (test function name -> make) for the module that requests it. Assign it to
    ``host_batch`` after the makes' functions are defined."""
    @pytest.fixture(scope="module")
    def host_batch(request, tmp_path_factory):
        return HostBatch(request, makes, tmp_path_factory.mktemp("host_batch"))
    return host_batch
