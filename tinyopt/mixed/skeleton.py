"""The integer graph a policy deploys, without quantizing anything: the structure
:func:`tinyopt.icn.convert` gives after PTQ (nodes, kinds, wiring, shapes, bits, signedness,
kernel / stride / padding, fused pads, the softmax head, Conv1D reshapes, the nodes of the op
registry's element-wise ops) with dummy weights,
biases and multipliers of the right shapes, read from the float model's blocks
(:func:`tinyopt.mixed.dag.blocks`). What the planner (:func:`tinyopt.integer.steps.memory_plan`)
and the kernel choice (its scratch) read is exact; the weights, scales and zero points of
calibrated grids are not (they are zeros / ones: this graph is for planning, never for running).

:class:`Structure` reads the model once; :meth:`Structure.graph` instantiates the graph for one
assignment of bits (the policy search calls it at every cut). :func:`skeleton` does both. The
nodes of each block are its handler's ``plan`` (:mod:`tinyopt.mixed.handlers`), which shares its
node builders with the handler's ``lower`` (what :func:`tinyopt.icn.convert` runs); this module
keeps the walk (wiring, tensor grids, what sets their bits).

One case is an upper bound instead of exact: a concatenation. ``icn.convert`` requantizes an
input onto the output grid (a ``quantize`` node ``<concat>_<i>``) only when its calibrated grid
differs, which only the calibration knows; the skeleton requantizes every input (as
:func:`tinyopt.mixed.lifetimes.mem_graph`).
"""

from __future__ import annotations

from types import SimpleNamespace

from tinyopt.integer.graph import IntegerGraph
from tinyopt.mixed import dag, handlers
from tinyopt.mixed.handlers.activation import activation_layers  # noqa: F401  (public helper)
from tinyopt.mixed.handlers.base import LOGIT_BITS, Grid, plan_fields  # noqa: F401
from tinyopt.mixed.policy import INPUT_BITS, Policy


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
        # what every block's plan hook reads (tinyopt.mixed.handlers: Handler.plan); it sets
        # the grids of the tensors it writes, pass-through nodes keep their input's below
        ctx = SimpleNamespace(weight_bits=weight_bits, act_bits=act_bits,
                              granularity=granularity, fold=fold, grids=grids, structure=self)
        for b in self.blocks:
            srcs = [tensor_of[s] for s in b.inputs]
            src, shape = srcs[0]
            gin = grids[src]
            out = tuple(int(d) for d in b.out_shape)
            ctx.srcs, ctx.gin, ctx.out = srcs, gin, out
            ctx.common = {"name": b.name, "in_shape": shape, "inputs": (src,),
                          "outputs": (b.name,), **plan_fields("in", gin),
                          **plan_fields("out", gin)}
            new = handlers.get(b.op).plan(b, ctx)
            if new is None:  # an alias (dropout): its output is its input
                tensor_of[b.name] = tensor_of[b.inputs[0]]
                continue
            for layer in new:  # pass-through nodes keep their input's grid
                grids.setdefault(layer.outputs[0], Grid(gin.bits, gin.zero_point, gin.signed,
                                                        ("derived", (src,))))
            g.layers.extend(new)
            tensor_of[b.name] = (new[-1].outputs[0], tuple(new[-1].out_shape))
        g.validate()
        self.grids = grids
        return g

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
