"""Notebook 10's study (tinyopt/studies/model_zoo.py), the sub-byte columns: a network with
squeeze-and-excite (Keras MobileNetV3Small, untrained) through the memory model, the
memory-driven policy at half of w8a8, and that policy through PTQ, the integer graph and the
simulator against its fake-quant model (issue 28)."""
import pandas as pd
import pytest

import tinyopt  # noqa: F401

from tinyopt.studies import model_zoo


@pytest.mark.slow  # builds MobileNetV3Small, PTQ, conversion, the simulator (~1 min)
def test_mobilenet_v3_small_through_the_sub_byte_path():
    model = model_zoo.build("mobilenet_v3_small")
    depth = []
    row = model_zoo.subbyte_row("mobilenet_v3_small", model, 0.5, agreement_images=2,
                                calibration_images=8, depth=depth)
    assert "subbyte_refused" not in row and "mixed_refused" not in row, row
    assert row["mixed_flash"] <= row["budget_flash"] < row["w8a8_flash"]
    assert row["mixed_peak_ram"] <= row["budget_ram"] < row["w8a8_peak_ram"]
    assert "2" in row["mixed_weight_bits"]  # a mixed policy, not uniform
    # the deployed arena of the converted graph is the memory model's peak RAM
    assert row["mixed_arena_is_peak_ram"] and row["mixed_arena_bytes"] == row["mixed_peak_ram"]
    # every layer's own arithmetic within 1 LSB of the fake-quant layer; the SE products exact
    assert row["mixed_isolated_max_lsb"] <= 1
    layers = pd.DataFrame(depth)
    muls = layers[layers["kind"] == "mul"]
    assert len(muls) == 9 and (muls["isolated_max_lsb"] == 0).all()
    assert (layers["model"] == "mobilenet_v3_small").all()
    assert list(layers["depth"]) == sorted(layers["depth"])  # execution order
    assert 0 <= row["mixed_top1_agreement"] <= row["mixed_top1_agreement_1lsb"] <= 1
    n_exact, n = (int(v) for v in row["mixed_layers_exact"].split("/"))
    assert n == len(layers) and n_exact == int((layers["chained_max_lsb"] == 0).sum())


def test_depth_figure(tmp_path):
    rows = [{"model": m, "depth": i, "layer": f"l{i}", "chained_max_lsb": float(i % 3),
             "isolated_max_lsb": float(i % 2)} for m in ("a", "b") for i in range(6)]
    model_zoo.depth_figure(pd.DataFrame(rows), tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 1000
    model_zoo.depth_figure(pd.DataFrame([]), tmp_path / "empty.png")  # nothing compared
    assert (tmp_path / "empty.png").stat().st_size > 1000
