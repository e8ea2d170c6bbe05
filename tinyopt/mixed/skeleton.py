"""The integer graph a policy deploys, without quantizing anything: the structure
:func:`tinyopt.icn.convert` gives after PTQ (nodes, kinds, wiring, shapes, bits, signedness,
kernel / stride / padding, fused pads, the softmax head, Conv1D reshapes, the nodes of the op
registry's element-wise ops) with dummy weights,
biases and multipliers of the right shapes, read from the float model's blocks
(:func:`tinyopt.mixed.dag.blocks`). What the planner (:func:`tinyopt.integer.steps.memory_plan`)
and the kernel choice (its scratch) read is exact; the weights, scales and zero points of
calibrated grids are not (they are zeros / ones: this graph is for planning, never for running).

:class:`Structure` reads the model once; :meth:`Structure.graph` instantiates the graph for one
assignment of bits (the policy search calls it at every cut). :func:`skeleton` does both.

One case is an upper bound instead of exact: a concatenation. ``icn.convert`` requantizes an
input onto the output grid (a ``quantize`` node ``<concat>_<i>``) only when its calibrated grid
differs, which only the calibration knows; the skeleton requantizes every input (as
:func:`tinyopt.mixed.lifetimes.mem_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyopt.integer.arith import same_padding, weight_rows
from tinyopt.integer import ops
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.mixed import dag
from tinyopt.mixed.policy import INPUT_BITS, Policy

LOGIT_BITS = 32  # a linear layer producing the network output writes int32 logits


@dataclass(frozen=True)
class Grid:
    """The quantization of a tensor as the integer graph stores it: ``bits``, ``zero_point``,
    ``signed`` (only int32 logits and the int8 softmax head), and ``ctl``: what sets its bits:
    ``("act", layer)`` (policy layer ``layer``'s act bits), ``("derived", tensors)`` (the
    largest bits of those tensors: adds, concatenations) or None (fixed: the image, logits,
    the softmax head)."""

    bits: int
    zero_point: int = 0
    signed: bool = False
    ctl: tuple | None = None


def _padding(cfg: dict, in_shape: tuple, out_shape: tuple, kernel: tuple) -> tuple:
    """(top, bottom, left, right) of a Keras "same" / "valid" op, as ``lower._padding`` (not
    imported: lower reaches the memory model through build, a cycle)."""
    if str(cfg.get("padding", "valid")).lower() == "valid":
        return (0, 0, 0, 0)
    strides = tuple(cfg.get("strides") or kernel)
    top, bottom = same_padding(in_shape[0], kernel[0], strides[0], out_shape[0])
    left, right = same_padding(in_shape[1], kernel[1], strides[1], out_shape[1])
    return (top, bottom, left, right)


def _fields(prefix: str, g: Grid) -> dict:
    return {f"{prefix}_bits": g.bits, f"{prefix}_zero_point": g.zero_point,
            f"{prefix}_signed": g.signed}


def _pact(bits: int, signed: bool, ctl) -> Grid:
    """A PACT output grid: unsigned codes; a signed quantizer's with zero point 2^(Q-1)."""
    return Grid(int(bits), 2 ** (int(bits) - 1) if signed else 0, False, ctl)


def activation_layers(kind: str, name: str, src: str, shape: tuple, in_q: dict, out_q: dict,
                      config: dict) -> list[IntegerLayer]:
    """The integer nodes of a registry op (``KerasPattern.lower`` of op ``kind``) at the stored
    grids ``in_q`` / ``out_q``, wired one after the other from tensor ``src``; every node keeps
    the shape ``shape``. Shared by :func:`tinyopt.mixed.lower.convert` and the skeleton (the same
    structure).

    Raises:
        ValueError: the op cannot run at these quantizations (named by the op's module).
    """
    pattern = ops.get(kind).keras
    if pattern is None:
        raise ValueError(f"layer {name!r}: op kind {kind!r} has no Keras pattern to lower")
    new = []
    for fields_ in pattern.lower(name, in_q, out_q, dict(config)):
        layer = IntegerLayer(in_shape=tuple(shape), out_shape=tuple(shape), inputs=(src,),
                             outputs=(fields_["name"],), **fields_)
        new.append(layer)
        src = layer.outputs[0]
    if new[-1].name != name:
        raise ValueError(f"op kind {kind!r}: its Keras lowering must end in a node named "
                         f"{name!r}, got {new[-1].name!r}")
    return new


class Structure:
    """A float Keras model read once as the integer graph ``icn.convert`` would lower it.

    Arguments:
        model: a ``tf_keras`` model (the float model a policy is for).
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.

    Attributes:
        layers: the policy layers, in order (:func:`tinyopt.mixed.dag.policy_layers`).
        grids: after :meth:`graph`, tensor name -> :class:`Grid` of the last graph built.

    Raises:
        ValueError: a layer the sub-byte flow cannot take (:func:`tinyopt.mixed.dag.blocks`,
            named), an unknown ``softmax``.
    """

    def __init__(self, model, softmax: str = "int8"):
        if softmax not in dag.SOFTMAX_HEADS:
            raise ValueError(f"softmax must be one of {dag.SOFTMAX_HEADS}, got {softmax!r}")
        block_list = dag.blocks(model)
        self.layers = [b.name for b in block_list if b.is_policy_layer]
        if softmax == "logits":
            block_list = [b for b in block_list if b.op != "softmax"]
        self.blocks = block_list
        self.by_name = {b.name: b for b in block_list}
        self.cons = dag.consumers(block_list)
        self.out_name = block_list[-1].name
        self.input_shape = tuple(int(d) for d in model.input_shape[1:])
        self.name = str(model.name)
        self.grids: dict = {}

    # ------------------------------------------------------------------ one graph
    def graph(self, weight_bits: dict, act_bits: dict, granularity: str = "PL",
              fold: dict | None = None) -> IntegerGraph:
        """The integer graph for one assignment of bits.

        Arguments:
            weight_bits, act_bits: policy layer -> bits (every policy layer).
            granularity: "PL" or "PC" (the number of weight zero points).
            fold: policy layer -> "FB" / "ICN" (default: FB), which sets whether a layer keeps a
                multiplier per channel.

        Returns:
            A validated :class:`IntegerGraph` (dummy parameters; see the module docstring).

        Raises:
            ValueError: a policy layer missing from ``weight_bits`` / ``act_bits``, or a graph
                ``icn.convert`` would refuse too (e.g. an add of tensors of different bits).
        """
        missing = [n for n in self.layers if n not in weight_bits or n not in act_bits]
        if missing:
            raise ValueError(f"no bits for policy layers {missing}; give weight and act bits "
                             "for every policy layer of the model")
        fold = fold or {}
        g = IntegerGraph(layers=[], input_shape=self.input_shape, input_bits=INPUT_BITS,
                         input_zero_point=0, rounding="floor", name=self.name,
                         meta={"skeleton": True})
        grids = {g.input_name: Grid(INPUT_BITS)}
        tensor_of = {dag.INPUT: (g.input_name, self.input_shape)}
        for b in self.blocks:
            srcs = [tensor_of[s] for s in b.inputs]
            src, shape = srcs[0]
            gin = grids[src]
            out = tuple(int(d) for d in b.out_shape)
            common = {"name": b.name, "in_shape": shape, "inputs": (src,),
                      "outputs": (b.name,), **_fields("in", gin), **_fields("out", gin)}
            if b.op in ("compute", "bn"):
                new = self._compute(b, src, shape, gin, int(weight_bits[b.name]),
                                    int(act_bits[b.name]), granularity,
                                    fold.get(b.name, "FB"), grids)
            elif b.op == "dropout":
                tensor_of[b.name] = tensor_of[b.inputs[0]]
                continue
            elif b.op in ("flatten", "reshape"):
                new = [IntegerLayer(kind=b.op, out_shape=out, **common)]
            elif b.op == "pad":
                new = [IntegerLayer(kind="pad", out_shape=out,
                                    padding=tuple(b.config["padding"]), **common)]
            elif b.op == "maxpool":
                size = tuple(int(k) for k in b.config["pool_size"])
                cfg = {**b.config, "strides": b.config.get("strides") or size}
                new = [IntegerLayer(kind="maxpool", out_shape=out, pool_size=size,
                                    stride=tuple(int(s) for s in cfg["strides"]),
                                    padding=_padding(cfg, shape, out, size), **common)]
            elif b.op == "avgpool":
                size = tuple(int(k) for k in b.config["pool_size"])
                stride = tuple(int(s) for s in (b.config.get("strides") or size))
                new = [IntegerLayer(kind="avgpool", out_shape=out, pool_size=size,
                                    stride=stride, avg_rounding="floor", **common)]
            elif b.op == "gap" and b.config.get("keepdims"):  # the (1, 1, C) pool alone
                size = tuple(shape[:2])
                new = [IntegerLayer(kind="avgpool", out_shape=out, pool_size=size,
                                    stride=size, avg_rounding="floor", **common)]
            elif b.op == "gap":  # an H x W avgpool (the Keras name), then a flatten
                size, pooled = tuple(shape[:2]), (1, 1, shape[-1])
                new = [IntegerLayer(kind="avgpool", out_shape=pooled, pool_size=size,
                                    stride=size, avg_rounding="floor", **common),
                       IntegerLayer(kind="flatten", out_shape=out,
                                    **{**common, "name": f"{b.name}_flatten",
                                       "in_shape": pooled, "outputs": (f"{b.name}_flatten",)})]
                new[1].inputs = (b.name,)
            elif b.op == "add":
                bits = max(grids[s].bits for s, _ in srcs)
                go = _pact(bits, b.activation is None, ("derived", tuple(s for s, _ in srcs)))
                new = [IntegerLayer(kind="add", name=b.name, in_shape=out, out_shape=out,
                                    inputs=tuple(s for s, _ in srcs), outputs=(b.name,),
                                    left_shift=20, m0=np.ones(3, np.int32),
                                    n0=np.zeros(3, np.int8), **_fields("in", gin),
                                    **_fields("out", go))]
                grids[b.name] = go
            elif b.op == "concat":
                names = tuple(s for s, _ in srcs)
                bits = max(grids[s].bits for s in names)
                signed = grids[names[0]].zero_point != 0
                go = _pact(bits, signed, ("derived", names))
                new, moved = [], []
                for i, (t, sh) in enumerate(srcs):  # an upper bound (module docstring)
                    q = f"{b.name}_{i}"
                    new.append(IntegerLayer(kind="quantize", name=q, in_shape=sh, out_shape=sh,
                                            inputs=(t,), outputs=(q,), m0=np.ones(1, np.int32),
                                            n0=np.zeros(1, np.int8), **_fields("in", grids[t]),
                                            **_fields("out", go)))
                    grids[q] = go
                    moved.append(q)
                new.append(IntegerLayer(kind="concat", name=b.name, in_shape=shape,
                                        out_shape=out, inputs=tuple(moved), outputs=(b.name,),
                                        axis=-1, **_fields("in", go), **_fields("out", go)))
                grids[b.name] = go
            elif b.op == "softmax":
                new = self._softmax(b, src, shape, gin, grids)
            elif b.op == "activation":  # a registry op, as lower.convert lowers it
                new = self._activation(b, src, shape, gin, grids)
            else:  # dag.blocks refuses everything else
                raise ValueError(f"layer {b.name!r}: block kind {b.op!r} has no integer node")
            for layer in new:  # pass-through nodes keep their input's grid
                grids.setdefault(layer.outputs[0], Grid(gin.bits, gin.zero_point, gin.signed,
                                                        ("derived", (src,))))
            g.layers.extend(new)
            tensor_of[b.name] = (new[-1].outputs[0], tuple(new[-1].out_shape))
        g.validate()
        self.grids = grids
        return g

    def _compute(self, b, src, shape, gin: Grid, wbits: int, abits: int, granularity: str,
                 fold: str, grids: dict) -> list[IntegerLayer]:
        """A compute / bn block as ``lower._compute_layer`` lowers it (with its reshapes)."""
        readers = self.cons.get(b.name, [])
        head = any(self.by_name[r].op == "softmax" for r in readers)
        if b.activation is not None:
            go = _pact(abits, False, ("act", b.name))
        elif head:  # the softmax head reads 8-bit signed logits
            go = _pact(8, True, None)
        elif dag.reaches_output(b.name, self.cons, self.by_name, self.out_name):
            go = Grid(LOGIT_BITS, 0, True, None)
        else:
            go = _pact(abits, True, ("act", b.name))
        rank = len(b.layer.input_shape) - 1
        if b.op == "bn":
            kind, cfg = "depthwise", {"kernel_size": [1, 1], "strides": [1, 1],
                                      "padding": "valid", "depth_multiplier": 1}
        else:
            kind, cfg = b.kind, b.op_config
        out = tuple(int(d) for d in b.out_shape)
        new = []
        in_shape, out_shape = tuple(shape), out
        if kind != "dense" and rank != 3:  # run as 2-D between two reshapes
            in_shape = (1,) * (3 - rank) + tuple(shape)
            out_shape = (1,) * (3 - rank) + out
            new.append(IntegerLayer(kind="reshape", name=f"{b.name}_in", in_shape=shape,
                                    out_shape=in_shape, inputs=(src,),
                                    outputs=(f"{b.name}_in",), **_fields("in", gin),
                                    **_fields("out", gin)))
            src = f"{b.name}_in"
        c = int(out_shape[-1])
        if kind == "conv2d":
            kh, kw = (int(k) for k in cfg["kernel_size"])
            layout = (c, kh, kw, int(in_shape[-1]))
            kind = "pointwise" if (kh, kw) == (1, 1) else kind
        elif kind == "depthwise":
            kh, kw = (int(k) for k in cfg["kernel_size"])
            layout = (kh, kw, c)
        else:
            layout = (c, int(np.prod(in_shape)))
        rows, n = weight_rows(kind, layout)
        bn_kept = b.bn is not None and fold == "ICN"
        layer = IntegerLayer(
            kind=kind, name=b.name, in_shape=in_shape, out_shape=out_shape, inputs=(src,),
            outputs=(b.name,), **_fields("in", gin), **_fields("out", go),
            weights=np.zeros((rows, -(-n * wbits // 8)), np.uint8), weight_shape=layout,
            weight_bits=wbits, weight_zero_point=np.zeros(c if granularity == "PC" else 1,
                                                          np.int32),
            bias=np.zeros(c, np.int32), extra={"fold": fold, "granularity": granularity})
        if kind != "dense":
            kernel = tuple(int(k) for k in cfg["kernel_size"])
            layer.stride = tuple(int(s) for s in cfg["strides"])
            layer.padding = _padding(cfg, in_shape, out_shape, kernel)
            layer.depth_multiplier = int(cfg.get("depth_multiplier", 1))
            layer.pad_mode = "zero" if kind == "depthwise" and gin.zero_point == 0 \
                else "zero_point"
        if go.bits == LOGIT_BITS:  # PL without a kept BN: the raw accumulator
            layer.requantize = granularity == "PC" or bn_kept
        per_layer = fold == "FB" and granularity == "PL" and not bn_kept
        k = 1 if per_layer else c
        if layer.requantize:
            layer.m0, layer.n0 = np.ones(k, np.int32), np.zeros(k, np.int8)
        new.append(layer)
        grids[b.name] = go
        if kind != "dense" and rank != 3:
            new.append(IntegerLayer(kind="reshape", name=f"{b.name}_out", in_shape=out_shape,
                                    out_shape=out, inputs=(b.name,),
                                    outputs=(f"{b.name}_out",), **_fields("in", go),
                                    **_fields("out", go)))
            grids[f"{b.name}_out"] = Grid(go.bits, go.zero_point, go.signed,
                                          ("derived", (b.name,)))
        return new

    @staticmethod
    def _activation(b, src, shape, gin: Grid, grids: dict) -> list[IntegerLayer]:
        """A registry op's nodes at its input's bits (output: the op's own grid, signed with
        zero point 2^(Q-1), or a fixed range's zero point 0), unit scales: the same nodes as
        lowered (``KerasPattern.lower`` chooses its form from bits and zero points only)."""
        pattern = ops.get(b.kind).keras
        signed = bool(pattern.signed) and pattern.out_range is None
        go = _pact(gin.bits, signed, ("derived", (src,)))
        in_q = {"bits": gin.bits, "scale": 1.0, "zero_point": gin.zero_point,
                "signed": gin.signed}
        out_q = {"bits": go.bits, "scale": 1.0, "zero_point": go.zero_point, "signed": False}
        new = activation_layers(b.kind, b.name, src, shape, in_q, out_q, b.config)
        for layer in new:
            grids[layer.outputs[0]] = Grid(layer.out_bits, layer.out_zero_point,
                                           layer.out_signed, ("derived", (src,)))
        return new

    @staticmethod
    def _softmax(b, src, shape, gin: Grid, grids: dict) -> list[IntegerLayer]:
        """The int8 head as ``lower._softmax_layers``: a QUANTIZE to int8 when the 8-bit logits
        have a zero point (always: the signed quantizer's 128), then the softmax."""
        int8, out = Grid(8, 0, True, None), Grid(8, -128, True, None)
        head = []
        if gin.zero_point != 0:
            head.append(IntegerLayer(kind="quantize", name=f"{b.name}_int8", in_shape=shape,
                                     out_shape=shape, inputs=(src,),
                                     outputs=(f"{b.name}_int8",), m0=np.ones(1, np.int32),
                                     n0=np.zeros(1, np.int8), **_fields("in", gin),
                                     **_fields("out", int8)))
            grids[f"{b.name}_int8"] = int8
            src = head[-1].name
        layer = IntegerLayer(kind="softmax", name=b.name, in_shape=shape, out_shape=shape,
                             inputs=(src,), outputs=(b.name,), **_fields("in", int8),
                             **_fields("out", out), m0=np.full(1, 1 << 30, np.int32),
                             n0=np.zeros(1, np.int8), rounding="tflite_double")
        grids[b.name] = out
        return head + [layer]

    # ------------------------------------------------------------------ what sets the bits
    def bits_of(self, act_bits: dict) -> dict:
        """Tensor name -> bits of the last :meth:`graph`'s tensors for the act bits
        ``act_bits`` (what :meth:`graph` would give them, without building it)."""
        out = {}
        for name, g in self.grids.items():  # insertion order is topological
            if g.ctl is None:
                out[name] = g.bits
            elif g.ctl[0] == "act":
                out[name] = int(act_bits[g.ctl[1]])
            else:
                out[name] = max(out[s] for s in g.ctl[1])
        return out

    def controllers(self, tensor: str, bits: dict) -> set | None:
        """The policy layers whose act bits set ``tensor``'s bits (lowering all of them lowers
        it) when the tensors have ``bits`` (:meth:`bits_of`), or None when a fixed-width tensor
        sets them (the image, logits, the softmax head) or ``tensor`` is not a tensor of the
        last :meth:`graph` (e.g. a kernel's scratch)."""
        g = self.grids.get(tensor)
        if g is None or g.ctl is None:
            return None
        if g.ctl[0] == "act":
            return {g.ctl[1]}
        out = set()
        for s in g.ctl[1]:
            if bits[s] == bits[tensor]:
                sub = self.controllers(s, bits)
                if sub is None:
                    return None
                out |= sub
        return out or None

    def add_inputs(self) -> list[tuple]:
        """The input tensors of every add of the last :meth:`graph` (they need equal bits)."""
        return [g.ctl[1] for name, g in self.grids.items()
                if g.ctl is not None and g.ctl[0] == "derived" and len(g.ctl[1]) == 2
                and self.by_name.get(name) is not None and self.by_name[name].op == "add"]


def skeleton(model, policy: Policy, softmax: str = "int8") -> IntegerGraph:
    """The integer graph ``icn.convert(ptq.quantize_mixed(model, policy, ...))`` deploys, without
    calibrating: same nodes, wiring, shapes, bits and geometry, dummy parameters (module
    docstring).

    Arguments:
        model: a float ``tf_keras`` model.
        policy: a :class:`~tinyopt.mixed.policy.Policy` over its policy layers.
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.

    Raises:
        ValueError: the policy's layers differ from the model's, or see :class:`Structure`.
    """
    s = Structure(model, softmax)
    if list(policy.layers) != s.layers:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"policy layers {s.layers}; build the policy from this model")
    return s.graph(dict(zip(policy.layers, policy.weight_bits)),
                   dict(zip(policy.layers, policy.act_bits)), policy.granularity,
                   dict(zip(policy.layers, policy.fold)))
