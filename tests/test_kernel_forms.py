"""The kernel forms an export declares (kernels_m7.FORM_PARAMS, c/tn_arith.h TN_FORMS_ONLY): the
declared values are exactly those the unit's kernel calls pass, the declaration changes no
object code, and a call outside it stops the build instead of taking another path."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.test_kernels_m7_conv import _conv_graph
from tinyopt.deploy import codegen, kernels_m7, mcu

# tn_m7_conv's form parameters by their place in its argument list (c/tn_m7_gemm.h), written
# here by hand against kernels_m7.kernel_params, which reads them from the prototype
CONV_ARG = {"MODE": 6, "QUAD": 26, "TAB": 27, "OB": 35}


def test_kernel_params_read_from_the_prototypes():
    conv = kernels_m7.kernel_params("tn_m7_conv")
    assert len(conv) == 70 and {p: conv.index(p) for p in CONV_ARG} == CONV_ARG
    assert conv[:7] == ("l", "in", "other", "out", "buf", "v", "MODE")
    assert conv[36:42] == ("FAST", "M0", "N0", "LOZ", "HIZ", "ZP")  # TN_RQ_ARGS
    assert conv[-8:] == ("QS", "QM", "QC", "QK", "QR", "QF", "FT", "FSH")  # TN_ST_ARGS(Q)
    for kernel in kernels_m7.FORM_PARAMS:
        assert set(kernels_m7.FORM_PARAMS[kernel]) <= set(kernels_m7.kernel_params(kernel))
    with pytest.raises(KeyError, match="no kernel"):
        kernels_m7.kernel_params("tn_m7_nothing")


def test_forms_defines_text_and_refusals():
    text = kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {2, 0}, "QUAD": {1}, "TAB": {4},
                                                    "OB": {8}}})
    assert text == ("#ifndef TN_M7_CONV_FORMS /* the forms this unit's steps use (several models "
                    "in one unit: define the union, kernels_m7.union_forms, or 1, before) */\n"
                    "#define TN_M7_CONV_FORMS(MODE, QUAD, TAB, OB) (((MODE) == 0u || (MODE) == "
                    "2u) && ((QUAD) == 1u) && ((TAB) == 4u) && ((OB) == 8u))\n#endif\n")
    assert kernels_m7.forms_defines({}) == ""
    assert kernels_m7.union_forms({"tn_m7_conv": {"MODE": {0}, "QUAD": {1}}},
                                  {"tn_m7_conv": {"MODE": {2}, "QUAD": {1}}}) == {
        "tn_m7_conv": {"MODE": {0, 2}, "QUAD": {1}}}
    with pytest.raises(ValueError, match="declares no forms"):
        kernels_m7.forms_defines({"tn_m7_fc": {"OB": {8}}})
    with pytest.raises(ValueError, match="want each of"):
        kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {0}, "QUAD": {1}, "TAB": {4}}})
    with pytest.raises(ValueError, match="not an unsigned literal"):
        kernels_m7.unit_forms("tn_m7_conv(" + ", ".join(["0u"] * 6 + ["-1"] + ["0u"] * 63) + ");")
    assert kernels_m7.unit_forms("/* step 3: tn_m7_conv(a layer named so) */\n") == {}
    with pytest.raises(ValueError, match="prototype takes 70"):
        kernels_m7.unit_forms("tn_m7_conv(l, in[0]);")
    with pytest.raises(ValueError, match="non-negative"):
        kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {-1}, "QUAD": {1}, "TAB": {4},
                                                 "OB": {8}}})


@pytest.mark.parametrize("name", ["double_s8", "pair_u8"])
def test_an_export_declares_the_forms_its_calls_pass(tmp_path, name):
    e = codegen.export_c(_conv_graph(name), tmp_path / "c")
    text = (tmp_path / "c" / "model.c").read_text()
    calls = kernels_m7.forms._call_args(text, "tn_m7_conv")
    assert calls and all(len(a) == 70 for a in calls), [len(a) for a in calls]
    passed = {p: {int(a[i].rstrip("u")) for a in calls} for p, i in CONV_ARG.items()}
    assert e.forms == {"tn_m7_conv": passed}
    assert kernels_m7.forms_defines(e.forms) in text
    assert text.index("#define TN_M7_CONV_FORMS") < text.index('#include "tn_m7.h"')


@pytest.mark.slow  # three Cortex-M7 compiles
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_declared_forms_change_no_code_and_an_undeclared_one_stops_the_build(tmp_path):
    e = codegen.export_c(_conv_graph("pair_u8"), tmp_path / "c")
    src = tmp_path / "c"

    def compile_(*extra):
        return subprocess.run(["arm-none-eabi-gcc", *mcu.MCU_CFLAGS, *extra, "-I", str(src),
                               "-c", str(src / "model.c"), "-o", str(tmp_path / "m.o")],
                              capture_output=True, text=True)

    def text_of():
        out = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / "m.o")],
                             capture_output=True, text=True, check=True).stdout
        return out.split("Disassembly", 1)[1]

    assert compile_().returncode == 0
    declared = text_of()
    every = compile_("-DTN_M7_CONV_FORMS(MODE,QUAD,TAB,OB)=1")  # no form declared: all kept
    assert every.returncode == 0, every.stderr
    assert text_of() == declared
    # a unit declaring one QUAD fewer than a step passes (a stale or hand-edited model.c)
    quads = sorted(e.forms["tn_m7_conv"]["QUAD"])
    text = (src / "model.c").read_text()
    line = next(t for t in text.splitlines() if t.startswith("#define TN_M7_CONV_FORMS"))
    assert f"(QUAD) == {quads[0]}u" in line
    (src / "model.c").write_text(text.replace(
        line, line.replace(f"(QUAD) == {quads[0]}u", f"(QUAD) == {max(quads) + 7}u")))
    bad = compile_()
    assert bad.returncode != 0
    assert "did not declare" in bad.stderr and "tn_undeclared_form" in bad.stderr
