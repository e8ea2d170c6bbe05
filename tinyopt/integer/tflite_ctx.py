"""What the TFLite importer's op builders share: the flatbuffer read through LiteRT's schema
(:class:`TFLiteModel`, after :func:`tinyopt.integer.tflite_check.validate` accepted it), the
state of one import (:class:`ImportContext`: unique tensor names, int8 tensor records, node
construction, the op's rounding per flavour) and TFLite's padding and fused-activation rules.
The builders themselves live with their op (:mod:`tinyopt.integer.ops`).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import same_padding
from tinyopt.integer.graph import IntegerLayer, Tensor
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.integer.tflite_check import _schema, tensor_name, text, validate


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class TFLiteModel:
    """Tensors, buffers and operators of subgraph 0 of a flatbuffer, read with LiteRT's schema
    after :func:`tinyopt.integer.tflite_check.validate` accepted it (every index, size and
    quantization field below is then in bounds)."""

    def __init__(self, tflite_bytes: bytes, model=None):
        self.schema = _schema()
        self.model = validate(tflite_bytes) if model is None else model
        self.raw = bytes(tflite_bytes)
        self.sub = self.model.subgraphs[0]
        names = _op_names(self.schema)
        self.op_names = []
        for code in self.model.operatorCodes or []:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            self.op_names.append(names.get(builtin, f"builtin#{builtin}")
                                 if builtin != self.schema.BuiltinOperator.CUSTOM
                                 else f"CUSTOM:{text(code.customCode)}")

    def tensor(self, i: int):
        return self.sub.tensors[i]

    def name(self, i: int) -> str:
        return tensor_name(self.tensor(i))

    def data(self, i: int) -> np.ndarray:
        """A constant tensor's values, in its own dtype and shape."""
        t = self.tensor(i)
        buf = self.model.buffers[t.buffer]
        if buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, np.uint8).tobytes()
        elif buf.offset and buf.size:
            raw = self.raw[buf.offset:buf.offset + buf.size]
        else:
            raise ValueError(f"tensor {self.name(i)!r} has no constant data")
        dtypes = {self.schema.TensorType.INT8: np.int8, self.schema.TensorType.INT32: np.int32,
                  self.schema.TensorType.UINT8: np.uint8, self.schema.TensorType.INT64: np.int64,
                  self.schema.TensorType.FLOAT32: np.float32}
        if t.type not in dtypes:
            raise ValueError(f"tensor {self.name(i)!r} has unsupported type {t.type}")
        return np.frombuffer(raw, dtypes[t.type]).reshape(list(t.shape))

    def quant(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(scales float32, zero points int64) of tensor i; raises if it is not quantized."""
        q = self.tensor(i).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ValueError(f"tensor {self.name(i)!r} is not quantized; run_tflite needs a "
                             "full-integer model (TFLITE_BUILTINS_INT8, int8 input/output)")
        return (np.asarray(q.scale, np.float32),
                np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.int64))

    def check_int8(self, i: int, role: str, op: str) -> None:
        if self.tensor(i).type != self.schema.TensorType.INT8:
            raise ValueError(f"{op}: {role} tensor {self.name(i)!r} is not int8 (type "
                             f"{self.tensor(i).type}); only full-int8 models are supported")


def act_range(activation: int, scale: float, zero: int, schema) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for int8 (float32 f / scale, round half away)."""
    def q(f):
        v = np.float32(f) / np.float32(scale)
        return int(zero + np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))
    A = schema.ActivationFunctionType
    lo, hi = -128, 127
    if activation == A.NONE:
        return lo, hi
    if activation == A.RELU:
        return max(lo, q(0.0)), hi
    if activation == A.RELU6:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if activation == A.RELU_N1_TO_1:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise ValueError(f"fused activation {activation} is not supported (only NONE, RELU, RELU6, "
                     "RELU_N1_TO_1)")


def spatial(opts, size_hw, k_hw, schema) -> tuple[tuple, tuple]:
    """(out (H, W), padding (top, bottom, left, right)) for TFLite SAME / VALID."""
    sh, sw = int(opts.strideH), int(opts.strideW)
    (h, w), (kh, kw) = size_hw, k_hw
    if opts.padding == schema.Padding.SAME:
        oh, ow = -(-h // sh), -(-w // sw)
        return (oh, ow), same_padding(h, kh, sh, oh) + same_padding(w, kw, sw, ow)
    return ((h - kh) // sh + 1, (w - kw) // sw + 1), (0, 0, 0, 0)


class ImportContext:
    """State of one import: the model, the flavour, unique tensor names, tensor records."""

    def __init__(self, m: TFLiteModel, flavour: str):
        self.m, self.flavour, self.schema = m, flavour, m.schema
        self.names: dict[int, str] = {}
        self.tensors: dict[str, Tensor] = {}
        # A model converted for a fixed batch of one (no -1 in its input's shape signature) holds
        # one image in every tensor, and the converter may drop the batch axis of some (a Dense
        # on a 3-D tensor runs on [rows, features]): their stored shape is the per-image shape.
        sig = m.tensor(int(m.sub.inputs[0])).shapeSignature
        self.static_batch = sig is None or len(sig) == 0 or int(sig[0]) == 1

    def tname(self, i: int) -> str:
        """A unique, non-empty name for tensor index i (its flatbuffer name when possible)."""
        if i not in self.names:
            name = self.m.name(i) or f"tensor{i}"
            if name in self.names.values():
                name = f"{name}#{i}"
            self.names[i] = name
        return self.names[i]

    def spec(self, i: int, op: str) -> Tensor:
        """The int8 tensor record of activation tensor i (registered in ``tensors``)."""
        name = self.tname(i)
        if name not in self.tensors:
            t = self.m.tensor(i)
            self.m.check_int8(i, "activation", op)
            shape = [int(d) for d in t.shape]
            if shape and shape[0] == 1:
                shape = shape[1:]
            elif not (shape and self.static_batch):
                raise ValueError(f"{op}: tensor {name!r} has shape {shape}; the first axis must "
                                 "be the batch of 1 (convert the model with batch size 1)")
            s, z = self.m.quant(i)
            self.tensors[name] = Tensor(name, tuple(shape), 8, True, int(z[0]), float(s[0]))
        return self.tensors[name]

    def node(self, kind: str, op_name: str, ins: list[int], out: int, **kw) -> IntegerLayer:
        """A node reading activation tensors ``ins`` and writing ``out`` (named after it)."""
        src = [self.spec(i, op_name) for i in ins]
        dst = self.spec(out, op_name)
        return IntegerLayer(kind=kind, name=dst.name, in_shape=src[0].shape,
                            out_shape=dst.shape, in_bits=8, in_signed=True,
                            in_zero_point=src[0].zero_point, in_scale=src[0].scale,
                            out_bits=8, out_signed=True, out_zero_point=dst.zero_point,
                            out_scale=dst.scale, inputs=tuple(t.name for t in src),
                            outputs=(dst.name,), extra={"tflite_op": op_name}, **kw)

    def same_shape(self, layer: IntegerLayer, op_name: str) -> None:
        """Ops whose output has the input's shape (LiteRT resizes the output to it; the stored
        shape must agree, since the graph uses it)."""
        if tuple(layer.in_shape) != tuple(layer.out_shape):
            raise ValueError(f"{op_name} writing {layer.name!r}: output shape "
                             f"{layer.out_shape} differs from the input's {layer.in_shape}")

    def rounding(self, op_name: str) -> str:
        """The requantization flavour of TFLite op ``op_name`` in this import's flavour (the
        op's :class:`~tinyopt.integer.ops.registry.TFLiteOp` record)."""
        for kind in REGISTRY.values():
            if op_name in kind.tflite:
                return kind.tflite[op_name].rounding[self.flavour]
        raise ValueError(f"no op kind imports TFLite op {op_name}")

    def act_range(self, opts, out: int) -> tuple[int, int]:
        t = self.tensors[self.tname(out)]
        return act_range(opts.fusedActivationFunction, t.scale, t.zero_point, self.schema)


def same_quant(ctx: ImportContext, op_name: str, a: int, b: int) -> None:
    """Refuse an op that only moves codes when its input and output are quantized differently."""
    ta, tb = ctx.spec(a, op_name), ctx.spec(b, op_name)
    if ta.zero_point != tb.zero_point or np.float32(ta.scale) != np.float32(tb.scale):
        raise ValueError(f"{op_name} writing {tb.name!r}: input and output quantization differ "
                         f"(scale {ta.scale} zp {ta.zero_point} vs {tb.scale} zp "
                         f"{tb.zero_point}); this op only moves codes")
