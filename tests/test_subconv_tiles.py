"""tn_m7_subconv's block outputs in assembly (c/tn_m7_subconv.h: tn_sc_epi, issue 29: ResNet-8's
4-bit convolutions at <= 1.0x the int8 instructions): 4-bit weights at RAW 2 (and 2-bit
weights) with per-channel floor multipliers take each block of four rows at a pixel pair from
its scaled sums to packed 4 or 2-bit codes in one assembly statement (the sums' differences,
the weight zero point's term, bias, SMMUL, ASR by the channel's shift, SSAT / USAT, BFI),
stored, or kept packed for a fused ADD's table (tn_sc_addtab8). Every variant is forced here:
z_w = 8 (row 3 needs no term) and not, signed and unsigned codes (4, 2 and 8-bit: four 8-bit
codes a word, one STR), a zero point 2^(b-1) as the
other saturation and an EOR (both signs), another zero point added per output, n0 of both signs
(FAST 1: shifts by SADD8 / SSUB8 / SEL), 4 and 2-bit outputs and weights, a lone last pixel
(tn_sc_block1: its four rows alone; tn_sc_block1_2 for 2-bit weights), the fused ADD; and
tn_sc_block's parts for 4-bit weights (eight lane pairs straight, sixteen per loop entered at
its second half or not), in both the statement-per-part form and TN_SC_C4_ONE.
Bit-exact with the simulator on the host (the C twin) and under QEMU (the assembly), and the
forms compile at the GCC levels where assembly blocks failed before.
"""
from __future__ import annotations

import copy
import shutil
import subprocess

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, kernels_m7, mcu, synth
from tinyopt.deploy.kernels_m7.subconv import subconv_add_table, subconv_pack, subconv_raw
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

from tests._qemu_many import check_many
from tests.test_build_levels import ARM, FORM_ABIS, FORM_LEVELS, WARN, _arm_gcc
from tests.test_kernels_m7 import _conv, host_check

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


@pytest.fixture
def roomy(monkeypatch):
    """tn_m7_subconv wherever it fits (steps.SCRATCH_ONLY_WHERE_FREE off)."""
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


def epi_form(step, rounding: str) -> tuple | None:
    """The variant of tn_sc_epi a tn_m7_subconv step takes (c/tn_m7_subconv.h:
    tn_sc_epi_fits, tn_sc_epi_flip), from its export constants: (WB, K3, SGN, FLIP, F1, ZADD,
    OB, MODE) -- the weight bits, z_w != 8 (4-bit weights), SSAT, a zero point flipped by an
    EOR, FAST 1, a zero point added, the output bits, 0 (stored) or 2 (the fused ADD's table) --
    or None where it keeps tn_sc_put4 / tn_sc_code."""
    layer = step.layer
    wb = int(layer.weight_bits)
    if (not steps_mod.sub_conv_step(step) or wb not in (2, 4)
            or (wb == 4 and subconv_raw(layer) != 2) or step.pool is not None
            or not layer.requantize
            or (layer.rounding or rounding) != "floor"):
        return None
    ob = int(step.add.out_bits) if step.add is not None else int(layer.out_bits)
    if step.add is not None and (subconv_add_table(step, rounding) is None
                                 or int(step.in_specs[1].bits) != ob):
        return None
    zw = np.atleast_1d(np.asarray(layer.weight_zero_point))
    rq = kernels_m7.requant_constants(layer, rounding)
    co = int(layer.out_channels)
    if (ob not in ((2, 4) if step.add is not None else (2, 4, 8)) or co % 4
            or len(set(zw.tolist())) != 1 or rq["NM"] == 1
            or rq["FAST"] < 1 or abs(rq["ZP"]) > 255):
        return None
    half, zp = 1 << (ob - 1), rq["ZP"]
    lo, hi = rq["LOZ"] + zp, rq["HIZ"] + zp
    pq = 1 if (lo, hi) == (-half, half - 1) else 2 if (lo, hi) == (0, 2 * half - 1) else 0
    if not pq:
        return None
    flip = (pq == 2 and zp == half) or (pq == 1 and zp == -half)
    return (wb, wb == 4 and int(zw[0]) != 8, (pq == 1) != flip, flip, rq["FAST"] < 2,
            zp != 0 and not flip, ob, 0 if step.add is None else 2)


# tn_sc_epi's variants, layer by layer: (weight zero point, channels with n0 >= 0 (FAST 1))
LAYERS = [
    # 8-bit input, 3 channels (KP 36): unsigned 4-bit codes, z_w = 8, USAT
    (_conv((5, 5, 16), (16, 3, 3, 3), 4, 4, padding=(1, 1, 1, 1), icn=True), 8, ()),
    # 4-bit inputs: signed 4-bit codes (SSAT), z_w = 5 (row 3's term), FAST 1
    (_conv((5, 5, 16), (16, 3, 3, 16), 4, 4, padding=(1, 1, 1, 1), icn=True, out_signed=True),
     5, (1, 6)),
    # unsigned codes, z_out = 8: SSAT and EOR 0x8888
    (_conv((5, 5, 12), (12, 1, 1, 16), 4, 4, icn=True, out_zero_point=8), 8, ()),
    # signed 2-bit codes, z_out = -2: USAT and EOR 0xAA, z_w = 3
    (_conv((5, 5, 8), (8, 1, 1, 12), 4, 2, icn=True, out_signed=True, out_zero_point=-2), 3,
     ()),
    # 2-bit inputs: unsigned 4-bit codes, z_out = 3 added per output, FAST 1
    (_conv((5, 5, 16), (16, 1, 1, 8), 4, 4, icn=True, out_zero_point=3), 8, (0, 9, 15)),
    # stride 2 (9 pixels: a lone last one): unsigned 2-bit codes, z_w = 10
    (_conv((3, 3, 8), (8, 3, 3, 16), 4, 2, stride=(2, 2), padding=(1, 1, 1, 1), icn=True), 10,
     ()),
    # 2-bit weights (z_w = 1) over 2-bit inputs: signed 4-bit codes, FAST 1
    (_conv((3, 3, 12), (12, 1, 1, 8), 2, 4, icn=True, out_signed=True), 1, (3,)),
    # 2-bit weights (z_w = 2), 3x3 over 4-bit inputs: unsigned 2-bit codes, z_out = 2 flipped
    (_conv((3, 3, 8), (8, 3, 3, 12), 2, 2, padding=(1, 1, 1, 1), icn=True, out_zero_point=2),
     2, ()),
    # 4-bit weights over 2-bit inputs to 56 channels, then over them (KP 56: NU 28, the rest 26
    # after the first two lane pairs: two, then TN_SC_C4_L16 entered at its second half), then
    # over 24 (NU 12, rest 10: two, then eight straight); 9 pixels: tn_sc_block1's lone pixel
    (_conv((3, 3, 56), (56, 1, 1, 8), 4, 4, icn=True), 8, ()),
    (_conv((3, 3, 24), (24, 1, 1, 56), 4, 4, icn=True, out_signed=True), 6, ()),
    (_conv((3, 3, 16), (16, 1, 1, 24), 4, 4, icn=True), 9, (2,)),
    # 8-bit codes, one STR per pixel's four: unsigned (USAT), FAST 1, a lone last pixel; 2-bit
    # weights 3x3 over them (8-bit windows of a pair at once) to signed codes, z_out = -128
    # flipped (USAT and EOR 0x80808080); signed codes, z_out = 5 added, z_w = 6
    (_conv((3, 3, 12), (12, 1, 1, 16), 4, 8, icn=True), 8, (1,)),
    (_conv((3, 3, 8), (8, 3, 3, 12), 2, 8, padding=(1, 1, 1, 1), icn=True, out_signed=True,
           out_zero_point=-128), 2, ()),
    (_conv((3, 3, 8), (8, 1, 1, 8), 4, 8, icn=True, out_signed=True, out_zero_point=5), 6, ()),
]
FORMS = [(4, False, False, False, False, False, 4, 0), (4, True, True, False, True, False, 4, 0),
         (4, False, True, True, False, False, 4, 0), (4, True, False, True, False, False, 2, 0),
         (4, False, False, False, True, True, 4, 0), (4, True, False, False, False, False, 2, 0),
         (2, False, True, False, True, False, 4, 0), (2, False, True, True, False, False, 2, 0),
         (4, False, False, False, True, False, 4, 0), (4, True, True, False, False, False, 4, 0),
         (4, True, False, False, True, False, 4, 0), (4, False, False, False, True, False, 8, 0),
         (2, False, False, True, False, False, 8, 0), (4, True, True, False, False, True, 8, 0)]


def epi_chain(seed: int = 7, layers=None, shape=(5, 5, 3), name: str = "epi") -> IntegerGraph:
    """The chain of LAYERS (or ``layers``; floor rounding, 8-bit unsigned input ``shape``) then a
    dense layer of raw logits: each layer's weight zero point set before calibration, and its
    channels in the FAST 1 list given small accumulators (every weight at the zero point but one
    tap), which calibration gives multipliers with n0 >= 0 among channels with n0 < 0."""
    rng = np.random.default_rng(seed)
    g = IntegerGraph(layers=[], input_shape=shape, input_bits=8, input_signed=False,
                     input_zero_point=0, rounding="floor", name=name)
    x = rng.integers(0, 256, (48, *shape))
    st = {"shape": shape, "bits": 8, "signed": False, "zp": 0}
    for spec, zw, small in LAYERS if layers is None else layers:
        spec = dict(spec)
        kind, wshape, wbits = spec.pop("kind"), spec.pop("wshape"), spec.pop("wbits")
        spec.pop("icn")
        layer = IntegerLayer(kind=kind, name=f"l{len(g.layers)}", in_shape=st["shape"],
                             in_bits=st["bits"], in_signed=st["signed"], in_zero_point=st["zp"],
                             **spec)
        w = rng.integers(0, 1 << wbits, wshape)
        for c in small:
            w[c] = zw
            w[c, 0, 0, 0] = zw + 1
        layer.set_weights(w, wbits)
        layer.weight_zero_point = np.array([zw], np.int32)
        g.layers.append(layer)
        synth.calibrate_layer(g, layer, x, rng, True, 0.25)
        st.update(shape=tuple(layer.out_shape), bits=layer.out_bits, signed=layer.out_signed,
                  zp=layer.out_zero_point)
    n = int(np.prod(st["shape"]))
    g.layers.append(IntegerLayer(kind="flatten", name="flat", in_shape=st["shape"],
                                 in_bits=st["bits"], in_signed=st["signed"],
                                 in_zero_point=st["zp"], out_shape=(n,), out_bits=st["bits"],
                                 out_signed=st["signed"], out_zero_point=st["zp"]))
    dense = IntegerLayer(kind="dense", name="fc", in_shape=(n,), in_bits=st["bits"],
                         in_signed=st["signed"], in_zero_point=st["zp"], out_shape=(3,),
                         out_bits=32, out_signed=True, requantize=False)
    dense.set_weights(rng.integers(0, 16, (3, n)), 4)
    dense.weight_zero_point = np.array([8], np.int32)
    g.layers.append(dense)
    synth.calibrate_layer(g, dense, x, rng, False, 0.0)
    g.validate()
    return g


# tn_m7_sub_sl (c/tn_m7_sub.h): an 8-bit pointwise layer, then a w4a8 pointwise one from 8 to 16
# channels whose output the planner slides over its input (no scratch is free: tn_m7_sub's FC
# form), 7 x 7 pixels: pairs with their lanes past their own outputs up to PSL = 44, where the
# lanes would reach the unread input, then the FC form (a lone last pixel among them)
SLIDE = [(_conv((7, 7, 8), (8, 1, 1, 8), 8, 8, icn=True), 0, ()),
         (_conv((7, 7, 16), (16, 1, 1, 8), 4, 8, icn=True), 8, ())]


def slide_chain() -> IntegerGraph:
    """epi_chain of SLIDE over an 8-bit 7 x 7 x 8 input."""
    return epi_chain(11, SLIDE, (7, 7, 8), "slide")


def epi_residual() -> IntegerGraph:
    """x -> p (pointwise, 4-bit weights, per-channel multipliers, unsigned 4-bit codes) -> y = x
    + p on the floor rounding: the ADD fused into p's step through its table, p's codes packed
    by tn_sc_epi for tn_sc_addtab8 (a lone last pixel: 5 x 5)."""
    rng = np.random.default_rng(31)
    p = IntegerLayer(kind="pointwise", name="p", in_shape=(5, 5, 16), out_shape=(5, 5, 16),
                     in_bits=4, in_signed=False, in_zero_point=0, out_bits=4,
                     out_signed=False, out_zero_point=0, inputs=("x",), outputs=("p",),
                     rounding="floor")
    p.set_weights(rng.integers(0, 16, (16, 1, 1, 16)), 4)
    p.weight_zero_point = np.array([7], np.int32)
    p.bias = rng.integers(-20, 60, 16).astype(np.int32)
    p.m0, p.n0 = tflite_quantize_multiplier(rng.uniform(0.01, 0.06, 16))
    m0, n0 = tflite_quantize_multiplier([0.5, 0.31, 1.2 / (1 << 20)])
    add = IntegerLayer(kind="add", name="y", in_shape=(5, 5, 16), out_shape=(5, 5, 16),
                       in_bits=4, in_signed=False, in_zero_point=0, out_bits=4,
                       out_signed=False, out_zero_point=0, inputs=("x", "p"), outputs=("y",),
                       left_shift=20, m0=m0, n0=n0, rounding="floor")
    g = IntegerGraph([p, add], input_shape=(5, 5, 16), input_bits=4, input_signed=False,
                     input_zero_point=0, rounding="floor", input_name="x", outputs=["y"],
                     name="epi_res")
    g.validate()
    return g


def _check_forms(e, g, want):
    """The planned variants, and each such step calling tn_m7_subconv_epi (the export's choice,
    kernels_m7.subconv.subconv_epi)."""
    got = [epi_form(s, g.rounding) for s in e.steps if s.layer.kind != "flatten"
           and s.layer.kind != "dense"]
    assert got == want, got
    assert (e.out_dir / "model.c").read_text().count("tn_m7_subconv_epi(l, ") == len(want)


def test_epi_forms_host_bitexact(tmp_path, roomy):
    """Every variant's layer takes tn_m7_subconv with the variant planned (so the QEMU test runs
    each assembly form), bit-exact with the simulator on the host's C twin."""
    g = epi_chain()
    e = host_check(g, tmp_path / "chain")
    _check_forms(e, g, FORMS)
    # l6's 2-bit weights with two rows per lane (PK: tn_sc_epi's unscaled sums), l7 and l12 not
    assert [subconv_pack(s.layer) for s in e.steps if s.layer.weight_bits == 2
            and s.layer.kind != "dense"] == [1, 0, 0]
    # l7 and l12 (2-bit weights, not PK, 3 x 3 pixels): a lone last pixel by tn_sc_block1_2,
    # l12's blocks past one word (its loop of two words)
    lone2 = [s.layer.name for s in e.steps if s.layer.weight_bits == 2 and s.layer.kind != "dense"
             and not subconv_pack(s.layer) and steps_mod.sub_conv_step(s)
             and np.prod(s.layer.out_shape[:2]) % 2 and steps_mod.sub_lanes(s.layer)[1] >= 12]
    assert lone2 == ["l7", "l12"], lone2
    g = epi_residual()
    e = host_check(g, tmp_path / "res")
    _check_forms(e, g, [(4, True, False, False, False, False, 4, 2)])


def test_lane_pairs_take_sub_epi(tmp_path, monkeypatch):
    """tn_m7_sub's FC form gives its pixel pairs (head lanes) tn_sc_epi through tn_m7_sub_epi
    where their blocks qualify: test_subconv_forms' head graph in the lean plan (its QEMU test,
    test_forms_under_qemu, runs that step), its 2-bit-weight pointwise layer alone (the others
    have per-channel weight zero points)."""
    from tests.test_subconv_forms import _head_graph
    monkeypatch.setattr(steps_mod, "sub_conv_fits", lambda step: False)
    e = codegen.export_c(_head_graph(), tmp_path / "src")
    text = (e.out_dir / "model.c").read_text()
    assert text.count("tn_m7_sub_epi(l, ") == 1 and text.count("tn_m7_sub(l, ") == 3


def test_slide_lanes_host_bitexact(tmp_path):
    """The w4a8 pointwise layer sliding over its input takes tn_m7_sub_sl (kernels_m7.sub
    .sub_slide_lanes) with pairs up to pixel 44 of 49 (the FC form after them), bit-exact with
    the simulator on the host; the lanes lie in the output between the pair's outputs and the
    unread input."""
    from tinyopt.deploy.kernels_m7.sub import sub_slide_lanes
    e = host_check(slide_chain(), tmp_path)
    step = next(s for s in e.steps if s.layer.name == "l1")
    assert sub_slide_lanes(step) == 44
    # one byte on (an odd output offset, as VWW's conv2d_1): the lanes rounded up to a word,
    # 3 bytes later, reach the unread input a pair sooner
    moved = copy.copy(step)
    moved.out_offset, moved.in_offsets = step.out_offset + 1, (step.in_offsets[0] + 1,)
    assert sub_slide_lanes(moved) == 42
    assert step.out_offset < step.in_offsets[0] < step.out_offset + 49 * 16
    text = (e.out_dir / "model.c").read_text()
    assert text.count("tn_m7_sub_sl(l, ") == 1 and ", 44u);" in text


@pytest.mark.slow  # compiles per level
def test_slide_lanes_compile_at_levels(tmp_path, monkeypatch):
    """tn_m7_sub_sl compiles at FORM_LEVELS with FORM_ABIS (tn_sc_pixels' blocks beside the FC
    form's in one function), and so does test_sub_lean's first layer whose pairs read their own
    weights (tn_m7_sub_epi with WOFF: a copy of the layer; its 2-bit twin first2 takes the same
    code, so one export of the two)."""
    from tests.test_sub_lean import _lean, _lean_graph
    _arm_gcc()
    outs = [codegen.export_c(slide_chain(), tmp_path / "src").out_dir]
    _lean(monkeypatch)
    outs.append(codegen.export_c(_lean_graph("first4"), tmp_path / "first4").out_dir)
    for out in outs:
        for abi in FORM_ABIS:
            flags = ARM if abi == "hard" else (*ARM[:3], "-mfloat-abi=soft")
            for level in FORM_LEVELS:
                cmd = [*flags, level, *WARN, "-c", str(out / "model.c"), "-I", str(out),
                       "-o", str(tmp_path / "model.o")]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_epi_under_qemu(qemu, tmp_path, roomy):
    """The assembly of every variant bit-exact with the simulator under QEMU (the chain and the
    fused ADD), and tn_m7_sub_sl's pairs (slide_chain: the lean plan, whatever ``roomy``). No
    host run here: these exports are test_epi_forms_host_bitexact's and
    test_slide_lanes_host_bitexact's, checked on the host on 40 images."""
    graphs, xs, exports = {}, {}, {}
    for g in (epi_chain(), epi_residual(), slide_chain()):
        if g.name == "slide":
            steps_mod.SCRATCH_ONLY_WHERE_FREE = True  # roomy's monkeypatch restores it
        lo = -128 if g.input_signed else 0
        graphs[g.name] = g
        xs[g.name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                       (3, *g.input_shape))
        exports[g.name] = codegen.export_c(g, tmp_path / g.name / "src")  # under its plan
    assert "tn_m7_sub_sl(l, " in (exports["slide"].out_dir / "model.c").read_text()
    check_many(graphs, xs, tmp_path, host_images=0, mcu_images=3, exports=exports)


def _raw_chains(mp) -> dict:
    """tests.test_build_hard_float's _c4_chain twice, its 4-bit pointwise layers (NU = 2, 4 ..
    16 lane pairs: every remainder the 4-bit blocks take, NU - 1 odd, 1, 3, 5, 7, straight and
    before the loop of eight) forced to RAW 1 ("raw1") and RAW 0 ("raw0") on ``mp``, the other
    graphs' layers left to subconv_raw: name -> graph."""
    from tests.test_build_hard_float import _c4_chain
    graphs = {"raw1": _c4_chain(), "raw0": _c4_chain()}
    forced = {id(layer): raw for raw, g in ((1, graphs["raw1"]), (0, graphs["raw0"]))
              for layer in g.layers}
    mp.setattr(kernels_m7.subconv, "subconv_raw",
               lambda layer: forced.get(id(layer), subconv_raw(layer)))
    return graphs


def _check_raw(e, raw: int):
    """Every tn_m7_subconv call of ``e`` (a _raw_chains export) at RAW ``raw``, KWCP 4 .. 32."""
    from tests.test_kernels_m7_sub import _emitted_calls
    calls = _emitted_calls(e, "tn_m7_subconv")
    assert sorted((c["RAW"], c["KWCP"]) for c in calls.values()) == [
        (raw, c) for c in range(4, 33, 4)], calls


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_epi_one_statement_under_qemu(qemu, tmp_path, roomy, monkeypatch):
    """The chain under TN_SC_C4_ONE (the one-statement blocks an FPU selects) on our soft-float
    target: its last layers' sixteen lane pairs per loop entered at the second half and eight
    straight (TN_SC_C4_ONE_TAIL), bit-exact with the simulator under QEMU; in the same program
    TN_SC_LEAN13 (RAW 1's and RAW 0's thirteen-register blocks, what an FPU selects) on
    _raw_chains. Through check_many without its host run, not mcu.deploy: the host C (these
    forms are assembly, which the host build has not) is test_epi_forms_host_bitexact's and
    test_kernels_m7_sub's forced RAW 1 / 0 runs, and deploy's sizes and RAM are not what this
    tests."""
    from tests.test_kernels_m7_sub import _emitted_calls
    monkeypatch.setattr(mcu, "MCU_CFLAGS",
                        (*mcu.MCU_CFLAGS, "-DTN_SC_C4_ONE=1", "-DTN_SC_LEAN13=1"))
    graphs = {"epi_one": epi_chain(), **_raw_chains(monkeypatch)}
    exports = {n: codegen.export_c(g, tmp_path / n / "src") for n, g in graphs.items()}
    _check_raw(exports["raw1"], 1)
    _check_raw(exports["raw0"], 0)
    assert {c["RAW"] for c in _emitted_calls(exports["epi_one"], "tn_m7_subconv_epi").values()
            if c["WB"] == 4} == {2}  # the patch leaves the chain's 4-bit steps at RAW 2
    xs = {n: np.random.default_rng(6).integers(0, 256, (3, *g.input_shape))
          for n, g in graphs.items()}
    check_many(graphs, xs, tmp_path, host_images=0, mcu_images=3, exports=exports)


@pytest.mark.slow  # compiles per level
def test_epi_compiles_at_levels(tmp_path, roomy, monkeypatch):
    """The chain's variants compile at FORM_LEVELS with the FPU (fourteen registers: eight sums,
    four temporaries, the state's address), and so do _raw_chains' RAW 0 blocks
    (TN_SC_LEAN13: TN_SC_G4R0's fourteen registers had impossible constraints at every level
    with an FPU; RAW 1's lean form compiles in test_build_hard_float's subconv_add_r1)."""
    _arm_gcc()
    e = codegen.export_c(epi_chain(), tmp_path / "src")
    raw0 = codegen.export_c(_raw_chains(monkeypatch)["raw0"], tmp_path / "raw0")
    _check_raw(raw0, 0)
    for out in (e.out_dir, raw0.out_dir):
        for level in FORM_LEVELS:
            cmd = [*ARM, level, *WARN, "-c", str(out / "model.c"), "-I", str(out),
                   "-o", str(tmp_path / "model.o")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
