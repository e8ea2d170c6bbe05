"""A static memory plan for the activations of an exported integer graph: one arena, every
tensor at a fixed offset, chosen at export time (no malloc on the device).

Pure Python, no TensorFlow; :func:`tinyopt.deploy.codegen.plan` turns a graph into the steps the
C code runs and asks :func:`plan_memory` where each tensor goes.

Lifetimes. Steps run in a fixed order 0 .. S-1. A *buffer* holds one or more tensors that share
bytes: a tensor and its aliases (reshape, flatten, squeeze and expand_dims change no byte of a
packed HWC stream, so their output *is* their input) and, when a step may write in place, the
step's output and the input it overwrites. A buffer is live from the step that writes it (step 0
for the graph input, which is copied in before the first step) to the last step that reads any
of its tensors (the last step for a graph output, which the caller reads afterwards); both ends
inclusive, because a step reads its inputs while it writes its output. Two buffers live at a
common step must not overlap in the arena; any others may.

In place. A step may write over one of its inputs only when its C kernel is safe for it (the
caller says which inputs: element-wise kernels that read element i before writing element i, at
the same bit width; a convolution fused with an add over its other addend, unless that addend
shares bytes with the convolution's input, ``StepIO.exclusive``) and when that input's buffer has
no reader after this step and holds no graph output.

Offsets. Several simple heuristics are tried and the smallest arena that passes the brute-force
overlap check (:meth:`MemoryPlan.check`) wins: first fit in decreasing size (TFLM's greedy
planner), first fit in decreasing size x lifetime, first fit in order of first use, and the
two-ended "ping-pong" (buffers alternately at the bottom and the top of an arena of the lower
bound), which is optimal for chains and is what the export did before DAGs. ``lower_bound`` is
the largest sum of bytes live at one step: no plan can be smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepIO:
    """What the planner needs of one step: tensors read, the tensor written, and the indices
    of the inputs the kernel may overwrite (``inplace``). ``exclusive``: the kernel reads its
    other inputs in another pattern than element i before element i (a convolution fused with
    an add), so it may overwrite input k only when no other input shares k's bytes."""

    inputs: tuple
    output: str
    inplace: tuple = ()
    exclusive: bool = False


@dataclass
class Buffer:
    """A region of the arena holding ``tensors`` (root first), live at steps [first, last]."""

    name: str
    tensors: list
    bytes: int
    first: int
    last: int
    offset: int = -1

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last

    def overlaps_in_space(self, other: Buffer) -> bool:
        return (self.offset < other.offset + other.bytes
                and other.offset < self.offset + self.bytes)


@dataclass
class MemoryPlan:
    """Where every activation tensor lives. ``arena_bytes`` is the arena the C code declares."""

    buffers: list
    arena_bytes: int
    lower_bound: int
    method: str
    n_steps: int
    tensor_buffer: dict = field(default_factory=dict)  # tensor name -> buffer name
    candidates: dict = field(default_factory=dict)  # heuristic -> arena bytes (None: invalid)

    def buffer(self, tensor: str) -> Buffer:
        """The buffer holding ``tensor``.

        Raises:
            KeyError: no such tensor in the plan.
        """
        if tensor not in self.tensor_buffer:
            raise KeyError(f"tensor {tensor!r} is not in the memory plan")
        name = self.tensor_buffer[tensor]
        return next(b for b in self.buffers if b.name == name)

    def offset(self, tensor: str) -> int:
        """Byte offset of ``tensor`` in the arena."""
        return self.buffer(tensor).offset

    def table(self):
        """pandas DataFrame, one row per tensor: tensor, buffer, offset, bytes, first and last
        step of its buffer (sorted by offset, then first step)."""
        import pandas as pd
        rows = [{"tensor": t, "buffer": b.name, "offset": b.offset, "bytes": b.bytes,
                 "first_step": b.first, "last_step": b.last}
                for b in self.buffers for t in b.tensors]
        return pd.DataFrame(rows).sort_values(["offset", "first_step"]).reset_index(drop=True)

    def check(self) -> None:
        """Brute force: every buffer inside the arena, and no two buffers live at a common step
        overlap in bytes.

        Raises:
            ValueError: naming the two buffers (or the one outside the arena).
        """
        for b in self.buffers:
            if b.offset < 0 or b.offset + b.bytes > self.arena_bytes:
                raise ValueError(f"buffer {b.name!r} [{b.offset}, {b.offset + b.bytes}) is "
                                 f"outside the arena of {self.arena_bytes} bytes")
        for i, a in enumerate(self.buffers):
            for b in self.buffers[i + 1:]:
                if a.overlaps_in_time(b) and a.overlaps_in_space(b):
                    raise ValueError(f"buffers {a.name!r} (steps {a.first}-{a.last}, bytes "
                                     f"[{a.offset}, {a.offset + a.bytes})) and {b.name!r} (steps "
                                     f"{b.first}-{b.last}, [{b.offset}, {b.offset + b.bytes}))"
                                     " are live at the same step and overlap")


def _align(n: int, align: int) -> int:
    return -(-n // align) * align


def buffers_of(steps: list[StepIO], sizes: dict, graph_input: str, outputs: list,
               aliases: dict) -> list[Buffer]:
    """Group tensors into buffers (aliases, in-place writes) and compute their lifetimes.

    Arguments:
        steps: the steps in execution order.
        sizes: bytes of every tensor (aliases included).
        graph_input: the graph input tensor (live from step 0).
        outputs: the graph output tensors (live to the last step).
        aliases: tensor -> the tensor whose bytes it reuses (reshape-like nodes).

    Returns:
        The buffers, in order of first use.

    Raises:
        ValueError: a step reads a tensor nothing writes, or an alias of an unknown tensor.
    """
    def root(t: str) -> str:
        seen = set()
        while t in aliases:
            if t in seen:
                raise ValueError(f"alias cycle through tensor {t!r}")
            seen.add(t)
            t = aliases[t]
        return t

    n = len(steps)
    first = {root(graph_input): 0}
    for s, st in enumerate(steps):
        first.setdefault(st.output, s)
    readers: dict[str, list[int]] = {}
    for s, st in enumerate(steps):
        for t in st.inputs:
            r = root(t)
            if r not in first:
                raise ValueError(f"step {s} reads tensor {t!r}, which no earlier step writes")
            readers.setdefault(r, []).append(s)
    out_roots = {root(t) for t in outputs}
    members: dict[str, list[str]] = {r: [r] for r in first}
    for t in aliases:
        r = root(t)
        if r not in members:
            raise ValueError(f"tensor {t!r} aliases {r!r}, which no step writes")
        members[r].append(t)
    # union of roots for in-place writes, decided in step order
    group = {r: r for r in first}

    def find(r: str) -> str:
        while group[r] != r:
            r = group[r]
        return r

    last_read = {r: max(readers.get(r, [first[r]])) for r in first}
    for s, st in enumerate(steps):
        for k in st.inplace:
            g = find(root(st.inputs[k]))
            roots = [r for r in first if find(r) == g]
            if (any(r in out_roots for r in roots) or max(last_read[r] for r in roots) != s
                    or any(sizes[r] != sizes[st.output] for r in roots)):
                continue
            if st.exclusive and any(find(root(t)) == g for j, t in enumerate(st.inputs)
                                    if j != k):
                continue  # e.g. conv(a) + a: writing over a would change what the conv reads
            group[st.output] = g
            break
    buffers: dict[str, Buffer] = {}
    for r in first:  # insertion order: order of first use
        g = find(r)
        last = n - 1 if r in out_roots else last_read[r]
        if g not in buffers:
            buffers[g] = Buffer(g, [], 0, first[r], last)
        b = buffers[g]
        b.tensors.extend(members[r])
        b.bytes = max(b.bytes, max(sizes[t] for t in members[r]))
        b.first, b.last = min(b.first, first[r]), max(b.last, last)
    return list(buffers.values())


def _first_fit(order: list[Buffer], align: int) -> int:
    placed: list[Buffer] = []
    for b in order:
        busy = sorted((p.offset, p.offset + p.bytes) for p in placed if p.overlaps_in_time(b))
        at = 0
        for lo, hi in busy:
            if at + b.bytes <= lo:
                break
            at = max(at, _align(hi, align))
        b.offset = at
        placed.append(b)
    return max((b.offset + b.bytes for b in order), default=0)


def _ping_pong(bufs: list[Buffer], bound: int, align: int) -> int:
    top = _align(bound, align)
    for k, b in enumerate(sorted(bufs, key=lambda b: (b.first, b.last))):
        b.offset = 0 if k % 2 == 0 else (top - b.bytes) // align * align
    return max((b.offset + b.bytes for b in bufs), default=0)


HEURISTICS = ("ping_pong", "greedy_size", "greedy_size_x_life", "greedy_first_use")


def plan_memory(steps: list[StepIO], sizes: dict, graph_input: str, outputs: list,
                aliases: dict | None = None, align: int = 1) -> MemoryPlan:
    """Place every tensor of ``steps`` in one arena (module docstring).

    Arguments:
        steps: the steps in execution order (:class:`StepIO`).
        sizes: bytes of every tensor.
        graph_input: the graph input tensor.
        outputs: the graph output tensors.
        aliases: tensor -> tensor whose bytes it shares (reshape-like nodes).
        align: every offset is a multiple of this (1: bytes; the kernels read bytes).

    Returns:
        The smallest valid :class:`MemoryPlan` among :data:`HEURISTICS` (``candidates`` gives
        each heuristic's arena, None when it produced an overlap).

    Raises:
        ValueError: bad ``align``, a dangling tensor, or no heuristic gave a valid plan (a bug).
    """
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if not steps:
        raise ValueError("nothing to plan: the graph has no step")
    bufs = buffers_of(steps, sizes, graph_input, list(outputs), dict(aliases or {}))
    n = len(steps)
    bound = max(sum(b.bytes for b in bufs if b.first <= s <= b.last) for s in range(n))
    orders = {
        "greedy_size": sorted(bufs, key=lambda b: (-b.bytes, b.first)),
        "greedy_size_x_life": sorted(bufs, key=lambda b: (-b.bytes * (b.last - b.first + 1),
                                                          b.first)),
        "greedy_first_use": sorted(bufs, key=lambda b: (b.first, -b.bytes)),
    }
    best, candidates = None, {}
    for method in HEURISTICS:
        arena = (_ping_pong(bufs, bound, align) if method == "ping_pong"
                 else _first_fit(orders[method], align))
        trial = MemoryPlan(bufs, arena, bound, method, n)
        try:
            trial.check()
        except ValueError:
            candidates[method] = None
            continue
        candidates[method] = arena
        if best is None or arena < best[1]:
            best = (method, arena, {b.name: b.offset for b in bufs})
    if best is None:
        raise ValueError("no heuristic produced a valid memory plan (a bug in memplan)")
    method, arena, offsets = best
    for b in bufs:
        b.offset = offsets[b.name]
    plan = MemoryPlan(bufs, arena, bound, method, n,
                      {t: b.name for b in bufs for t in b.tensors}, candidates)
    plan.check()
    return plan
