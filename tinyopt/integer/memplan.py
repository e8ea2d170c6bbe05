"""A static memory plan for the activations of an exported integer graph: one arena, every
tensor at a fixed offset, chosen at export time (no malloc on the device).

Pure Python, no TensorFlow; :func:`tinyopt.deploy.codegen.plan` turns a graph into the steps the
C code runs and asks :func:`plan_memory` where each tensor goes.

Lifetimes. Steps run in a fixed order 0 .. S-1. A tensor is live from the step that writes it
(step 0 for the graph input, which is copied in before the first step) to the last step that
reads it or one of its aliases (the last step for a graph output, which the caller reads
afterwards); both ends inclusive, because a step reads its inputs while it writes its output.
Reshape, flatten, squeeze and expand_dims change no byte of a packed HWC stream, so their output
is an alias: the same bytes as their input.

Buffers. A *buffer* is a region holding tensors that never need their bytes at the same time,
each at a fixed place in it (``Member.rel``): a tensor, and the outputs of steps that write over
it as its last reader. Two tensors of different buffers live at a common step must not overlap;
the placement checks this tensor by tensor, so a buffer reserves for each of its tensors only
that tensor's bytes during that tensor's lifetime. A step may write over one of its inputs only
when its C kernel is safe for it (the caller says which, :class:`StepIO`), when no later step
reads that input and it holds no graph output:

- exactly in place (``StepIO.inplace``): element-wise kernels that read element i before
  writing element i at the same width (add, quantize, softmax; a convolution fused with an add
  over its other addend, unless that addend is also the convolution's input,
  ``StepIO.exclusive``);
- sliding (``StepIO.slide``): a windowed kernel writing its output in order, each byte after its
  last read of the input byte it lands on, with its output starting d bytes below the input
  (:func:`tinyopt.integer.steps.write_delay`): the step then needs about max(input, output) bytes
  instead of their sum. Slides chain (each moves the next tensor a little lower), so they are
  used only at the steps that need the most bytes, for every threshold, and the best plan kept.

Scratch. A step's kernel may need working memory of its own (``StepIO.scratch``: the Cortex-M7
kernels' im2col rows and output values, :func:`tinyopt.integer.steps.scratch_bytes`): it is a
buffer alive at that step only, placed like any other (so it never overlaps the step's inputs or
output, and reuses bytes of tensors dead at that step), at an offset that is a multiple of
``StepIO.scratch_align``; :meth:`MemoryPlan.scratch_offset` gives its place.

Offsets. Several simple heuristics are tried and the smallest arena that passes the brute-force
overlap check (:meth:`MemoryPlan.check`) wins: first fit in decreasing size (TFLM's greedy
planner), in decreasing size x lifetime, in order of first use, the two-ended placement (in order
of first use, each buffer at the bottom if it fits there, else at the top, else first fit) and
the plain ping-pong (buffers alternately at the bottom and the top), optimal for chains and what
the export did before DAGs. ``lower_bound`` is the largest sum of bytes live at one step for the
chosen buffers: no placement of them can be smaller.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class StepIO:
    """What the planner needs of one step: tensors read, the tensor written, and which inputs
    the kernel may overwrite.

    ``inplace``: indices of inputs of the same size the output may be written exactly over
    (element-wise kernels). ``slide``: (index, d) pairs: the output may start ``d`` bytes below
    that input and overlap it (a kernel that writes its output in order, each byte only after
    its last read of the input byte it lands on; :func:`tinyopt.integer.steps.write_delay`).
    ``exclusive``: the kernel reads its other inputs in another pattern than element i before
    element i (a convolution fused with an add), so it may overwrite input k only when no
    other input shares k's buffer. ``scratch``: bytes of working memory the kernel needs during
    this step only (0: none), at an offset that is a multiple of ``scratch_align``."""

    inputs: tuple
    output: str
    inplace: tuple = ()
    exclusive: bool = False
    slide: tuple = ()
    scratch: int = 0
    scratch_align: int = 1


@dataclass
class Member:
    """One tensor (with its reshape ``aliases``) of a buffer: ``rel`` bytes above the buffer's
    offset, live at steps [first, last]."""

    name: str
    aliases: list
    rel: int
    bytes: int
    first: int
    last: int


@dataclass
class Buffer:
    """A region of the arena holding tensors that never need their bytes at the same time (a
    tensor and the outputs written over it), ``offset`` bytes into the arena (a multiple of
    ``align``, besides the plan's own alignment: a step's scratch)."""

    name: str
    members: list
    offset: int = -1
    align: int = 1

    @property
    def bytes(self) -> int:
        return max(m.rel + m.bytes for m in self.members)

    @property
    def first(self) -> int:
        return min(m.first for m in self.members)

    @property
    def last(self) -> int:
        return max(m.last for m in self.members)

    @property
    def tensors(self) -> list:
        return [t for m in self.members for t in (m.name, *m.aliases)]

    def span_at(self, step: int) -> int:
        """Bytes from the lowest to the highest byte of the members live at ``step``."""
        live = [m for m in self.members if m.first <= step <= m.last]
        return (max(m.rel + m.bytes for m in live) - min(m.rel for m in live)) if live else 0


def peak_span(buffers: list, n_steps: int) -> int:
    """The largest, over the steps, of the buffers' summed :meth:`Buffer.span_at` (a lower
    bound of any arena holding them; each buffer visits only the steps of its life)."""
    total = [0] * max(1, n_steps)
    for b in buffers:
        for s in range(max(0, b.first), min(n_steps - 1, b.last) + 1):
            total[s] += b.span_at(s)
    return max(total)


def _clash(a: Buffer, b: Buffer) -> tuple | None:
    """The first pair of members of a and b (placed) live at a common step and overlapping."""
    for ma in a.members:
        for mb in b.members:
            if ma.first <= mb.last and mb.first <= ma.last:
                lo_a, lo_b = a.offset + ma.rel, b.offset + mb.rel
                if lo_a < lo_b + mb.bytes and lo_b < lo_a + ma.bytes:
                    return ma, mb
    return None


@dataclass
class MemoryPlan:
    """Where every activation tensor lives. ``arena_bytes`` is the arena the C code declares."""

    buffers: list
    arena_bytes: int
    lower_bound: int
    method: str
    n_steps: int
    candidates: dict = field(default_factory=dict)  # heuristic -> arena bytes (None: invalid)
    scratch: dict = field(default_factory=dict)  # step -> the name of its scratch buffer

    def scratch_offset(self, step: int) -> int:
        """Byte offset of step ``step``'s scratch in the arena.

        Raises:
            KeyError: the step has no scratch.
        """
        if step not in self.scratch:
            raise KeyError(f"step {step} has no scratch in the memory plan")
        return self.offset(self.scratch[step])

    def _member(self, tensor: str) -> tuple[Buffer, Member]:
        for b in self.buffers:
            for m in b.members:
                if tensor == m.name or tensor in m.aliases:
                    return b, m
        raise KeyError(f"tensor {tensor!r} is not in the memory plan")

    def offset(self, tensor: str) -> int:
        """Byte offset of ``tensor`` in the arena.

        Raises:
            KeyError: no such tensor in the plan.
        """
        b, m = self._member(tensor)
        return b.offset + m.rel

    def table(self):
        """pandas DataFrame, one row per tensor: tensor, buffer, offset, bytes, first and last
        step (of its own lifetime; sorted by offset, then first step)."""
        import pandas as pd
        rows = [{"tensor": t, "buffer": b.name, "offset": b.offset + m.rel, "bytes": m.bytes,
                 "first_step": m.first, "last_step": m.last}
                for b in self.buffers for m in b.members for t in (m.name, *m.aliases)]
        return pd.DataFrame(rows).sort_values(["offset", "first_step"]).reset_index(drop=True)

    def check(self) -> None:
        """Brute force: every buffer inside the arena and aligned, and no two tensors of different
        buffers live at a common step overlap in bytes.

        Raises:
            ValueError: naming the two tensors (or the buffer outside the arena).
        """
        spans = []
        for k, b in enumerate(self.buffers):
            # bytes, first and last in one pass over the members (the planner checks every
            # heuristic's plan: thousands of checks per policy search)
            size, first, last = 0, None, None
            for m in b.members:
                size = max(size, m.rel + m.bytes)
                first = m.first if first is None else min(first, m.first)
                last = m.last if last is None else max(last, m.last)
            if first is None:  # no member: what the properties would raise
                size, first, last = b.bytes, b.first, b.last
            if b.offset < 0 or b.offset + size > self.arena_bytes:
                raise ValueError(f"buffer {b.name!r} [{b.offset}, {b.offset + size}) is "
                                 f"outside the arena of {self.arena_bytes} bytes")
            if b.offset % b.align:
                raise ValueError(f"buffer {b.name!r} at {b.offset} is not {b.align}-byte "
                                 "aligned")
            spans.append((b.offset, b.offset + size, first, last, k))
        # only buffers whose byte ranges overlap can clash (every member lies inside its
        # buffer's range): a sweep by offset instead of every pair
        # (and only those alive at a common step: each buffer's life spans its members')
        spans.sort()
        for i, (_, hi, fa, la, ka) in enumerate(spans):
            for j in range(i + 1, len(spans)):  # (no slice: a copy per buffer, every check)
                lo2, _, fb, lb, kb = spans[j]
                if lo2 >= hi:
                    break
                if lb < fa or la < fb:
                    continue
                a, b = self.buffers[min(ka, kb)], self.buffers[max(ka, kb)]
                pair = _clash(a, b)
                if pair is not None:
                    ma, mb = pair
                    raise ValueError(f"tensors {ma.name!r} (steps {ma.first}-{ma.last}, at "
                                     f"{a.offset + ma.rel}, {ma.bytes} bytes) and {mb.name!r} "
                                     f"(steps {mb.first}-{mb.last}, at {b.offset + mb.rel}, "
                                     f"{mb.bytes} bytes) are live at the same step and overlap")


def _align(n: int, align: int) -> int:
    return -(-n // align) * align


def buffers_of(steps: list[StepIO], sizes: dict, graph_input: str, outputs: list,
               aliases: dict, slide=None) -> list[Buffer]:
    """Group tensors into buffers (aliases, in-place and sliding writes) with their lifetimes.

    Arguments:
        steps: the steps in execution order.
        sizes: bytes of every tensor (aliases included).
        graph_input: the graph input tensor (live from step 0).
        outputs: the graph output tensors (live to the last step).
        aliases: tensor -> the tensor whose bytes it reuses (reshape-like nodes).
        slide: the steps (indices) whose ``slide`` offers are used (None: every step).

    Returns:
        The buffers, in order of first use, then one per step with scratch (its member named
        :func:`scratch_name`, alive at that step only, aligned as the step asks).

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
    alias_of: dict[str, list[str]] = {r: [] for r in first}
    for t in aliases:
        r = root(t)
        if r not in alias_of:
            raise ValueError(f"tensor {t!r} aliases {r!r}, which no step writes")
        alias_of[r].append(t)
    last = {r: n - 1 if r in out_roots else max(readers.get(r, [first[r]])) for r in first}
    group = {r: r for r in first}  # root -> its buffer's first root (outputs join at birth)
    rel = {r: 0 for r in first}
    for s, st in enumerate(steps):
        offers = [(k, 0, True) for k in st.inplace]
        offers += [(k, int(d), False) for k, d in st.slide if slide is None or s in slide]
        for k, d, same_size in offers:
            r_in = root(st.inputs[k])
            g = group[r_in]
            roots = [r for r in first if group[r] == g and r != st.output]
            if (any(r in out_roots for r in roots) or max(last[r] for r in roots) != s
                    or (same_size and sizes[r_in] != sizes[st.output])):
                continue
            if st.exclusive and any(group[root(t)] == g for j, t in enumerate(st.inputs)
                                    if j != k):
                continue  # e.g. conv(a) + a: writing over a would change what the conv reads
            group[st.output], rel[st.output] = g, rel[r_in] - d
            break
    buffers: dict[str, Buffer] = {}
    for r in first:  # insertion order: order of first use
        g = group[r]
        buffers.setdefault(g, Buffer(g, []))
        buffers[g].members.append(Member(r, alias_of[r], rel[r],
                                         max(sizes[t] for t in (r, *alias_of[r])),
                                         first[r], last[r]))
    for b in buffers.values():  # members' offsets from the buffer's lowest byte
        low = min(m.rel for m in b.members)
        for m in b.members:
            m.rel -= low
    taken = set(sizes) | set(first) | set(aliases)
    scratch = [Buffer(scratch_name(s, taken), [Member(scratch_name(s, taken), [], 0,
                                                     int(st.scratch), s, s)],
                      align=max(1, int(st.scratch_align)))
               for s, st in enumerate(steps) if st.scratch > 0]
    return list(buffers.values()) + scratch


def scratch_name(step: int, taken) -> str:
    """The name of step ``step``'s scratch buffer: ``<scratch k>``, primed until it differs
    from every tensor name in ``taken`` (tensor names come from model files)."""
    name = f"<scratch {step}>"
    while name in taken:
        name += "'"
    return name


class _Placed:
    """The members of the buffers placed so far, as (lowest byte, end byte) in the arena indexed
    by step: what a buffer being placed must not overlap. The heuristics ask once per buffer,
    hundreds of times per plan, and a member overlaps in time only the few placed members live
    near its own steps, so each question reads those, not every placed member.

    A placed member (life [pf, pl]) and a member being placed (life [f, la]) share a step iff
    f <= pl and pf <= la, i.e. exactly one of: pf in [f, la] (``starts``), or pf < f <= pl
    (``cover[f]``: the placed members live at f that began earlier). Lives with first > last
    (no step; a graph in no execution order) keep that test literally (``odd``, and a full
    scan of ``flat`` for such a member being placed)."""

    def __init__(self, buffers=()):
        self.flat: list[tuple[int, int, int, int]] = []  # (first, last, lo, end) of every member
        self.starts: dict[int, list[tuple[int, int]]] = {}  # first step -> (lo, end)
        self.cover: dict[int, list[tuple[int, int]]] = {}  # step -> (lo, end), begun before it
        self.odd: list[tuple[int, int, int, int]] = []  # members with first > last
        for p in buffers:
            self.add(p)

    def add(self, p: Buffer) -> None:
        for m in p.members:
            lo = p.offset + m.rel
            span = (lo, lo + m.bytes)
            self.flat.append((m.first, m.last, *span))
            if m.first > m.last:
                self.odd.append((m.first, m.last, *span))
                continue
            self.starts.setdefault(m.first, []).append(span)
            for step in range(m.first + 1, m.last + 1):
                self.cover.setdefault(step, []).append(span)

    def forbidden(self, b: Buffer) -> list[tuple[int, int]]:
        """Offsets x in [lo, hi) at which a member of b would overlap a placed member live at a
        common step (in no particular order: :func:`_lowest_fit` and :func:`_highest_fit`
        give the same answer for any order)."""
        out = []
        for m in b.members:
            f, la, r, n = m.first, m.last, m.rel, m.bytes
            if f > la:  # no step of its own: the literal test over every placed member
                out += [(lo - r - n + 1, hi - r) for pf, pl, lo, hi in self.flat
                        if f <= pl and pf <= la]
                continue
            near = list(self.cover.get(f, ()))
            for step in range(f, la + 1):
                near += self.starts.get(step, ())
            near += [(lo, hi) for pf, pl, lo, hi in self.odd if f <= pl and pf <= la]
            out += [(lo - r - n + 1, hi - r) for lo, hi in near]
        return out


def _lowest_fit(forbidden: list, align: int) -> int:
    """The lowest aligned x >= 0 outside every forbidden interval."""
    at = 0
    for lo, hi in sorted(forbidden):
        if lo > at:
            break
        if at < hi:
            at = _align(hi, align)
    return at


def _highest_fit(forbidden: list, top: int, align: int) -> int | None:
    """The largest aligned x <= top outside every forbidden interval, or None below 0."""
    at = top // align * align
    moved = True
    while moved and at >= 0:
        moved = False
        for lo, hi in forbidden:
            if lo <= at < hi:
                at = (lo - 1) // align * align
                moved = True
    return at if at >= 0 else None


def _first_fit(order: list[Buffer], align: int) -> int:
    """Each buffer, in turn, at the lowest aligned offset where it overlaps nothing live."""
    placed = _Placed()
    for b in order:
        b.offset = _lowest_fit(placed.forbidden(b), max(align, b.align))
        placed.add(b)
    return max((b.offset + b.bytes for b in order), default=0)


def _two_ended(bufs: list[Buffer], bound: int, align: int) -> int:
    """In order of first use, each buffer at the bottom of the arena if it fits there, else at
    the top (ending at the lower bound) if it fits there, else at the lowest fit: a chain's
    ping-pong that keeps the free space in one piece, also when buffers hold several tensors."""
    top = _align(bound, align)
    placed = _Placed()
    for b in sorted(bufs, key=lambda b: (b.first, b.last)):
        forbidden = placed.forbidden(b)
        low = _lowest_fit(forbidden, max(align, b.align))
        high = _highest_fit(forbidden, top - b.bytes, max(align, b.align))
        b.offset = high if low > 0 and high is not None and high + b.bytes > top - align \
            else low
        placed.add(b)
    return max((b.offset + b.bytes for b in bufs), default=0)


def _ping_pong(bufs: list[Buffer], bound: int, align: int) -> int:
    top = _align(bound, align)
    for k, b in enumerate(sorted(bufs, key=lambda b: (b.first, b.last))):
        a = max(align, b.align)
        b.offset = 0 if k % 2 == 0 else max(0, (top - b.bytes) // a * a)
    return max((b.offset + b.bytes for b in bufs), default=0)


def _fill(bufs: list[Buffer], placed: list[Buffer], align: int) -> int:
    """Each of ``bufs`` (a step's scratch), in turn, at the lowest aligned offset where it
    overlaps nothing placed; returns the end of the highest."""
    placed = _Placed(placed)
    for b in bufs:
        b.offset = _lowest_fit(placed.forbidden(b), max(align, b.align))
        placed.add(b)
    return max((b.offset + b.bytes for b in bufs), default=0)


HEURISTICS = ("ping_pong", "two_ended", "greedy_size", "greedy_size_x_life", "greedy_first_use")


# plan_memory's recent answers, by the pickled arguments: the policy searches and reports ask
# for the plan of the same steps several times (tinyopt.mixed.memory.device_plan of one policy
# from peak_ram_bytes, report and the search's last check; steps._plan_roomy_kernels' lean plan
# again for each report), each a search over up to 17 x 10 placements. A hit returns a fresh
# copy (unpickled), so a caller may change its plan. The answer is a function of the arguments
# alone: a test that patches this module's heuristics must call _PLAN_CACHE.clear().
_PLAN_CACHE: OrderedDict = OrderedDict()
_PLAN_CACHE_SIZE = 64


def plan_memory(steps: list[StepIO], sizes: dict, graph_input: str, outputs: list,
                aliases: dict | None = None, align: int = 1) -> MemoryPlan:
    """Place every tensor of ``steps`` in one arena (module docstring).

    Arguments:
        steps: the steps in execution order (:class:`StepIO`).
        sizes: bytes of every tensor.
        graph_input: the graph input tensor.
        outputs: the graph output tensors.
        aliases: tensor -> tensor whose bytes it shares (reshape-like nodes).
        align: every buffer offset is a multiple of this (1: bytes; the kernels read bytes);
            a step's scratch is moreover at a multiple of its ``scratch_align``.

    Returns:
        The smallest valid :class:`MemoryPlan` among :data:`HEURISTICS`, each tried without
        sliding writes and with them at the steps needing at least each level of bytes
        (``candidates`` gives each one's arena, None when it produced an overlap).

    Raises:
        ValueError: bad ``align``, a dangling tensor, or no heuristic gave a valid plan (a bug).
    """
    outputs = list(outputs)
    try:
        key = pickle.dumps((list(steps), sizes, graph_input, outputs, aliases, align),
                           protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # not plain data: no cache
        return _plan_memory(steps, sizes, graph_input, outputs, aliases, align)
    if key in _PLAN_CACHE:
        _PLAN_CACHE.move_to_end(key)
        return pickle.loads(_PLAN_CACHE[key])
    plan = _plan_memory(steps, sizes, graph_input, outputs, aliases, align)
    _PLAN_CACHE[key] = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    if len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
        _PLAN_CACHE.popitem(last=False)
    return plan


def _plan_memory(steps: list[StepIO], sizes: dict, graph_input: str, outputs: list,
                 aliases: dict | None, align: int) -> MemoryPlan:
    """:func:`plan_memory` without its cache."""
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if not steps:
        raise ValueError("nothing to plan: the graph has no step")
    n = len(steps)
    with_scratch = [s for s, st in enumerate(steps) if st.scratch > 0]
    best, candidates = None, {}
    # Sliding writes chain: each one moves the next tensor a little lower, so a buffer that
    # slides at every step grows. Slide only at the steps that need the most bytes (input +
    # output at least a threshold), for every threshold, and keep the smallest plan.
    pair = [sum(sizes[t] for t in st.inputs) + sizes[st.output] for st in steps]
    # (the 16 largest levels: the largest steps decide the arena, and the search stays quick)
    levels = sorted({p for p, st in zip(pair, steps) if st.slide}, reverse=True)[:16]
    for level in [None, *levels]:
        slide = set() if level is None else {s for s in range(n) if pair[s] >= level}
        bufs = buffers_of(steps, sizes, graph_input, list(outputs), dict(aliases or {}), slide)
        # buffers_of puts the scratch buffers last, in step order
        scratch = dict(zip(with_scratch, (b.name for b in bufs[len(bufs) - len(with_scratch):])))
        bound = peak_span(bufs, n)
        tensors, extra = bufs[:len(bufs) - len(with_scratch)], bufs[len(bufs) - len(with_scratch):]
        # each heuristic places every buffer, and, when there is scratch, also the tensors
        # alone and then each scratch in the lowest gap free at its step ("scratch last": a
        # two-ended arena keeps its free middle, where the scratch of most steps fits)
        for group, last in [(bufs, [])] + ([(tensors, extra)] if extra else []):
            top = bound if not last else peak_span(group, n)
            orders = {
                "greedy_size": sorted(group, key=lambda b: (-b.bytes, b.first)),
                "greedy_size_x_life": sorted(
                    group, key=lambda b: (-b.bytes * (b.last - b.first + 1), b.first)),
                "greedy_first_use": sorted(group, key=lambda b: (b.first, -b.bytes)),
            }
            for method in HEURISTICS:
                if method == "ping_pong":
                    arena = _ping_pong(group, top, align)
                elif method == "two_ended":
                    arena = _two_ended(group, top, align)
                else:
                    arena = _first_fit(orders[method], align)
                if last:
                    arena = max(arena, _fill(sorted(last, key=lambda b: -b.bytes), group, align))
                label = f"{method}, slide at {len(slide)} steps" if slide else method
                label += ", scratch last" if last else ""
                trial = MemoryPlan(bufs, arena, bound, label, n, scratch=scratch)
                try:
                    trial.check()
                except ValueError:
                    candidates[label] = None
                    continue
                candidates[label] = arena
                if best is None or arena < best[0].arena_bytes:
                    best = (MemoryPlan(bufs, arena, bound, label, n, scratch=scratch),
                            {b.name: b.offset for b in bufs})
    if best is None:
        raise ValueError("no heuristic produced a valid memory plan (a bug in memplan)")
    plan, offsets = best
    for b in plan.buffers:
        b.offset = offsets[b.name]
    plan.candidates = candidates
    plan.check()
    return plan
