"""Shared checks of the op tests (tests/test_op_*.py): find an op's node(s) in an imported graph,
compare the simulator with LiteRT's reference kernels or TFLite Micro on random int8 images, and
compare the generated C built for the host with the simulator. Every check asserts that what it
compares varies: a constant output would pass any comparison."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyopt.integer import sim
from tinyopt.litert.reference import litert_reference, tflm_reference


def nodes(graph, kind: str, count: int | None = None) -> list:
    """The layers of one kind in an imported graph.

    Arguments:
        graph: an IntegerGraph (e.g. from ``sim.graph_from_tflite``).
        kind: the layer kind ("mul", "hard_swish", ...).
        count: how many there must be (None: at least one).

    Returns:
        The layers of that kind, in graph order.

    Raises:
        AssertionError: the graph holds none, or not ``count``, of them (the converter did not
            emit the op the test is about).
    """
    found = [lay for lay in graph.layers if lay.kind == kind]
    if count is None:
        assert found, f"the converter did not emit {kind}"
    else:
        assert len(found) == count, (
            f"the converter did not emit {count} {kind} (the graph holds {len(found)})")
    return found


def node(graph, kind: str):
    """The one layer of ``kind`` in ``graph`` (as :func:`nodes` with ``count=1``)."""
    return nodes(graph, kind, count=1)[0]


def int8_inputs(input_shape, images: int, seed: int) -> np.ndarray:
    """``images`` uniform random int8 codes of one image's shape, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (images, *input_shape)).astype(np.int8)


def first_conv_scaled(model, scale: float):
    """``model`` with a random bias (``_keras_nets.randomize_bias``) and its first layer's
    (a Conv2D's) kernel times ``scale``: sets the range of what that layer feeds, so that one
    model covers an op's narrow and saturating input scales.

    Returns:
        The same model, changed in place.
    """
    from tests import _keras_nets as nets
    model = nets.randomize_bias(model)
    conv = model.layers[1]
    conv.kernel.assign(conv.kernel * scale)
    return model


def assert_matches_interpreters(tflite: bytes, flavour: str, kinds=(), input_shape=(), *,
                                images: int = 200, seed: int = 1, min_unique: int = 20,
                                count: int | None = 1, every_layer: bool = False,
                                min_compared: int | None = None, engine: str = "fast"):
    """The simulator's trace equals the interpreter's tensors on every element.

    Imports ``tflite`` for ``flavour``, runs :func:`int8_inputs` (``input_shape``, ``images``,
    ``seed``) through the simulator and through LiteRT's reference kernels ("litert") or TFLite
    Micro ("tflm"), and compares the outputs of the nodes of ``kinds``, or of every layer.

    Arguments:
        tflite: the int8 flatbuffer.
        flavour: "litert" or "tflm" (both the import and the interpreter).
        kinds: a node kind or kinds; each must be in the graph ``count`` times (None: at least
            once), and each such node's reference output must hold more than ``min_unique``
            distinct codes. Empty: that check is on the graph's first output instead.
        input_shape: one image's shape.
        images, seed: how many random images, from which seed.
        min_unique: the distinct codes a checked output must exceed.
        count: as in :func:`nodes`.
        every_layer: compare every layer's output, not only those of ``kinds``; the simulator
            then runs the imported graph (``sim.run``) rather than the flatbuffer
            (``sim.run_tflite``).
        min_compared: with ``every_layer``: compare the layers that are tensors of the graph and
            that the interpreter reports, at least this many; None: every layer, each reported.
        engine: the simulator's engine (``sim.run``'s).

    Returns:
        The imported graph (``sim.graph_from_tflite(tflite, flavour=flavour)``).

    Raises:
        AssertionError: a node kind missing, an output that does not vary, a mismatch (named).
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    g = sim.graph_from_tflite(tflite, flavour=flavour)
    checked = [n.name for k in kinds for n in nodes(g, k, count)] or [g.output_names()[0]]
    x = int8_inputs(input_shape, images, seed)
    if every_layer:
        names = [lay.name for lay in g.layers]
        if min_compared is not None:
            names = [n for n in names if n in g.tensors]  # the model's tensors
        got = sim.run(g, x, trace=True, engine=engine)
    else:
        names = checked
        got = sim.run_tflite(tflite, x, trace=True, flavour=flavour, engine=engine)
    ref = (litert_reference if flavour == "litert" else tflm_reference)(tflite, x, tensors=names)
    compared = 0
    for name in names:
        if min_compared is not None and name not in ref:
            continue
        np.testing.assert_array_equal(np.asarray(got[name]).reshape(ref[name].shape), ref[name],
                                      err_msg=name)
        compared += 1
    if min_compared is not None:
        assert compared >= min_compared, f"only {compared} tensors compared"
    for name in checked:
        assert len(np.unique(ref[name])) > min_unique, f"a near-constant {name} checks little"
    return g


def assert_host_c_exact(tflite: bytes, flavour: str, kernel_files, input_shape, tmp_path: Path,
                        *, images: int = 40, seed: int = 2, kernels: str | None = None):
    """The generated C, built for the host, gives the simulator's outputs to the bit.

    Imports ``tflite`` for ``flavour``, exports C to ``tmp_path / "src"``, builds it in
    ``tmp_path / "host"`` and runs it on :func:`int8_inputs` (``input_shape``, ``images``,
    ``seed``) against ``codegen.reference_output``.

    Arguments:
        tflite: the int8 flatbuffer.
        flavour: the import's flavour ("litert" or "tflm").
        kernel_files: a file name or names that must be among the export's sources (the op's
            kernel, e.g. "tn_mul.c"); None or empty: no such check.
        input_shape: one image's shape.
        tmp_path: the test's own folder.
        images, seed: how many random images, from which seed.
        kernels: ``codegen.export_c``'s ``kernels`` (None: its default).

    Returns:
        The export (``codegen.export_c``'s result), for checks of the written files.

    Raises:
        AssertionError: a kernel file missing, outputs that do not vary over the images, or a
            mismatch.
    """
    from tinyopt.deploy import codegen, mcu
    g = sim.graph_from_tflite(tflite, flavour=flavour)
    extra = {} if kernels is None else {"kernels": kernels}
    e = codegen.export_c(g, tmp_path / "src", **extra)
    want_files = {kernel_files} if isinstance(kernel_files, str) else set(kernel_files or ())
    missing = want_files - {p.name for p in e.sources}
    assert not missing, f"{sorted(missing)} not among the exported sources"
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = int8_inputs(input_shape, images, seed)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1, "every image gives the same output"
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)
    return e
