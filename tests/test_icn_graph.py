"""IntegerGraph: packing (spec §5.2), the structure, save/load, and the convert() placeholder."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyopt.icn import GraphFileError, IntegerGraph, IntegerLayer
from tinyopt.integer import graph as igraph
from tinyopt.integer.arith import m0_n0


# ------------------------------------------------------------------------------ packing
@settings(max_examples=60, deadline=None, derandomize=True)
@given(bits=st.sampled_from([1, 2, 4, 8]), rows=st.integers(1, 5), n=st.integers(1, 70),
       seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits, rows, n, seed):
    codes = np.random.default_rng(seed).integers(0, 1 << bits, (rows, n)).astype(np.uint8)
    packed = igraph.pack(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (rows, -(-n * bits // 8))
    np.testing.assert_array_equal(igraph.unpack(packed, bits, n), codes)


def test_pack_is_lsb_first_and_rows_are_byte_aligned():
    # u4: even element in the low nibble; u2: element c in bits 2*(c mod 4) (spec §5.2).
    assert igraph.pack(np.array([1, 2]), 4).tolist() == [0x21]
    assert igraph.pack(np.array([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    assert igraph.pack(np.array([[3, 1, 2]]), 2).tolist() == [[0b100111]]
    # Each row starts on a byte: two rows of 3 nibbles take 2 bytes each, the pad bits are 0.
    assert igraph.pack(np.array([[1, 2, 3], [4, 5, 6]]), 4).tolist() == [[0x21, 0x03], [0x54, 0x06]]
    assert igraph.pack(np.array([200, 7]), 8).tolist() == [200, 7]


def test_pack_rejects_bad_codes_and_bits():
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        igraph.pack(np.array([16]), 4)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        igraph.pack(np.array([-1]), 2)
    with pytest.raises(ValueError, match="bits must be"):
        igraph.pack(np.array([1]), 3)
    with pytest.raises(ValueError, match="fewer than"):
        igraph.unpack(np.zeros(2, np.uint8), 4, 5)


def test_m0_n0_follows_spec_2_2():
    m = np.array([0.75, 1e-5, 3.0, -0.3, 0.0, 0.5])
    m0, n0 = m0_n0(m)
    assert m0.dtype == np.int32 and n0.dtype == np.int8
    mant = np.abs(m0[m != 0]) / 2.0**31
    assert np.all((mant >= 0.5) & (mant < 1))
    np.testing.assert_allclose(m0 * 2.0 ** (n0.astype(float) - 31), m, rtol=2**-30)
    assert (m0[4], n0[4]) == (0, 0)


# ------------------------------------------------------------------------------ a synthetic graph
def synthetic_graph(seed: int = 0) -> IntegerGraph:
    """A small CMix-NN style ICN graph: 4-bit PC conv (stride 2, asymmetric SAME pad), 2-bit
    depthwise padding integer 0 with a non-zero input zero point, 8-bit PL pointwise, max pool,
    flatten, and raw int32 logits (spec §2.4)."""
    rng = np.random.default_rng(seed)

    def compute(kind, name, in_shape, out_shape, in_bits, in_zp, out_bits, out_zp, wshape, wbits,
                per_channel, **kw):
        c = out_shape[-1]
        layer = IntegerLayer(kind=kind, name=name, in_shape=in_shape, out_shape=out_shape,
                             in_bits=in_bits, in_zero_point=in_zp, out_bits=out_bits,
                             out_zero_point=out_zp, **kw)
        layer.set_weights(rng.integers(0, 1 << wbits, wshape), wbits)
        n_zw = c if per_channel else 1
        layer.weight_zero_point = rng.integers(0, 1 << wbits, n_zw).astype(np.int32)
        layer.weight_scale = rng.uniform(0.01, 0.1, n_zw)
        layer.bias = rng.integers(-300, 300, c).astype(np.int32)
        layer.m0, layer.n0 = m0_n0(rng.uniform(0.002, 0.05, c if per_channel else 1))
        return layer

    layers = [
        compute("conv2d", "conv", (9, 9, 4), (5, 5, 8), 8, 0, 4, 2, (8, 3, 3, 4), 4, True,
                stride=(2, 2), padding=(1, 1, 1, 1)),
        compute("depthwise", "dw", (5, 5, 8), (5, 5, 8), 4, 2, 4, 0, (3, 3, 8), 2, True,
                padding=(1, 1, 1, 1), pad_mode="zero"),
        compute("pointwise", "pw", (5, 5, 8), (5, 5, 6), 4, 0, 8, 0, (6, 1, 1, 8), 8, False),
        IntegerLayer(kind="maxpool", name="pool", in_shape=(5, 5, 6), out_shape=(2, 2, 6),
                     pool_size=(2, 2), stride=(2, 2)),
        IntegerLayer(kind="flatten", name="flat", in_shape=(2, 2, 6), out_shape=(24,)),
        compute("dense", "fc", (24,), (3,), 8, 0, 32, 0, (3, 24), 4, False,
                requantize=False, out_signed=True),
    ]
    return IntegerGraph(layers=layers, input_shape=(9, 9, 4), rounding="floor", name="synthetic")


def test_synthetic_graph_is_valid_and_weights_unpack():
    g = synthetic_graph()
    g.validate()
    w = g["dw"].unpacked_weights()
    assert w.shape == (3, 3, 8) and w.max() <= 3
    assert g["dw"].weights.shape == (9, 2)  # one byte-aligned row of 8 crumbs per tap


def test_validate_names_the_bad_layer():
    g = synthetic_graph()
    g["pw"].bias = g["pw"].bias[:3]
    with pytest.raises(ValueError, match="'pw'.*bias"):
        g.validate()
    g = synthetic_graph()
    g["pool"].in_shape = (4, 4, 6)
    with pytest.raises(ValueError, match="'pool'"):
        g.validate()


# ------------------------------------------------------------------------------ save / load
def test_save_load_round_trip(tmp_path):
    g = synthetic_graph()
    path = g.save(tmp_path / "g.npz")
    h = IntegerGraph.load(path)
    assert [layer.name for layer in h.layers] == [layer.name for layer in g.layers]
    for a, b in zip(g.layers, h.layers):
        for f in ("kind", "in_shape", "out_shape", "stride", "padding", "pad_mode", "in_bits",
                  "out_bits", "weight_bits", "requantize", "in_zero_point", "out_zero_point"):
            assert getattr(a, f) == getattr(b, f), (a.name, f)
        for f in igraph.ARRAY_FIELDS:
            va, vb = getattr(a, f), getattr(b, f)
            assert (va is None) == (vb is None)
            if va is not None:
                np.testing.assert_array_equal(va, vb)
                assert vb.dtype == igraph.ARRAY_DTYPES[f]
    assert h.rounding == g.rounding and h.input_shape == g.input_shape


def test_damaged_or_foreign_files_fail_clearly(tmp_path):
    path = synthetic_graph().save(tmp_path / "g.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFileError, match="damaged"):
        IntegerGraph.load(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(GraphFileError, match="damaged"):
        IntegerGraph.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(GraphFileError, match="no header"):
        IntegerGraph.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        IntegerGraph.load(tmp_path / "missing.npz")


def _rewrite_header(src, dst, edit):
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes().decode())
    edit(header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **arrays)


def test_incompatible_version_and_inconsistent_record_fail(tmp_path):
    path = synthetic_graph().save(tmp_path / "g.npz")
    _rewrite_header(path, tmp_path / "v99.npz", lambda h: h.update(version=99))
    with pytest.raises(GraphFileError, match="version 99"):
        IntegerGraph.load(tmp_path / "v99.npz")
    _rewrite_header(path, tmp_path / "bad.npz", lambda h: h["layers"][0].update(kind="conv3d"))
    with pytest.raises(GraphFileError, match="inconsistent"):
        IntegerGraph.load(tmp_path / "bad.npz")
    # A missing weight array (e.g. a hand-edited archive) is also caught.
    with zipfile.ZipFile(path) as z:
        kept = {n: z.read(n) for n in z.namelist() if n != "layer0.weights.npy"}
    with zipfile.ZipFile(tmp_path / "noweights.npz", "w") as z:
        for n, b in kept.items():
            z.writestr(n, b)
    with pytest.raises(GraphFileError, match="inconsistent"):
        IntegerGraph.load(tmp_path / "noweights.npz")


def test_save_is_atomic_no_temp_left(tmp_path):
    synthetic_graph().save(tmp_path / "g.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]
