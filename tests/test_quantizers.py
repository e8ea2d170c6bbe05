"""tinyopt.quantizers: levels, zero, floor, STE masks, clip / alpha gradients, codes in range."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyopt  # noqa: F401
import tensorflow as tf

from tinyopt.mixed import quantizers as Q

BITS = st.sampled_from([2, 4, 8])
FLOATS = st.floats(-10, 10, allow_nan=False, width=32)
SETTINGS = settings(max_examples=40, deadline=None)


def weights(min_size=4, max_size=64):
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=FLOATS)


def _check_codes(qp, fake, bits):
    qp = qp.numpy()
    n = 2 ** bits - 1
    assert qp.codes.min() >= 0 and qp.codes.max() <= n
    assert np.all((qp.zero_point >= 0) & (qp.zero_point <= n))
    # the fake value is rebuilt from the codes: one source of truth
    np.testing.assert_allclose(np.asarray(fake), qp.scale * (qp.codes - qp.zero_point),
                               rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ levels, zero, codes

@SETTINGS
@given(w=weights(), bits=BITS, a=st.floats(-12, 0), b=st.floats(0, 12))
def test_pl_levels_zero_and_codes(w, bits, a, b):
    fake, qp = Q.weight_pl(w, a, b, bits, params=True)
    _check_codes(qp, fake, bits)
    assert len(np.unique(fake.numpy())) <= 2 ** bits
    # 0.0 is exactly representable: a zero weight maps to exactly 0.0
    z, _ = Q.weight_pl(np.append(w, np.float32(0.0)), a, b, bits, params=True)
    assert z.numpy()[-1] == 0.0


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_exactly_2_pow_q_levels_on_a_dense_ramp(bits):
    w = np.linspace(-1.0, 3.0, 5001, dtype=np.float32)
    for fake in (Q.weight_pl(w, -1.0, 3.0, bits), Q.weight_pc(w[:, None], bits, (0,))):
        assert len(np.unique(fake.numpy())) == 2 ** bits
    x = np.linspace(-1.0, 7.0, 5001, dtype=np.float32)
    assert len(np.unique(Q.pact(x, 6.0, bits).numpy())) == 2 ** bits
    assert 0.0 in Q.pact(x, 6.0, bits).numpy()


@SETTINGS
@given(w=hnp.arrays(np.float32, (3, 3, 2, 4), elements=FLOATS), bits=BITS,
       sign=st.sampled_from([1.0, -1.0]))
# found by hypothesis: a range near float32's smallest normal gave S = 0 (denormals flush to 0)
@example(w=np.full((3, 3, 2, 4), 1.8046293e-38, np.float32), bits=2, sign=1.0)
def test_pc_one_signed_channel_quantizes_validly(w, bits, sign):
    w = w.copy()
    w[..., 0] = sign * (np.abs(w[..., 0]) + 0.5)  # channel 0: all weights strictly one sign
    fake, qp = Q.weight_pc(w, bits, (0, 1, 2), params=True)
    _check_codes(qp, fake, bits)
    z = qp.numpy().zero_point.reshape(-1)
    assert z[0] == (0 if sign > 0 else 2 ** bits - 1)  # range extended to include 0
    err = np.abs(fake.numpy() - w)[..., 0]
    assert err.max() <= qp.numpy().scale.reshape(-1)[0] / 2 + 1e-5


# ------------------------------------------------------------------ activations: floor

@SETTINGS
@given(x=hnp.arrays(np.float32, st.integers(1, 64), elements=FLOATS), bits=BITS,
       alpha=st.floats(0.1, 8.0))
def test_pact_floor_semantics(x, bits, alpha):
    fake, qp = Q.pact(x, alpha, bits, params=True)
    _check_codes(qp, fake, bits)
    n = 2 ** bits - 1
    s = np.float32(alpha) / n
    y = np.clip(x, 0, np.float32(alpha))
    codes = qp.numpy().codes
    # floor: the quantized value never exceeds the clipped input, and is less than one step below
    assert np.all(fake.numpy() <= y + 1e-5)
    assert np.all(y - fake.numpy() < s * (1 + 1e-4))
    assert np.all(codes[x >= np.float32(alpha)] == n)
    assert np.all(codes[x <= 0] == 0)


def test_pact_floors_where_round_would_not():
    s = 6.0 / 15
    x = np.array([0.99 * s, 1.6 * s, 2.5 * s], np.float32)
    np.testing.assert_array_equal(Q.pact(x, 6.0, 4, params=True)[1].numpy().codes, [0, 1, 2])


def test_input_quant_maps_uint8_pixels_exactly():
    pixels = np.arange(256, dtype=np.uint8)
    x = pixels.astype(np.float32) / 255.0  # tinyopt.data.preprocess
    fake, qp = Q.input_quant(x, params=True)
    np.testing.assert_array_equal(qp.numpy().codes, pixels)
    assert float(qp.scale) == pytest.approx(1 / 255) and int(qp.zero_point) == 0


# ------------------------------------------------------------------ gradients

def _grads(fn, variables, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x, *variables)
        loss = tf.reduce_sum(y * upstream)
    return tape.gradient(loss, [x, *variables])


def test_pl_ste_mask_and_clip_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=200).astype(np.float32))
    c = tf.constant(rng.normal(size=200).astype(np.float32))
    a, b = tf.Variable(-0.8), tf.Variable(1.1)
    dw, da, db = _grads(lambda x, a, b: Q.weight_pl(x, a, b, 4), (a, b), w, c)
    inside = (w.numpy() > -0.8) & (w.numpy() < 1.1)
    np.testing.assert_array_equal(dw.numpy(), np.where(inside, c.numpy(), 0))

    # The STE surrogate is the clip: L(a, b) = sum(c * clip(w, a, b)); central differences.
    def surrogate(a_, b_):
        return float(np.sum(c.numpy().astype(np.float64)
                            * np.clip(w.numpy().astype(np.float64), a_, b_)))
    h = 1e-6
    fd_a = (surrogate(-0.8 + h, 1.1) - surrogate(-0.8 - h, 1.1)) / (2 * h)
    fd_b = (surrogate(-0.8, 1.1 + h) - surrogate(-0.8, 1.1 - h)) / (2 * h)
    assert float(da) == pytest.approx(fd_a, rel=1e-3, abs=1e-3)
    assert float(db) == pytest.approx(fd_b, rel=1e-3, abs=1e-3)
    assert float(da) != 0 and float(db) != 0


def test_pact_ste_mask_and_alpha_gradient_match_finite_differences():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(1.0, 2.0, size=300).astype(np.float32))
    c = tf.constant(rng.normal(size=300).astype(np.float32))
    alpha = tf.Variable(2.5)
    dx, dalpha = _grads(lambda t, al: Q.pact(t, al, 2), (alpha,), x, c)
    inside = (x.numpy() > 0) & (x.numpy() < 2.5)
    np.testing.assert_array_equal(dx.numpy(), np.where(inside, c.numpy(), 0))

    def surrogate(al):
        return float(np.sum(c.numpy().astype(np.float64)
                            * np.clip(x.numpy().astype(np.float64), 0, al)))
    h = 1e-6
    fd = (surrogate(2.5 + h) - surrogate(2.5 - h)) / (2 * h)
    assert float(dalpha) == pytest.approx(fd, rel=1e-3, abs=1e-3) and float(dalpha) != 0


def test_pc_and_input_ste():
    rng = np.random.default_rng(2)
    w = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    c = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    (dw,) = _grads(lambda t: Q.weight_pc(t, 2, (0,)), (), w, c)
    np.testing.assert_array_equal(dw.numpy(), c.numpy())  # identity STE
    x = tf.constant([-0.5, 0.2, 0.7, 1.5], tf.float32)
    (dx,) = _grads(lambda t: Q.input_quant(t), (), x, tf.ones(4))
    np.testing.assert_array_equal(dx.numpy(), [0, 1, 1, 0])


# ------------------------------------------------------------------ bias, pooling, init

def test_bias_codes_round_and_clamp_to_2_pow_30():
    from tinyopt.integer.arith import bias_codes
    with pytest.warns(UserWarning, match=r"'?fc'?.*channels \[2\].*2\^30"):
        q = bias_codes([0.5, -0.26, 1e12], 0.1, 0.5, where="fc")
    np.testing.assert_array_equal(q, [10, -5, 2**30])
    assert q.dtype == np.int32
    np.testing.assert_array_equal(bias_codes([1.0, 1.0], 0.5, [1.0, 0.25]), [2, 8])
    with pytest.raises(ValueError, match="weight scales"):
        bias_codes([1.0, 1.0, 1.0], 1.0, [1.0, 2.0])


def test_avg_pool_floor():
    codes = np.random.default_rng(3).integers(0, 4, (2, 3, 3, 5)).astype(np.float32)
    out = Q.avg_pool_floor(codes * 0.7, 0.7, 2).numpy()
    np.testing.assert_allclose(out, np.floor(codes.sum((1, 2)) / 9) * 0.7, rtol=1e-6)


def test_bad_bits_and_init_helpers():
    with pytest.raises(ValueError, match="one of"):
        Q.weight_pl(np.ones(3), -1, 1, 3)
    w = np.random.default_rng(4).normal(size=500)
    a, b = Q.ppq_clip(w, 4)
    assert a <= 0 <= b and (b - a) <= 1.5 * (np.max(w) - np.min(w))
    a, b = Q.mse_clip(w, 2)
    assert a <= 0 <= b and (b - a) < (np.max(w) - np.min(w))  # 2 bits: clipping pays off
