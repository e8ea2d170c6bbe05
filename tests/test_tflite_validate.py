"""Hand-made malformed .tflite files (edited with LiteRT's flatbuffer object API): each is refused
by tinyopt.integer.tflite_check.validate with a TFLiteFileError naming the operator / tensor and
the field, before the importer, the simulator or the C export read anything; where LiteRT refuses
the same file, that is checked too."""
from __future__ import annotations

import numpy as np
import pytest

from tinyopt.front import zoo
from tinyopt.integer import sim
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.tflite_check import TFLiteFileError, validate

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
flatbuffers = pytest.importorskip("flatbuffers")

# KWS DS-CNN: operator 0 is CONV_2D (input 0, weights 17 [64, 10, 4, 1] per channel, bias 3),
# operator 11 FULLY_CONNECTED (weights 16 [12, 64] per tensor, bias 1); tensor 22 is the output
# of operator 0.
CONV_W, CONV_B, FC_W, FC_B, ACT = 17, 3, 16, 1, 22


@pytest.fixture(scope="module")
def kws() -> bytes:
    try:
        return zoo.mlperf_tiny_tflite("kws_dscnn")
    except zoo.ModelNotFound as exc:
        import os
        if os.environ.get("TINYOPT_REQUIRE_DATA"):
            pytest.fail(f"{exc} (TINYOPT_REQUIRE_DATA is set)")
        pytest.skip(str(exc))


def edit(raw: bytes, change) -> bytes:
    """raw with change(ModelT) applied, re-serialized."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    change(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tensor(m, i):
    return m.subgraphs[0].tensors[i]


def litert_refuses(tfl: bytes) -> bool:
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    try:
        it = interp.Interpreter(model_content=tfl,
                                experimental_op_resolver_type=interp.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
    except (ValueError, RuntimeError):
        return True
    return False


def refused(tfl: bytes, *words: str) -> str:
    """The TFLiteFileError message of tfl; checks it names every word."""
    with pytest.raises(TFLiteFileError) as err:
        graph_from_tflite(tfl)
    msg = str(err.value)
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_round_trip_is_accepted_and_the_error_is_a_value_error(kws):
    assert validate(edit(kws, lambda m: None)).subgraphs
    assert issubclass(TFLiteFileError, ValueError)
    from tinyopt.integer import from_litert
    assert from_litert.TFLiteFileError is TFLiteFileError


def test_weight_zero_point_16_on_int8_conv_is_refused_naming_the_tensor(kws):
    def change(m):
        tensor(m, CONV_W).quantization.zeroPoint[5] = 16
    tfl = edit(kws, change)
    refused(tfl, "operator 0 (CONV_2D)", f"tensor {CONV_W}", "functional_1/conv2d/Conv2D",
            "zero_point [16]", "must have zero_point 0")
    assert litert_refuses(tfl)
    # the simulator and the C export take their graph from the importer: refused there too
    with pytest.raises(TFLiteFileError):
        sim.run_tflite(tfl, np.zeros((1, 49, 10, 1), np.int8))


def test_fc_weight_zero_point_refused(kws):
    def change(m):
        tensor(m, FC_W).quantization.zeroPoint[0] = 3
    refused(edit(kws, change), "operator 11 (FULLY_CONNECTED)", f"tensor {FC_W}", "zero_point")


def test_num_scales_inconsistent_with_quantized_dimension(kws):
    def fewer(m):
        q = tensor(m, CONV_W).quantization
        q.scale, q.zeroPoint = q.scale[:63], q.zeroPoint[:63]
    tfl = edit(kws, fewer)
    refused(tfl, f"tensor {CONV_W}", "63 scales", "num_scales must be 1", "or 64")
    assert litert_refuses(tfl)

    def other_axis(m):
        tensor(m, CONV_W).quantization.quantizedDimension = 1  # size 10, 64 scales
    refused(edit(kws, other_axis), f"tensor {CONV_W}", "num_scales", "quantized_dimension 1")

    def outside(m):
        tensor(m, CONV_W).quantization.quantizedDimension = 4
    refused(edit(kws, outside), f"tensor {CONV_W}", "quantized_dimension 4", "[0, 4)")

    def unequal(m):
        q = tensor(m, ACT).quantization
        q.zeroPoint = np.array([-128, -128])
    refused(edit(kws, unequal), f"tensor {ACT}", "1 scales and 2 zero_point")


@pytest.mark.parametrize("value", [0.0, -0.5, np.nan, np.inf])
def test_scales_must_be_finite_and_positive(kws, value):
    def change(m):
        tensor(m, ACT).quantization.scale[0] = value
    refused(edit(kws, change), f"tensor {ACT}", "scale", "finite and > 0")


def test_activation_zero_point_outside_int8_refused(kws):
    def change(m):
        tensor(m, ACT).quantization.zeroPoint[0] = 200
    refused(edit(kws, change), f"tensor {ACT}", "zero_point [200]", "[-128, 127]", "INT8")


def test_bias_zero_point_and_scale(kws):
    def zp(m):
        tensor(m, FC_B).quantization.zeroPoint[0] = 1
    refused(edit(kws, zp), f"tensor {FC_B}", "zero_point [1]", "[0, 0]", "INT32")

    def scale(m):
        tensor(m, FC_B).quantization.scale[0] *= 1.5
    tfl = edit(kws, scale)
    # stricter than ai_edge_litert 2.x, whose int8 kernels do not look (docs/integer.md)
    refused(tfl, "operator 11 (FULLY_CONNECTED)", f"bias tensor {FC_B}", "input scale x weight")


@pytest.mark.parametrize("n", [0, 7, 15, 100, 20000])
def test_truncated_file(kws, n):
    with pytest.raises(TFLiteFileError, match="truncated|not a .tflite"):
        graph_from_tflite(kws[:n])


def test_not_bytes_and_wrong_identifier(kws):
    with pytest.raises(TFLiteFileError, match="must be the bytes"):
        validate("model.tflite")
    with pytest.raises(TFLiteFileError, match="identifier.*TFL3"):
        validate(kws[:4] + b"XXXX" + kws[8:])


def test_invalid_utf8_tensor_name_does_not_raise(kws):
    def change(m):
        tensor(m, ACT).name = b"conv\xff\xfeout"
    g = graph_from_tflite(edit(kws, change))
    assert "conv\ufffd\ufffdout" in g.tensors


def test_too_long_name_refused(kws):
    def change(m):
        tensor(m, ACT).name = b"x" * 5000
    refused(edit(kws, change), f"tensor {ACT}", "name of 5000 bytes")


def test_indices_out_of_range(kws):
    def op_input(m):
        m.subgraphs[0].operators[1].inputs[1] = 999
    refused(edit(kws, op_input), "operator 1 (DEPTHWISE_CONV_2D)", "input 1", "999", "[0, 35)")

    def buffer(m):
        tensor(m, ACT).buffer = 500
    refused(edit(kws, buffer), f"tensor {ACT}", "buffer index 500")

    def opcode(m):
        m.subgraphs[0].operators[2].opcodeIndex = 40
    refused(edit(kws, opcode), "operator 2", "opcode_index 40")

    def output(m):
        m.subgraphs[0].outputs[0] = 35
    refused(edit(kws, output), "subgraph output 0", "35")


def test_constant_size_and_shape(kws):
    def short(m):
        m.buffers[tensor(m, CONV_W).buffer].data = m.buffers[tensor(m, CONV_W).buffer].data[:-1]
    refused(edit(kws, short), f"tensor {CONV_W}", "2559 bytes", "needs 2560")

    def negative(m):
        tensor(m, ACT).shape[2] = -1
    refused(edit(kws, negative), f"tensor {ACT}", "negative dimension")


def test_options_missing_or_invalid(kws):
    def missing(m):
        op = m.subgraphs[0].operators[0]
        op.builtinOptionsType, op.builtinOptions = 0, None
    refused(edit(kws, missing), "operator 0 (CONV_2D)", "Conv2DOptions")

    def stride0(m):
        m.subgraphs[0].operators[0].builtinOptions.strideW = 0
    refused(edit(kws, stride0), "operator 0 (CONV_2D)", "strideW is 0", ">= 1")

    def padding(m):
        m.subgraphs[0].operators[9].builtinOptions.padding = 7
    refused(edit(kws, padding), "operator 9 (AVERAGE_POOL_2D)", "padding 7")

    def beta(m):
        m.subgraphs[0].operators[12].builtinOptions.beta = float("nan")
    refused(edit(kws, beta), "operator 12 (SOFTMAX)", "beta")


def test_reshape_shape_input_must_agree_with_the_output(kws):
    def change(m):
        m.subgraphs[0].operators[10].inputs[1] = FC_B  # an int32 tensor of 12 values
    refused(edit(kws, change), "operator 10 (RESHAPE)", "new shape")
