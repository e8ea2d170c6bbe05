"""LiteRT front end of the simulator: a full-int8 ``.tflite`` flatbuffer -> an
:class:`~tinyopt.intgraph.IntegerGraph` with TFLite's requantization flavours, read from the model
itself (weights, scales, zero points, options) with ``ai_edge_litert``'s flatbuffer schema.

CONV_2D and DEPTHWISE_CONV_2D round twice (``"tflite_double"``), FULLY_CONNECTED once
(``"tflite_single"``), as measured against LiteRT's reference kernels (tests/test_sim.py).
Supported ops: :data:`TFLITE_OPS`; any other op is refused with its name. Run the result with
:func:`tinyopt.sim.run`, or both steps with :func:`tinyopt.sim.run_tflite`.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import same_padding, tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer


TFLITE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "RESHAPE", "MEAN")


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class _TFLiteModel:
    """Tensors, buffers and operators of subgraph 0 of a flatbuffer, read with LiteRT's schema."""

    def __init__(self, tflite_bytes: bytes):
        schema = _schema()
        self.schema, self.raw = schema, bytes(tflite_bytes)
        if self.raw[4:8] != b"TFL3":  # the flatbuffer file identifier of every .tflite
            raise ValueError("not a .tflite flatbuffer (no TFL3 identifier); pass the bytes of "
                             "a converted LiteRT model")
        try:
            self.model = schema.ModelT.InitFromPackedBuf(bytearray(self.raw), 0)
        except Exception as exc:  # the flatbuffers reader raises assorted types on garbage
            raise ValueError(f"not a readable .tflite flatbuffer ({type(exc).__name__}: "
                             f"{exc})") from exc
        if not self.model.subgraphs or len(self.model.subgraphs) != 1:
            raise ValueError(f"expected one subgraph, found "
                             f"{len(self.model.subgraphs or [])}")
        self.sub = self.model.subgraphs[0]
        names = _op_names(schema)
        self.op_names = []
        for code in self.model.operatorCodes:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            self.op_names.append(names.get(builtin, f"builtin#{builtin}")
                                 if builtin != schema.BuiltinOperator.CUSTOM
                                 else f"CUSTOM:{code.customCode}")

    def tensor(self, i: int):
        return self.sub.tensors[i]

    def name(self, i: int) -> str:
        n = self.tensor(i).name
        return n.decode() if isinstance(n, bytes) else str(n)

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


def graph_from_tflite(tflite_bytes: bytes) -> IntegerGraph:
    """Read a full-int8 LiteRT flatbuffer into an IntegerGraph with TFLite's rounding
    (``"tflite_double"`` for the graph, ``"tflite_single"`` for FULLY_CONNECTED layers: what the
    ai_edge_litert 2.3 reference kernels compute, see the module docstring).

    Weights, biases, scales, zero points, strides, paddings and fused activations are read from
    the model; multipliers are computed as TFLite's kernels compute them at Prepare time
    (per-channel: double(s_in) * double(s_w[c]) / double(s_out); FULLY_CONNECTED per tensor:
    double(float32(s_in * s_w)) / double(s_out)). int8 weights w are stored as unsigned codes
    w + 128 with zero point z_w + 128, so W - Z_w is unchanged.

    Raises:
        ValueError: an op outside ``TFLITE_OPS`` (named), a non-int8 or non-chain graph, dilation.
    """
    m = _TFLiteModel(tflite_bytes)
    schema, sub = m.schema, m.sub
    if len(sub.inputs) != 1 or len(sub.outputs) != 1:
        raise ValueError("only single-input, single-output models are supported")
    unsupported = sorted({m.op_names[op.opcodeIndex] for op in sub.operators}
                         - set(TFLITE_OPS))
    if unsupported:
        raise ValueError(f"unsupported TFLite op(s) {unsupported}; run_tflite supports "
                         f"{list(TFLITE_OPS)}")
    current = int(sub.inputs[0])
    m.check_int8(current, "input", "model")
    s_in, z_in = m.quant(current)
    in_shape = tuple(int(d) for d in m.tensor(current).shape[1:])
    graph = IntegerGraph(layers=[], input_shape=in_shape, input_bits=8, input_signed=True,
                         input_zero_point=int(z_in[0]), input_scale=float(s_in[0]),
                         rounding="tflite_double", name="tflite", meta={"source": "tflite"})
    shape, zero, scale = in_shape, int(z_in[0]), float(s_in[0])
    for k, op in enumerate(sub.operators):
        kind = m.op_names[op.opcodeIndex]
        inputs = [int(i) for i in op.inputs]
        out = int(op.outputs[0])
        if inputs[0] != current:
            raise ValueError(f"op {k} ({kind}) does not read the previous op's output; only "
                             "chains of ops are supported")
        m.check_int8(out, "output", kind)
        s_out, z_out = m.quant(out)
        out_shape = tuple(int(d) for d in m.tensor(out).shape[1:])
        layer = IntegerLayer(kind="", name=m.name(out), in_shape=shape, out_shape=out_shape,
                             in_bits=8, in_signed=True, in_zero_point=zero, in_scale=scale,
                             out_bits=8, out_signed=True, out_zero_point=int(z_out[0]),
                             out_scale=float(s_out[0]))
        opts = op.builtinOptions
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = m.data(inputs[1]).astype(np.int64)
            s_w, z_w = m.quant(inputs[1])
            bias = (m.data(inputs[2]).astype(np.int64)
                    if len(inputs) > 2 and inputs[2] >= 0 else None)
            if kind == "FULLY_CONNECTED":
                layer.kind = "dense"
                layer.rounding = "tflite_single"
                codes = w  # [c_out, c_in]
                c_out = w.shape[0]
                if len(s_w) == 1:
                    real = np.float64(np.float32(scale) * s_w[0]) / np.float64(s_out[0])
                else:
                    real = np.float64(scale) * s_w.astype(np.float64) / np.float64(s_out[0])
                layer.out_shape = (c_out,) if not opts.keepNumDims else out_shape
            else:
                if int(opts.dilationHFactor) != 1 or int(opts.dilationWFactor) != 1:
                    raise ValueError(f"op {k} ({kind}): dilated convolutions are not supported")
                if kind == "CONV_2D":
                    codes = w  # [c_out, kh, kw, c_in]: the IntegerGraph layout already
                    kh, kw = w.shape[1:3]
                    layer.kind = "pointwise" if kh == kw == 1 else "conv2d"
                else:
                    codes = w[0]  # [1, kh, kw, c_out] -> [kh, kw, c_out]
                    kh, kw = codes.shape[:2]
                    layer.kind = "depthwise"
                    layer.depth_multiplier = int(opts.depthMultiplier) or 1
                c_out = out_shape[-1]
                (oh, ow), layer.padding = _spatial(opts, shape[:2], (kh, kw), schema)
                if (oh, ow) != out_shape[:2]:
                    raise ValueError(f"op {k} ({kind}): computed output {(oh, ow)} but the "
                                     f"model says {out_shape[:2]}")
                layer.stride = (int(opts.strideH), int(opts.strideW))
                real = np.float64(scale) * s_w.astype(np.float64) / np.float64(s_out[0])
            layer.set_weights(codes + 128, 8)
            layer.weight_zero_point = (z_w + 128).astype(np.int32)
            layer.weight_scale = s_w.astype(np.float64)
            layer.bias = (bias if bias is not None else np.zeros(c_out, np.int64)).astype(np.int32)
            layer.m0, layer.n0 = tflite_quantize_multiplier(real)
            layer.pad_mode = "zero_point"
            layer.act_min, layer.act_max = _act_range(opts.fusedActivationFunction,
                                                      s_out[0], int(z_out[0]), schema)
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            if int(z_out[0]) != zero or not np.isclose(s_out[0], scale, rtol=0, atol=0):
                raise ValueError(f"op {k} ({kind}): input and output quantization differ")
            layer.kind = "maxpool" if kind == "MAX_POOL_2D" else "avgpool"
            layer.pool_size = (int(opts.filterHeight), int(opts.filterWidth))
            layer.stride = (int(opts.strideH), int(opts.strideW))
            (oh, ow), layer.padding = _spatial(opts, shape[:2], layer.pool_size, schema)
            if (oh, ow) != out_shape[:2]:
                raise ValueError(f"op {k} ({kind}): computed output {(oh, ow)} but the model "
                                 f"says {out_shape[:2]}")
            layer.act_min, layer.act_max = _act_range(opts.fusedActivationFunction,
                                                      s_out[0], int(z_out[0]), schema)
        elif kind == "MEAN":  # Keras GlobalAveragePooling2D
            axis = sorted(int(a) % 4 for a in m.data(inputs[1]).reshape(-1))
            if len(shape) != 3 or axis != [1, 2]:
                raise ValueError(f"op {k} (MEAN): only the mean over H and W is supported "
                                 f"(got axis {axis} of a {len(shape) + 1}-D tensor)")
            # TFLite's reference_ops::QuantizedMeanOrSum: Phi = sum(x - z_in) over H*W, then
            # MultiplyByQuantizedMultiplier with QuantizeMultiplier(s_in / s_out) whose
            # multiplier is refolded by 1/n: s = min(floor(log2 n), 32, 31 + shift),
            # q' = (q << s) // n, shift' = shift - s. That is a depthwise H x W convolution
            # with all-one weights, zero bias and the refolded per-layer multiplier.
            h, w, c = shape
            n = h * w
            q, e = tflite_quantize_multiplier(np.float64(scale) / np.float64(s_out[0]))
            q, e = int(q[0]), int(e[0])
            sh = min(n.bit_length() - 1, 32, 31 + e)
            layer.kind, layer.depth_multiplier = "depthwise", 1
            layer.set_weights(np.ones((h, w, c), np.uint8), 8)
            layer.weight_zero_point = np.zeros(1, np.int32)
            layer.bias = np.zeros(c, np.int32)
            layer.m0 = np.array([(q << sh) // n], np.int32)
            layer.n0 = np.array([e - sh], np.int8)
            layer.out_shape = (1, 1, c)
            layer.rounding = "tflite_double"  # measured: 0 mismatches, single rounding has some
            layer.extra = {"tflite_op": "MEAN", "keep_dims": bool(opts.keepDims)}
        else:  # RESHAPE
            if int(z_out[0]) != zero or s_out[0] != np.float32(scale):
                raise ValueError(f"op {k} ({kind}): input and output quantization differ")
            if int(np.prod(out_shape)) != int(np.prod(shape)):
                raise ValueError(f"op {k} (RESHAPE): {shape} -> {out_shape} changes the size")
            layer.kind = "flatten" if len(out_shape) == 1 else "reshape"
        graph.layers.append(layer)
        current, shape, zero, scale = out, tuple(layer.out_shape), int(z_out[0]), float(s_out[0])
    if current != int(sub.outputs[0]):
        raise ValueError("the last op does not produce the model output")
    graph.validate()
    return graph
