import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items()
       if k not in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}


def _run(code):
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_import_sets_legacy_keras_before_tensorflow():
    r = _run("import sys, os, tinyopt; assert 'tensorflow' not in sys.modules; "
             "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'; "
             "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '3'; "
             "import tensorflow as tf; print(tf.keras.__name__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("tf_keras")


def test_user_log_level_is_kept():
    code = "import os, tinyopt; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    r = subprocess.run([sys.executable, "-c", code],
                       env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "0"}, capture_output=True, text=True)
    assert r.stdout.strip() == "0"


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_keras3_already_active_raises_importerror():
    r = _run("import tensorflow as tf; tf.keras.layers\n"
             "try:\n    import tinyopt\nexcept ImportError as e:\n    print('IMPORTERROR', e)")
    assert "IMPORTERROR" in r.stdout, r.stdout + r.stderr
    assert "import tinyopt" in r.stdout and "TF_USE_LEGACY_KERAS=1" in r.stdout
