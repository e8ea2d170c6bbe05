"""The memory-driven bit policy of Rusci et al. (MLSys 2020): the largest bits that fit a
microcontroller's flash and RAM (see ``docs/mixed_precision.md``).

:func:`memory_driven` builds a :class:`~tinyopt.mixed.policy.Policy`; it raises
:class:`BudgetError` with the smallest reachable footprint when no assignment of bits fits.
"""

from __future__ import annotations

from tinyopt.integer.arith import packed_bytes
from tinyopt.mixed.policy import (ALLOWED_BITS, GRANULARITIES, INPUT_BITS, Policy, default_fold,
                                  parse_bytes)

class BudgetError(ValueError):
    """No policy with the allowed bits fits the flash and RAM budgets.

    Attributes:
        flash_budget, ram_budget: the budgets asked for (bytes).
        min_flash: the smallest flash reachable with the allowed bits (every weight at the lowest
            bit width), in bytes.
        min_ram: the smallest peak RAM reachable (every cuttable activation at the lowest bit
            width; the 8-bit input image and logits are fixed), in bytes.
        min_ram_layer: the node where that smallest peak RAM occurs.
    """

    def __init__(self, message, flash_budget, ram_budget, min_flash, min_ram, min_ram_layer):
        super().__init__(message)
        self.flash_budget, self.ram_budget = flash_budget, ram_budget
        self.min_flash, self.min_ram, self.min_ram_layer = min_flash, min_ram, min_ram_layer


def _flash_total(node_list, weight_bits, act_bits, granularity):
    """Flash bytes and the fold labels for weight bits ``weight_bits`` and output bits
    ``act_bits`` (the fast path of :func:`tinyopt.memory.flash_bytes`)."""
    from tinyopt.mixed.memory import extra_bytes
    n = len(node_list)
    total, folds = 0, []
    for i, node in enumerate(node_list):
        last = i == n - 1
        fold = default_fold(granularity, weight_bits[i], act_bits[i], last)
        folds.append(fold)
        total += packed_bytes(node.weight_elements, weight_bits[i])
        total += extra_bytes(node.out_channels, granularity, fold, last)
    return total, folds


def _min_flash(node_list, granularity, bits) -> int:
    """The smallest flash any assignment of ``bits`` reaches: per layer the cheaper of its
    lowest-bit weights (ICN extras below 8 bits with PL) and, with PL, 8-bit weights and
    activations folded (FB extras), which is smaller for layers with few weights per channel."""
    from tinyopt.mixed.memory import extra_bytes
    n, lo, top = len(node_list), min(bits), max(bits)
    total = 0
    for i, node in enumerate(node_list):
        last = i == n - 1
        options = [packed_bytes(node.weight_elements, lo) + extra_bytes(
            node.out_channels, granularity, default_fold(granularity, lo, lo, last), last)]
        if top == 8 and granularity == "PL":
            options.append(packed_bytes(node.weight_elements, 8) + extra_bytes(
                node.out_channels, granularity, default_fold(granularity, 8, 8, last), last))
        total += min(options)
    return total


def _budget_error(graph, flash_budget, ram_budget, granularity, bits, what, last_bits):
    from tinyopt.mixed.memory import ram_per_node
    node_list = graph.nodes
    n, lo = len(node_list), min(bits)
    min_flash = _min_flash(node_list, granularity, bits)
    if graph.chain:
        ram = ram_per_node(node_list, [lo] * n, last_bits)
        min_ram = max(ram)
        where = node_list[ram.index(min_ram)].name
        extra, at = graph.uncovered_peak({node.name: lo for node in node_list})
        if extra > min_ram:  # a pad / pool step needs more than any policy layer
            min_ram, where = extra, graph.steps[at][0]
    else:
        live = graph.live_bytes({node.name: lo for node in node_list})
        min_ram = max(live)
        where = graph.steps[live.index(min_ram)][0]
    msg = (f"infeasible budget ({what}): flash budget {flash_budget:,} B vs smallest reachable "
           f"flash {min_flash:,} B (every weight at {lo} bits, {granularity}); RAM budget "
           f"{ram_budget:,} B vs smallest reachable peak RAM {min_ram:,} B (every activation at "
           f"{lo} bits, 8-bit input image, logits as deployed; peak at {where!r}). Allowed bits "
           f"{tuple(sorted(bits, reverse=True))}: raise the budgets, allow lower bits or use a "
           "smaller model.")
    return BudgetError(msg, flash_budget, ram_budget, min_flash, min_ram, where)


def _lower(b, bits):
    """The next allowed bit width below ``b`` (the paper's halving 8 -> 4 -> 2)."""
    below = [x for x in bits if x < b]
    return max(below) if below else None


def _activation_rule(node_list, ram_budget, bits, trace, last_bits):
    """[M2] (docs/mixed_precision.md#activation-rule-m2): output bits per node, cut by forward and
    backward passes.

    Returns the output bits per node (the last entry stays at the top bit width: logits are
    counted at 8 bits by the memory model), or None when a node cannot be brought under the
    budget. Bounded: every pass after one that deferred a node makes at least one cut (the deferred
    node's side is unchanged unless something was cut), so at most ``cuts + 2`` passes run.
    """
    n, top = len(node_list), max(bits)
    q = [top] * n  # q[i] = q_y[i]; q_x[i] = q[i-1], q_x[0] = the 8-bit image
    max_cuts = max(0, n - 1) * (len(bits) - 1)

    def qx(i):
        return INPUT_BITS if i == 0 else q[i - 1]

    def qy(i):
        return last_bits if i == n - 1 else q[i]

    def mem(i):
        return packed_bytes(node_list[i].in_elements, qx(i)) + \
            packed_bytes(node_list[i].out_elements, qy(i))

    forward, net_ok, cuts = True, False, 0
    for pass_no in range(max_cuts + 3):
        order = range(n) if forward else range(n - 1, -1, -1)
        for i in order:
            layer_ok = True
            while layer_ok and mem(i) > ram_budget:
                can_in = i > 0 and _lower(qx(i), bits) is not None
                can_out = i < n - 1 and _lower(qy(i), bits) is not None
                if i == 0:
                    side = "output" if can_out else None
                elif i == n - 1:
                    side = "input" if can_in else None
                elif qx(i) != qy(i):
                    side = "input" if qx(i) > qy(i) else "output"
                    side = side if (can_in if side == "input" else can_out) else None
                else:  # equal bits: the input if it is strictly larger (exact, before any
                    # rounding up to whole bytes), else the output
                    larger_in = node_list[i].in_elements > node_list[i].out_elements
                    side = "input" if larger_in else "output"
                    side = side if (can_in if side == "input" else can_out) else None
                if side is None:
                    return None
                if (side == "output") != forward:
                    layer_ok = False  # defer to the pass in the other direction
                    continue
                t = i if side == "output" else i - 1  # the tensor is q_y[t]
                before = mem(i)
                old, q[t] = q[t], _lower(q[t], bits)
                cuts += 1
                trace.append({"phase": "activation", "step": cuts, "pass": pass_no + 1,
                              "direction": "forward" if forward else "backward",
                              "node": node_list[i].name, "side": side,
                              "tensor": f"output of {node_list[t].name}",
                              "layer": node_list[t].name,
                              "from_bits": old, "to_bits": q[t], "node_ram_before": before,
                              "node_ram_after": mem(i), "ram_budget": ram_budget})
            if not layer_ok:
                net_ok = False
        if net_ok:
            return q
        forward, net_ok = not forward, True
    raise RuntimeError("internal error: the activation rule did not settle within its bound "
                       f"({max_cuts + 3} passes); please report this with the model's nodes")


def _controllers(graph, name, bits) -> set | None:
    """The policy layers whose act bits set tensor ``name``'s bits (lowering all of them lowers
    it), or None when a fixed-width tensor (image, logits, int8 head) sets them."""
    t = graph.tensors[name]
    if t.kind == "act":
        return {t.layer}
    if t.kind != "derived":
        return None
    out = set()
    for src in t.sources:
        if bits[src] == bits[name]:
            sub = _controllers(graph, src, bits)
            if sub is None:
                return None
            out |= sub
    return out


def _live_rule(graph, ram_budget, bits_allowed, trace, start: list | None = None):
    """[M2] generalised to graphs with branches: while the bytes alive at some step exceed the
    budget, take the earliest step with the largest live bytes and cut, among the tensors alive
    there that can still be cut, the one with the most bytes (a tie: the one written first) one
    allowed bit width lower (an add / concatenation / pool output is cut through the layers
    whose outputs set its bits). ``start``: output bits per policy layer to start from (default:
    all at the largest allowed width). Returns output bits per policy layer, or None when the
    peak cannot be brought under the budget. At most n * (len(bits) - 1) cuts."""
    q = {node.name: max(bits_allowed) for node in graph.nodes}
    if start is not None:
        q = {node.name: int(b) for node, b in zip(graph.nodes, start)}
    life = graph.lifetimes()
    order = {t: i for i, t in enumerate(graph.tensors)}
    for step in range(len(q) * (len(bits_allowed) - 1) + 1):
        live = graph.live_bytes(q)
        peak = max(live)
        if peak <= ram_budget:
            return [q[node.name] for node in graph.nodes]
        at = live.index(peak)
        bits = graph.bits(q)
        cands = []
        for t, (first, last) in life.items():
            if not first <= at <= last:
                continue
            ctl = _controllers(graph, t, bits)
            if ctl and all(_lower(q[c], bits_allowed) is not None for c in ctl):
                size = packed_bytes(graph.tensors[t].elements, bits[t])
                cands.append((-size, order[t], t, ctl))
        if not cands:
            return None
        _, _, t, ctl = min(cands)
        for c in sorted(ctl):
            old = q[c]
            q[c] = _lower(q[c], bits_allowed)
            trace.append({"phase": "activation", "step": len(trace) + 1,
                          "node": graph.steps[at][0], "tensor": t, "layer": c,
                          "from_bits": old, "to_bits": q[c], "node_ram_before": peak,
                          "node_ram_after": max(graph.live_bytes(q)), "ram_budget": ram_budget})
    raise RuntimeError("internal error: the live-tensor rule exceeded its cut bound")


def _device_cut(structure, q: dict, tensor: str, bits_allowed) -> tuple | None:
    """Lower ``tensor`` one allowed bit width through the layers that set its bits, then every
    add whose addends no longer have equal bits (the integer ADD needs them equal:
    ``icn.convert`` refuses the graph otherwise) through the layers of its wider addend.
    Returns (the new act bits, the layers lowered in order) or None when one of them is
    already at the lowest width."""
    ctl = structure.controllers(tensor, structure.bits_of(q))
    if not ctl:
        return None
    new, lowered = dict(q), []
    todo = sorted(ctl)
    for _ in range(len(q) * len(bits_allowed) + 1):  # each round lowers a layer: bounded
        for c in todo:
            lo = _lower(new[c], bits_allowed)
            if lo is None:
                return None
            new[c] = lo
            lowered.append(c)
        bits = structure.bits_of(new)
        uneven = [(a, b) for a, b in structure.add_inputs() if bits[a] != bits[b]]
        if not uneven:
            return new, lowered
        a, b = uneven[0]
        ctl = structure.controllers(a if bits[a] > bits[b] else b, bits)
        if not ctl:
            return None
        todo = sorted(ctl)
    raise RuntimeError("internal error: the add closure of a cut did not settle")


def _device_rule(structure, ram_budget, bits_allowed, trace, weight_bits: dict,
                 granularity: str, fuse_pool: bool, start: dict | None = None):
    """[M2] on the device's plan (the default accounting): while the arena of the deployed
    plan (:func:`tinyopt.mixed.memory.device_plan`) exceeds the budget, take the earliest step
    where the plan's buffers hold the most bytes (the step that sets the arena's lower bound),
    and cut, among the tensors alive there whose bits a policy layer sets and that can still
    be cut, the one with the most bytes (a tie: the one written first) one allowed bit width
    lower (an add / concatenation / pool output through the layers that set its bits; the
    addends of an add stay equal, :func:`_device_cut`). ``start``: act bits per policy layer
    to start from (default: all at the largest allowed width). Returns act bits per policy
    layer, or None when the peak step has nothing left to cut. At most n * (len(bits) - 1)
    cuts: every cut lowers a layer."""
    from tinyopt.mixed.memory import device_plan
    names = structure.layers
    q = dict(start) if start is not None else {n: max(bits_allowed) for n in names}
    bound = len(names) * (len(bits_allowed) - 1) + 1
    pending = []  # the last cut's trace rows, waiting for the arena after it
    for _ in range(bound + 1):
        folds = [default_fold(granularity, weight_bits[n], q[n], i == len(names) - 1)
                 for i, n in enumerate(names)]
        policy = Policy(names, [weight_bits[n] for n in names], [q[n] for n in names],
                        granularity, folds)
        steps, mem, _, held = device_plan(None, policy, fuse_pool=fuse_pool,
                                          structure=structure)
        for row in pending:
            row["node_ram_after"] = int(mem.arena_bytes)
        if mem.arena_bytes <= ram_budget:
            return q
        at = held.index(max(held))
        cands = []
        for b in mem.buffers:
            for m in b.members:
                if m.first <= at <= m.last:
                    cut = _device_cut(structure, q, m.name, bits_allowed)
                    if cut is not None:
                        cands.append((-m.bytes, m.first, m.name, cut))
        if not cands:
            return None
        _, _, t, (new, lowered) = min(cands, key=lambda c: c[:3])
        cur, pending = dict(q), []
        for c in lowered:
            old, cur[c] = cur[c], _lower(cur[c], bits_allowed)
            pending.append({"phase": "activation", "step": len(trace) + 1,
                            "node": steps[at].name, "tensor": t, "layer": c,
                            "from_bits": old, "to_bits": cur[c],
                            "node_ram_before": int(mem.arena_bytes), "ram_budget": ram_budget})
            trace.append(pending[-1])
        q = new
    raise RuntimeError("internal error: the device rule exceeded its cut bound")


def _weight_rule(node_list, flash_budget, act_bits, granularity, delta, bits, trace,
                 start=None):
    """[M1] (docs/mixed_precision.md#weight-rule-m1): halve the lowest-index weight tensor whose
    share of weight bytes
    exceeds the largest share minus ``delta`` until flash (weights + extras) fits. ``start``:
    weight bits to start from (default: all at the largest width). Returns the
    weight bits, or None when every weight is at the lowest bit width and flash still exceeds the
    budget. At most n * (len(bits) - 1) cuts."""
    n, top = len(node_list), max(bits)
    qw = [top] * n if start is None else list(start)
    elems = [node.weight_elements for node in node_list]
    for step in range(n * (len(bits) - 1) + 1):
        total, _ = _flash_total(node_list, qw, act_bits, granularity)
        if total <= flash_budget:
            return qw
        open_ = [i for i in range(n) if _lower(qw[i], bits) is not None]
        if not open_:
            return None
        wbits = [e * b for e, b in zip(elems, qw)]  # shares: weight bits only, all layers
        denom = sum(wbits)
        share = {i: wbits[i] / denom for i in open_}
        top_share = max(share.values())
        cands = [i for i in open_ if share[i] > top_share - delta]
        i = min(cands)
        old, qw[i] = qw[i], _lower(qw[i], bits)
        after, _ = _flash_total(node_list, qw, act_bits, granularity)
        trace.append({"phase": "weight", "step": step + 1, "layer": node_list[i].name,
                      "tensor": f"weights of {node_list[i].name}", "from_bits": old,
                      "to_bits": qw[i], "share": share[i], "max_share": top_share,
                      "candidates": [node_list[j].name for j in cands],
                      "flash_before": total, "flash_after": after,
                      "flash_budget": flash_budget})
    raise RuntimeError("internal error: the weight rule exceeded its cut bound")


def _device_arena(structure, weight_bits, act_bits, granularity, fuse_pool):
    """(arena bytes, the name of the step holding the most bytes) of the device plan for lists
    of weight and act bits in policy-layer order."""
    from tinyopt.mixed.memory import device_plan
    names = structure.layers
    folds = [default_fold(granularity, w, a, i == len(names) - 1)
             for i, (w, a) in enumerate(zip(weight_bits, act_bits))]
    policy = Policy(names, list(weight_bits), list(act_bits), granularity, folds)
    steps, mem, _, held = device_plan(None, policy, fuse_pool=fuse_pool, structure=structure)
    return int(mem.arena_bytes), steps[held.index(max(held))].name


def _ram_weight_cut(structure, wbits: dict, bits, granularity, fuse_pool):
    """The weight cut for RAM: among the policy layers and the allowed widths below their
    weights' (a kernel's scratch need not shrink at the next width: tn_m7_sub's window units
    depend on the narrower of weights and inputs), the one that lowers most the arena with
    every activation at the lowest width (the floor [M2] can reach with these weights); a tie:
    the earliest layer, then the wider width. Returns (layer, its new width, arena after, arena
    before), or None when no weight cut lowers that floor."""
    names = structure.layers
    lo = [min(bits)] * len(names)
    now = [wbits[n] for n in names]
    before, _ = _device_arena(structure, now, lo, granularity, fuse_pool)
    best = None
    for i, name in enumerate(names):
        for width in sorted((b for b in bits if b < wbits[name]), reverse=True):
            after, _ = _device_arena(structure, now[:i] + [width] + now[i + 1:], lo,
                                     granularity, fuse_pool)
            if after < before and (best is None or after < best[2]):
                best = (name, width, after, before)
    return best


def _memory_driven_device(model, graph, flash_bytes, ram_bytes, granularity, delta, bits,
                          softmax, fuse_pool) -> Policy:
    """:func:`memory_driven` on the device's plan (its docstring)."""
    from tinyopt.mixed.skeleton import Structure
    structure = Structure(model, softmax)
    node_list, names = graph.nodes, structure.layers
    n, top, lo = len(names), max(bits), min(bits)
    trace: list[dict] = []

    def budget_error(what):
        min_flash = _min_flash(node_list, granularity, bits)
        # the smallest arena of the uniform policies (a kernel's scratch depends on the weight
        # and input widths, so all-lowest need not be the smallest); ties: the widest bits
        uniform = [(*_device_arena(structure, [w] * n, [a] * n, granularity, fuse_pool), w, a)
                   for w in sorted(bits, reverse=True) for a in sorted(bits, reverse=True)]
        min_ram, where, wb, ab = min(uniform, key=lambda t: t[0])
        msg = (f"infeasible budget ({what}): flash budget {flash_bytes:,} B vs smallest "
               f"reachable flash {min_flash:,} B (every weight at {lo} bits, {granularity}); "
               f"RAM budget {ram_bytes:,} B vs the deployed arena {min_ram:,} B with every "
               f"activation at {ab} bits and every weight at {wb} (8-bit input image, logits "
               f"as deployed; the most bytes at step {where!r}). Allowed bits "
               f"{tuple(sorted(bits, reverse=True))}: raise the budgets, allow lower bits or use "
               "a smaller model.")
        return BudgetError(msg, flash_bytes, ram_bytes, min_flash, min_ram, where)

    wbits = {name: top for name in names}
    act = None
    # every round makes an activation cut, a weight cut or gives up, and bits only go down:
    # this ends within the cut bound
    for _ in range(2 * n * (len(bits) - 1) + 2):
        mark = len(trace)
        found = _device_rule(structure, ram_bytes, bits, trace, wbits, granularity, fuse_pool,
                             start=act)
        if found is None:
            # [M2] ran out of activations to cut at the peak step. A kernel's scratch depends
            # on the weight width too (tn_m7_sub reads packed codes): lower the weights of the
            # layer whose cut lowers the smallest reachable arena most, then [M2] again
            del trace[mark:]
            cut = _ram_weight_cut(structure, wbits, bits, granularity, fuse_pool)
            if cut is None:
                raise budget_error("RAM")
            name, width, after, before = cut
            trace.append({"phase": "weight (RAM)", "step": len(trace) + 1, "layer": name,
                          "tensor": f"weights of {name}", "from_bits": wbits[name],
                          "to_bits": width, "node_ram_before": before,
                          "node_ram_after": after, "ram_budget": ram_bytes})
            wbits[name] = width
            continue
        act = found
        act_list = [act[name] for name in names]
        mark = len(trace)
        qw = _weight_rule(node_list, flash_bytes, act_list, granularity, delta, bits, trace,
                          start=[wbits[name] for name in names])
        if qw is None:
            raise budget_error("flash")
        arena, _ = _device_arena(structure, qw, act_list, granularity, fuse_pool)
        if arena <= ram_bytes:
            _, folds = _flash_total(node_list, qw, act_list, granularity)
            return Policy(names, qw, act_list, granularity, folds, trace)
        wbits = dict(zip(names, qw))  # the weights changed the scratch: cut again with them
        del trace[mark:]  # (the weight rule runs again after those cuts)
    raise RuntimeError("internal error: the device rule and the weight rule did not settle")


def memory_driven(model, flash_bytes: int | str, ram_bytes: int | str, granularity: str = "PL",
                  delta: float = 0.05, bits=(8, 4, 2), softmax: str = "int8",
                  fuse_pool: bool = True, accounting: str | None = None) -> Policy:
    """The paper's memory-driven mixed-precision rule (docs/mixed_precision.md#weight-rule-m1,
    docs/mixed_precision.md#activation-rule-m2).

    First the activation rule [M2]: with every tensor at the top bit width, nodes whose input +
    output bytes exceed ``ram_bytes`` have one of their tensors cut (the one with more bits; on a
    tie the input if it is strictly larger in bytes, else the output; the image and the logits are
    fixed), outputs in forward passes and inputs in backward passes, alternating until a full pass
    needs no deferral. Then the weight rule [M1]: while flash (packed weights + bias/ICN bytes)
    exceeds ``flash_bytes``, the lowest-index layer whose share of the weight bytes exceeds the
    largest share (among layers still above the lowest bits) minus ``delta`` drops to the next
    lower allowed bit width. With PL, a layer is FB when its weights and output are 8-bit, else
    ICN (so a weight cut can raise its extras); with PC every layer is ICN.

    Chains with pads or pools (or a softmax head): a step between two policy layers holds its
    input and its output too, which the per-node rule does not see. When one of them still
    exceeds the budget after [M2], :func:`_live_rule` continues from [M2]'s bits until every
    step fits (the tensors there are cut through the layers that set their bits), so the policy
    fits :func:`tinyopt.mixed.memory.peak_ram_bytes`. On a chain without such steps (every
    MobileNetV1 budget of the paper) this changes nothing.

    Graphs with branches (residual adds, concatenations): the activation rule becomes
    :func:`_live_rule`: while the largest sum of tensors alive at one step (the memory model of
    :func:`tinyopt.mixed.memory.peak_ram_bytes`) exceeds the budget, the largest cuttable tensor
    alive at the earliest peak step (a tie: the one written first) drops one bit width.

    The RAM it fits (``accounting``, as :func:`tinyopt.mixed.memory.peak_ram_bytes`): by default
    for a Keras model ("device") the arena of the plan the C export builds for the policy's
    integer graph (kernel scratch included once the planner places it). [M2] then runs on that
    plan (:func:`_device_rule`): while the arena exceeds ``ram_bytes``, the largest cuttable
    tensor alive at the step where the plan holds the most bytes drops one bit width (the
    addends of an add kept equal); when nothing is left to cut there, a kernel's scratch may
    still shrink with narrower weights (tn_m7_sub reads packed codes), so the layer whose weight
    cut lowers the all-lowest-activations arena most drops to that width (trace phase
    "weight (RAM)", :func:`_ram_weight_cut`) and [M2] runs again; after [M1] (which starts from
    those weights) the arena is checked with the final weight bits and [M2] continues if the
    weights changed it. With "paper" (the default for a list of
    :class:`~tinyopt.mixed.nodes.Node`, and the accounting of the paper's MobileNetV1 budgets)
    the rules below.

    Departures from the published code (docs/mixed_precision.md#memory-model,
    docs/mixed_precision.md#activation-rule-m2): a layer's FB/ICN label always follows
    the rule, also at the first flash evaluation (the repo labels every layer FB there, which
    under-counts flash when no weight is cut); an infeasible budget raises instead of looping.

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`tinyopt.memory.Node` (a chain).
        flash_bytes: flash (ROM) budget in bytes (the paper: 2_048_000), or a size string read
            by :func:`tinyopt.mixed.policy.parse_bytes` (``"2M"``; k = 1024, M = 1024^2).
        ram_bytes: RAM budget in bytes (the paper: 512_000), or a size string (``"512k"`` =
            524,288 B).
        granularity: "PL" or "PC" weight quantization.
        delta: share tolerance of the weight rule, 0 < delta <= 1 (absolute, 0.05 = 5 points).
        bits: allowed bit widths, a subset of (8, 4, 2); everything starts at the largest.
        softmax: "int8" or "logits" (the model's softmax head, see
            :func:`tinyopt.qat.quantize_mixed`; it sets the bytes of the last output).
        fuse_pool: the C export's ``fuse_pool`` the RAM budget is for (see
            :func:`tinyopt.mixed.memory.peak_ram_bytes`).
        accounting: "device", "paper" or None (device for a Keras model, paper for a list of
            Node), as :func:`tinyopt.mixed.memory.peak_ram_bytes`.

    Returns:
        A :class:`Policy`; ``trace`` lists every cut in order (phase "activation" then
        "weight"), with the tensor, bits before/after and the memory before/after.

    Raises:
        BudgetError: no assignment of the allowed bits fits; the message states the smallest
            flash and peak RAM reachable.
        ValueError: bad granularity, delta or bits; a budget that is not a finite positive
            number of bytes (NaN, Inf, 0, negative) or not a size string; a model layer the
            memory model cannot account for or a later stage refuses (named, see
            :func:`tinyopt.mixed.memory.nodes` and :func:`tinyopt.mixed.dag.check_supported`).
        TypeError: a budget that is neither a number nor a string.
    """
    from tinyopt.mixed.memory import accounting_of, mem_graph
    accounting = accounting_of(model, accounting)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not 0 < delta <= 1:
        raise ValueError(f"delta must be in (0, 1] (an absolute share, e.g. 0.05), got {delta}")
    bits = tuple(sorted({int(b) for b in bits}, reverse=True))
    if not bits or any(b not in ALLOWED_BITS for b in bits):
        raise ValueError(f"bits must be a non-empty subset of {ALLOWED_BITS}, got {bits}")
    flash_bytes = parse_bytes(flash_bytes, "flash_bytes")
    ram_bytes = parse_bytes(ram_bytes, "ram_bytes")
    graph = mem_graph(model, softmax, fuse_pool)
    node_list = graph.nodes
    if accounting == "device":
        return _memory_driven_device(model, graph, flash_bytes, ram_bytes, granularity, delta,
                                     bits, softmax, fuse_pool)
    last_t = next(t for t in graph.tensors.values() if t.layer == node_list[-1].name)
    last_bits = 8 if last_t.kind == "int8" else (32 if last_t.kind == "logits" else None)
    trace: list[dict] = []
    if graph.chain and last_bits is not None:
        act = _activation_rule(node_list, ram_bytes, bits, trace, last_bits)
        if act is not None:
            act[-1] = max(bits)  # logits: not cut (counted as deployed by the memory model)
            extra, _ = graph.uncovered_peak(dict(zip([n.name for n in node_list], act)))
            if extra > ram_bytes:  # a pad / pool step the per-node rule does not see
                act = _live_rule(graph, ram_bytes, bits, trace, start=act)
    else:
        act = _live_rule(graph, ram_bytes, bits, trace)
    if act is None:
        raise _budget_error(graph, flash_bytes, ram_bytes, granularity, bits, "RAM",
                            last_bits or 8)
    qw = _weight_rule(node_list, flash_bytes, act, granularity, delta, bits, trace)
    if qw is None:
        raise _budget_error(graph, flash_bytes, ram_bytes, granularity, bits, "flash",
                            last_bits or 8)
    _, folds = _flash_total(node_list, qw, act, granularity)
    return Policy([n.name for n in node_list], qw, act, granularity, folds, trace)
