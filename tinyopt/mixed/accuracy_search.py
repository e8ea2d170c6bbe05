"""Accuracy-aware mixed precision under the memory model of
:func:`tinyopt.mixed.search.memory_driven` (issue 30): the bits per policy layer that minimise
the summed sensitivity (:func:`tinyopt.mixed.sensitivity.layer_sensitivity`) subject to the same
flash and RAM budgets.

**The problem, exactly as an integer linear program.** Per policy layer i one binary per choice
(w, a) of weight bits and output bits (a is fixed at the largest allowed width for the logits
layer and a layer feeding the int8 softmax head: the memory model fixes those tensors), one
choice per layer.

- Objective: sum of s_w(i, w) + s_a(i, a) (0 at the largest width), plus a tie-break far below
  any measured difference (1e-9 of the largest sensitivity per halving) that keeps more bits
  among equally good choices.
- Flash: sum of packed weights + the extra bytes of the choice's fold
  (:func:`tinyopt.mixed.memory.extra_bytes`, :func:`tinyopt.mixed.policy.default_fold`, which
  depends on both w and a with PL), exactly :func:`tinyopt.mixed.memory.flash_bytes`.
- RAM: for every step of the deployed network (:func:`tinyopt.mixed.lifetimes.mem_graph`) the
  bytes of the tensors alive there; for chains also the paper's per-node rule (input + output of
  each policy layer). A tensor whose bits are the largest of several layers' (pool, pad, add,
  concatenation outputs) gets a continuous variable bounded below by each of them (exact: it
  only appears on the small side of the constraints). With today's
  :func:`tinyopt.mixed.memory.peak_ram_bytes` this is that function exactly.

  The linear model is the "paper" accounting of :func:`tinyopt.mixed.memory.peak_ram_bytes`
  exactly. Adds get equal addend bits (every layer setting an addend's bits has the same bits:
  the integer ADD needs them equal).

**peak_ram_bytes is the authority.** Every solution is checked with
:func:`tinyopt.mixed.memory.flash_bytes` and :func:`tinyopt.mixed.memory.peak_ram_bytes` in
the requested ``accounting`` (default for a Keras model: "device", the planned arena with kernel
scratch, which depends on weight bits too and is not linear). When it does not fit, that exact
assignment is forbidden and every RAM row is tightened by the linear model's error at it
(arena - linear peak), then solved again, at most ``max_rounds`` times. With "paper" accounting
the first solution fits: the result is the proven optimum. With "device" it is the optimum of
the tightened linear model that the arena accepts (not a proof over the arena).

**Incumbent.** With ``incumbent=True`` (default) :func:`memory_driven` runs on the same budget
and accounting; its policy is returned instead when it has a lower summed sensitivity or when
the loop above found nothing (so the search never does worse than the rule and fails only when
the rule fails too, with the rule's :class:`BudgetError` and minimum). ``source`` in the trace
says which.

**Solver.** :func:`scipy.optimize.milp` (HiGHS branch and bound) with relative gap 0: the
returned assignment is optimal for the (scaled) objective up to HiGHS' absolute gap of 1e-6 on an
objective scaled so that the largest sensitivity is 1e6, i.e. within 1e-12 of the largest
sensitivity. Deterministic (HiGHS is, for a fixed problem; the sensitivity is). MobileNetV1 has
~250 binaries; it solves in milliseconds.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from tinyopt.integer.arith import packed_bytes
from tinyopt.mixed.lifetimes import mem_graph
from tinyopt.mixed.policy import GRANULARITIES, Policy, default_fold, parse_bytes
from tinyopt.mixed.search import BudgetError, _budget_error, memory_driven
from tinyopt.mixed.sensitivity import TENSORS, check_bits

SCALE = 1e6  # the largest sensitivity, in the solver's objective units
TIE = 1e-3   # per halving, in the same units: 1e-9 of the largest sensitivity


def sensitivity_table(sensitivity, layers: list[str], controlled: list[str], bits) -> dict:
    """``{(layer, tensor, bits): value}`` from :func:`layer_sensitivity`'s DataFrame (or such a
    dict), checked: every policy layer's weights and every controlled activation at every lower
    allowed width, finite and >= 0; the largest width is 0.

    Raises:
        ValueError: a missing, negative or non-finite entry (named), an unknown layer or tensor.
    """
    if isinstance(sensitivity, pd.DataFrame):
        missing = {"layer", "tensor", "bits", "sensitivity"} - set(sensitivity.columns)
        if missing:
            raise ValueError(f"the sensitivity table lacks the columns {sorted(missing)}; pass "
                             "tinyopt.mixed.sensitivity.layer_sensitivity's DataFrame")
        items = {(str(r.layer), str(r.tensor), int(r.bits)): r.sensitivity
                 for r in sensitivity.itertuples()}
    elif isinstance(sensitivity, dict):
        items = {(str(k[0]), str(k[1]), int(k[2])): v for k, v in sensitivity.items()}
    else:
        raise ValueError("sensitivity must be layer_sensitivity's DataFrame or a dict "
                         f"{{(layer, 'weights'|'activations', bits): value}}, got "
                         f"{type(sensitivity).__name__}")
    names = set(layers)
    for layer, tensor, _ in items:
        if layer not in names or tensor not in TENSORS:
            raise ValueError(f"sensitivity entry ({layer!r}, {tensor!r}) names no policy layer / "
                             f"tensor of this model (layers {layers}, tensors {TENSORS}); measure "
                             "it on this model")
    top, out = bits[0], {}
    for layer in layers:
        for tensor in TENSORS:
            if tensor == "activations" and layer not in controlled:
                continue
            out[(layer, tensor, top)] = 0.0
            for b in bits[1:]:
                key = (layer, tensor, b)
                if key not in items:
                    raise ValueError(f"the sensitivity table has no entry for layer {layer!r} "
                                     f"{tensor} at {b} bits; measure it with bits={bits}")
                v = float(items[key])
                if not math.isfinite(v) or v < 0:
                    raise ValueError(f"sensitivity of layer {layer!r} {tensor} at {b} bits must "
                                     f"be finite and >= 0, got {items[key]!r}")
                out[key] = v
    return out


class _Problem:
    """The ILP's variables and constraints for one model, budget and bit set."""

    def __init__(self, graph, granularity, bits, controlled, flash_budget, ram_budget):
        from tinyopt.mixed.memory import extra_bytes
        self.g, self.bits, top = graph, bits, bits[0]
        nodes = graph.nodes
        n = len(nodes)
        self.choices = []  # (layer index, w, a, flash bytes, fold)
        for i, node in enumerate(nodes):
            last = i == n - 1
            for w in bits:
                for a in (bits if node.name in controlled else (top,)):
                    fold = default_fold(granularity, w, a, last)
                    flash = packed_bytes(node.weight_elements, w) + \
                        extra_bytes(node.out_channels, granularity, fold, last)
                    self.choices.append((i, w, a, flash, fold))
        self.nx = len(self.choices)
        self.of_layer = {node.name: [k for k, c in enumerate(self.choices) if c[0] == i]
                         for i, node in enumerate(nodes)}
        self.aux = {}  # (tensor, elements) -> index of its continuous variable
        self.rows, self.lo, self.hi = [], [], []
        self.rams = []  # (row dict, constant, step name): live bytes <= ram budget
        for k in range(n):  # one choice per layer
            self._row({c: 1.0 for c in self.of_layer[nodes[k].name]}, 1, 1)
        self._row({c: float(self.choices[c][3]) for c in range(self.nx)}, -np.inf,
                  flash_budget)
        self.ram_budget, self.tighten = ram_budget, 0.0
        life = graph.lifetimes()
        for s, (name, _, _) in enumerate(graph.steps):
            terms = [(t, graph.tensors[t].elements) for t, (a, b) in life.items() if a <= s <= b]
            self._ram(terms, name)
        for name, ins, _ in graph.steps:  # the integer ADD needs addends of equal bits
            if graph.kinds.get(name) == "add":
                self._equal_bits(ins)
        if graph.chain:  # the paper's per-node rule: input + output of every policy layer
            reads = {name: ins[0] for name, ins, _ in graph.steps}
            for node in nodes:
                out_t = next(t for t in graph.tensors.values() if t.layer == node.name)
                step = node.name if node.name in reads else out_t.name
                self._ram([(reads[step], node.in_elements), (out_t.name, node.out_elements)],
                          node.name)

    def _row(self, coef: dict, lo, hi):
        self.rows.append(coef)
        self.lo.append(lo)
        self.hi.append(hi)

    def _controllers(self, t: str) -> tuple[set, int]:
        """(policy layers whose act bits this tensor's bits are the largest of, fixed bits)."""
        tensor = self.g.tensors[t]
        fixed = {"input": 8, "logits": 32, "int8": 8}
        if tensor.kind in fixed:
            return set(), fixed[tensor.kind]
        if tensor.kind == "act":
            return {tensor.layer}, 0
        layers, const = set(), 0
        for s in tensor.sources:
            sub, c = self._controllers(s)
            layers |= sub
            const = max(const, c)
        return layers, const

    def _bytes(self, t: str, elements: int) -> tuple[dict, float]:
        """Linear (coefficients, constant) for ``packed_bytes(elements, bits of t)``."""
        layers, const = self._controllers(t)
        if not layers:
            return {}, float(packed_bytes(elements, const))

        def expr(layer):
            return {c: float(packed_bytes(elements, max(self.choices[c][2], const)))
                    for c in self.of_layer[layer]}
        if len(layers) == 1:
            return expr(next(iter(layers))), 0.0
        key = (t, elements)
        if key not in self.aux:  # y >= bytes at each controller's bits
            self.aux[key] = self.nx + len(self.aux)
            for layer in sorted(layers):
                coef = {c: -v for c, v in expr(layer).items()}
                coef[self.aux[key]] = 1.0
                self._row(coef, 0, np.inf)
        return {self.aux[key]: 1.0}, 0.0

    def _ram(self, terms, step):
        coef, const = {}, 0.0
        for t, elements in terms:
            c, k = self._bytes(t, elements)
            const += k
            for j, v in c.items():
                coef[j] = coef.get(j, 0.0) + v
        self.rams.append((coef, const, step))

    def _equal_bits(self, tensors) -> None:
        """Every layer whose act bits set one of ``tensors`` has the same bits (and those of a
        fixed-width source, if any): sufficient for equal addend bits, linear."""
        layers, consts = set(), set()
        for t in tensors:
            sub, c = self._controllers(t)
            layers |= sub
            if c:
                consts.add(c)
        layers = sorted(layers)

        def bits_expr(layer):
            return {c: float(self.choices[c][2]) for c in self.of_layer[layer]}
        for other in layers[1:]:
            coef = bits_expr(layers[0])
            for c, v in bits_expr(other).items():
                coef[c] = coef.get(c, 0.0) - v
            self._row(coef, 0, 0)
        for const in consts:
            for layer in layers:
                self._row(bits_expr(layer), const, const)

    def forbid(self, chosen: list[int]) -> None:
        """Remove exactly this assignment (choice indices, one per layer)."""
        self._row({c: 1.0 for c in chosen}, -np.inf, len(chosen) - 1)

    def linear_peak(self, x) -> float:
        """The largest RAM row of the linear model at solution ``x``."""
        return max(sum(v * x[j] for j, v in coef.items()) + k for coef, k, _ in self.rams)

    def solve(self, cost: np.ndarray):
        from scipy.optimize import Bounds, LinearConstraint, milp
        nv = self.nx + len(self.aux)
        rows = list(self.rows) + [r for r, _, _ in self.rams]
        lo = list(self.lo) + [-np.inf] * len(self.rams)
        hi = list(self.hi) + [self.ram_budget - self.tighten - k for _, k, _ in self.rams]
        a = np.zeros((len(rows), nv))
        for r, coef in enumerate(rows):
            for j, v in coef.items():
                a[r, j] = v
        c = np.concatenate([cost, np.zeros(len(self.aux))])
        integrality = np.r_[np.ones(self.nx), np.zeros(len(self.aux))]
        upper = np.r_[np.ones(self.nx), np.full(len(self.aux), np.inf)]
        return milp(c, constraints=LinearConstraint(a, lo, hi), integrality=integrality,
                    bounds=Bounds(np.zeros(nv), upper), options={"mip_rel_gap": 0.0})


def accuracy_driven(model, flash_bytes: int | str, ram_bytes: int | str, calibration=None,
                    granularity: str = "PL", bits=(8, 4, 2), sensitivity=None,
                    softmax: str = "int8", fuse_pool: bool = True, max_rounds: int = 20,
                    accounting: str | None = None, incumbent: bool = True,
                    **measure) -> Policy:
    """The accuracy-aware policy: least summed sensitivity within the flash and RAM budgets of
    :func:`tinyopt.mixed.search.memory_driven` (module docstring: the ILP, its guarantees).

    Arguments:
        model: a trained float ``tf_keras`` model, or a list of
            :class:`tinyopt.memory.Node` (then ``sensitivity`` is required).
        flash_bytes, ram_bytes: the budgets, bytes or size strings as ``memory_driven``.
        calibration: float images to measure the sensitivity on
            (:func:`tinyopt.mixed.sensitivity.layer_sensitivity`); not needed with
            ``sensitivity``.
        granularity: "PL" or "PC".
        bits: allowed bit widths, a subset of (8, 4, 2).
        sensitivity: a table from :func:`layer_sensitivity` (same bits and granularity) or a
            dict ``{(layer, "weights"|"activations", bits): value}``; None: measured.
        softmax, fuse_pool: as ``memory_driven``.
        max_rounds: solves at most this many times when ``peak_ram_bytes`` refuses a solution.
        accounting: "device", "paper" or None, as :func:`tinyopt.mixed.memory.peak_ram_bytes`.
        incumbent: also run :func:`memory_driven` and keep the better (module docstring).
        **measure: passed to :func:`layer_sensitivity` (``samples``, ``weights``, ...).

    Returns:
        A :class:`Policy` whose ``trace`` has one row per policy layer (phase "accuracy"): bits,
        fold, sensitivities, bytes saved against the largest width and the budgets;
        :func:`explain` makes it a DataFrame.

    Raises:
        BudgetError: no assignment fits (the smallest reachable flash and peak RAM, as
            ``memory_driven``).
        ValueError: bad budgets, granularity, bits or ``max_rounds``; no calibration and no
            sensitivity; a sensitivity table that does not cover the model (named entry).
        RuntimeError: the solver failed (its status message).
    """
    from tinyopt.mixed import memory
    started = time.perf_counter()
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    bits = check_bits(bits)
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"max_rounds must be a positive int, got {max_rounds!r}")
    flash_budget = parse_bytes(flash_bytes, "flash_bytes")
    ram_budget = parse_bytes(ram_bytes, "ram_bytes")
    graph = mem_graph(model, softmax, fuse_pool)
    layers = [n.name for n in graph.nodes]
    act_t = {t.layer for t in graph.tensors.values() if t.kind == "act"}
    controlled = [name for name in layers if name in act_t]
    if sensitivity is None:
        if calibration is None:
            raise ValueError("accuracy_driven needs calibration images to measure the "
                             "sensitivity (calibration=...), or a table (sensitivity=...)")
        if isinstance(model, (list, tuple)):
            raise ValueError("a list of Nodes has no weights to measure: pass sensitivity=")
        from tinyopt.mixed.sensitivity import layer_sensitivity
        sensitivity = layer_sensitivity(model, calibration, bits, granularity, softmax=softmax,
                                        fuse_pool=fuse_pool, **measure)
    sens = sensitivity_table(sensitivity, layers, controlled, bits)
    prob = _Problem(graph, granularity, bits, set(controlled), flash_budget, ram_budget)
    largest = max(sens.values())
    scale = SCALE / largest if largest > 0 else 1.0
    top = bits[0]
    cost = np.array([
        scale * (sens[(layers[i], "weights", w)] + sens.get((layers[i], "activations", a), 0.0))
        + TIE * (math.log2(top / w) + math.log2(top / a))
        for i, w, a, _, _ in prob.choices])
    rule, rule_error = None, None
    if incumbent:
        try:
            rule = memory_driven(model, flash_budget, ram_budget, granularity, bits=bits,
                                 softmax=softmax, fuse_pool=fuse_pool, accounting=accounting)
        except BudgetError as e:
            rule_error = e
    policy, note, round_no = None, "", 0
    for round_no in range(1, max_rounds + 1):
        res = prob.solve(cost)
        if res.status == 2:
            note = ("infeasible in the linear model" if round_no == 1 else
                    f"infeasible after {round_no - 1} cut(s) for peak_ram_bytes")
            break
        if res.x is None or res.status != 0:
            raise RuntimeError(f"the MILP solver failed (status {res.status}: {res.message}); "
                               "please report this with the model and budgets")
        chosen = [k for k in range(prob.nx) if res.x[k] > 0.5]
        picks = sorted((prob.choices[k][0], k) for k in chosen)
        cand = Policy(layers, [prob.choices[k][1] for _, k in picks],
                      [prob.choices[k][2] for _, k in picks], granularity,
                      [prob.choices[k][4] for _, k in picks])
        flash = memory.flash_bytes(model, cand)
        ram = memory.peak_ram_bytes(model, cand, softmax, fuse_pool, accounting=accounting)
        if flash > flash_budget:
            raise RuntimeError(f"internal error: the ILP's flash differs from flash_bytes "
                               f"({flash:,} B > {flash_budget:,} B); please report this")
        if ram <= ram_budget:
            policy, note = cand, "ilp"
            break
        # peak_ram_bytes (the device's arena) says no: forbid this assignment and tighten the
        # linear RAM rows by the model's error here (bounded number of rounds)
        prob.forbid([k for _, k in picks])
        prob.tighten = max(prob.tighten, ram - prob.linear_peak(res.x))
        note = f"no fit after {round_no} solve(s) (peak_ram_bytes refused each)"
    if policy is not None and rule is not None and \
            total_sensitivity(rule, sens, bits, controlled) < \
            total_sensitivity(policy, sens, bits, controlled):
        policy, note = rule, "memory_driven (lower sensitivity than the ILP's fit)"
    if policy is None:
        if rule is not None:  # the rule fits where the linear model did not converge
            policy, note = rule, f"memory_driven (the ILP: {note})"
        elif rule_error is not None:  # the rule's minimum (its accounting), as memory_driven
            raise rule_error
        else:
            last_t = next(t for t in graph.tensors.values() if t.layer == layers[-1])
            last_bits = 8 if last_t.kind == "int8" else (32 if last_t.kind == "logits" else 8)
            raise _budget_error(graph, flash_budget, ram_budget, granularity, bits,
                                "flash" if _flash_infeasible(prob, cost) else "RAM", last_bits)
    policy = Policy(policy.layers, policy.weight_bits, policy.act_bits, granularity,
                    policy.fold)
    flash = memory.flash_bytes(model, policy)
    ram = memory.peak_ram_bytes(model, policy, softmax, fuse_pool, accounting=accounting)
    policy.trace = _explain_rows(graph, policy, sens, bits, flash_budget, ram_budget, flash, ram,
                                 round_no, time.perf_counter() - started, note)
    return policy


def _flash_infeasible(prob: _Problem, cost) -> bool:
    """Whether flash alone (with the cuts so far) makes the ILP infeasible (for the message)."""
    saved = prob.ram_budget
    prob.ram_budget = np.inf
    try:
        return prob.solve(cost).status != 0
    finally:
        prob.ram_budget = saved


def _explain_rows(graph, policy, sens, bits, flash_budget, ram_budget, flash, ram, rounds,
                  seconds, source) -> list[dict]:
    from tinyopt.mixed.memory import extra_bytes
    top, n, rows = bits[0], len(policy.layers), []
    for i, node in enumerate(graph.nodes):
        last = i == n - 1
        w, a, fold = policy.weight_bits[i], policy.act_bits[i], policy.fold[i]
        base = packed_bytes(node.weight_elements, top) + extra_bytes(
            node.out_channels, policy.granularity, default_fold(policy.granularity, top, top,
                                                                last), last)
        here = packed_bytes(node.weight_elements, w) + extra_bytes(
            node.out_channels, policy.granularity, fold, last)
        sa = sens.get((node.name, "activations", a))
        rows.append({
            "phase": "accuracy", "layer": node.name, "weight_bits": w,
            "act_bits": a if sa is not None else None, "fold": fold,
            "weight_sensitivity": sens[(node.name, "weights", w)],
            "act_sensitivity": sa if sa is not None else 0.0,
            "sensitivity": sens[(node.name, "weights", w)] + (sa or 0.0),
            "flash_bytes": here, "flash_saved_bytes": base - here,
            "act_bytes_saved": (packed_bytes(node.out_elements, top)
                                - packed_bytes(node.out_elements, a)) if sa is not None else 0,
            "flash_budget": flash_budget, "ram_budget": ram_budget,
            "total_flash_bytes": int(flash), "peak_ram_bytes": int(ram), "solves": rounds,
            "source": source, "seconds": round(seconds, 3)})
    return rows


def explain(policy: Policy) -> pd.DataFrame:
    """The per-layer choice of :func:`accuracy_driven` as a DataFrame: layer, weight_bits,
    act_bits (None: a tensor the policy does not control), fold, weight_sensitivity,
    act_sensitivity, sensitivity, flash_bytes, flash_saved_bytes (against the largest width),
    act_bytes_saved (output tensor bytes), and the budgets; ``attrs``: total_sensitivity,
    flash_bytes, peak_ram_bytes, flash_budget, ram_budget.

    Raises:
        ValueError: a policy that :func:`accuracy_driven` did not make.
    """
    rows = [r for r in policy.trace if r.get("phase") == "accuracy"]
    if len(rows) != len(policy.layers):
        raise ValueError("this policy has no accuracy-aware trace; build it with "
                         "tinyopt.mixed.accuracy_search.accuracy_driven")
    keep = ["layer", "weight_bits", "act_bits", "fold", "weight_sensitivity", "act_sensitivity",
            "sensitivity", "flash_bytes", "flash_saved_bytes", "act_bytes_saved",
            "flash_budget", "ram_budget"]
    table = pd.DataFrame(rows)[keep]
    table["act_bits"] = table["act_bits"].astype("Int64")
    table.attrs.update(total_sensitivity=float(table["sensitivity"].sum()),
                       flash_bytes=rows[0]["total_flash_bytes"],
                       peak_ram_bytes=rows[0]["peak_ram_bytes"],
                       flash_budget=rows[0]["flash_budget"], ram_budget=rows[0]["ram_budget"],
                       solves=rows[0]["solves"], source=rows[0]["source"],
                       seconds=rows[0]["seconds"])
    return table


def total_sensitivity(policy: Policy, sensitivity, bits=(8, 4, 2), controlled=None) -> float:
    """Summed sensitivity of any policy (e.g. :func:`memory_driven`'s) under a table, to compare
    searches: weights of every layer, activations of the ``controlled`` layers (default: the
    layers the table has activation entries for).

    Raises:
        ValueError: as :func:`sensitivity_table`.
    """
    bits = check_bits(bits)
    if controlled is None:
        if isinstance(sensitivity, pd.DataFrame):
            acts = sensitivity[sensitivity["tensor"] == "activations"]["layer"]
            controlled = set(acts.astype(str))
        else:
            controlled = {k[0] for k in sensitivity if k[1] == "activations"}
    sens = sensitivity_table(sensitivity, list(policy.layers), list(controlled), bits)
    total = 0.0
    for name, w, a in zip(policy.layers, policy.weight_bits, policy.act_bits):
        total += sens[(name, "weights", w)]
        if name in controlled:
            total += sens[(name, "activations", a)]
    return total


def zero_sensitivity(model, bits=(8, 4, 2), softmax: str = "int8",
                     fuse_pool: bool = True) -> dict:
    """A sensitivity table of zeros for ``model`` (no data needed): with it
    :func:`accuracy_driven` only decides feasibility (it keeps the most bits that fit), e.g. to
    check a budget before any training.

    Raises:
        ValueError: as :func:`tinyopt.mixed.lifetimes.mem_graph`, bad bits.
    """
    bits = check_bits(bits)
    graph = mem_graph(model, softmax, fuse_pool)
    act = {t.layer for t in graph.tensors.values() if t.kind == "act"}
    return {(n.name, tensor, b): 0.0 for n in graph.nodes for tensor in TENSORS
            for b in bits[1:] if tensor == "weights" or n.name in act}
