"""Check (c): an integer graph against the fake-quant model it was lowered from, layer by layer
(in LSBs of each layer's output grid) and end to end (top-1 agreement)."""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import COMPUTE_KINDS, IntegerGraph, IntegerLayer



def _fake_codes(layer: IntegerLayer, values: np.ndarray) -> np.ndarray:
    """A fake-quant layer's float output on the integer grid of ``layer`` (float64): PACT and
    pools are S * code, so round recovers the code; raw int32 logits are Phi + real bias / S
    (round); requantized logits are floored like the kernel."""
    v = np.asarray(values, np.float64).reshape(len(values), -1) / layer.out_scale
    if layer.kind in COMPUTE_KINDS and layer.out_bits == 32 and layer.requantize:
        return np.floor(v) + layer.out_zero_point
    return np.round(v) + layer.out_zero_point


def compare(qmodel, graph: IntegerGraph, x: np.ndarray, batch_size: int = 500) -> dict:
    """Check (c): run ``graph`` (bit-exact simulator) and ``qmodel`` (fake quant) on the float
    images ``x`` and compare every layer both have, in LSBs of that layer's output grid.

    Two comparisons per layer:

    - ``chained``: the fake-quant model end to end vs the simulator end to end (differences
      propagate from layer to layer);
    - ``isolated``: the fake-quant layer fed with the simulator's own (dequantized) input of that
      layer vs the simulator's output: the error of each layer's integer arithmetic alone.

    Arguments:
        qmodel: the fake-quant model ``graph`` was converted from.
        graph: the IntegerGraph.
        x: float model-ready images.
        batch_size: images per chunk (bounds the memory of the per-layer traces).

    Returns:
        ``{"layers": DataFrame, "fake_logits": float array, "int_logits": int array,
        "top1_agreement": float, "top1_agreement_1lsb": float}`` (the latter also counts as
        agreeing an image whose fake-quant class has an integer logit within 1 LSB of the
        largest one: a tie at the logits' resolution); the DataFrame has one row per compared
        layer: layer, kind, out_bits, elements, and for ``chained`` and ``isolated``: max_lsb
        (largest |difference|), frac_diff (share of elements that differ) and frac_gt1 (share
        differing by > 1 LSB).
    """
    from tinyopt.front.checks import check_images
    x = check_images(x, qmodel, "x", "icn.compare")
    import pandas as pd
    import tensorflow as tf
    import tf_keras as keras

    from tinyopt.integer import sim
    keras_names = {layer.name for layer in qmodel.layers}
    pairs = [(i, layer) for i, layer in enumerate(graph.layers) if layer.name in keras_names]
    probe = keras.Model(qmodel.inputs, [qmodel.get_layer(layer.name).output for _, layer in pairs])
    wiring = graph.wiring()
    producer_name = {t: graph.layers[j].name for t, j in graph.producers().items()}
    stats = {layer.name: np.zeros(7) for _, layer in pairs}  # n, max/cnt/cnt>1 chained, isolated
    fake_logits, int_logits = [], []
    x = np.asarray(x, np.float32)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        codes = graph.quantize_input(xb)
        trace = sim.run(graph, codes, trace=True)
        fakes = probe(tf.constant(xb), training=False)
        fakes = fakes if isinstance(fakes, (list, tuple)) else [fakes]
        for (i, layer), fake in zip(pairs, fakes):
            got = trace[layer.name].reshape(len(xb), -1).astype(np.float64)
            chained = np.abs(_fake_codes(layer, fake.numpy()) - got)
            kl = qmodel.get_layer(layer.name)
            feeds = []
            ins = list(wiring[i][0])
            # a layer lowered to several nodes (a registry op's QUANTIZE / kernel / QUANTIZE, a
            # Conv1D's reshape, the softmax head's QUANTIZE): feed the layer the tensor its
            # first node reads, walking back over the nodes named after it
            while len(ins) == 1 and ins[0] in producer_name \
                    and producer_name[ins[0]].startswith(f"{layer.name}_") \
                    and producer_name[ins[0]] not in keras_names:
                ins = list(wiring[graph.producers()[ins[0]]][0])
            for t in ins:
                src = codes if t == graph.input_name else trace[producer_name[t]]
                spec = graph.tensor(t)
                feeds.append((spec.scale * (src.astype(np.float64) - spec.zero_point)
                              ).astype(np.float32))
            shapes = kl.input_shape if isinstance(kl.input_shape, list) else [kl.input_shape]
            feeds = [tf.constant(f.reshape((len(xb),) + tuple(sh[1:])))
                     for f, sh in zip(feeds, shapes)]
            alone = kl(feeds if len(feeds) > 1 else feeds[0], training=False) \
                if type(kl).__name__ == "QuantCompute" else \
                kl(feeds if len(feeds) > 1 else feeds[0])
            isolated = np.abs(_fake_codes(layer, alone.numpy()) - got)
            st = stats[layer.name]
            st[0] += chained.size
            st[1], st[2], st[3] = max(st[1], chained.max()), st[2] + np.count_nonzero(chained), \
                st[3] + np.count_nonzero(chained > 1)
            st[4], st[5], st[6] = max(st[4], isolated.max()), st[5] + np.count_nonzero(isolated), \
                st[6] + np.count_nonzero(isolated > 1)
        fake_logits.append(fakes[-1].numpy())
        int_logits.append(trace[graph.layers[-1].name])
    rows = []
    for _, layer in pairs:
        st = stats[layer.name]
        rows.append({"layer": layer.name, "kind": layer.kind, "out_bits": layer.out_bits,
                     "elements": int(st[0]), "chained_max_lsb": st[1],
                     "chained_frac_diff": st[2] / st[0], "chained_frac_gt1": st[3] / st[0],
                     "isolated_max_lsb": st[4], "isolated_frac_diff": st[5] / st[0],
                     "isolated_frac_gt1": st[6] / st[0]})
    fake_logits, int_logits = np.concatenate(fake_logits), np.concatenate(int_logits)
    fake_top = np.argmax(fake_logits.reshape(len(x), -1), 1)
    ints = int_logits.reshape(len(x), -1).astype(np.int64)
    # a class whose integer logit is within 1 LSB of the top one is a tie at the logits' LSB
    near = ints[np.arange(len(x)), fake_top] >= ints.max(axis=1) - 1
    return {"layers": pd.DataFrame(rows), "fake_logits": fake_logits, "int_logits": int_logits,
            "top1_agreement": float(np.mean(fake_top == np.argmax(ints, 1))),
            "top1_agreement_1lsb": float(np.mean(near))}
