"""tinyopt.qat: tfmot 8-bit QAT (sparsity-preserving when pruned) and the sub-byte fake-quant models."""
from __future__ import annotations

import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras

from tinyopt import convert, measure, models, qat, train


def _sparse_seed_cnn(fraction=0.8, seed=0):
    model = models.seed_cnn(seed=seed)
    rng = np.random.default_rng(seed)
    masks = {}
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            mask = rng.random(k.shape) < fraction
            k[mask] = 0.0
            layer.kernel.assign(k)
            masks[layer.name] = mask
    return model, masks


def _random_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def _tflite_kernels(flatbuffer):
    """The float weight tensors of the converted graph, by the layer name they mention."""
    interp = measure.interpreter(flatbuffer)
    out = {}
    for d in interp.get_tensor_details():
        for name, rank in (("conv/Conv2D", 4), ("fc/MatMul", 2)):
            # The weights are the constant tensors named after the fake-quant op that made them.
            if name in d["name"] and len(d["shape"]) == rank and d["name"].endswith(
                    ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel")):
                out[name.split("/")[0]] = interp.get_tensor(d["index"])
    return out


def test_quantize_keeps_pruned_zeros_through_finetune_and_tflite():
    model, masks = _sparse_seed_cnn(0.8)
    before = [w.copy() for w in model.get_weights()]
    q = qat.quantize(model)  # auto: 80 % zeros -> prune-preserving scheme
    assert q.qat_scheme == qat.SCHEME_PRUNE_PRESERVE
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), \
        "the input model was modified"
    train.fit(q, _random_data(), epochs=2, progress=False)
    kernels = {w.name.split("/")[0]: w.numpy() for w in q.weights if w.name.endswith("kernel:0")}
    for name, mask in masks.items():
        assert np.all(kernels[name][mask] == 0), f"{name}: pruned zeros were not preserved"
        assert np.any(kernels[name][~mask] != before[0 if name == "conv" else 2][~mask])
    flat = convert.to_tflite(q, "float32")
    ops = measure.operators(flat)
    assert "FAKE_QUANT" not in ops and "QUANTIZE" in ops
    tfl = _tflite_kernels(flat)
    # TFLite stores conv kernels as [out, kh, kw, in] and FC kernels as [out, in].
    assert np.all(np.transpose(tfl["conv"], (1, 2, 3, 0))[masks["conv"]] == 0)
    assert np.all(tfl["fc"].T[masks["fc"]] == 0)


def test_quantize_default_scheme_for_dense_model_and_errors():
    model = models.seed_cnn()
    q = qat.quantize(model)
    assert q.qat_scheme == qat.SCHEME_DEFAULT
    assert qat.quantize(model, preserve_sparsity=True).qat_scheme == qat.SCHEME_PRUNE_PRESERVE
    with pytest.raises(ValueError, match="already quantization-wrapped"):
        qat.quantize(q)
