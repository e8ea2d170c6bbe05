"""LiteRT front end of the simulator: a full-int8 ``.tflite`` flatbuffer -> an
:class:`~tinyopt.integer.graph.IntegerGraph` (a DAG over the model's tensors), read from the model
itself (weights, scales, zero points, options) with ``ai_edge_litert``'s flatbuffer schema.

One handler per TFLite op (:data:`HANDLERS`, the supported set :data:`TFLITE_OPS`); any other op
is refused naming the op, the tensor it writes and the supported set. Two rounding flavours
(:data:`OP_ROUNDING`): "litert" (LiteRT's BUILTIN_REF kernels; FULLY_CONNECTED rounds once) and
"tflm" (TensorFlow Lite Micro / CMSIS-NN: every requantization rounds twice). Run the result with
:func:`tinyopt.integer.sim.run`, or both steps with :func:`tinyopt.integer.sim.run_tflite`.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import same_padding, tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, Tensor
from tinyopt.integer.tflite_check import TFLiteFileError, _schema, tensor_name, text, validate

__all__ = ["FLAVOURS", "HANDLERS", "OP_ROUNDING", "TFLITE_OPS", "TFLiteFileError",
           "graph_from_tflite", "tflite_ops"]


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class _TFLiteModel:
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


def _act_range(activation: int, scale: float, zero: int, schema) -> tuple[int, int]:
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


def _spatial(opts, size_hw, k_hw, schema) -> tuple[tuple, tuple]:
    """(out (H, W), padding (top, bottom, left, right)) for TFLite SAME / VALID."""
    sh, sw = int(opts.strideH), int(opts.strideW)
    (h, w), (kh, kw) = size_hw, k_hw
    if opts.padding == schema.Padding.SAME:
        oh, ow = -(-h // sh), -(-w // sw)
        return (oh, ow), same_padding(h, kh, sh, oh) + same_padding(w, kw, sw, ow)
    return ((h - kh) // sh + 1, (w - kw) // sw + 1), (0, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# The importer: one handler per TFLite op
# --------------------------------------------------------------------------------------------

FLAVOURS = ("litert", "tflm")
# Requantization of each op per flavour (docs/integer.md#which-flavour-where). "litert": LiteRT's
# BUILTIN_REF kernels, measured against ai_edge_litert 2.3 (tests/test_sim.py,
# tests/test_mlperf_import.py); "tflm": TFLite Micro's kernels and CMSIS-NN, which use the
# double-rounding MultiplyByQuantizedMultiplier everywhere (checked against the tflite-micro
# interpreter, tests/test_mlperf_import.py).
OP_ROUNDING = {
    "litert": {"CONV_2D": "tflite_double", "DEPTHWISE_CONV_2D": "tflite_double",
               "FULLY_CONNECTED": "tflite_single", "MEAN": "tflite_double",
               "ADD": "tflite_double", "QUANTIZE": "tflite_double",
               "SOFTMAX": "tflite_double"},
    "tflm": {"CONV_2D": "tflite_double", "DEPTHWISE_CONV_2D": "tflite_double",
             "FULLY_CONNECTED": "tflite_double", "MEAN": "tflite_double",
             "ADD": "tflite_double", "QUANTIZE": "tflite_double", "SOFTMAX": "tflite_double"},
}


class _Import:
    """State of one import: the model, the flavour, unique tensor names, tensor records."""

    def __init__(self, m: _TFLiteModel, flavour: str):
        self.m, self.flavour, self.schema = m, flavour, m.schema
        self.names: dict[int, str] = {}
        self.tensors: dict[str, Tensor] = {}

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
            if not shape or shape[0] != 1:
                raise ValueError(f"{op}: tensor {name!r} has shape {shape}; the first axis must "
                                 "be the batch of 1 (convert the model with batch size 1)")
            s, z = self.m.quant(i)
            self.tensors[name] = Tensor(name, tuple(shape[1:]), 8, True, int(z[0]), float(s[0]))
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
        return OP_ROUNDING[self.flavour][op_name]

    def act_range(self, opts, out: int) -> tuple[int, int]:
        t = self.tensors[self.tname(out)]
        return _act_range(opts.fusedActivationFunction, t.scale, t.zero_point, self.schema)


def _same_quant(ctx: _Import, op_name: str, a: int, b: int) -> None:
    ta, tb = ctx.spec(a, op_name), ctx.spec(b, op_name)
    if ta.zero_point != tb.zero_point or np.float32(ta.scale) != np.float32(tb.scale):
        raise ValueError(f"{op_name} writing {tb.name!r}: input and output quantization differ "
                         f"(scale {ta.scale} zp {ta.zero_point} vs {tb.scale} zp "
                         f"{tb.zero_point}); this op only moves codes")


def _conv_like(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: int8 weights (per tensor or per channel),
    int32 bias, TFLite's multipliers, fused ReLU / ReLU6 as the output clamp."""
    m, schema = ctx.m, ctx.schema
    inputs = [int(i) for i in op.inputs]
    out = int(op.outputs[0])
    layer = ctx.node("", op_name, [inputs[0]], out)
    src = ctx.tensors[layer.inputs[0]]
    dst = ctx.tensors[layer.outputs[0]]
    opts = op.builtinOptions
    w = m.data(inputs[1]).astype(np.int64)
    s_w, z_w = m.quant(inputs[1])
    bias = m.data(inputs[2]).astype(np.int64) if len(inputs) > 2 and inputs[2] >= 0 else None
    where = f"{op_name} writing {dst.name!r}"
    if op_name == "FULLY_CONNECTED":
        layer.kind = "dense"
        codes = w  # [c_out, c_in]
        c_out, c_in = w.shape
        # rows of c_in features in, as many rows of c_out out (several only with keep_num_dims;
        # LiteRT would otherwise write a larger output than the model's tensor says)
        rows = int(np.prod(src.shape)) // c_in
        if (int(np.prod(src.shape)) % c_in or dst.shape[-1] != c_out
                or rows * c_out != int(np.prod(dst.shape))):
            raise ValueError(f"{where}: input {src.shape} / output {dst.shape} do not fit "
                             f"weights {w.shape}")
        if len(s_w) == 1 and ctx.flavour == "litert":
            # LiteRT: double(float32(s_in * s_w)) / double(s_out); TFLM's
            # GetQuantizedConvolutionMultipler multiplies in double (the else branch)
            real = np.float64(np.float32(src.scale) * s_w[0]) / np.float64(dst.scale)
        else:
            real = np.float64(src.scale) * s_w.astype(np.float64) / np.float64(dst.scale)
    else:
        if int(opts.dilationHFactor) != 1 or int(opts.dilationWFactor) != 1:
            raise ValueError(f"{where}: dilated convolutions are not supported; use "
                             "dilation_rate=1")
        if op_name == "CONV_2D":
            codes = w  # [c_out, kh, kw, c_in]: the IntegerGraph layout already
            kh, kw = w.shape[1:3]
            if w.shape[3] != src.shape[-1]:
                raise ValueError(f"{where}: grouped convolutions are not supported (weights "
                                 f"{w.shape}, input {src.shape})")
            layer.kind = "pointwise" if kh == kw == 1 else "conv2d"
        else:
            codes = w[0]  # [1, kh, kw, c_out] -> [kh, kw, c_out]
            kh, kw = codes.shape[:2]
            layer.kind = "depthwise"
            layer.depth_multiplier = int(opts.depthMultiplier) or 1
            if src.shape[-1] * layer.depth_multiplier != codes.shape[-1]:
                layer.depth_multiplier = codes.shape[-1] // src.shape[-1]
        c_out = dst.shape[-1]
        (oh, ow), layer.padding = _spatial(opts, src.shape[:2], (kh, kw), schema)
        if (oh, ow) != dst.shape[:2]:
            raise ValueError(f"{where}: computed output {(oh, ow)} but the model says "
                             f"{dst.shape[:2]}")
        layer.stride = (int(opts.strideH), int(opts.strideW))
        real = np.float64(src.scale) * s_w.astype(np.float64) / np.float64(dst.scale)
    layer.rounding = ctx.rounding(op_name)
    layer.set_weights(codes + 128, 8)
    layer.weight_zero_point = (z_w + 128).astype(np.int32)
    layer.weight_scale = s_w.astype(np.float64)
    layer.bias = (bias if bias is not None else np.zeros(c_out, np.int64)).astype(np.int32)
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.pad_mode = "zero_point"
    layer.act_min, layer.act_max = ctx.act_range(opts, out)
    return [layer]


def _pool_op(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """MAX_POOL_2D / AVERAGE_POOL_2D (average: round half away from zero, TFLite and CMSIS-NN)."""
    out = int(op.outputs[0])
    x = int(op.inputs[0])
    _same_quant(ctx, op_name, x, out)
    layer = ctx.node("maxpool" if op_name == "MAX_POOL_2D" else "avgpool", op_name, [x], out)
    opts = op.builtinOptions
    layer.pool_size = (int(opts.filterHeight), int(opts.filterWidth))
    layer.stride = (int(opts.strideH), int(opts.strideW))
    (oh, ow), layer.padding = _spatial(opts, layer.in_shape[:2], layer.pool_size, ctx.schema)
    if (oh, ow) != tuple(layer.out_shape[:2]):
        raise ValueError(f"{op_name} writing {layer.name!r}: computed output {(oh, ow)} but the "
                         f"model says {layer.out_shape[:2]}")
    if layer.kind == "avgpool":
        layer.avg_rounding = "half_away"
    layer.act_min, layer.act_max = ctx.act_range(opts, out)
    return [layer]


def _mean(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """MEAN over the spatial axes (Keras GlobalAveragePooling2D over H and W of (H, W, C),
    GlobalAveragePooling1D over T of (T, C)): TFLite's QuantizedMeanOrSum, i.e. the sum of
    (x - z_in) times QuantizeMultiplier(s_in / s_out) refolded by 1/n
    (s = min(floor(log2 n), 32, 31 + shift), q' = (q << s) // n, shift' = shift - s), the same
    in LiteRT and TFLM. Written as a depthwise H x W convolution with all-one weights and zero
    bias, with reshapes around it when the input is (T, C) or keep_dims is false."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    src = ctx.spec(x, op_name)
    dst = ctx.spec(out, op_name)
    rank = len(src.shape)
    axis = sorted(int(a) % (rank + 1) for a in ctx.m.data(int(op.inputs[1])).reshape(-1))
    if (rank, axis) not in ((3, [1, 2]), (2, [1])):
        raise ValueError(f"MEAN writing {dst.name!r}: only the mean over H and W of (H, W, C) or "
                         f"over T of (T, C) is supported (got axis {axis} of a {rank + 1}-D "
                         "tensor)")
    hwc = src.shape if rank == 3 else (src.shape[0], 1, src.shape[1])
    h, w, c = hwc
    if int(np.prod(dst.shape)) != c or dst.shape[-1] != c:
        raise ValueError(f"MEAN writing {dst.name!r}: the mean of {src.shape} has {c} channels "
                         f"but the model says {dst.shape}")
    n = h * w
    q, e = tflite_quantize_multiplier(np.float64(src.scale) / np.float64(dst.scale))
    q, e = int(q[0]), int(e[0])
    sh = min(n.bit_length() - 1, 32, 31 + e)
    nodes = []

    def shape_node(name, src_name, in_shape, out_shape, zp, scale):
        return IntegerLayer(kind="flatten" if len(out_shape) == 1 else "reshape", name=name,
                            in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                            in_signed=True, out_signed=True, in_zero_point=zp,
                            out_zero_point=zp, in_scale=scale, out_scale=scale,
                            inputs=(src_name,), outputs=(name,), extra={"tflite_op": op_name})

    layer = ctx.node("depthwise", op_name, [x], out)
    if rank == 2:
        nodes.append(shape_node(dst.name + ":as_hwc", src.name, src.shape, hwc,
                                src.zero_point, src.scale))
        layer.inputs, layer.in_shape = (nodes[-1].name,), hwc
    layer.out_shape = (1, 1, c)
    layer.set_weights(np.ones((h, w, c), np.uint8), 8)
    layer.weight_zero_point = np.zeros(1, np.int32)
    layer.bias = np.zeros(c, np.int32)
    layer.m0 = np.array([(q << sh) // n], np.int32)
    layer.n0 = np.array([e - sh], np.int8)
    layer.rounding = ctx.rounding(op_name)
    layer.extra["keep_dims"] = bool(op.builtinOptions.keepDims)
    nodes.append(layer)
    if tuple(dst.shape) != (1, 1, c):
        layer.name = dst.name + ":mean_hw"
        layer.outputs = (layer.name,)
        nodes.append(shape_node(dst.name, layer.name, (1, 1, c), dst.shape, dst.zero_point,
                                dst.scale))
    return nodes


def _reshape(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the codes are unchanged, only the shape."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    _same_quant(ctx, op_name, x, out)
    layer = ctx.node("reshape", op_name, [x], out)
    if len(layer.out_shape) == 1:
        layer.kind = "flatten"
    if int(np.prod(layer.in_shape)) != int(np.prod(layer.out_shape)):
        raise ValueError(f"{op_name} writing {layer.name!r}: {layer.in_shape} -> "
                         f"{layer.out_shape} changes the size")
    return [layer]


def _pad_op(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """PAD / PADV2 of H and W with the output zero point (PADV2: its constant, which must be
    the zero point: Keras ZeroPadding2D)."""
    inputs = [int(i) for i in op.inputs]
    x, out = inputs[0], int(op.outputs[0])
    _same_quant(ctx, op_name, x, out)
    layer = ctx.node("pad", op_name, [x], out)
    pads = ctx.m.data(inputs[1]).astype(np.int64).reshape(-1, 2)
    if op_name == "PADV2" and len(inputs) > 2 and inputs[2] >= 0:
        value = int(ctx.m.data(inputs[2]).reshape(-1)[0])
        if value != layer.out_zero_point:
            raise ValueError(f"PADV2 writing {layer.name!r}: pads with {value}, not the zero "
                             f"point {layer.out_zero_point}; only zero padding is supported")
    if pads.shape[0] != 4 or pads[0].any() or pads[3].any() or len(layer.in_shape) != 3:
        raise ValueError(f"{op_name} writing {layer.name!r}: only padding of H and W of a 4-D "
                         f"tensor is supported (paddings {pads.tolist()}, input {layer.in_shape})")
    layer.padding = (int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1]))
    h, w, c = layer.in_shape
    padded = (h + layer.padding[0] + layer.padding[1], w + layer.padding[2] + layer.padding[3], c)
    if tuple(layer.out_shape) != padded:
        raise ValueError(f"{op_name} writing {layer.name!r}: padding {layer.in_shape} gives "
                         f"{padded} but the model says {layer.out_shape}")
    return [layer]


def _concat(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """CONCATENATION: int8 inputs must share the output's scale and zero point (the converter
    ensures it; TFLite's int8 kernel requires it), so the codes are copied."""
    ins = [int(i) for i in op.inputs]
    out = int(op.outputs[0])
    for i in ins:
        _same_quant(ctx, op_name, i, out)
    layer = ctx.node("concat", op_name, ins, out)
    opts = op.builtinOptions
    if opts.fusedActivationFunction != ctx.schema.ActivationFunctionType.NONE:
        raise ValueError(f"CONCATENATION writing {layer.name!r}: a fused activation is not "
                         "supported")
    rank = len(layer.in_shape) + 1
    axis = int(opts.axis) % rank
    if axis == 0:
        raise ValueError(f"CONCATENATION writing {layer.name!r}: concatenation along the batch "
                         "axis is not supported")
    layer.axis = axis - 1
    return [layer]


def _add(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """ADD of two int8 tensors of the same shape, with the reference kernel's input rescaling:
    left_shift 20, multipliers s_i / (2 max(s_1, s_2)) per input and
    2 max(s_1, s_2) / (2^20 s_out) for the sum (QuantizeMultiplierSmallerThanOneExp)."""
    a, b = int(op.inputs[0]), int(op.inputs[1])
    out = int(op.outputs[0])
    layer = ctx.node("add", op_name, [a, b], out)
    ctx.same_shape(layer, op_name)
    ta, tb, to = (ctx.tensors[n] for n in (*layer.inputs, layer.outputs[0]))
    if ta.shape != tb.shape:
        raise ValueError(f"ADD writing {to.name!r}: inputs {ta.name!r} {ta.shape} and {tb.name!r}"
                         f" {tb.shape} differ; broadcasting is not supported")
    layer.left_shift = 20
    twice_max = 2 * max(np.float64(np.float32(ta.scale)), np.float64(np.float32(tb.scale)))
    reals = [np.float64(np.float32(ta.scale)) / twice_max,
             np.float64(np.float32(tb.scale)) / twice_max,
             twice_max / ((1 << layer.left_shift) * np.float64(np.float32(to.scale)))]
    q, e = tflite_quantize_multiplier(np.array(reals))
    if np.any(e > 0):
        raise ValueError(f"ADD writing {to.name!r}: a rescaling multiplier is >= 1 ({reals}); "
                         "TFLite refuses such scales too")
    layer.m0, layer.n0 = q, e
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


def _quantize(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """QUANTIZE between int8 tensors: (x - z_in) * QuantizeMultiplier(s_in / s_out) + z_out."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("quantize", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    real = np.float64(np.float32(layer.in_scale)) / np.float64(np.float32(layer.out_scale))
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    return [layer]


def _softmax(ctx: _Import, op, op_name: str) -> list[IntegerLayer]:
    """int8 SOFTMAX over the last axis (output scale 1/256, zero point -128), TFLite's reference
    fixed-point kernel (the same in LiteRT BUILTIN_REF, TFLM and CMSIS-NN's arm_softmax_s8):
    PreprocessSoftmaxScaling(beta, s_in, 5 integer bits) and CalculateInputRadius."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("softmax", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    if layer.out_zero_point != -128 or np.float32(layer.out_scale) != np.float32(1 / 256):
        raise ValueError(f"SOFTMAX writing {layer.name!r}: int8 softmax needs output scale "
                         f"1/256 and zero point -128, got {layer.out_scale}, "
                         f"{layer.out_zero_point}")
    beta = float(np.float32(op.builtinOptions.beta))
    max_real = float((1 << 31) - 1)  # (1 << 30) - 1 in TFLITE_SINGLE_ROUNDING builds
    real = min(beta * float(np.float32(layer.in_scale)) * float(1 << 26), max_real)
    q, e = tflite_quantize_multiplier(real)
    layer.m0, layer.n0 = q, e
    layer.diff_min = -int(np.floor(31.0 * (1 << 26) / float(1 << int(e[0]))))
    layer.rounding = ctx.rounding(op_name)
    return [layer]


HANDLERS = {"CONV_2D": _conv_like, "DEPTHWISE_CONV_2D": _conv_like,
            "FULLY_CONNECTED": _conv_like, "MAX_POOL_2D": _pool_op, "AVERAGE_POOL_2D": _pool_op,
            "MEAN": _mean, "RESHAPE": _reshape, "SQUEEZE": _reshape, "EXPAND_DIMS": _reshape,
            "PAD": _pad_op, "PADV2": _pad_op, "CONCATENATION": _concat, "ADD": _add,
            "QUANTIZE": _quantize, "SOFTMAX": _softmax}
TFLITE_OPS = tuple(HANDLERS)


def graph_from_tflite(tflite_bytes: bytes, *, flavour: str = "litert") -> IntegerGraph:
    """Read a full-int8 LiteRT flatbuffer into an IntegerGraph (a DAG; one node per op, named
    after its output tensor, except MEAN without keep_dims: a depthwise node plus a reshape).

    Weights, biases, scales, zero points, strides, paddings and fused activations are read from
    the model; multipliers are computed as TFLite's kernels compute them at Prepare time
    (per-channel: double(s_in) * double(s_w[c]) / double(s_out); FULLY_CONNECTED per tensor:
    double(float32(s_in * s_w)) / double(s_out) in LiteRT, the double product in TFLM). int8
    weights w are stored as unsigned codes w + 128 with zero point z_w + 128, so W - Z_w is
    unchanged.

    Arguments:
        tflite_bytes: the flatbuffer of a full-integer model (int8 activations; int8 I/O).
        flavour: "litert" (default): what LiteRT's reference kernels (BUILTIN_REF) compute
            (FULLY_CONNECTED rounds once); "tflm": what TensorFlow Lite Micro with CMSIS-NN
            computes (every requantization rounds twice). See :data:`OP_ROUNDING`.

    Returns:
        A validated :class:`IntegerGraph` (``meta["flavour"]``).

    Raises:
        TFLiteFileError: (a ValueError) the file is not a well-formed TFLite model
            (:func:`tinyopt.integer.tflite_check.validate`: truncated or corrupted flatbuffer,
            indices out of range, inconsistent quantization, nonzero int8 weight zero point,
            ...), naming the operator or tensor and the field.
        ValueError: an op outside :data:`TFLITE_OPS` (named with its output tensor and the
            supported set), a non-int8 tensor, an unknown flavour, or a form of a supported op
            that is not (dilation, broadcasting ADD, ...), each naming the tensor.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    # The file is untrusted: validate it before anything reads it (tflite_check).
    m = _TFLiteModel(tflite_bytes, validate(tflite_bytes))
    sub = m.sub
    if len(sub.inputs) != 1:
        raise ValueError(f"only single-input models are supported, this one has "
                         f"{len(sub.inputs)} inputs")
    for op in sub.operators:
        kind = m.op_names[op.opcodeIndex]
        if kind not in HANDLERS:
            out = m.name(int(op.outputs[0])) if len(op.outputs) else "?"
            raise ValueError(f"unsupported TFLite op {kind} (writing tensor {out!r}); the "
                             f"integer graph supports {list(TFLITE_OPS)}. Replace the Keras "
                             "layer that produced it, or run this model with LiteRT")
    ctx = _Import(m, flavour)
    x = int(sub.inputs[0])
    src = ctx.spec(x, "model input")
    graph = IntegerGraph(layers=[], input_shape=src.shape, input_bits=8, input_signed=True,
                         input_zero_point=src.zero_point, input_scale=src.scale,
                         rounding="tflite_double", name="tflite", input_name=src.name,
                         meta={"source": "tflite", "flavour": flavour})
    for op in sub.operators:
        kind = m.op_names[op.opcodeIndex]
        graph.layers.extend(HANDLERS[kind](ctx, op, kind))
    graph.outputs = [ctx.tname(int(i)) for i in sub.outputs]
    for name in graph.outputs:
        if name not in ctx.tensors:
            raise ValueError(f"model output {name!r} is not written by any op")
    graph.tensors = {k: v for k, v in ctx.tensors.items() if k != src.name}
    graph.validate()
    return graph


def tflite_ops(tflite_bytes: bytes) -> list[tuple[str, str]]:
    """Every operator of a flatbuffer in order, as (op name, output tensor name), after
    :func:`tinyopt.integer.tflite_check.validate` accepted the file, so that a caller can list
    every op outside :data:`TFLITE_OPS` at once (``tinyopt analyze``).

    Raises:
        TFLiteFileError: the file is not a well-formed TFLite model.
    """
    m = _TFLiteModel(tflite_bytes)
    return [(m.op_names[op.opcodeIndex], m.name(int(op.outputs[0])) if len(op.outputs) else "?")
            for op in m.sub.operators]
