"""The extended sequence grammar (issue 17): sub-byte, integer and deployment steps parsed and
validated before any training; recommend() for a device. Fast (no training) but the last test,
a small end-to-end run down to the emulated Cortex-M7 (marked slow)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyopt import sequence
from tinyopt.pipeline import grammar


@pytest.mark.parametrize("spec, canonical", [
    ("prune>mixed(flash=16k,ram=8k)>qat>int>mcu",
     ["prune", "mixed(flash=16k,ram=8k,PL)", "qat", "int", "mcu"]),
    ("ptq(w4a4,PC)>int>mcu", ["ptq(w4a4,PC)", "int", "mcu"]),
    ("PTQ(W4A4, pc) > INT", ["ptq(w4a4,PC)", "int"]),
    ("w2a8(PC)>ptq>qat>int", ["w2a8(PC)", "ptq", "qat", "int"]),
    ("qat(flash=6000,ram=8192,PC)>int>mcu", ["qat(flash=6000,ram=8k,PC)", "int", "mcu"]),
    ("int8>int>mcu", ["int8", "int", "mcu"]),
    ("mixed(flash=6000,ram=16k,PL,search=accuracy)>ptq>int",      # issue 30
     ["mixed(flash=6000,ram=16k,PL,search=accuracy)", "ptq", "int"]),
    ("mixed(search=memory,flash=16k,ram=8k)>qat>int",              # the default, left out
     ["mixed(flash=16k,ram=8k,PL)", "qat", "int"]),
    ("qat(flash=6k,ram=8k,PC,search=accuracy)>int",
     ["qat(flash=6k,ram=8k,PC,search=accuracy)", "int"]),
    ("graph>int8>int", ["graph", "int8", "int"]),
    ("prune>qat>int8", ["prune", "qat", "int8"]),          # the LiteRT path as before
    (["decompose", "prune", "w4a4", "qat", "int"],
     ["decompose", "prune", "w4a4(PL)", "qat", "int"]),
])
def test_valid_specs_and_canonical_text(spec, canonical):
    assert sequence.validate(spec) == canonical
    assert sequence.validate(">".join(canonical)) == canonical  # canonical text is a fixed point


@pytest.mark.parametrize("spec, reason", [
    ("int8>int>mcu>prune", "prune after mcu"),
    ("w4a4>qat>int>mcu>int", "int after mcu"),
    ("qat>w4a4>qat>int", "qat appears twice"),
    ("w4a4>qat>qat>int", "qat appears 2 times"),
    ("qat(w4a4)>qat>int", "qat appears 2 times"),
    ("qat>qat>int8", "qat appears 2 times"),
    ("w4a4>ptq(w2a2)>int", "2 bit policies"),
    ("mixed(flash=16k)>qat>int", "needs both flash"),
    ("mixed(ram=2k,flash=1x)>qat>int", "size such as"),
    ("mixed(w4a4)>qat>int", "needs a budget"),
    ("w3a3>qat>int", "unknown step"),
    ("ptq(w4a4,PX)>int", "unknown argument 'px'"),
    ("prune(0.5)>int8", "takes no arguments"),
    ("float16>int>mcu", "int lowers an int8 flatbuffer"),
    ("int8>mcu", "put int before it"),
    ("w4a4>qat>mcu", "put int before it"),
    ("ptq>int", "no bit policy"),
    ("w4a4>int", "needs ptq or qat"),
    ("w4a4>qat", "no LiteRT converter"),
    ("w4a4>qat>int8", "no LiteRT converter"),
    ("int8>w4a4>qat>int", "int8 before the bit policy"),
    ("w4a4>prune>qat>int", "prune after the bit policy"),
    ("qat>ptq(w4a4)>int", "qat appears twice"),
    ("w4a4>qat>ptq>int", "ptq after qat"),
    ("prune>decompose>w4a4>qat>int", "decompose after prune"),
    ("prune>int", "must end with a converter"),
    ("int8>prune", "must end with a converter"),
    ("", "unknown step ''"),
    ("mixed(flash=16k,ram=8k,ram=4k)>qat>int", r"ram given twice \('ram=8k' and 'ram=4k'\)"),
    ("mixed(flash=16k,flash=32k,ram=8k)>qat>int", "flash given twice"),
    ("mixed(flash=16k,ram=8k,PC,PL)>qat>int", r"granularity \(PL/PC\) given twice"),
    ("ptq(w4a4,w8a8)>int", r"bits \(wNaM\) given twice"),
    ("mixed(flash=16k,ram=8k,search=hessian)>qat>int", r"search='hessian' is not a policy "
                                                      r"search; use search=memory"),
    ("mixed(flash=16k,ram=8k,search=)>qat>int", "search='' is not a policy search"),
    ("mixed(flash=16k,ram=8k,search=memory,search=accuracy)>qat>int", "search given twice"),
    ("ptq(w4a4,search=accuracy)>int", "search= chooses how a budget is met"),
])
def test_invalid_specs_are_refused_with_the_reason(spec, reason):
    with pytest.raises(ValueError, match=reason):
        sequence.validate(spec)


def test_an_unmeetable_budget_names_the_minimum_before_training():
    from tinyopt import models
    from tinyopt.mixed.search import BudgetError, memory_driven
    m = models.seed_cnn()
    with pytest.raises(BudgetError) as info:  # the library's own figure, to compare with
        memory_driven(m, 1024, 8192)
    with pytest.raises(ValueError, match=rf"flash is {info.value.min_flash:,} B.*at least "
                                         rf"mixed\(flash={info.value.min_flash},"):
        sequence.validate("mixed(flash=1k,ram=8k)>qat>int>mcu", m)
    with pytest.raises(ValueError, match="peak RAM"):
        sequence.run_many(["int8", "mixed(flash=64k,ram=100)>qat>int"], m, data=None)
    # the same budget is fine without a model (nothing to check it against) and when it fits
    assert sequence.validate("mixed(flash=1k,ram=8k)>qat>int")
    assert sequence.validate("mixed(flash=6000,ram=8k,PC)>qat>int>mcu", m)
    # search=accuracy: the same feasibility, decided without data, before any training
    with pytest.raises(ValueError, match=rf"flash is {info.value.min_flash:,} B"):
        sequence.validate("mixed(flash=1k,ram=8k,search=accuracy)>qat>int", m)
    assert sequence.validate("mixed(flash=6000,ram=8k,PC,search=accuracy)>qat>int", m)


def test_a_bad_sensitivity_sample_count_is_refused_before_training():
    with pytest.raises(ValueError, match="sensitivity_samples must be a positive int"):
        sequence.run("mixed(flash=6k,ram=8k,search=accuracy)>ptq>int", None, None,
                     sensitivity_samples=0)


STEPS = ["prune", "qat", "decompose", "graph", "int8", "float16", "dynamic", "int",
         "mcu", "ptq", "w4a4", "w2a8(PC)", "mixed(flash=16k,ram=8k)", "ptq(w4a4,PC)",
         "mixed(flash=16k,ram=8k,search=accuracy)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=6))
def test_validate_is_total_and_consistent(steps):
    """Any list of known steps is either accepted or refused with a ValueError (never another
    error), and an accepted spec respects the grammar's invariants."""
    try:
        out = sequence.validate(steps)
    except ValueError:
        return
    names = [grammar.parse_step(s).name for s in out]
    assert "mcu" not in names[:-1]
    assert names.count("qat") <= 1
    if "mcu" in names:
        assert names[-2] == "int"
    if "int" in names:
        before = names[names.index("int") - 1]
        assert before in ("int8", "ptq", "qat")
    assert sequence.validate(">".join(out)) == out


def _rows():
    base = dict(test_images=10000)
    return [
        dict(base, variant="float32", accuracy=0.900, size_bytes=80000, latency_ms_median=0.04,
             latency_ms_p10=0.039, latency_ms_p90=0.041),
        dict(base, variant="int8", accuracy=0.899, size_bytes=23000, latency_ms_median=0.05,
             latency_ms_p10=0.049, latency_ms_p90=0.051),
        dict(base, variant="int8>int>mcu", accuracy=0.899, elf_flash_bytes=40600,
             elf_ram_bytes=3400, mcu_instructions=4.0e6, mcu_instructions_min=3.9e6,
             mcu_instructions_max=4.1e6),
        dict(base, variant="w4>int>mcu", accuracy=0.897, elf_flash_bytes=30000,
             elf_ram_bytes=3000, mcu_instructions=4.05e6, mcu_instructions_min=4.0e6,
             mcu_instructions_max=4.2e6),
        dict(base, variant="w2>int>mcu", accuracy=0.870, elf_flash_bytes=25000,
             elf_ram_bytes=2500, mcu_instructions=3.0e6, mcu_instructions_min=2.9e6,
             mcu_instructions_max=3.1e6),
        dict(base, variant="big>int>mcu", accuracy=0.910, elf_flash_bytes=60000,
             elf_ram_bytes=9000, mcu_instructions=9.0e6, mcu_instructions_min=8.9e6,
             mcu_instructions_max=9.1e6),
    ]


def test_recommend_for_a_device_picks_among_deployed_variants_that_fit():
    rec = sequence.recommend(_rows(), tolerance_pt=0.5, flash_bytes="32k", ram_bytes="8k")
    assert rec.loc["smallest", "variant"] == "w4>int>mcu"     # w2 is 3 pt worse: out
    assert rec.loc["most_accurate", "variant"] == "w4>int>mcu"  # big does not fit, int8 neither
    assert rec.loc["fastest", "variant"] == "w4>int>mcu"
    assert (rec["flash_budget"] == 32768).all() and (rec["ram_budget"] == 8192).all()
    roomy = sequence.recommend(_rows(), tolerance_pt=0.5, flash_bytes=64 * 1024, ram_bytes=None)
    assert roomy.loc["most_accurate", "variant"] == "big>int>mcu"
    assert roomy.loc["fastest", "variant"] == "int8>int>mcu"
    assert roomy.loc["fastest", "ties"] == "w4>int>mcu"       # instruction ranges overlap
    assert roomy.loc["smallest", "ties"] == ""
    assert sequence.recommend(_rows(), 5.0, flash_bytes="32k").loc["fastest", "variant"] == \
        "w2>int>mcu"


def test_recommend_without_a_device_is_unchanged_and_says_when_nothing_fits():
    rec = sequence.recommend(_rows(), tolerance_pt=0.5)
    assert rec.loc["smallest", "variant"] == "int8"            # rows with a LiteRT size only
    none = sequence.recommend(_rows(), tolerance_pt=0.5, flash_bytes="20k", ram_bytes="8k")
    assert none["variant"].isna().all()
    assert "smallest deployed is w2>int>mcu (25,000 B flash, 2,500 B RAM)" in none.iloc[0]["note"]
    rows = [r for r in _rows() if "elf_flash_bytes" not in r]
    with pytest.raises(ValueError, match="deployed variants"):
        sequence.recommend(rows, flash_bytes="32k")


@pytest.mark.parametrize("results, message", [
    ([], "no results to recommend from.*run_many"),
    (__import__("pandas").DataFrame(), "no results to recommend from"),
    ([{"name": "int8", "acc": 0.9}], r"needs the columns \['variant', 'accuracy'\]"),
    ([{"variant": "float32", "accuracy": 0.9, "size_bytes": 100},   # no host latency measured
      {"variant": "int8", "accuracy": 0.9, "size_bytes": 30}],
     r"needs the columns \['latency_ms_median'\]"),
])
def test_recommend_refuses_empty_or_foreign_results(results, message):
    with pytest.raises(ValueError, match=message):
        sequence.recommend(results)


@pytest.fixture(scope="module")
def small():
    """A learnable 10-class toy problem at 28x28 and a seed CNN trained on it briefly."""
    from tests._toy import toy_model_and_data
    return toy_model_and_data()


@pytest.mark.slow
def test_end_to_end_sub_byte_and_int8_to_the_mcu(small, tmp_path):
    """A tiny model down both paths: int8 flatbuffer -> integer graph -> MCU, and a w4a4 PC
    policy -> PTQ -> QAT -> integer graph -> MCU; every row measured the same way."""
    from tinyopt.deploy import mcu
    m, data = small
    specs = ["int8>int>mcu", "ptq(w4a4,PC)>qat>int>mcu", "w8a8>ptq>int"]
    opts = dict(dataset="toy", latency_runs=3, latency_warmup=1, calibration_samples=50,
                subbyte_calibration_samples=64, subbyte_qat_epochs=1, subbyte_qat_samples=300,
                build_dir=str(tmp_path), deploy_host_images=5, deploy_mcu_images=2,
                run_mcu=mcu.toolchain()[0], progress=False)
    df = sequence.run_many(specs, m, data, **opts).set_index("variant")
    assert {"float32", "int8", "int8>int", "int8>int>mcu", "ptq(w4a4,PC)>qat>int",
            "ptq(w4a4,PC)>qat>int>mcu", "w8a8(PL)>ptq>int"} <= set(df.index)
    assert (df["test_images"] == len(data.y_test)).all()
    assert df.loc["int8", "accuracy_source"] == "litert"
    assert df.loc["int8>int", "accuracy_source"] == "integer_sim"
    # the int8 flatbuffer and its integer graph compute the same classes (a bit-exact simulator)
    assert df.loc["int8>int", "accuracy"] == pytest.approx(df.loc["int8", "accuracy"], abs=0.01)
    sub = df.loc["ptq(w4a4,PC)>qat>int>mcu"]
    assert sub["weight_bits"] == "4/4" and sub["deploy_exact"]
    assert sub["weights_params_bytes"] < df.loc["int8>int>mcu", "weights_params_bytes"]
    if mcu.toolchain()[0]:
        assert sub["elf_flash_bytes"] > sub["weights_params_bytes"] + sub["code_bytes"] * 0.9
        assert sub["mcu_instructions"] > 0 and sub["elf_ram_bytes"] > sub["arena_bytes"]
        rec = sequence.recommend(df.reset_index(), tolerance_pt=100, flash_bytes="1M")
        assert rec.loc["smallest", "variant"] in {"int8>int>mcu", "ptq(w4a4,PC)>qat>int>mcu"}
