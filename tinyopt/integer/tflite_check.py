"""The one check of an untrusted ``.tflite`` file, run by
:func:`tinyopt.integer.from_litert.graph_from_tflite` before anything reads the model (and so
shared by the simulator, ``run_tflite``, and the C export, which take their graph from it).

:func:`validate` refuses, with a :class:`TFLiteFileError` naming the file part, operator (index
and op name) or tensor (index and name), the field and the allowed values, what LiteRT's
flatbuffer verifier, its ``InterpreterBuilder`` and its kernels' ``Prepare`` refuse for the ops we
import, and a few things they let through but that would make our result differ from theirs or
meaningless (each marked *stricter* below; docs/integer.md, "What a .tflite must satisfy"):

- the container: bytes, at least 16 of them, the ``TFL3`` file identifier, a root table offset
  inside the file, a flatbuffer the schema reader can walk (any IndexError / struct.error /
  UnicodeDecodeError / TypeError of the reader becomes a TFLiteFileError naming the table it was
  reading), schema version 3, exactly one subgraph (what tinyopt supports: no control flow);
- indices in bounds: buffers of tensors, tensors of operators and of the subgraph's inputs and
  outputs (-1, "optional", only for optional operator inputs), operator-code indices; buffer
  ``offset`` / ``size`` inside the file;
- tensors: a known type, non-negative dimensions, at most :data:`MAX_TENSOR_BYTES`, names that
  are at most :data:`MAX_NAME_BYTES` bytes (decoded with invalid UTF-8 replaced, never raising),
  constant data of exactly the byte size the shape and type need (LiteRT:
  ``SetTensorParametersReadOnly``);
- quantization (LiteRT ``ParseQuantization``): as many zero points as scales,
  ``quantized_dimension`` within the rank, ``num_scales`` 1 or the size of that dimension; scales
  finite and > 0 and zero points within the type's range (*stricter*: LiteRT does not look);
- per operator we import: its input / output counts, the builtin options table the op reads
  (*stricter* where LiteRT would substitute defaults) with sane values (strides, filter sizes and
  dilations >= 1, a known padding and fused activation, FULLY_CONNECTED weights in the DEFAULT
  format, a finite positive softmax beta, a concatenation axis within the rank, non-negative
  PAD amounts); int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights with zero point 0
  (LiteRT conv.cc / depthwise_conv.cc / fully_connected.cc ``zero_point == 0``), per-axis scales
  along the output-channel axis only (``quantized_dimension`` 0, depthwise 3), and an int32 bias
  of one entry per output channel with zero point 0 and scale input_scale * weight_scale within
  1e-6 relative (*stricter*: the tolerance of TFLite's GetQuantizedConvolutionMultipler, which
  ai_edge_litert 2.x's int8 kernels no longer call; every kernel adds the bias codes to an
  accumulator of scale input_scale * weight_scale, so a file saying otherwise contradicts
  itself).

Whether the model is *supported* (op set, int8 activations, one input, shapes an op accepts) is
the importer's business; this module only says whether the file is a well-formed TFLite model.
"""

from __future__ import annotations

import functools
import math
import struct
import sys

import numpy as np

MIN_BYTES = 16  # root offset + identifier + the smallest vtable and table
MAX_NAME_BYTES = 4096  # real converter names (fused-op lists) stay below 1 KB
MAX_TENSOR_BYTES = 1 << 31  # LiteRT's arena cannot hold more; the simulator would try to
MAX_RANK = 8
SCHEMA_VERSION = 3
BIAS_SCALE_RTOL = 1e-6  # TFLite's GetQuantizedConvolutionMultipler tolerance


class TFLiteFileError(ValueError):
    """A ``.tflite`` file that is not a well-formed TFLite model (the message names the file
    part, operator or tensor, the field and the allowed values)."""


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


# ---------------------------------------------------------------------------------------------
# The flatbuffer verifier. Python's flatbuffers reader trusts every offset (a negative one even
# reads from the end of the file); LiteRT runs flatbuffers' C++ Verifier first. We get the same
# rules by reading the file with LiteRT's own generated schema code, loaded a second time with a
# Table class that checks each offset, vector, string, table header and scalar as the C++
# Verifier does before it is followed (VerifyOffset, VerifyVectorOrString, VerifyString,
# VerifyTableStart, VerifyField: in bounds and aligned), so every field the reader touches is
# verified and nothing of the schema is restated here.
# ---------------------------------------------------------------------------------------------
_MAX_FLATBUFFER = (1 << 31) - 1
_VERIFYING_MODULE = "tinyopt_verifying_tflite_schema"


class _Malformed(Exception):
    """A flatbuffer rule broken at a byte position (becomes a TFLiteFileError in _parse)."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise _Malformed(what)


def _in_file(buf, pos: int, size: int, align: int, what: str) -> None:
    _need(0 <= pos and pos + size <= len(buf), f"{what} at byte {pos} ({size} bytes) lies "
          f"outside the file of {len(buf)} bytes")
    _need(pos % align == 0, f"{what} at byte {pos} is not {align}-byte aligned")


def _u32(buf, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _follow(buf, pos: int) -> int:
    """VerifyOffset: the uoffset stored at pos, checked; returns its target."""
    _in_file(buf, pos, 4, 4, "offset")
    o = _u32(buf, pos)
    _need(0 < o < (1 << 31), f"offset {o} at byte {pos} is zero or negative")
    _in_file(buf, pos + o, 1, 1, f"target of the offset at byte {pos}")
    return pos + o


def _vector_len(buf, vec: int, width: int) -> int:
    """VerifyVectorOrString: the length prefix at vec and the elements after it in the file."""
    _in_file(buf, vec, 4, 4, "vector length")
    n = _u32(buf, vec)
    _need(n < _MAX_FLATBUFFER // max(width, 1), f"vector at byte {vec}: length {n} too large")
    _in_file(buf, vec + 4, n * width, 1, f"vector of {n} x {width} bytes")
    return n


def _verifying_table_class():
    import flatbuffers.encode
    import flatbuffers.number_types as N
    import flatbuffers.table

    class VerifyingTable(flatbuffers.table.Table):
        __slots__ = ()

        def __init__(self, buf, pos):
            super().__init__(buf, pos)
            if len(buf):  # Union() placeholders start empty and are filled by Union()
                _in_file(buf, pos, 4, 4, "table")
                vtable = pos - struct.unpack_from("<i", buf, pos)[0]
                _in_file(buf, vtable, 2, 2, f"vtable of the table at byte {pos}")
                size = struct.unpack_from("<H", buf, vtable)[0]
                _need(size % 2 == 0, f"vtable at byte {vtable}: odd size {size}")
                _in_file(buf, vtable, size, 2, f"vtable of the table at byte {pos}")

        def Get(self, flags, off):
            _in_file(self.Bytes, off, flags.bytewidth, flags.bytewidth, "scalar field")
            return super().Get(flags, off)

        def Indirect(self, off):
            return _follow(self.Bytes, off)

        def String(self, off):
            start = _follow(self.Bytes, off)
            n = _vector_len(self.Bytes, start, 1)
            _in_file(self.Bytes, start + 4 + n, 1, 1, "string terminator")
            _need(self.Bytes[start + 4 + n] == 0, f"string at byte {start} is not "
                  "NUL-terminated")
            return bytes(self.Bytes[start + 4:start + 4 + n])

        def VectorLen(self, off):
            return _vector_len(self.Bytes, _follow(self.Bytes, off + self.Pos), 1)

        def Vector(self, off):
            vec = _follow(self.Bytes, off + self.Pos)
            _vector_len(self.Bytes, vec, 1)
            return vec + 4

        def Union(self, t2, off):
            t2.Bytes, t2.Pos = self.Bytes, _follow(self.Bytes, off + self.Pos)

        def GetVectorAsNumpy(self, flags, off):
            vec = _follow(self.Bytes, off + self.Pos)
            n = _vector_len(self.Bytes, vec, flags.bytewidth)
            return flatbuffers.encode.GetVectorAsNumpy(N.to_numpy_type(flags), self.Bytes, n,
                                                       vec + 4)

    return VerifyingTable


@functools.cache
def _verifying_schema():
    """LiteRT's generated schema module, executed again (from its cached bytecode) with
    ``flatbuffers.table.Table`` replaced by the verifying Table in its namespace only."""
    import builtins
    import importlib.util
    import types

    import flatbuffers

    spec = importlib.util.find_spec("ai_edge_litert.schema_py_generated")
    proxy = types.ModuleType("flatbuffers")
    proxy.__dict__.update(vars(flatbuffers))
    proxy.table = types.SimpleNamespace(Table=_verifying_table_class())
    real_import = builtins.__import__

    def imp(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "flatbuffers" and not fromlist:
            return proxy
        return real_import(name, globals, locals, fromlist, level)

    module = types.ModuleType(_VERIFYING_MODULE)
    module.__dict__["__builtins__"] = {**vars(builtins), "__import__": imp}
    exec(spec.loader.get_code(spec.name), module.__dict__)  # noqa: S102 (LiteRT's own code)
    if module.__dict__.get("flatbuffers") is not proxy:
        raise ImportError("ai_edge_litert.schema_py_generated no longer does `import "
                          "flatbuffers`; tinyopt's .tflite verifier cannot wrap it (update "
                          "tinyopt/integer/tflite_check.py)")
    return module


def _enum(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


def text(raw) -> str:
    """A string field of the file (bytes) as text: invalid UTF-8 replaced, never raising."""
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace") if isinstance(raw, (bytes, bytearray)) \
        else str(raw)


def tensor_name(tensor) -> str:
    """A tensor's name as text (see :func:`text`)."""
    return text(tensor.name)


# bytes per element (INT4 / UINT4 / INT2 packed, handled in _byte_size)
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
             "INT16": 2, "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8,
             "UINT32": 4, "UINT16": 2, "BFLOAT16": 2, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}
_PACKED_BITS = {"INT4": 4, "UINT4": 4, "INT2": 2}
# Zero points a quantized tensor of this type may carry (TFLite's quantization spec: int16
# activations and int32 biases are symmetric).
_ZP_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (0, 0), "INT32": (0, 0),
             "INT64": (0, 0), "INT4": (-8, 7), "UINT4": (0, 15)}

# op: (min inputs, max inputs, builtin options the importer reads or None). Inputs beyond
# the minimum are optional (-1 allowed).
OPS = {"CONV_2D": (2, 3, "Conv2DOptions"), "DEPTHWISE_CONV_2D": (2, 3, "DepthwiseConv2DOptions"),
       "FULLY_CONNECTED": (2, 3, "FullyConnectedOptions"), "MAX_POOL_2D": (1, 1, "Pool2DOptions"),
       "AVERAGE_POOL_2D": (1, 1, "Pool2DOptions"), "MEAN": (2, 2, "ReducerOptions"),
       "RESHAPE": (1, 2, None), "SQUEEZE": (1, 1, None), "EXPAND_DIMS": (2, 2, None),
       "PAD": (2, 2, None), "PADV2": (2, 3, None), "CONCATENATION": (1, 1 << 16,
                                                                      "ConcatenationOptions"),
       "ADD": (2, 2, "AddOptions"), "QUANTIZE": (1, 1, None), "SOFTMAX": (1, 1, "SoftmaxOptions"),
       "TRANSPOSE_CONV": (3, 4, "TransposeConvOptions")}
# the output-channel axis of the weights, along which per-axis scales may run
_WEIGHT_AXIS = {"CONV_2D": (0, 4), "DEPTHWISE_CONV_2D": (3, 4), "FULLY_CONNECTED": (0, 2)}


def _fail(msg: str) -> None:
    raise TFLiteFileError(msg)


def _reading(tb) -> str:
    """The schema tables being read when the flatbuffer reader failed (from the traceback)."""
    path = []
    while tb is not None:
        frame = tb.tb_frame
        obj = frame.f_locals.get("self")
        if obj is not None and type(obj).__module__ == _VERIFYING_MODULE:
            name = type(obj).__name__.removesuffix("T")
            if not path or path[-1] != name:
                path.append(name)
        tb = tb.tb_next
    return " > ".join(path) if path else "the Model root table"


def _parse(raw: bytes):
    if len(raw) < MIN_BYTES:
        _fail(f"not a .tflite file: {len(raw)} bytes, a TFLite flatbuffer has at least "
              f"{MIN_BYTES} (the file is truncated or empty)")
    if raw[4:8] != b"TFL3":
        _fail(f"not a .tflite file: file identifier (bytes 4..8) is {raw[4:8]!r}, expected "
              "b'TFL3'; pass the bytes of a converted LiteRT model")
    if len(raw) > _MAX_FLATBUFFER:
        _fail(f"a .tflite flatbuffer is at most {_MAX_FLATBUFFER} bytes; this one has {len(raw)}")
    root = struct.unpack_from("<I", raw, 0)[0]
    if not 8 <= root <= len(raw) - 4 or root % 4:
        _fail(f"malformed .tflite: root table offset {root} is not an aligned position inside "
              f"the file of {len(raw)} bytes (truncated or corrupted)")
    try:
        return _verifying_schema().ModelT.InitFromPackedBuf(bytearray(raw), 0)
    except _Malformed as exc:
        _fail(f"malformed .tflite flatbuffer: reading {_reading(sys.exc_info()[2])}: {exc} "
              "(the file is truncated or corrupted; LiteRT's verifier refuses it too)")
    except (IndexError, struct.error, UnicodeDecodeError, TypeError, ValueError, OverflowError,
            RecursionError) as exc:
        # Only the generated flatbuffers reader runs in this try; with every offset verified
        # these would be a rule we do not check yet: still a malformed file, say where.
        _fail(f"malformed .tflite flatbuffer: reading {_reading(sys.exc_info()[2])} failed "
              f"({type(exc).__name__}: {exc}); the file is truncated or corrupted")


def _byte_size(type_name: str, shape: list[int]) -> int | None:
    n = math.prod(shape)
    if type_name in _ITEMSIZE:
        return n * _ITEMSIZE[type_name]
    if type_name in _PACKED_BITS:
        return -(-n * _PACKED_BITS[type_name] // 8)
    return None  # STRING, RESOURCE, VARIANT: no fixed size


class _Checker:
    def __init__(self, raw: bytes, model, schema):
        self.raw, self.model, self.schema = raw, model, schema
        self.types = _enum(schema.TensorType)
        self.sub = model.subgraphs[0]
        self.tensors = list(self.sub.tensors or [])
        self.buffers = list(model.buffers or [])

    # ------------------------------------------------------------------ tensors
    def where(self, i: int) -> str:
        return f"tensor {i} ({tensor_name(self.tensors[i])[:200]!r})"

    def shape(self, i: int) -> list[int]:
        s = self.tensors[i].shape
        return [] if s is None or isinstance(s, int) else [int(d) for d in s]

    def scales(self, i: int) -> np.ndarray:
        q = self.tensors[i].quantization
        s = None if q is None else q.scale
        return np.zeros(0, np.float32) if s is None or isinstance(s, int) else np.asarray(s)

    def zero_points(self, i: int) -> np.ndarray:
        q = self.tensors[i].quantization
        z = None if q is None else q.zeroPoint
        return np.zeros(0, np.int64) if z is None or isinstance(z, int) else np.asarray(z)

    def const_bytes(self, i: int) -> bytes | None:
        buf = self.buffers[self.tensors[i].buffer]
        if buf.data is not None and not isinstance(buf.data, int) and len(buf.data):
            return np.asarray(buf.data, np.uint8).tobytes()
        if buf.offset and buf.size:
            return self.raw[buf.offset:buf.offset + buf.size]
        return None

    def tensor(self, i: int) -> None:
        t = self.tensors[i]
        raw_name = t.name if isinstance(t.name, (bytes, bytearray)) else b""
        if len(raw_name) > MAX_NAME_BYTES:
            _fail(f"tensor {i}: name of {len(raw_name)} bytes; at most {MAX_NAME_BYTES} allowed")
        where = self.where(i)
        if t.type not in self.types:
            _fail(f"{where}: type {t.type} is not a TFLite TensorType (0..{max(self.types)})")
        tname = self.types[t.type]
        shape = self.shape(i)
        if len(shape) > MAX_RANK:
            _fail(f"{where}: rank {len(shape)}; at most {MAX_RANK} dimensions allowed")
        if any(d < 0 for d in shape):
            _fail(f"{where}: shape {shape} has a negative dimension; dimensions must be >= 0")
        size = _byte_size(tname, shape)
        if size is not None and size > MAX_TENSOR_BYTES:
            _fail(f"{where}: shape {shape} of {tname} needs {size} bytes; at most "
                  f"{MAX_TENSOR_BYTES} allowed")
        if not 0 <= t.buffer < len(self.buffers):
            _fail(f"{where}: buffer index {t.buffer} out of range [0, {len(self.buffers)})")
        buf = self.buffers[t.buffer]
        if buf.offset or buf.size:
            if buf.offset < 0 or buf.size < 0 or buf.offset + buf.size > len(self.raw):
                _fail(f"{where}: buffer {t.buffer} offset {buf.offset} size {buf.size} lies "
                      f"outside the file of {len(self.raw)} bytes")
        data = self.const_bytes(i)
        if data is not None and size is not None and len(data) != size:
            _fail(f"{where}: constant buffer {t.buffer} holds {len(data)} bytes but shape "
                  f"{shape} of {tname} needs {size}")
        self.quantization(i, tname, shape)

    def quantization(self, i: int, tname: str, shape: list[int]) -> None:
        q = self.tensors[i].quantization
        s, z = self.scales(i), self.zero_points(i)
        if q is None or (len(s) == 0 and len(z) == 0):
            return
        where = self.where(i)
        if len(s) != len(z):
            _fail(f"{where}: quantization has {len(s)} scales and {len(z)} zero_point values; "
                  "they must have the same number")
        qd = int(q.quantizedDimension)
        if shape and not 0 <= qd < len(shape):
            _fail(f"{where}: quantized_dimension {qd} must be in [0, {len(shape)}) for shape "
                  f"{shape}")
        if len(s) != 1 and shape and len(s) != shape[qd]:
            _fail(f"{where}: {len(s)} scales; num_scales must be 1 (per tensor) or "
                  f"{shape[qd]} (the size of quantized_dimension {qd}, per axis)")
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            bad = s[~(np.isfinite(s) & (s > 0))][:3].tolist()
            _fail(f"{where}: quantization scale {bad}; scales must be finite and > 0")
        lo, hi = _ZP_RANGE.get(tname, (None, None))
        if lo is not None and (z.min() < lo or z.max() > hi):
            bad = z[(z < lo) | (z > hi)][:3].tolist()
            _fail(f"{where}: zero_point {bad} outside [{lo}, {hi}] allowed for {tname}")

    # ------------------------------------------------------------------ operators
    def operators(self) -> None:
        names = _enum(self.schema.BuiltinOperator)
        codes = list(self.model.operatorCodes or [])
        n = len(self.tensors)
        for k, op in enumerate(self.sub.operators or []):
            if not 0 <= op.opcodeIndex < len(codes):
                _fail(f"operator {k}: opcode_index {op.opcodeIndex} out of range [0, "
                      f"{len(codes)})")
            code = codes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            kind = names.get(builtin, f"builtin#{builtin}")
            where = f"operator {k} ({kind})"
            ins = [] if op.inputs is None or isinstance(op.inputs, int) else [int(i) for i in
                                                                             op.inputs]
            outs = [] if op.outputs is None or isinstance(op.outputs, int) else [int(i) for i in
                                                                                op.outputs]
            for role, idx, optional in (("input", ins, True), ("output", outs, False)):
                for j, i in enumerate(idx):
                    if not (0 <= i < n or (optional and i == -1)):
                        _fail(f"{where}: {role} {j} is tensor index {i}, out of range [0, {n})"
                              + (" (or -1 for an optional input)" if optional else ""))
            if not outs:
                _fail(f"{where}: has no output tensor")
            if kind in OPS:
                self.op(k, kind, op, ins, outs)

    def op(self, k: int, kind: str, op, ins: list[int], outs: list[int]) -> None:
        where = f"operator {k} ({kind})"
        lo, hi, opts_name = OPS[kind]
        if not lo <= len(ins) <= hi:
            _fail(f"{where}: {len(ins)} inputs; {kind} takes {lo}" + (f" to {hi}" if hi > lo
                                                                      else ""))
        if any(i < 0 for i in ins[:lo]):
            _fail(f"{where}: required input {ins[:lo].index(-1)} is -1 (no tensor)")
        if len(outs) != 1:
            _fail(f"{where}: {len(outs)} outputs; {kind} writes 1")
        schema = self.schema
        opts = op.builtinOptions
        if opts_name is not None:
            expected = getattr(schema.BuiltinOptions, opts_name)
            if op.builtinOptionsType != expected or opts is None:
                _fail(f"{where}: builtin_options must be a {opts_name} table (type {expected}), "
                      f"found type {op.builtinOptionsType}")
            self.options(where, kind, opts, outs[0])
        if kind in _WEIGHT_AXIS:
            self.weights(where, kind, ins)
        if kind in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
            self.new_shape(where, kind, op, ins, outs[0])
        if kind == "PAD" or kind == "PADV2":
            pads = self.ints(ins[1])
            if pads is not None and (pads < 0).any():
                _fail(f"{where}: paddings tensor {ins[1]} holds {pads.reshape(-1).tolist()}; "
                      "pad amounts must be >= 0")

    def new_shape(self, where: str, kind: str, op, ins: list[int], out: int) -> None:
        """LiteRT computes these ops' output shape from the shape / axis input or the options
        and ignores the stored one, which the importer uses: they must agree."""
        shape_in, stored = self.shape(ins[0]), self.shape(out)
        if kind == "RESHAPE":
            if len(ins) > 1 and ins[1] >= 0:
                new = self.ints(ins[1])
                if new is None or len(self.shape(ins[1])) > 1:
                    _fail(f"{where}: the shape input {self.where(ins[1])} must be a constant "
                          "1-D int32 tensor (a converter computes it at run time, with SHAPE / "
                          "STRIDED_SLICE / PACK ops, when the batch axis was dynamic: convert "
                          "with a fixed batch of one, tinyopt.to_tflite(model, 'int8', "
                          "calibration, batch_size=1))")
                new = [int(d) for d in new]
            elif op.builtinOptions is not None and getattr(op.builtinOptions, "newShape",
                                                           None) is not None:
                new = [int(d) for d in op.builtinOptions.newShape]
            else:
                return
            if new.count(-1) == 1 and all(d > 0 or d == -1 for d in new):
                rest = math.prod(d for d in new if d != -1)
                if rest and math.prod(shape_in) % rest == 0:
                    new[new.index(-1)] = math.prod(shape_in) // rest
        elif kind == "EXPAND_DIMS":
            axis = self.ints(ins[1])
            if axis is None or axis.size != 1:
                _fail(f"{where}: the axis input {self.where(ins[1])} must be one constant int32")
            a = int(axis[0])
            if not -len(shape_in) - 1 <= a <= len(shape_in):
                _fail(f"{where}: axis {a} out of range for an input of rank {len(shape_in)}")
            a %= len(shape_in) + 1
            new = shape_in[:a] + [1] + shape_in[a:]
        else:
            dims = list(getattr(op.builtinOptions, "squeezeDims", None) or [])
            if not all(-len(shape_in) <= int(d) < len(shape_in) for d in dims):
                _fail(f"{where}: squeeze_dims {dims} out of range for rank {len(shape_in)}")
            drop = {int(d) % len(shape_in) for d in dims} if dims else \
                {k for k, d in enumerate(shape_in) if d == 1}
            new = [d for k, d in enumerate(shape_in) if k not in drop]
        if new != stored or math.prod(new) != math.prod(shape_in):
            _fail(f"{where}: the new shape is {new} (from input shape {shape_in}) but output "
                  f"{self.where(out)} has shape {stored}; they must agree")

    def ints(self, i: int) -> np.ndarray | None:
        data, t = self.const_bytes(i), self.tensors[i]
        dtype = {self.schema.TensorType.INT32: np.int32,
                 self.schema.TensorType.INT64: np.int64}.get(t.type)
        return None if data is None or dtype is None else np.frombuffer(data, dtype)

    def options(self, where: str, kind: str, opts, out: int) -> None:
        schema = self.schema
        acts = _enum(schema.ActivationFunctionType)
        act = getattr(opts, "fusedActivationFunction", 0)
        if act not in acts:
            _fail(f"{where}: fused_activation_function {act} is not one of {acts}")
        fields = {"Conv2DOptions": ("strideH", "strideW", "dilationHFactor", "dilationWFactor"),
                  "DepthwiseConv2DOptions": ("strideH", "strideW", "dilationHFactor",
                                             "dilationWFactor"),
                  "Pool2DOptions": ("strideH", "strideW", "filterHeight", "filterWidth"),
                  "TransposeConvOptions": ("strideH", "strideW")}
        for f in fields.get(type(opts).__name__.removesuffix("T"), ()):
            if int(getattr(opts, f)) < 1:
                _fail(f"{where}: {f} is {getattr(opts, f)}; it must be >= 1")
        if hasattr(opts, "padding") and opts.padding not in _enum(schema.Padding):
            _fail(f"{where}: padding {opts.padding} is not one of {_enum(schema.Padding)}")
        if kind == "FULLY_CONNECTED" and opts.weightsFormat != 0:
            _fail(f"{where}: weights_format {opts.weightsFormat}; only DEFAULT (0) is supported "
                  "for int8 weights")
        if kind == "SOFTMAX" and not (math.isfinite(opts.beta) and opts.beta > 0):
            _fail(f"{where}: beta {opts.beta}; it must be finite and > 0")
        if kind == "CONCATENATION":
            rank = len(self.shape(out))
            if not -rank <= int(opts.axis) < rank:
                _fail(f"{where}: axis {opts.axis} out of range [{-rank}, {rank}) of the "
                      f"output's rank")

    def weights(self, where: str, kind: str, ins: list[int]) -> None:
        w = ins[1]
        axis, rank = _WEIGHT_AXIS[kind]
        shape = self.shape(w)
        wt = self.types.get(self.tensors[w].type)
        if len(shape) != rank:
            _fail(f"{where}: weights {self.where(w)} have shape {shape}; {kind} weights are "
                  f"{rank}-D")
        s, z = self.scales(w), self.zero_points(w)
        if wt == "INT8" and len(z):
            if np.any(z != 0):
                _fail(f"{where}: weights {self.where(w)} have zero_point "
                      f"{z[z != 0][:3].tolist()}; int8 weights must have zero_point 0 "
                      "(symmetric; LiteRT refuses others)")
            qd = int(self.tensors[w].quantization.quantizedDimension)
            if len(s) > 1 and qd != axis:
                _fail(f"{where}: weights {self.where(w)} are quantized per axis along "
                      f"quantized_dimension {qd}; only the output-channel axis {axis} is "
                      "allowed")
        if len(ins) < 3 or ins[2] < 0:
            return
        b, c_out = ins[2], shape[axis]
        bshape = self.shape(b)
        if math.prod(bshape) != c_out:
            _fail(f"{where}: bias {self.where(b)} has shape {bshape}; it needs one entry per "
                  f"output channel ({c_out})")
        bs = self.scales(b)  # its zero point: 0, as every int32 one (quantization())
        if self.types.get(self.tensors[b].type) == "INT32" and len(bs) and len(s):
            x_s = self.scales(ins[0])
            if len(bs) not in (1, c_out) or len(x_s) == 0:
                return  # the quantization check above has already refused these
            product = np.float64(x_s[0]) * s.astype(np.float64)
            tol = BIAS_SCALE_RTOL * np.minimum(product, bs.astype(np.float64))
            if np.any(np.abs(product - bs.astype(np.float64)) > tol):
                _fail(f"{where}: bias {self.where(b)} has scale {bs[:3].tolist()} but input "
                      f"scale x weight scale is {product[:3].tolist()}; they must agree within "
                      f"{BIAS_SCALE_RTOL} relative")

    def run(self) -> None:
        n = len(self.tensors)
        for i in range(n):
            self.tensor(i)
        for role, idx in (("input", self.sub.inputs), ("output", self.sub.outputs)):
            idx = [] if idx is None or isinstance(idx, int) else [int(i) for i in idx]
            for j, i in enumerate(idx):
                if not 0 <= i < n:
                    _fail(f"subgraph {role} {j} is tensor index {i}, out of range [0, {n})")
        self.operators()


def validate(tflite_bytes) -> object:
    """Check that ``tflite_bytes`` is a well-formed TFLite model of the kind the importer reads
    (module docstring: what is checked and where LiteRT checks the same).

    Arguments:
        tflite_bytes: the file's bytes (untrusted).

    Returns:
        The parsed model (``ai_edge_litert``'s ``schema_py_generated.ModelT``).

    Raises:
        TFLiteFileError: naming the file part, operator (index, op name) or tensor (index, name),
            the field and the allowed values.
    """
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        _fail(f"tflite_bytes must be the bytes of a .tflite file, got "
              f"{type(tflite_bytes).__name__} (read it with Path(...).read_bytes())")
    raw = bytes(tflite_bytes)
    schema = _schema()
    model = _parse(raw)
    if model.version != SCHEMA_VERSION:
        _fail(f"Model.version is {model.version}; LiteRT reads schema version {SCHEMA_VERSION}")
    subs = model.subgraphs or []
    if len(subs) != 1:
        _fail(f"the model has {len(subs)} subgraphs; tinyopt imports models with exactly one "
              "(no control flow or multiple signatures)")
    _Checker(raw, model, schema).run()
    return model
