"""Same seed, same numbers: training, PTQ and QAT give bit-identical weights in two separate
processes on one machine (different machines may differ: oneDNN picks its kernels by CPU, see
README "Reproducibility")."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import hashlib, sys
import numpy as np
import tinyopt
import tf_keras as keras
from tinyopt.front import models, train
from tinyopt.mixed import ptq
from tinyopt.mixed.policy import Policy
rng = np.random.default_rng(0)  # the data are fixed; only the training seed varies
x = rng.random((128, 8, 8, 1), np.float32)
y = rng.integers(0, 10, 128)
for seed in map(int, sys.argv[1:]):
    models.seed_initializers(seed)
    inp = keras.Input((8, 8, 1))
    t = keras.layers.Conv2D(4, 3, use_bias=False, name="c")(inp)
    t = keras.layers.BatchNormalization(name="bn")(t)
    t = keras.layers.ReLU(name="r")(t)
    t = keras.layers.Dropout(0.2, name="drop")(t)  # a random op in training
    t = keras.layers.GlobalAveragePooling2D(name="gap")(t)
    m = keras.Model(inp, keras.layers.Dense(10, name="fc")(t))
    train.fit(m, (x, y), epochs=1, batch_size=32, seed=seed, progress=False)
    q = ptq.quantize_mixed(m, Policy.uniform(m, 4, 4, "PC"), x[:32])
    train.fit(q, (x, y), epochs=1, batch_size=32, seed=seed, learning_rate=1e-4, progress=False)
    h = hashlib.sha256()
    for w in m.get_weights() + q.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    print("HASH", seed, h.hexdigest())
"""


def _run(*seeds: int) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, seeds)], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("HASH")]


@pytest.mark.slow
def test_training_ptq_qat_bit_identical_for_a_seed():
    (a, other), (b,) = _run(0, 1), _run(0)
    assert a == b, "two processes with seed 0 gave different weights"
    assert a.split()[2] != other.split()[2], "seed 1 gave the weights of seed 0: seed unused"
