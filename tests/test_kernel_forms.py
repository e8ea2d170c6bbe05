"""The kernel forms an export declares (kernels_m7.FORM_PARAMS, c/tn_arith.h TN_FORMS_ONLY): the
declared values are exactly those the unit's kernel calls pass, the declaration changes no
object code, and a call outside it stops the build instead of taking another path."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.test_kernels_m7_conv import _conv_graph
from tinyopt.deploy import codegen, kernels_m7, mcu

# tn_m7_conv's form parameters by their place in its argument list (c/tn_m7_gemm.h): read from
# the emitted call, not from kernels_m7, so the two are checked against each other
CONV_ARG = {"MODE": 6, "QUAD": 26, "TAB": 27, "OB": 35}


def _calls(text: str, kernel: str) -> list[list[str]]:
    """The argument lists of every call of ``kernel`` in a generated C file (top-level commas)."""
    calls = []
    for m in re.finditer(rf"\b{kernel}\(", text):
        depth, args, cur = 1, [], ""
        for ch in text[m.end():]:
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                break
            if ch == "," and depth == 1:
                args.append(cur.strip())
                cur = ""
            else:
                cur += ch
        calls.append(args + [cur.strip()])
    return calls


def test_forms_defines_text_and_refusals():
    text = kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {2, 0}, "QUAD": {1}, "TAB": {4},
                                                    "OB": {8}}})
    assert text == ("#ifndef TN_M7_CONV_FORMS /* the forms this unit's steps use */\n"
                    "#define TN_M7_CONV_FORMS(MODE, QUAD, TAB, OB) (((MODE) == 0u || (MODE) == "
                    "2u) && ((QUAD) == 1u) && ((TAB) == 4u) && ((OB) == 8u))\n#endif\n")
    assert kernels_m7.forms_defines({}) == ""
    with pytest.raises(ValueError, match="declares no forms"):
        kernels_m7.forms_defines({"tn_m7_fc": {"OB": {8}}})
    with pytest.raises(ValueError, match="want each of"):
        kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {0}, "QUAD": {1}, "TAB": {4}}})
    with pytest.raises(ValueError, match="non-negative"):
        kernels_m7.forms_defines({"tn_m7_conv": {"MODE": {-1}, "QUAD": {1}, "TAB": {4},
                                                 "OB": {8}}})


@pytest.mark.parametrize("name", ["double_s8", "pair_u8"])
def test_an_export_declares_the_forms_its_calls_pass(tmp_path, name):
    e = codegen.export_c(_conv_graph(name), tmp_path / "c")
    text = (tmp_path / "c" / "model.c").read_text()
    calls = _calls(text, "tn_m7_conv")
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
