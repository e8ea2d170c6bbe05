"""A learnable 10-class toy problem at 28x28 and a seed CNN trained on it briefly (shared by the
sequence tests' ``small`` fixtures)."""
import numpy as np


def toy_model_and_data():
    from tinyopt import models, train
    from tinyopt.data import Dataset
    rng = np.random.default_rng(0)
    protos = rng.random((10, 28, 28, 1), dtype=np.float32)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = np.clip(protos[y] + rng.normal(0, 0.3, (n, 28, 28, 1)), 0, 1).astype(np.float32)
        return x, y
    (xt, yt), (xs, ys) = make(1200), make(300)
    data = Dataset("toy", xt, yt, xs, ys)
    m = models.seed_cnn()
    train.fit(m, data, epochs=2, progress=False)
    return m, data
