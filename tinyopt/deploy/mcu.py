"""Build and run an exported C model (:func:`tinyopt.codegen.export_c`) on the host and on an
emulated Cortex-M7 (QEMU ``mps2-an500``), and measure it.

- Host: :func:`build_host` (gcc, ``-std=c99 -Wall -Wextra -pedantic -Werror``) and
  :func:`run_host` (images from a file through ``tinyopt/deploy/c/harness_host.c``).
- Cortex-M7: :func:`toolchain` says whether ``arm-none-eabi-gcc`` and ``qemu-system-arm`` are
  installed (and why not); :func:`build_mcu` compiles with ``-mcpu=cortex-m7 -mthumb``
  against ``tinyopt/deploy/c/mcu`` (linker script: code at 0x00000000, RAM at 0x20000000;
  bare-metal startup without a C library; semihosting I/O); :func:`section_sizes` reads
  ``arm-none-eabi-size -A``;
  :func:`run_qemu` runs ``qemu-system-arm -M mps2-an500 -nographic -semihosting -icount shift=0
  -kernel model.elf`` in a folder holding ``in.bin`` and returns the outputs and the harness's
  measurements (:class:`McuRun`).

Instruction counts. Under ``-icount shift=0`` QEMU advances its virtual clock by 1 ns per
executed instruction, and SysTick (processor clock) counts that clock. The harness times a loop of
known instruction count (2 x 10^6) to get instructions per tick, so ``insns = ticks x
calib_insns / calib_ticks``: a deterministic instruction count (not Cortex-M7 cycles: QEMU models
no pipeline, caches or flash wait states), with a resolution of one tick. QEMU counts whole
instructions, so every count reported is an int: ``ticks x calib_insns / calib_ticks`` computed
exactly (a fraction) and rounded half to even, per image and per step (:class:`McuRun`).
One tick is about 40 instructions, so a step's count over few images is coarse. Each step's
count also holds the measurement's own cost (the end of one profile hook, the start of the
next): the harness times that alone over 8000 back-to-back hook calls (``hook_ticks`` /
``hook_intervals`` in stats.txt, exact to one tick over all of them) and
:attr:`McuRun.hook_insns_per_step` converts it; a step's count net of the measurement is its
count minus that (per step, not per image: model_run's own loop and call stay in the step's).

Target memory. :func:`target_memory` reads the FLASH and RAM sizes of the linker script
(``c/mcu/mps2_an500.ld``); :func:`check_fits` refuses an export whose weights and parameters
exceed the flash, or whose arena plus the reserved stack exceed the RAM, before anything is
compiled (:func:`deploy`, :func:`build_mcu`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from tinyopt.deploy import objcache
from tinyopt.deploy.codegen import C_DIR, Export, pack_tensor, unpack_tensor
# BuildError and the cache switch, where callers have always found them
from tinyopt.deploy.objcache import OBJ_CACHE_ENV, BuildError  # noqa: F401
from tinyopt.names import path_component, path_slug

MCU_DIR = C_DIR / "mcu"
# The host builds check the C arithmetic, not the Cortex-M7 speed: the kernels are not forced
# inline into every step (c/tn_arith.h, TN_INLINE), which takes about three times less CPU
# to compile and computes the same numbers.
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
               "-DTN_INLINE=static inline")
MCU_CFLAGS = ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2",
              "-ffreestanding", "-fno-tree-loop-distribute-patterns", "-ffunction-sections",
              "-fdata-sections", "-Wall", "-Wextra", "-Werror", "-DMODEL_PROFILE")
QEMU_ARGS = ("-M", "mps2-an500", "-nographic", "-semihosting", "-icount", "shift=0")
APT_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
LINKER_SCRIPT = MCU_DIR / "mps2_an500.ld"
FLOAT_ABIS = ("soft", "softfp", "hard")  # build_mcu's float_abi
FPU_FLAG = "-mfpu=fpv5-d16"  # the Cortex-M7's double-precision FPU (STM32F7 / H7 firmware)
STACK_SIZE = 0x8000  # build_mcu's default stack reservation (.stack, in RAM)


# ------------------------------------------------------------------------------ host

def build_host(export: Export, cc: str = "gcc", build_dir=None) -> Path:
    """Compile the exported model with the host harness.

    Arguments:
        export: what :func:`tinyopt.codegen.export_c` returned.
        cc: the C compiler.
        build_dir: where the executable goes (default: the export folder).

    Returns:
        Path of the executable ``model_host``.

    Raises:
        BuildError: a compiler error or warning (warnings are errors).
        FileNotFoundError: no such compiler.
    """
    if shutil.which(cc) is None:
        raise FileNotFoundError(f"C compiler {cc!r} not found; install gcc")
    src = Path(export.out_dir)
    out = Path(build_dir or src) / "model_host"
    out.parent.mkdir(parents=True, exist_ok=True)
    obj = objcache.compiled_object
    kernels = obj(cc, HOST_CFLAGS, src / "tinyopt_nn.c", [src], "host build (kernels)")
    ops = [obj(cc, HOST_CFLAGS, src / f, [src], f"host build ({f})") for f in export.op_sources]
    model = obj(cc, HOST_CFLAGS, src / "model.c", [src], "host build (model)")
    harness = obj(cc, HOST_CFLAGS, C_DIR / "harness_host.c", [src], "host build (harness)")
    objcache.compile_c([cc, *HOST_CFLAGS, "-I", src, model, kernels, *ops, harness, "-o", out],
             "host build")
    return out


def pack_inputs(export: Export, x: np.ndarray) -> bytes:
    """The packed input file for a batch of integer images (``export``'s input format)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"inputs must be integer codes, got {x.dtype}")
    return pack_tensor(x, export.in_bits, export.in_signed).tobytes()


def unpack_outputs(export: Export, raw: bytes, n: int) -> np.ndarray:
    """int64 outputs [n, elements] from an output file of ``n`` images."""
    if len(raw) != n * export.out_bytes:
        raise ValueError(f"output file has {len(raw)} bytes, expected {n} x {export.out_bytes}")
    elements = int(np.prod(export.out_shape))
    return unpack_tensor(np.frombuffer(raw, np.uint8).reshape(n, -1), export.out_bits,
                         export.out_signed, elements)


def run_host(exe, export: Export, x: np.ndarray, work_dir=None, timeout: float = 600) -> np.ndarray:
    """Run the host executable on integer images ``x`` [N, ...].

    Returns:
        int64 outputs [N, elements].

    Raises:
        RuntimeError: the program failed (its stderr in the message).
    """
    work = Path(work_dir or Path(exe).parent)
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.bin").write_bytes(pack_inputs(export, x))
    proc = objcache.run([exe, work / "in.bin", len(x), work / "out.bin"], timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} failed with exit {proc.returncode}: {proc.stderr}")
    return unpack_outputs(export, (work / "out.bin").read_bytes(), len(x))


# ------------------------------------------------------------------------------ Cortex-M7

_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
_toolchain_found: list = []  # the tools' paths once found whole (libgcc and newlib not asked again)


def toolchain() -> tuple[bool, str]:
    """(available, reason): are arm-none-eabi-gcc, its newlib headers and qemu-system-arm here?"""
    paths = [shutil.which(tool) for tool in _TOOLS]
    if _toolchain_found == paths:
        return True, "arm-none-eabi-gcc and qemu-system-arm found"
    missing = [tool for tool, path in zip(_TOOLS, paths) if path is None]
    if missing:
        return False, (f"{', '.join(missing)} not installed; `make mcu-tools` installs the Debian "
                       f"packages {' '.join(APT_PACKAGES)} (or apt-get install them)")
    proc = objcache.run(["arm-none-eabi-gcc", "-print-file-name=libgcc.a"])
    if proc.returncode != 0 or not Path(proc.stdout.strip()).is_file():
        return False, "arm-none-eabi-gcc cannot find libgcc.a; reinstall gcc-arm-none-eabi"
    proc = subprocess.run(["arm-none-eabi-gcc", "-E", "-x", "c", "-", "-o", "/dev/null"],
                          input="#include <string.h>\n", capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return False, ("arm-none-eabi-gcc has no <string.h>; install libnewlib-arm-none-eabi")
    _toolchain_found[:] = paths
    return True, "arm-none-eabi-gcc and qemu-system-arm found"


def target_memory(script=LINKER_SCRIPT) -> dict:
    """The target's memory regions from its linker script's ``MEMORY`` block.

    Arguments:
        script: the linker script (default: ``c/mcu/mps2_an500.ld``, what :func:`build_mcu`
            links with).

    Returns:
        {"flash": bytes, "ram": bytes} (the FLASH and RAM regions' LENGTH).

    Raises:
        RuntimeError: the script has no FLASH or RAM region with a LENGTH this reads
            (``LENGTH = <n>[K|M]``).
    """
    text = Path(script).read_text()
    found = {}
    for region, length, unit in re.findall(
            r"^\s*(\w+)\s*\([^)]*\)\s*:\s*ORIGIN\s*=\s*\w+\s*,\s*LENGTH\s*=\s*(\d+)\s*([KM]?)",
            text, flags=re.MULTILINE):
        found[region.lower()] = int(length) << {"": 0, "K": 10, "M": 20}[unit]
    if "flash" not in found or "ram" not in found:
        raise RuntimeError(f"no FLASH and RAM regions with a plain LENGTH in {script}: found "
                           f"{sorted(found)}")
    return {"flash": found["flash"], "ram": found["ram"]}


def check_fits(export: Export, model: str = "model", stack_size: int = STACK_SIZE) -> dict:
    """Refuse, before anything is compiled, an export the Cortex-M7 target cannot hold.

    Needed flash is the export's constants (weights, weight zero points, biases, multipliers,
    their padding: :attr:`Export.param_bytes` and ``weight_pad_bytes``), a lower bound of the
    image (code and descriptors come on top); needed RAM is the activation arena plus the
    reserved stack (``stack_size``), which the linker places in RAM too.

    Arguments:
        export: what :func:`tinyopt.codegen.export_c` returned.
        model: the model's name, for the message.
        stack_size: the stack :func:`build_mcu` reserves.

    Returns:
        {"flash_needed", "flash_available", "ram_needed", "ram_available"} in bytes.

    Raises:
        ValueError: either does not fit; the message names the model, the bytes needed and
            available and the fixes (a smaller bit policy, ``run_mcu=False``).
    """
    target = target_memory()
    flash = int(sum(export.param_bytes.values())) + int(export.weight_pad_bytes)
    ram = int(export.arena_bytes) + int(stack_size)
    report = {"flash_needed": flash, "flash_available": target["flash"], "ram_needed": ram,
              "ram_available": target["ram"]}
    over = []
    if flash > target["flash"]:
        over.append(f"its weights and parameters need {flash} bytes of flash, the target "
                    f"(mps2-an500, {LINKER_SCRIPT.name}) has {target['flash']}")
    if ram > target["ram"]:
        over.append(f"its activation arena ({export.arena_bytes} bytes) and stack "
                    f"({int(stack_size)}) need {ram} bytes of RAM, the target has "
                    f"{target['ram']}")
    if over:
        raise ValueError(f"model {model!r} does not fit the Cortex-M7 target: "
                         + "; ".join(over) + ". Choose a smaller bit policy (fewer weight or "
                         "activation bits, e.g. tinyopt.policy.memory_driven under these "
                         "budgets) or a smaller model, or deploy with run_mcu=False to check "
                         "it on the host only.")
    return report


def build_mcu(export: Export, build_dir=None, stack_size: int = STACK_SIZE,
              opt: str = "-O2", float_abi: str = "soft") -> Path:
    """Compile the exported model with the QEMU harness for a Cortex-M7.

    Arguments:
        export: what :func:`tinyopt.codegen.export_c` returned.
        build_dir: where ``model.elf`` goes (default: ``<export folder>/mcu``).
        stack_size: bytes reserved for the stack (painted and measured at run time).
        opt: GCC's optimisation level, one of -O0, -O1, -O2, -O3, -Os, -Oz, -Og (default -O2,
            the level the instruction counts are measured at; the others check that the kernels
            build and compute the same bytes at a firmware's own level).
        float_abi: "soft" (default: no FPU, the ABI the instruction counts are measured with),
            or "hard" / "softfp" with the Cortex-M7's double-precision FPU (``-mfpu=fpv5-d16``),
            as most Cortex-M7 firmware is built; the harness's reset handler enables the FPU.

    Returns:
        Path of ``model.elf``.

    Raises:
        ValueError: the model's constants or arena do not fit the target (:func:`check_fits`,
            checked before the compiler runs), or ``opt`` / ``float_abi`` is not one of the
            values above.
        BuildError: compiler or linker failure, or no toolchain.
    """
    levels = ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og")
    if opt not in levels:
        raise ValueError(f"build_mcu: opt={opt!r} is not a GCC optimisation level; use one of "
                         + ", ".join(levels))
    if float_abi not in FLOAT_ABIS:
        raise ValueError(f"build_mcu: float_abi={float_abi!r} is not one of "
                         + ", ".join(FLOAT_ABIS) + " (soft: no FPU; hard or softfp: the "
                         "Cortex-M7's FPU, -mfpu=fpv5-d16)")
    check_fits(export, str(export.out_dir), stack_size)
    ok, why = toolchain()
    if not ok:
        raise BuildError(why)
    src = Path(export.out_dir)
    out_dir = Path(build_dir or src / "mcu")
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / "model.elf"
    cc = "arm-none-eabi-gcc"
    flags = tuple(opt if f == "-O2" else f for f in MCU_CFLAGS)
    if float_abi != "soft":
        flags = tuple(f"-mfloat-abi={float_abi}" if f == "-mfloat-abi=soft" else f
                      for f in flags) + (FPU_FLAG,)
    obj = objcache.compiled_object
    kernels = obj(cc, flags, src / "tinyopt_nn.c", [src, MCU_DIR], "Cortex-M7 build (kernels)")
    ops = [obj(cc, flags, src / f, [src, MCU_DIR], f"Cortex-M7 build ({f})")
           for f in export.op_sources]
    startup = obj(cc, flags, MCU_DIR / "startup.c", [MCU_DIR], "Cortex-M7 build (startup)")
    model = obj(cc, flags, src / "model.c", [src, MCU_DIR], "Cortex-M7 build (model)")
    harness = obj(cc, flags, MCU_DIR / "harness_mcu.c", [src, MCU_DIR],
                  "Cortex-M7 build (harness)")
    # the same objects in the same order as one compile of the four sources: the same ELF
    objcache.compile_c([cc, *flags, "-I", src, "-I", MCU_DIR,
              model, kernels, *ops, harness,
              startup, "-nostdlib", "-T", MCU_DIR / "mps2_an500.ld",
              f"-Wl,--defsym=STACK_SIZE={int(stack_size)}", "-Wl,--gc-sections",
              f"-Wl,-Map={out_dir / 'model.map'}", "-o", elf, "-lgcc"], "Cortex-M7 build")
    return elf


def section_sizes(elf) -> dict:
    """Bytes of .text, .rodata, .data, .bss and the reserved .stack (``arm-none-eabi-size -A``)."""
    proc = objcache.run(["arm-none-eabi-size", "-A", elf])
    if proc.returncode != 0:
        raise BuildError(f"arm-none-eabi-size failed: {proc.stderr}")
    sizes = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return {k: sizes.get(k, 0) for k in (".text", ".rodata", ".ARM.exidx", ".data", ".bss",
                                          ".stack")}


def symbol_sizes(elf, names, nm: str = "arm-none-eabi-nm") -> dict:
    """Sizes of named symbols (e.g. ``model_arena``) from ``nm -S`` (``arm-none-eabi-nm`` for
    the Cortex-M7 ELF, ``nm`` for the host executable)."""
    proc = objcache.run([nm, "-S", "--size-sort", elf])
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names:
            out[parts[3]] = int(parts[1], 16)
    return out


def code_bytes(elf) -> dict:
    """Code bytes of the model (``tn_*`` kernels and ``model_*`` functions, from
    ``arm-none-eabi-nm -S``) and of everything else in .text (harness, startup, semihosting,
    libgcc helpers, vector table)."""
    proc = objcache.run(["arm-none-eabi-nm", "-S", elf])
    model = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT" and (
                parts[3].startswith("tn_")
                or (parts[3].startswith("model_") and parts[3] != "model_profile_hook")):
            model += int(parts[1], 16)
    text = section_sizes(elf)[".text"]
    return {"code_model": model, "code_other": text - model}


def _round_fraction(value: Fraction) -> int:
    """``value`` rounded to the nearest int, ties to even (Python's ``round`` of a Fraction)."""
    return int(round(value))


@dataclass
class McuRun:
    """Outputs and measurements of one QEMU run.

    ``step_ticks`` maps each exported step's name (``Export.steps[k].name``) to its SysTick
    ticks summed over all images. ``insns_per_tick`` is the calibration ratio
    ``calib_insns / calib_ticks`` (a float, not a count); the counts (:attr:`image_insns`,
    :meth:`step_insns`) are ints, computed from the exact ratio.
    """

    outputs: np.ndarray
    image_ticks: np.ndarray
    step_ticks: dict
    insns_per_tick: float
    stack_peak: int
    stack_at_call: int
    raw: dict = field(default_factory=dict)
    calib_insns: int = 0  # the calibration loop's instructions and ticks (0: use insns_per_tick)
    calib_ticks: int = 0
    # the harness's measurement of its own per-step cost: ticks summed over hook_intervals
    # back-to-back hook calls (0, 0: a stats file from before it was measured)
    hook_ticks: int = 0
    hook_intervals: int = 0

    def _ratio(self) -> Fraction:
        if self.calib_insns and self.calib_ticks:
            return Fraction(int(self.calib_insns), int(self.calib_ticks))
        return Fraction(self.insns_per_tick)

    @property
    def image_insns(self) -> np.ndarray:
        """Instructions of each image: ticks x calib_insns / calib_ticks, exact, rounded half to
        even to an int (int64 array; the resolution is one tick)."""
        r = self._ratio()
        return np.asarray([_round_fraction(int(t) * r) for t in self.image_ticks], np.int64)

    def step_insns(self, images: int) -> dict:
        """Instructions per image of each step: the step's ticks over all ``images`` times
        calib_insns / calib_ticks, divided by ``images``, exact, rounded half to even (ints)."""
        r = self._ratio()
        return {k: _round_fraction(int(v) * r / int(images)) for k, v in self.step_ticks.items()}

    @property
    def hook_insns_per_step(self) -> int | None:
        """Instructions each step's count holds for the measurement itself (the end of one
        profile hook and the start of the next, harness_mcu.c): hook_ticks x calib_insns /
        calib_ticks / hook_intervals, exact, rounded half to even; None when the stats file has
        no such measurement (an older harness)."""
        if not self.hook_intervals:
            return None
        return _round_fraction(int(self.hook_ticks) * self._ratio() / int(self.hook_intervals))


def run_qemu(elf, export: Export, x: np.ndarray, work_dir=None, timeout: float = 1800) -> McuRun:
    """Run ``elf`` under QEMU mps2-an500 on integer images ``x``.

    Raises:
        RuntimeError: QEMU failed or timed out, or the harness wrote incomplete results.
    """
    work = Path(work_dir or Path(elf).parent)
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.bin").write_bytes(pack_inputs(export, x))
    for stale in ("out.bin", "stats.txt"):
        (work / stale).unlink(missing_ok=True)
    cmd = ["qemu-system-arm", *QEMU_ARGS, "-kernel", Path(elf).resolve()]
    try:
        proc = objcache.run(cmd, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"QEMU did not finish within {timeout} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"QEMU exited {proc.returncode}: {proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    stats = {"image_ticks": [], "step_ticks": []}
    for line in (work / "stats.txt").read_text(errors="replace").splitlines():
        key, _, rest = line.partition(" ")
        if key == "image_ticks":
            stats["image_ticks"].append(int(rest))
        elif key == "step_ticks":
            # "step_ticks <printed name> <ticks>", one per step in order: the k-th line is step
            # k (the printed name is a sanitised display form, tinyopt.names, never parsed)
            stats["step_ticks"].append(int(rest.rsplit(" ", 1)[-1]))
        elif key:
            stats[key] = int(rest)
    if stats.get("images") != len(x) or len(stats["image_ticks"]) != len(x):
        raise RuntimeError(f"the harness ran {stats.get('images')} images, expected {len(x)}")
    if len(stats["step_ticks"]) != len(export.steps):
        raise RuntimeError(f"the harness reported {len(stats['step_ticks'])} steps, the export "
                           f"has {len(export.steps)}")
    stats["step_ticks"] = {s.name: t for s, t in zip(export.steps, stats["step_ticks"])}
    outputs = unpack_outputs(export, (work / "out.bin").read_bytes(), len(x))
    return McuRun(outputs=outputs, image_ticks=np.asarray(stats["image_ticks"], np.int64),
                  step_ticks=stats["step_ticks"],
                  insns_per_tick=stats["calib_insns"] / stats["calib_ticks"],
                  stack_peak=stats["stack_peak"],
                  stack_at_call=stats["stack_top_minus_sp_at_call"], raw=stats,
                  calib_insns=stats["calib_insns"], calib_ticks=stats["calib_ticks"],
                  hook_ticks=stats.get("hook_ticks", 0),
                  hook_intervals=stats.get("hook_intervals", 0))


# ------------------------------------------------------------------------------ one-call report

def built_arena_bytes(exe, export: Export) -> int:
    """The arena the built program really allocates: the size of the ``model_arena`` symbol in
    ``exe`` (host ``nm``), or, without ``nm``, ``MODEL_ARENA_BYTES`` as written in the exported
    ``model.h`` (what the compiler was given).

    Raises:
        RuntimeError: neither the symbol nor the define is found.
    """
    import re
    if shutil.which("nm") is not None:
        size = symbol_sizes(exe, ["model_arena"], nm="nm").get("model_arena")
        if size is not None:
            return size
    found = re.search(r"#define MODEL_ARENA_BYTES (\d+)u",
                      (Path(export.out_dir) / "model.h").read_text())
    if found is None:
        raise RuntimeError(f"no model_arena symbol in {exe} and no MODEL_ARENA_BYTES in "
                           f"{export.out_dir / 'model.h'}")
    return int(found.group(1))


def _memory_model(graph):
    """tinyopt.mixed.memory's report of ``graph`` (None when it cannot describe it)."""
    from tinyopt.deploy import codegen
    from tinyopt.mixed import memory
    try:
        nodes, policy = codegen.memory_view(graph)
        return nodes, policy, memory.report(nodes, policy)
    except (ValueError, KeyError, IndexError):  # e.g. bits or layouts the policy cannot hold
        return None, None, None


def deploy(graph, x: np.ndarray, out_dir, name: str | None = None, host_images: int | None = None,
           mcu_images: int = 100, run_mcu: bool = True, fuse_pool: bool = True,
           fuse_add: bool = True, overlap: bool = True, kernels: str = "m7",
           arena_budget: int | None = None) -> dict:
    """Export ``graph``, check it bit-exact against :func:`tinyopt.sim.run` on the host (and under
    QEMU when the toolchain is installed and ``run_mcu``), and measure sizes, RAM and instructions.

    Arguments:
        graph: the IntegerGraph.
        x: integer input codes [N, ...] (N >= host_images and >= mcu_images).
        out_dir: folder for the C sources (``<out_dir>/<name>/``) and builds.
        name: sub-folder and model name. Given explicitly it must be one plain folder name
            (no ``/``, ``\\``, ``..``, leading ``.``, NUL, at most 100 characters), else
            ValueError (:func:`tinyopt.names.path_component`). Default: ``graph.name``, which
            comes from a model or graph file and is therefore made safe instead
            (:func:`tinyopt.names.path_slug`: kept when plain, else letters, digits and ``_``
            plus a hash of the original); ``summary["model"]`` keeps the name as given.
        host_images: images for the host check (default: all of ``x``).
        mcu_images: images for the QEMU check.
        run_mcu: False skips the Cortex-M7 part.
        fuse_pool, fuse_add, overlap, kernels, arena_budget: see
            :func:`tinyopt.codegen.export_c`
            (``overlap=False``: every tensor whole for its lifetime, the memory model's plan;
            ``kernels``: "m7", specialised per layer, or "portable", the generic reference).

    Returns:
        dict with "summary" (one flat dict: bit-exactness counts, section sizes, predictions,
        instruction counts; ``mcu_skipped`` gives the reason when the QEMU part did not run),
        "steps" (DataFrame: per step bits, MACs, bytes and, with QEMU, instructions per image),
        "export" (:class:`tinyopt.codegen.Export`), "mcu" (:class:`McuRun` or None),
        "predicted" (tinyopt.mixed.memory's per-layer report, None when it cannot describe the
        graph) and "memory" (the memory plan's table: tensor, offset, bytes, first/last step).

    Raises:
        ValueError: an explicit ``name`` that is not a plain folder name; too few images in
            ``x``; with ``run_mcu``, a model whose weights and parameters exceed the target's
            flash or whose arena and stack exceed its RAM (:func:`check_fits`, before any
            compiler runs); an export error (:func:`tinyopt.codegen.export_c`).
        BuildError, RuntimeError: a build or run failed.

    Instructions (ints: QEMU counts whole instructions). Each image's count is its ticks times
    ``calib_insns / calib_ticks``, computed exactly and rounded half to even
    (:attr:`McuRun.image_insns`); ``insns_total`` is the sum over the ``mcu_images`` images,
    ``insns_per_image_mean`` that total divided by the number of images, rounded half to even
    (so it is exact whenever every image takes the same count), ``insns_per_image_min`` /
    ``_max`` the extremes. The steps' ``insns_per_image`` is each step's ticks over all images
    converted the same way, divided by the images and rounded half to even
    (:meth:`McuRun.step_insns`). ``insns_per_tick`` stays a float: a ratio, not a count.
    ``hook_insns_per_step`` (:attr:`McuRun.hook_insns_per_step`) is what each step's count
    holds of the measurement itself (the profile hooks): a step's count net of it is
    ``insns_per_image - hook_insns_per_step``; the whole-image counts hold it once per step too
    (they are raw).

    RAM. ``predicted_ram`` is the arena of the export's memory plan
    (:mod:`tinyopt.integer.memplan`, computed in Python from the tensors' lifetimes, with pool
    and residual-add fusion, in-place and sliding writes, and the kernels' scratch:
    ``scratch_arena_bytes`` is the largest, planned in the arena during its step only, so
    ``scratch_stack_bytes`` is 0 and ``stack_model_run`` holds call frames only);
    ``arena_bytes`` is measured on the built host program (the size of its ``model_arena``
    symbol, :func:`built_arena_bytes`) and ``arena_in_bss`` on the Cortex-M7 ELF: all three are
    equal. ``memory_model_ram`` is tinyopt.mixed.memory's figure (the largest input + output of
    one layer, the paper's model): it knows neither fusion nor branches, so it is larger than
    the arena when a max pool is fused, and None for a graph that is not a chain (a DAG).
    """
    import pandas as pd

    from tinyopt.deploy import codegen
    if name is None:  # from the model file: untrusted, made safe (tinyopt.names)
        name = graph.name
        folder = path_slug(name, "graph name")
    else:  # chosen by the caller: refused unless plain
        folder = path_component(name, "mcu.deploy name")
    base = Path(out_dir) / folder
    x = np.asarray(x)
    n_host = len(x) if host_images is None else int(host_images)
    if n_host > len(x) or (run_mcu and mcu_images > len(x)):
        raise ValueError(f"asked for {n_host} host / {mcu_images} MCU images but x has {len(x)}")
    export = codegen.export_c(graph, base / "src", fuse_pool=fuse_pool, fuse_add=fuse_add,
                              overlap=overlap, kernels=kernels, arena_budget=arena_budget)
    if run_mcu:  # a model the target cannot hold fails here, not at the link after the host build
        check_fits(export, name)
    want = codegen.reference_output(graph, x[:max(n_host, mcu_images if run_mcu else 0)])
    exe = build_host(export, build_dir=base / "host")
    got = run_host(exe, export, x[:n_host])
    _, _, pred = _memory_model(graph)
    compute = [lay for lay in graph.layers if lay.weights is not None]
    model_sum = (lambda col: None if pred is None else int(pred[col].sum()))
    summary = {
        "model": name, "layers": len(graph.layers), "steps": len(export.steps),
        "weight_bits": "/".join(str(b) for b in sorted({lay.weight_bits for lay in compute})),
        "act_bits": "/".join(str(b) for b in sorted({lay.out_bits for lay in graph.layers})),
        "rounding": graph.rounding,
        "macs": int(sum(codegen.layer_macs(lay) for lay in graph.layers)),
        "host_images": n_host,
        "host_images_exact": int(np.all(got == want[:n_host], axis=1).sum()),
        "host_mismatching_values": int((got != want[:n_host]).sum()),
        "distinct_outputs": len({r.tobytes() for r in want[:n_host]}),
        "predicted_flash": model_sum("flash_bytes"),
        "predicted_weight_bytes": model_sum("weight_bytes"),
        "predicted_extra_bytes": model_sum("extra_bytes"),
        "predicted_ram": export.memory.arena_bytes,
        "memory_model_ram": (int(pred["ram_bytes"].max())
                             if pred is not None and graph.is_chain() else None),
        "arena_bytes": built_arena_bytes(exe, export),
        "arena_lower_bound": export.memory.lower_bound,
        "param_bytes_c": int(sum(export.param_bytes.values())),
        "weight_bytes_c": int(export.param_bytes.get("w", 0)),
        "kernels": kernels,
        "steps_specialised": sum(k != "portable" for k in export.kernels),
        "scratch_arena_bytes": export.scratch_bytes,  # inside the arena (Step.scratch_offset)
        "scratch_stack_bytes": 0,  # no kernel scratch on the stack any more
        "weight_pad_bytes": export.weight_pad_bytes,
    }
    steps = export.step_table()
    steps["in_bits"] = [s.layer.in_bits for s in export.steps]
    steps["out_bits"] = [s.out_bits for s in export.steps]
    steps["weight_bits"] = [s.layer.weight_bits if s.layer.weights is not None else 0
                            for s in export.steps]
    steps["macs"] = [codegen.layer_macs(s.layer) for s in export.steps]
    steps["kernel"] = export.kernels
    run = None
    ok, why = toolchain()
    if not run_mcu:
        summary["mcu_skipped"] = "run_mcu=False"
    elif not ok:
        summary["mcu_skipped"] = why
    else:
        elf = build_mcu(export, base / "mcu")
        sizes = section_sizes(elf)
        arena = symbol_sizes(elf, ["model_arena"]).get("model_arena", 0)
        code = code_bytes(elf)
        run = run_qemu(elf, export, x[:mcu_images], work_dir=base / "mcu")
        wm = want[:mcu_images]
        insns = run.image_insns  # ints (McuRun.image_insns)
        insns_total = int(insns.sum())
        summary.update({
            "mcu_images": int(mcu_images),
            "mcu_images_exact": int(np.all(run.outputs == wm, axis=1).sum()),
            "mcu_mismatching_values": int((run.outputs != wm).sum()),
            "text": sizes[".text"], "rodata": sizes[".rodata"], "exidx": sizes[".ARM.exidx"],
            "data": sizes[".data"], "bss": sizes[".bss"], "stack_reserved": sizes[".stack"],
            "code_model": code["code_model"], "code_other": code["code_other"],
            "arena_in_bss": arena, "bss_outside_arena": sizes[".bss"] - arena,
            "stack_peak": run.stack_peak, "stack_harness": run.stack_at_call,
            "stack_model_run": run.stack_peak - run.stack_at_call,
            "flash_measured": sizes[".text"] + sizes[".rodata"] + sizes[".ARM.exidx"]
            + sizes[".data"],
            "ram_measured": sizes[".data"] + sizes[".bss"] + run.stack_peak,
            "insns_total": insns_total,
            "insns_per_image_mean": _round_fraction(Fraction(insns_total, int(mcu_images))),
            "insns_per_image_min": int(insns.min()),
            "insns_per_image_max": int(insns.max()),
            "insns_per_tick": run.insns_per_tick,
            # each step's count holds this much of the measurement (None: not measured)
            "hook_insns_per_step": run.hook_insns_per_step,
        })
        summary["arena_over_predicted_ram"] = arena / summary["predicted_ram"]
        summary["ram_overheads"] = (summary["data"] + summary["bss_outside_arena"]
                                    + summary["stack_peak"])
        # the plan is exact: the arena on the device is the predicted one, byte for byte, and
        # all other RAM is the listed overheads
        summary["ram_acceptance_ok"] = bool(
            arena == summary["predicted_ram"] == summary["arena_bytes"]
            and summary["ram_measured"] == summary["predicted_ram"] + summary["ram_overheads"])
        per_step = run.step_insns(mcu_images)  # every step, keyed by Export.steps[k].name
        steps["insns_per_image"] = np.asarray([per_step[n] for n in steps["name"]], np.int64)
        steps["insns_per_mac"] = steps["insns_per_image"] / steps["macs"].where(
            steps["macs"] > 0)
    steps.insert(0, "model", name)
    return {"summary": summary, "steps": pd.DataFrame(steps), "export": export, "mcu": run,
            "predicted": pred, "memory": export.memory.table()}


def memory_table(summary: dict):
    """Measured flash and RAM of one :func:`deploy` summary beside tinyopt.memory's predictions.

    Rows (bytes): flash = packed weights, bias/multiplier/zero-point arrays, other constants
    (layer descriptors, arena offsets, step names), code (.text + .ARM.exidx, kernels + harness +
    startup), .data; RAM = activation arena, other .bss (profiling counters, SysTick state, the
    harness's text buffer), .data, peak stack (model_run's frames, the harness's frames).
    ``predicted`` is filled where tinyopt.memory has a counterpart.

    Raises:
        KeyError: the summary has no QEMU measurements (``mcu_skipped``).
    """
    import pandas as pd
    s = summary
    if "text" not in s:
        raise KeyError(f"no Cortex-M7 measurements: {s.get('mcu_skipped', 'QEMU did not run')}")
    params = s["param_bytes_c"] - s["weight_bytes_c"]
    rows = [
        ("flash", "packed weights", s["weight_bytes_c"], s["predicted_weight_bytes"]),
        ("flash", "bias, m0, n0, weight zero points", params, s["predicted_extra_bytes"]),
        ("flash", "other constants (descriptors, offsets, names)",
         s["rodata"] - s["param_bytes_c"], None),
        ("flash", "code: kernels and model_run", s["code_model"], None),
        ("flash", "code: harness, startup, libgcc, vectors (+ .ARM.exidx)",
         s["code_other"] + s["exidx"], None),
        ("flash", ".data initialisers", s["data"], None),
        ("flash", "total", s["flash_measured"], s["predicted_flash"]),
        ("ram", "activation arena (with the kernels' scratch)", s["arena_in_bss"],
         s["predicted_ram"]),
        ("ram", "other .bss (profiling, harness)", s["bss_outside_arena"], None),
        ("ram", ".data", s["data"], None),
        ("ram", "peak stack: model_run", s["stack_model_run"], None),
        ("ram", "peak stack: harness and startup", s["stack_harness"], None),
        ("ram", "total (.data + .bss + peak stack)", s["ram_measured"], s["predicted_ram"]),
    ]
    df = pd.DataFrame(rows, columns=["memory", "item", "measured", "predicted"])
    df.insert(0, "model", s["model"])
    df["difference"] = df["measured"] - df["predicted"]
    return df
