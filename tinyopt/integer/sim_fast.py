"""The simulator's fast engine: the same integer arithmetic as the numpy reference engine
(:mod:`tinyopt.integer.sim`), run by small C kernels (``sim_kernels.c``) compiled once with the
host C compiler and loaded with ctypes.

Why C kernels. The reference engine spends most of its time in int64 numpy passes (a dozen per
requantized value) and in float im2col + BLAS products whose skinny shapes (8 to 64 output
channels) run far below the machine's peak. Numpy cannot fuse those passes; a float64 requant
with a tie fallback would still need several. A C kernel does each layer in one pass over its
output: the accumulators with AVX-512 VNNI byte products (``vpdpbusd``: 64 multiply-adds per
instruction, exact int32 sums), then the flavour's requantization in int64, vectorized over the
channels. The arithmetic is the reference's, line for line (``requant_row`` mirrors
:func:`tinyopt.integer.sim.requant_tflite_double` and its siblings), so both engines agree bit
for bit (tests/test_sim_fast.py).

Exactness, per layer, proven statically before a kernel is used (else the node runs on the
reference engine, which also raises the reference's errors):

- inputs of at most 8 bits are moved to bytes x_u = x + s in [0, 255] (s = 128 for signed
  codes), and Phi = sum (x_u - z_c) w = sum x_u w - z_c sum w with z_c = z_x + s; the second term
  is a per-channel constant folded into the int64 bias (padding holds z_c, or s for CMix-NN's
  raw-zero padding, which is what the reference pads with once centered);
- VNNI products need centered weights in [-128, 127] and K * 255 * 128 < 2^31 (int32 sums
  exact); depthwise sums are int32 and need taps * 255 * max|w| < 2^31;
- the requantization is done in int64 without the int32 wrap / check steps, which is the
  reference's result only when Phi + bias (and its left shift) provably fit int32: the
  reference's static bound (``safe32``). Layers without that proof run on the reference engine,
  so ``wrap32`` and the OverflowError are unchanged.

Without a C compiler, or when compiling fails, :func:`library` returns None and
:func:`tinyopt.integer.sim.run` uses the reference engine: the same results, slower. The shared
object is cached by a hash of the source, the flags and the CPU's feature flags under
``$TINYOPT_CACHE`` (default ``~/.cache/tinyopt``, else the temp folder), written through a temp
file and a rename so that parallel test workers never load a torn file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tinyopt.files import atomic_path, cache_dir

SOURCE = Path(__file__).with_name("sim_kernels.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c99")
COMPUTE = ("conv2d", "pointwise", "depthwise", "dense")
FLAVOURS = {"floor": 1, "tflite_single": 2, "tflite_double": 3}
INT32_MAX = (1 << 31) - 1

_LIB: list = []  # [ctypes library or None], resolved once per process


def _cache_dir() -> Path:
    return cache_dir()


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), part of the cache key: ``-march=native`` code must not
    be loaded on a machine without those instructions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform
    return platform.machine() + platform.processor()


def library():
    """The compiled kernels (a ctypes library), or None when no C compiler works here.

    Returns:
        ctypes.CDLL with the ``to_*`` functions typed, or None (the caller uses the numpy
        reference engine; the reason is in :data:`REASON`).
    """
    if _LIB:
        return _LIB[0]
    global REASON
    lib = None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if os.environ.get("TINYOPT_SIM_NO_C"):
        REASON = "TINYOPT_SIM_NO_C is set"
    elif not cc:
        REASON = "no C compiler (cc) on PATH"
    else:
        src = SOURCE.read_bytes()
        key = hashlib.sha256(src + " ".join((cc,) + FLAGS).encode() + _cpu_flags().encode())
        target = _cache_dir() / f"sim_kernels-{key.hexdigest()[:16]}.so"
        try:
            if not target.exists():
                with atomic_path(target, suffix=".so") as tmp:
                    subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(tmp)], check=True,
                                   capture_output=True, timeout=300)
            lib = _typed(ctypes.CDLL(str(target)))
            REASON = f"compiled {target}"
        except (OSError, subprocess.SubprocessError) as err:
            REASON = f"compiling {SOURCE.name} failed: {err}"
            lib = None
    _LIB.append(lib)
    return lib


REASON = "not loaded yet"


def _typed(lib):
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    sig = {"to_pack_u8": [P] + [I64] * 11 + [P],
           "to_im2col_u8": [P] + [I64] * 11 + [P],
           "to_depthwise": [P] + [I64] * 8 + [P, I64, P, P, I64, I64, I64, I64, P, P],
           "to_depthwise_rows": [P] + [I64] * 9 + [P, P, I64, I64, I64, I64, P, P],
           "to_add": [P, P, I64, I64, I64, I64, P, I64, I64, I64, I64, P]}
    if lib.to_has_vnni():
        sig["to_conv_vnni"] = [P] + [I64] * 8 + [P, I64, P, I64, I64, P, I64, I64, I64, I64, P]
    for name, args in sig.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, None
    lib.vnni = bool(lib.to_has_vnni())
    return lib


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _requant_table(layer, rounding: str, bias: np.ndarray, channels: int):
    """(flavour code, int64 [6, channels] table: bias, multiplier, a, b, d, e) of the C
    ``requant_row`` (see its comment), or None where the reference would refuse the
    multipliers (it then raises itself)."""
    zeros = np.zeros(channels, np.int64)
    if not layer.requantize:
        return 0, np.stack([bias, zeros, zeros, zeros, zeros, zeros])
    m0 = np.broadcast_to(np.asarray(layer.m0, np.int64), (channels,))
    n0 = np.broadcast_to(np.asarray(layer.n0, np.int64), (channels,))
    if rounding == "floor":
        rows = [np.clip(n0 + 1, 0, 32), np.clip(-(n0 + 1), 0, 63), zeros, zeros]
    elif rounding == "tflite_single":
        if np.any(m0 < 0) or np.any(n0 < -31) or np.any(n0 > 30):
            return None
        rows = [zeros, 31 - n0, np.int64(1) << (30 - n0), zeros]
    elif rounding == "tflite_double":
        if np.any(m0 < 0):
            return None
        right = np.clip(-n0, 0, 62)
        mask = (np.int64(1) << right) - 1
        rows = [np.clip(n0, 0, 32), right, mask, mask >> 1]
    else:
        return None
    return FLAVOURS[rounding], np.stack([bias, m0, *rows]).astype(np.int64)


class FastLayer:
    """A compute node prepared for the C kernels (weights packed, bias corrected), or
    ``mode = None`` when one of the exactness conditions of the module docstring fails."""

    def __init__(self, p, lib):
        self.mode = None
        layer = self.layer = p.layer
        # the C kernels here take undilated windows: a dilated layer runs the reference engine
        if (lib is None or not p.safe32 or layer.in_bits > 8
                or tuple(getattr(layer, "dilation", (1, 1))) != (1, 1)):
            return
        s = 128 if layer.in_signed else 0
        zc = int(layer.in_zero_point) + s
        if not 0 <= zc <= 255:
            return
        self.shift, self.zc = s, zc
        self.pad_u8 = zc if layer.pad_mode == "zero_point" else s
        w = layer.unpacked_weights().astype(np.int64)
        zw = np.asarray(layer.weight_zero_point, np.int64)
        c_out = layer.out_shape[-1]
        if layer.kind == "depthwise":  # [kh, kw, c_out]
            w = w - zw
            taps = w.shape[0] * w.shape[1]
            if taps * 255 * int(np.abs(w).max(initial=0)) >= 1 << 31:
                return
            self.w = np.ascontiguousarray(w.reshape(taps, c_out).astype(np.int32))
            correction = w.reshape(taps, c_out).sum(axis=0)
            mode = "depthwise"
        else:
            if not lib.vnni:
                return
            w = w - zw.reshape((-1,) + (1,) * (w.ndim - 1))
            if w.size and (w.min() < -128 or w.max() > 127):
                return
            if layer.kind == "dense":
                w = w.reshape(c_out, 1, 1, -1)
            kh, kw, c_in = w.shape[1:]
            # channels padded to a multiple of 4 cost (c4 - c_in) / c_in more products; above a
            # third (1, 2 or 5 channels) an im2col copy is cheaper
            c4 = -(-c_in // 4) * 4
            self.im2col = kh * kw > 1 and 3 * (c4 - c_in) > c_in
            if self.im2col:  # rows of kh * kw * c_in bytes, padded to a multiple of 4
                flat = w.reshape(c_out, -1)
                self.c4 = c_in
            else:  # channels padded to a multiple of 4 so that 4-byte groups stay in one tap
                self.c4 = -(-c_in // 4) * 4
                flat = np.pad(w, ((0, 0), (0, 0), (0, 0), (0, self.c4 - c_in))).reshape(c_out, -1)
            k4 = -(-flat.shape[1] // 4) * 4
            if k4 * 255 * 128 >= 1 << 31:
                return
            cpad = -(-c_out // 16) * 16
            full = np.zeros((cpad, k4), np.int8)
            full[:c_out, :flat.shape[1]] = flat
            self.w = np.ascontiguousarray(full.reshape(cpad, k4 // 4, 4).transpose(1, 0, 2))
            self.g4, self.cpad, self.k4, self.kernel = k4 // 4, cpad, k4, (kh, kw, c_in)
            correction = flat.sum(axis=1)
            mode = "vnni"
        table = _requant_table(layer, p.rounding, p.bias.astype(np.int64) - zc * correction,
                               c_out)
        if table is None:
            return
        self.flavour, self.rq = table[0], np.ascontiguousarray(table[1])
        self.out_zp = int(layer.out_zero_point) if layer.requantize else 0
        self.lo, self.hi = (int(v) for v in layer.out_range)
        self.mode = mode
        self._offsets = {}
        if mode == "depthwise" and layer.stride[1] == 1:  # row kernel: tiled weights and table
            ow = layer.out_shape[1]
            self.wrep = np.ascontiguousarray(np.tile(self.w, (1, ow)))
            self.rq_rows = np.ascontiguousarray(np.tile(self.rq, (1, ow)))

    def _pack(self, lib, x: np.ndarray, top=0, bottom=0, left=0, right=0, c4=None):
        """int32 codes [n, h, w, c] -> the padded uint8 buffer [n, hp, wp, c4]."""
        n, h, w, c = x.shape
        c4 = c if c4 is None else c4
        hp, wp = h + top + bottom, w + left + right
        out = np.empty((n, hp, wp, c4), np.uint8)
        x = np.ascontiguousarray(x, np.int32)
        lib.to_pack_u8(_ptr(x), n, h, w, c, hp, wp, c4, top, left, self.shift, self.pad_u8,
                       _ptr(out))
        return out

    def run(self, lib, x: np.ndarray) -> np.ndarray:
        """Output codes (int32) of the node for the input codes ``x`` [n, ...]."""
        layer = self.layer
        n = len(x)
        c_out = layer.out_shape[-1]
        args = (_ptr(self.rq), self.flavour, self.out_zp, self.lo, self.hi)
        if layer.kind == "dense":
            c_in = self.kernel[2]
            xp = self._pack(lib, x.reshape(-1, 1, 1, c_in), c4=self.c4)
            return self._gemm(lib, xp, (len(xp), 1, 1, 1, 1, 1, 1), args).reshape(
                (n,) + tuple(layer.out_shape))
        oh, ow, _ = layer.out_shape
        sh, sw = layer.stride
        top, bottom, left, right = layer.padding
        if layer.kind == "depthwise":
            if layer.depth_multiplier > 1:
                x = np.repeat(x, layer.depth_multiplier, axis=-1)
            xp = self._pack(lib, x, top, bottom, left, right)
            kh, kw = self.layer.weight_shape[:2]
            hp, wp = xp.shape[1:3]
            toff = self._offset("dw", lambda: np.array(
                [(ky * wp + kx) * c_out for ky in range(kh) for kx in range(kw)], np.int64))
            out = np.empty((n, oh, ow, c_out), np.int32)
            if sw == 1:
                acc = np.empty(ow * c_out, np.int32)
                lib.to_depthwise_rows(_ptr(xp), n, oh, ow, sh, hp, wp, c_out, kh, kw,
                                      _ptr(self.wrep), _ptr(self.rq_rows), *args[1:], _ptr(acc),
                                      _ptr(out))
                return out
            acc = np.empty(c_out, np.int32)
            lib.to_depthwise(_ptr(xp), n, oh, ow, sh, sw, hp, wp, c_out, _ptr(toff), len(toff),
                             _ptr(self.w), *args, _ptr(acc), _ptr(out))
            return out
        kh, kw, c_in = self.kernel
        if self.im2col:
            xp = self._pack(lib, x, top, bottom, left, right)
            hp, wp = xp.shape[1:3]
            cols = np.empty((n * oh * ow, self.k4), np.uint8)
            lib.to_im2col_u8(_ptr(xp), n, oh, ow, sh, sw, hp, wp, c_in, kh, kw, self.k4,
                             _ptr(cols))
            out = self._gemm(lib, cols, (len(cols), 1, 1, 1, 1, 1, 1), args)
        else:
            xp = self._pack(lib, x, top, bottom, left, right, c4=self.c4)
            hp, wp = xp.shape[1:3]
            out = self._gemm(lib, xp, (n, oh, ow, sh, sw, hp, wp), args)
        return out.reshape(n, oh, ow, c_out)

    def _offset(self, key, make):
        if key not in self._offsets:
            self._offsets[key] = make()
        return self._offsets[key]

    def _gemm(self, lib, xp, geometry, args) -> np.ndarray:
        """VNNI accumulators and requantization over the uint8 buffer ``xp``."""
        n, oh, ow, sh, sw, hp, wp = geometry
        c4 = xp.shape[-1]
        kh, kw, _ = (1, 1, 0) if (self.im2col or self.layer.kind == "dense") else self.kernel

        def offsets():
            k = np.arange(0, self.k4, 4)
            tap, ci = np.divmod(k, c4)
            return ((tap // kw) * wp + tap % kw) * c4 + ci
        off4 = self._offset(("vnni", wp, c4), lambda: offsets().astype(np.int64))
        c_out = self.layer.out_shape[-1]
        out = np.empty((n * oh * ow, c_out), np.int32)
        lib.to_conv_vnni(_ptr(xp), n, oh, ow, sh, sw, hp, wp, c4, _ptr(off4), self.g4,
                         _ptr(self.w), self.cpad, c_out, *args, _ptr(out))
        return out


def add_table(p):
    """(flavour, int64 [12] table) for the C ADD when the reference's int32 checks provably
    pass for every input in range (static bounds through the monotone requantization), else
    None (the node runs on the reference engine)."""
    layer = p.layer
    rounding = p.rounding
    if rounding not in FLAVOURS or layer.in_bits > 8:
        return None
    m0 = np.asarray(layer.m0, np.int64).reshape(-1)
    n0 = np.asarray(layer.n0, np.int64).reshape(-1)
    if len(m0) < 3 or np.any(m0[:3] < 0):
        return None
    rows = []
    for k in range(3):
        t = _requant_table(_Scalar(m0[k], n0[k]), rounding, np.zeros(1, np.int64), 1)
        if t is None:
            return None
        rows.append(t[1][:, 0])
    lo, hi = (-(1 << (layer.in_bits - 1)), (1 << (layer.in_bits - 1)) - 1) if layer.in_signed \
        else (0, (1 << layer.in_bits) - 1)
    left = [int(r[2]) if rounding != "tflite_single" else 0 for r in rows]
    total = 0
    for k, z in enumerate((int(p.zero_points[0]), int(p.zero_points[1]))):
        bound = max(abs(lo - z), abs(hi - z)) << int(layer.left_shift)
        if bound << left[k] > INT32_MAX:
            return None
        total += max(abs(int(_one(rows[k], rounding, v))) for v in (-bound, bound))
    if (total + 1) << left[2] > INT32_MAX:
        return None
    return FLAVOURS[rounding], np.concatenate(rows).astype(np.int64)


class _Scalar:
    requantize = True

    def __init__(self, m0, n0):
        self.m0, self.n0 = m0, n0


def _one(row, rounding: str, x: int) -> int:
    """One value through one flavour (Python integers), for the static ADD bounds."""
    _, m, a, b, _, _ = (int(v) for v in row)
    if rounding == "floor":
        return ((x << a) * m >> 32) >> b
    if rounding == "tflite_single":
        return (x * m + (1 << (b - 1))) >> b
    h = ((x << a) * m + (1 << 30)) >> 31
    mask = (1 << b) - 1
    return (h >> b) + ((h & mask) > (mask >> 1) + (h < 0))


def run_add(lib, p, table, xs: list) -> np.ndarray:
    """TFLite int8 ADD in C (see :func:`add_table`)."""
    layer = p.layer
    x0 = np.ascontiguousarray(xs[0], np.int32)
    x1 = np.ascontiguousarray(np.broadcast_to(xs[1], x0.shape), np.int32)
    out = np.empty(x0.shape, np.int32)
    lo, hi = (int(v) for v in layer.out_range)
    lib.to_add(_ptr(x0), _ptr(x1), x0.size, int(layer.in_zero_point), int(p.zero_points[1]),
               int(layer.left_shift), _ptr(table[1]), table[0], int(layer.out_zero_point), lo,
               hi, _ptr(out))
    return out


def forward(graph_plan, x: np.ndarray, input_name: str, output_names: list, wrap: bool,
            trace: dict | None, handlers: dict, fast: dict) -> list:
    """One chunk through the graph with the C kernels where they apply (``fast``: node index ->
    FastLayer or ADD table, from :func:`prepare`), the reference ``handlers`` elsewhere."""
    lib = library()
    plan, _ = graph_plan
    values = {input_name: x}
    for p, ins, out, free, i in plan:
        xs = [values[t] for t in ins]
        f = fast.get(i)
        if f is not None and not isinstance(f, FastLayer) and xs[0].shape != xs[1].shape:
            f = None  # a broadcasting ADD: the reference's numpy broadcasting
        if f is None:
            values[out] = handlers[p.layer.kind](p, xs, wrap)
        elif isinstance(f, FastLayer):
            values[out] = f.run(lib, xs[0])
        else:
            values[out] = run_add(lib, p, f, xs)
        if trace is not None:
            trace[p.layer.name].append(values[out])
        for t in free:
            values.pop(t, None)
    return [values[t] for t in output_names]


def prepare(graph_plan) -> dict:
    """Node index -> FastLayer (compute nodes the kernels can run exactly) or ADD table."""
    lib = library()
    fast = {}
    if lib is None:
        return fast
    plan, _ = graph_plan
    for p, _, _, _, i in plan:
        if p.layer.kind in COMPUTE:
            f = FastLayer(p, lib)
            if f.mode is not None:
                fast[i] = f
        elif p.layer.kind == "add":
            table = add_table(p)
            if table is not None:
                fast[i] = table
    return fast
