"""The simulator's fast engine (C kernels, tinyopt/integer/sim_fast.py) against the numpy reference
engine: the same bits on every layer kind, rounding flavour, granularity and bit width, the same
errors, and the four MLPerf Tiny models (plus, slow, against LiteRT REF and TFLM)."""
import numpy as np
import pytest

from tinyopt.integer import sim, sim_fast
from tinyopt.integer.arith import m0_n0, same_padding
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

ROUNDINGS = ("floor", "tflite_single", "tflite_double")
needs_c = pytest.mark.skipif(sim_fast.library() is None, reason=f"no C kernels: {sim_fast.REASON}")


def _random_graph(seed: int, rounding: str, bits: int, per_channel: bool,
                  bias_limit: int = 3000) -> IntegerGraph:
    """A chain of every compute kind with random shapes, zero points, pad modes and signs: conv
    (input channels 1..5, stride 1 or 2, 8-bit signed or unsigned input), depthwise (multiplier 1
    or 2), pointwise, max pool, average pool, flatten and a dense head (requantized or int32)."""
    rng = np.random.default_rng(seed)
    signed_in = bool(rng.integers(2))
    lo = -128 if signed_in else 0

    def compute(kind, name, in_shape, out_shape, in_bits, in_signed, in_zp, out_bits, wshape,
                wbits, **kw):
        c = out_shape[-1]
        out_zp = int(rng.integers(0, 1 << min(out_bits, 8) - 1)) if out_bits <= 8 else 0
        layer = IntegerLayer(kind=kind, name=name, in_shape=in_shape, out_shape=out_shape,
                             in_bits=in_bits, in_signed=in_signed, in_zero_point=in_zp,
                             out_bits=out_bits, out_zero_point=out_zp, **kw)
        layer.set_weights(rng.integers(0, 1 << wbits, wshape), wbits)
        n_zw = c if per_channel else 1
        layer.weight_zero_point = rng.integers(0, 1 << wbits, n_zw).astype(np.int32)
        if wbits == 8 and rng.integers(2):  # centered weights in [-128, 127]: the VNNI kernel
            layer.weight_zero_point[:] = 128
        layer.weight_scale = rng.uniform(0.01, 0.1, n_zw)
        layer.bias = rng.integers(-bias_limit, bias_limit, c).astype(np.int32)
        layer.m0, layer.n0 = m0_n0(rng.uniform(0.0005, 0.05, c if per_channel else 1))
        return layer

    c_in = int(rng.integers(1, 6))
    stride = int(rng.integers(1, 3))
    h = 9
    oh = -(-h // stride)
    pad = same_padding(h, 3, stride) * 2  # (top, bottom) == (left, right)
    mult = int(rng.integers(1, 3))
    c1 = 4
    wb = min(bits, 8)
    in_zp = int(rng.integers(lo, lo + 256))
    pad_modes = ("zero_point", "zero")
    conv = compute("conv2d", "conv", (h, h, c_in), (oh, oh, c1), 8, signed_in, in_zp, bits,
                   (c1, 3, 3, c_in), wb, stride=(stride, stride), padding=pad,
                   pad_mode=pad_modes[int(rng.integers(2))])
    dw = compute("depthwise", "dw", (oh, oh, c1), (oh, oh, c1 * mult), bits, False,
                 conv.out_zero_point, bits, (3, 3, c1 * mult), wb, padding=(1, 1, 1, 1),
                 depth_multiplier=mult, pad_mode=pad_modes[int(rng.integers(2))])
    pw = compute("pointwise", "pw", (oh, oh, c1 * mult), (oh, oh, 20), bits, False,
                 dw.out_zero_point, 8, (20, 1, 1, c1 * mult), wb)
    same = dict(in_bits=8, out_bits=8, in_zero_point=pw.out_zero_point,
                out_zero_point=pw.out_zero_point)
    layers = [
        conv, dw, pw,
        IntegerLayer(kind="maxpool", name="pool", in_shape=(oh, oh, 20),
                     out_shape=(oh // 2, oh // 2, 20), pool_size=(2, 2), stride=(2, 2), **same),
        IntegerLayer(kind="avgpool", name="gap", in_shape=(oh // 2, oh // 2, 20),
                     out_shape=(1, 1, 20), pool_size=(oh // 2, oh // 2), stride=(1, 1), **same),
        IntegerLayer(kind="flatten", name="flat", in_shape=(1, 1, 20), out_shape=(20,), **same),
    ]
    raw = bool(rng.integers(2))
    layers.append(compute("dense", "fc", (20,), (7,), 8, False, pw.out_zero_point,
                          32 if raw else 8, (7, 20), wb, requantize=not raw, out_signed=raw))
    g = IntegerGraph(layers=layers, input_shape=(h, h, c_in), rounding=rounding, name="rand",
                     input_signed=signed_in, input_zero_point=in_zp)
    g.validate()
    return g


def _inputs(g: IntegerGraph, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = sim._value_range(g.input_bits, g.input_signed)
    return np.random.default_rng(seed).integers(lo, hi + 1, (n, *g.input_shape))


def _same(g, x, **kw):
    fast = sim.run(g, x, trace=True, **kw)
    ref = sim.run(g, x, trace=True, engine="reference", **kw)
    assert list(fast) == list(ref)
    for name in ref:
        np.testing.assert_array_equal(fast[name], ref[name], err_msg=name)
        assert fast[name].dtype == ref[name].dtype == np.int32
    np.testing.assert_array_equal(sim.run(g, x, **kw), sim.run(g, x, engine="reference", **kw))


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("wrap", [False, True])
def test_fast_engine_matches_reference_on_random_graphs(rounding, bits, per_channel, wrap):
    for seed in range(4):
        g = _random_graph(seed, rounding, bits, per_channel)
        _same(g, _inputs(g, 37, seed), wrap32=wrap, batch_size=16)


@needs_c
def test_the_kernels_run_on_the_random_graphs():
    """The comparison above means something only if the C kernels took the nodes."""
    kinds = set()
    for seed in range(4):
        g = _random_graph(seed, "tflite_double", 8, True)
        kinds |= {g.layers[i].kind for i in sim_fast.prepare(sim._plan(g))}
    assert "depthwise" in kinds
    if sim_fast.library().vnni:
        assert {"conv2d", "pointwise", "dense"} <= kinds


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_overflow_errors_and_wrap_are_the_reference_ones(rounding):
    g = _random_graph(3, rounding, 8, True, bias_limit=2**30)
    g["pw"].bias = np.full(20, 2**31 - 10, np.int32)
    x = _inputs(g, 9)
    errors = []
    for engine in sim.ENGINES:
        with pytest.raises(OverflowError) as err:
            sim.run(g, x, engine=engine)
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "'pw'" in errors[0]
    _same(g, x, wrap32=True)


def test_unknown_engine_is_refused():
    g = _random_graph(0, "floor", 8, False)
    with pytest.raises(ValueError, match="engine='numpy'.*fast"):
        sim.run(g, _inputs(g, 2), engine="numpy")


def test_without_a_compiler_the_reference_runs(monkeypatch):
    g = _random_graph(2, "tflite_double", 4, True)
    x = _inputs(g, 11)
    want = sim.run(g, x, engine="reference")
    monkeypatch.setattr(sim_fast, "_LIB", [None])
    assert sim_fast.prepare(sim._plan(g)) == {}
    np.testing.assert_array_equal(sim.run(g, x), want)


def test_kernels_are_compiled_into_the_cache_folder(tmp_path, monkeypatch):
    if sim_fast.library() is None:
        pytest.skip(sim_fast.REASON)
    monkeypatch.setenv("TINYOPT_CACHE", str(tmp_path))
    monkeypatch.setattr(sim_fast, "_LIB", [])
    lib = sim_fast.library()
    assert lib is not None and [p.suffix for p in tmp_path.iterdir()] == [".so"]


# ------------------------------------------------------------------ the MLPerf Tiny models
def _mlperf(name):
    from tinyopt.front import zoo
    try:
        return zoo.mlperf_tiny_tflite(name)
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"{name}: {err}")


MLPERF = ("ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae")


def _mlperf_inputs(tfl, n, flavour="litert"):
    g = sim.graph_from_tflite(tfl, flavour=flavour)
    return g, np.random.default_rng(7).integers(-128, 128, (n, *g.input_shape)).astype(np.int8)


@needs_c
@pytest.mark.parametrize("name", MLPERF)
@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_mlperf_fast_equals_reference_small(name, flavour):
    tfl = _mlperf(name)
    g, x = _mlperf_inputs(tfl, 24, flavour)
    assert len(sim_fast.prepare(sim._plan(g))) >= len(g.layers) - 3  # all but pool/flat/softmax
    fast = sim.run(g, x, trace=True, batch_size=10)
    ref = sim.run(g, x, trace=True, engine="reference", batch_size=10)
    for k in ref:
        np.testing.assert_array_equal(fast[k], ref[k], err_msg=k)
    np.testing.assert_array_equal(sim.run_tflite(tfl, x, flavour=flavour),
                                  sim.run_tflite(tfl, x, flavour=flavour, engine="reference"))


@pytest.mark.slow
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_fast_equals_reference_and_litert_tflm(name):
    """100 seeded inputs per model: the fast engine equals the numpy reference, LiteRT's
    reference kernels and TFLite Micro (benchmarks/bench_sim_mlperf.py checks 1,000 against
    LiteRT REF and TFLM, results/bench/sim_mlperf_exact.csv; 250 here until session 23, for
    ~18 s more CPU of make test)."""
    from tinyopt.litert.reference import litert_reference, tflm_reference
    tfl = _mlperf(name)
    g, x = _mlperf_inputs(tfl, 100)
    out = g.output_names()[0]
    fast = sim.run_tflite(tfl, x)
    np.testing.assert_array_equal(fast, litert_reference(tfl, x, {out})[out])
    np.testing.assert_array_equal(fast, sim.run_tflite(tfl, x, engine="reference"))
    micro = sim.run_tflite(tfl, x, flavour="tflm")
    np.testing.assert_array_equal(micro, sim.run_tflite(tfl, x, flavour="tflm",
                                                        engine="reference"))
    np.testing.assert_array_equal(micro.reshape(len(x), -1),
                                  tflm_reference(tfl, x, {out})[out].reshape(len(x), -1))
