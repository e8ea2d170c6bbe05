"""The sequence grammar: what a spec such as ``"prune>mixed(flash=16k,ram=8k)>qat>int>mcu"`` means,
and whether it is valid, checked before any training.

A spec is ``>``-separated steps (a string, or a list of step strings):

- Keras transforms, zero or more: ``prune``, ``qat`` (LiteRT/tfmot QAT when no bit policy precedes
  it), ``decompose``, ``graph``.
- Then either a **LiteRT converter** (one of :data:`tinyopt.litert.convert.MODES`, e.g. ``int8``),
  which may be followed by ``int`` (its integer graph, :func:`tinyopt.sim.graph_from_tflite`; int8
  flavours only) and ``mcu``;
- or the **sub-byte path**: a bit policy, then ``ptq`` and/or ``qat`` to it, then ``int`` (lowering
  to the integer graph, :func:`tinyopt.icn.convert`), optionally ``mcu`` (C on the emulated
  Cortex-M7). The policy is a step of its own, ``mixed(flash=16k,ram=8k[,PC][,search=accuracy])``
  (under a budget: the memory-driven rule, :func:`tinyopt.policy.memory_driven`, by default or
  with ``search=memory``; with ``search=accuracy`` the least summed sensitivity on the calibration
  data, :func:`tinyopt.mixed.accuracy_search.accuracy_driven`) or ``w4a4[(PC)]`` (uniform bits), or
  the arguments of the first ``ptq``/``qat``: ``ptq(w4a4,PC)``, ``qat(flash=6k,ram=8k,PC)``.
  Granularity defaults to PL (the library's default).

``mcu`` is always last. Sizes take the binary suffixes of :func:`tinyopt.policy.parse_bytes`
(k = 1024). :func:`validate` raises ``ValueError`` with the reason, and for a budget that no bit
assignment can meet the smallest reachable flash / RAM (from :class:`tinyopt.policy.BudgetError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tinyopt.litert import convert

TRANSFORMS = ("prune", "qat", "decompose", "graph")
BASELINE = "float32"
QUANTIZERS = ("ptq", "qat")          # sub-byte quantization to the policy
LOWER, DEPLOY = "int", "mcu"
INT_CONVERTERS = ("int8",)           # LiteRT modes whose flatbuffer lowers to an integer graph
GRANULARITIES = ("PL", "PC")
SEARCHES = ("memory", "accuracy")    # mixed(...,search=...): memory_driven / accuracy_driven
_UNIFORM = re.compile(r"w([248])a([248])")
_STEP = re.compile(r"([a-z_0-9]+)(?:\((.*)\))?")


@dataclass(frozen=True)
class Step:
    """One parsed step.

    Attributes:
        name: the step kind: a transform, a converter mode, ``mixed``, ``uniform``, ``ptq``,
            ``qat``, ``int`` or ``mcu``.
        text: its canonical text (what variant names are made of), e.g.
            ``mixed(flash=16k,ram=8k,PC)``.
        policy: for a policy (or a ``ptq``/``qat`` with policy arguments): ``{"kind": "mixed",
            "flash": bytes, "ram": bytes, "granularity": ...}`` or ``{"kind": "uniform", "w": 4,
            "a": 4, "granularity": ...}``; else empty.
    """

    name: str
    text: str
    policy: dict = field(default_factory=dict, hash=False, compare=False)


def _size_text(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _parse_policy(args: list[str], where: str) -> dict:
    """``["flash=16k", "ram=8k", "PC"]`` or ``["w4a4", "PC"]`` -> a policy dict."""
    from tinyopt.mixed.policy import parse_bytes
    pol, gran = {}, "PL"
    seen = {}  # what each argument sets -> the argument, so a second one is refused, not used
    for a in args:
        key, _, value = a.partition("=")
        what = "the granularity (PL/PC)" if a.upper() in GRANULARITIES else \
            "the bits (wNaM)" if _UNIFORM.fullmatch(a) else key
        if what in seen:
            raise ValueError(f"{where}: {what} given twice ({seen[what]!r} and {a!r}); give it "
                             "once, e.g. mixed(flash=16k,ram=8k,PC) or ptq(w4a4,PC)")
        seen[what] = a
        if a.upper() in GRANULARITIES:
            gran = a.upper()
        elif _UNIFORM.fullmatch(a):
            m = _UNIFORM.fullmatch(a)
            pol.update(kind="uniform", w=int(m[1]), a=int(m[2]))
        elif key in ("flash", "ram") and value:
            pol["kind"] = "mixed"
            pol[key] = parse_bytes(value, f"{where}: {key}")
        elif key == "search":
            if value not in SEARCHES:
                raise ValueError(f"{where}: search={value!r} is not a policy search; use "
                                 "search=memory (the memory-driven rule, the default) or "
                                 "search=accuracy (least sensitivity on the calibration data), "
                                 "e.g. mixed(flash=16k,ram=8k,search=accuracy)")
            pol["search"] = value
        else:
            raise ValueError(f"{where}: unknown argument {a!r}; a policy is 'flash=<size>,"
                             f"ram=<size>[,search=memory|accuracy]' (under a budget) or "
                             f"'w<bits>a<bits>' (uniform, bits 2/4/8), optionally with PL or PC, "
                             f"e.g. mixed(flash=16k,ram=8k,PC) or ptq(w4a4,PC)")
    if "search" in pol and not {"flash", "ram"} & set(pol):
        raise ValueError(f"{where}: search= chooses how a budget is met; give flash=<size> and "
                         "ram=<size> with it, e.g. mixed(flash=16k,ram=8k,search=accuracy)")
    if pol.get("kind") == "mixed":
        pol.setdefault("search", "memory")
    if pol.get("kind") == "mixed" and not {"flash", "ram"} <= set(pol):
        raise ValueError(f"{where}: a memory-driven policy needs both flash=<size> and "
                         "ram=<size>, e.g. mixed(flash=16k,ram=8k)")
    if pol.get("kind") == "mixed" and {"w", "a"} & set(pol):
        raise ValueError(f"{where}: give either a budget (flash=,ram=) or uniform bits (wNaM)")
    if pol:
        pol["granularity"] = gran
    elif args:
        raise ValueError(f"{where}: {args} names a granularity but no bits or budget")
    return pol


def _policy_text(pol: dict) -> str:
    if pol["kind"] == "mixed":
        # search=memory (the default) is left out: the variant names of existing specs stay
        search = "" if pol.get("search", "memory") == "memory" else f",search={pol['search']}"
        return (f"flash={_size_text(pol['flash'])},ram={_size_text(pol['ram'])},"
                f"{pol['granularity']}{search}")
    return f"w{pol['w']}a{pol['a']},{pol['granularity']}"


def parse_step(text: str) -> Step:
    """One step's text -> :class:`Step` (names lower-cased, granularities upper-cased).

    Raises:
        ValueError: malformed text or unknown policy arguments (unknown step names are left to
            :func:`validate`, which names the valid ones).
    """
    raw = str(text).strip()
    m = _STEP.fullmatch(raw.lower().replace(" ", ""))
    if not m:
        raise ValueError(f"unknown step {raw!r}: a step is a name with optional arguments in "
                         "parentheses, e.g. prune, int8, mixed(flash=16k,ram=8k), ptq(w4a4,PC)")
    name, args = m[1], m[2]
    arg_list = [a for a in (args or "").split(",") if a]
    if _UNIFORM.fullmatch(name):
        pol = _parse_policy([name, *arg_list], raw)
        return Step("uniform", f"{name}({pol['granularity']})", pol)
    if name == "mixed":
        pol = _parse_policy(arg_list, raw)
        if pol.get("kind") != "mixed":
            raise ValueError(f"{raw!r}: mixed needs a budget, e.g. mixed(flash=16k,ram=8k)")
        return Step("mixed", f"mixed({_policy_text(pol)})", pol)
    if name in QUANTIZERS and args is not None:
        pol = _parse_policy(arg_list, raw)
        return Step(name, f"{name}({_policy_text(pol)})" if pol else name, pol)
    if args is not None:
        raise ValueError(f"{raw!r}: step {name!r} takes no arguments")
    return Step(name, name)


def parse(spec) -> list[str]:
    """The canonical text of every step of ``spec`` (no validation beyond the syntax)."""
    return [s.text for s in parse_steps(spec)]


def parse_steps(spec) -> list[Step]:
    """``spec`` (string or list) -> list of :class:`Step`.

    Raises:
        ValueError: a spec that is neither a string nor a list, or a malformed step.
    """
    if isinstance(spec, str):
        parts = spec.split(">")
    elif isinstance(spec, (list, tuple)):
        parts = list(spec)
    else:
        raise ValueError(f"a sequence spec is a string like 'prune>qat>int8' or a list, got "
                         f"{type(spec).__name__}")
    out = []
    for p in parts:
        if not str(p).strip():
            raise ValueError(f"{spec!r}: unknown step '' (an empty step)")
        out.append(parse_step(p))
    return out


def subbyte(steps: list[Step]) -> bool:
    """Whether the steps take the sub-byte path (a policy step, or ptq/qat with a policy)."""
    return any(s.name in ("mixed", "uniform", "ptq") or (s.name == "qat" and s.policy)
               for s in steps)


def _check_litert(steps: list[Step], text: str) -> None:
    """The LiteRT path: transforms, one converter, optionally int (int8 only) and mcu."""
    names = [s.name for s in steps]
    modes = list(convert.MODES)
    tail = []
    while names and names[-1] in (LOWER, DEPLOY):
        tail.insert(0, names.pop())
    if not names or names[-1] not in modes:
        raise ValueError(f"{text!r}: a sequence must end with a converter, one of {modes} "
                         "(e.g. 'prune>int8'), or with int / mcu (e.g. 'int8>int>mcu', "
                         "'ptq(w4a4,PC)>int>mcu')")
    if any(s in modes for s in names[:-1]):
        raise ValueError(f"{text!r}: a converter must be the last step before int / mcu, "
                         "and only one")
    early = [s for s in names if s in (LOWER, DEPLOY)]
    if early:
        raise ValueError(f"{text!r}: {early[0]} before the converter '{names[-1]}': int lowers "
                         "an int8 flatbuffer and mcu deploys the integer graph, so they come "
                         f"last ('{names[-1]}>int>mcu')")
    if tail and tail[0] != LOWER:
        raise ValueError(f"{text!r}: mcu deploys an integer graph: put int before it "
                         f"('{names[-1]}>int>mcu')")
    if tail and names[-1] not in INT_CONVERTERS:
        raise ValueError(f"{text!r}: int lowers an int8 flatbuffer (the converters "
                         f"{list(INT_CONVERTERS)}); '{names[-1]}' keeps float tensors")
    transforms = names[:-1]
    for s in TRANSFORMS:
        if transforms.count(s) > 1:
            raise ValueError(f"{text!r}: {s} appears {transforms.count(s)} times; each transform "
                             "may appear once")
    if "qat" in transforms:
        after = transforms[transforms.index("qat") + 1:]
        if after:
            raise ValueError(f"{text!r}: {after[0]} after qat is not possible: the QAT model's "
                             "layers are fake-quant wrappers; put qat last among the transforms")
        if names[-1] in ("float16", "dynamic", "int16x8"):
            raise ValueError(f"{text!r}: after qat the converter quantizes to int8 from the "
                             f"fake-quant ranges whatever '{names[-1]}' asks, so the label would "
                             "be false; use qat>int8, qat>int8_fallback or qat>float32")
    _check_decompose(transforms, text)


def _check_decompose(transforms: list[str], text: str) -> None:
    if "decompose" in transforms and "prune" in transforms and \
            transforms.index("prune") < transforms.index("decompose"):
        raise ValueError(f"{text!r}: decompose after prune replaces the pruned kernels and "
                         "discards their sparsity; put decompose before prune")


def _check_subbyte(steps: list[Step], text: str) -> None:
    """transforms > [policy] > ptq|qat [> qat] > int [> mcu]."""
    names = [s.name for s in steps]
    if DEPLOY in names and names.index(DEPLOY) != len(names) - 1:
        raise ValueError(f"{text!r}: {names[names.index(DEPLOY) + 1]} after mcu: mcu (deployment) "
                         "must be the last step")
    if names[-1] not in (LOWER, DEPLOY):
        raise ValueError(f"{text!r}: a sub-byte model has no LiteRT converter: end with int "
                         "(the integer graph) or int>mcu, e.g. "
                         "'mixed(flash=16k,ram=8k)>qat>int>mcu'")
    if names[-1] == DEPLOY and (len(names) < 2 or names[-2] != LOWER):
        raise ValueError(f"{text!r}: mcu deploys an integer graph: put int before it")
    if names.count(LOWER) > 1:
        raise ValueError(f"{text!r}: int appears {names.count(LOWER)} times")
    first = next(i for i, s in enumerate(steps)
                 if s.name in ("mixed", "uniform", "ptq") or (s.name == "qat" and s.policy))
    transforms, rest = names[:first], steps[first:names.index(LOWER)]
    bad = [n for n in transforms if n not in TRANSFORMS]
    if bad:
        raise ValueError(f"{text!r}: {bad[0]} before the bit policy: only the transforms "
                         f"{list(TRANSFORMS)} may come before it (a LiteRT converter cannot be "
                         "quantized again)")
    if "qat" in transforms:
        raise ValueError(f"{text!r}: qat appears twice (LiteRT QAT, then sub-byte QAT): a model "
                         "is quantization-aware trained once; drop the first qat")
    for s in TRANSFORMS:
        if transforms.count(s) > 1:
            raise ValueError(f"{text!r}: {s} appears {transforms.count(s)} times; each transform "
                             "may appear once")
    _check_decompose(transforms, text)
    policies = [s for s in rest if s.policy]
    if len(policies) > 1:
        raise ValueError(f"{text!r}: {len(policies)} bit policies "
                         f"({', '.join(p.text for p in policies)}); give one")
    quant = [s.name for s in rest if s.name in QUANTIZERS]
    other = [s.name for s in rest if s.name not in QUANTIZERS + ("mixed", "uniform")]
    if other:
        raise ValueError(f"{text!r}: {other[0]} after the bit policy: only ptq and qat may follow "
                         "it before int (put transforms before the policy)")
    if not quant:
        raise ValueError(f"{text!r}: the policy {policies[0].text} needs ptq or qat after it "
                         "(e.g. '>qat>int')")
    if quant.count("qat") > 1:
        raise ValueError(f"{text!r}: qat appears {quant.count('qat')} times; a model is "
                         "quantization-aware trained once")
    if quant.count("ptq") > 1 or quant == ["qat", "ptq"]:
        raise ValueError(f"{text!r}: ptq after qat (or twice) would discard the training; "
                         "QAT already starts from the PTQ model: use ptq, qat or ptq>qat")
    if rest[0].name in QUANTIZERS and not rest[0].policy:
        raise ValueError(f"{text!r}: {rest[0].name} has no bit policy: put one before it "
                         "(mixed(flash=..,ram=..) or w4a4) or give it arguments: ptq(w4a4,PC)")


def validate(spec, model=None, decompose_rank: int = 1) -> list[str]:
    """The canonical steps of ``spec`` if it is valid.

    Arguments:
        spec: a string such as ``"prune>mixed(flash=16k,ram=8k)>qat>int>mcu"`` or a list of steps.
        model: the float model (optional): when given, a memory-driven budget is checked against
            it (after ``decompose`` when the spec decomposes first; pruning keeps the shapes).
        decompose_rank: the rank ``decompose`` will use (for that budget check).

    Returns:
        The canonical step texts.

    Raises:
        ValueError: with the reason: an unknown or empty step, a converter missing or misplaced,
            a step after ``mcu``, ``int`` without an integer model, a transform repeated or after
            qat, QAT twice, a policy without ptq/qat, a converter label that would be false after
            qat, decompose after prune; a budget no bit assignment meets (the message gives the
            smallest reachable flash and RAM); with ``model``, a layer the sub-byte flow cannot
            deploy (:func:`tinyopt.mixed.dag.check_supported`: a dilation rate above 255, ...).
    """
    steps = parse_steps(spec)
    text = ">".join(s.text for s in steps)
    known = set(TRANSFORMS) | set(convert.MODES) | {"mixed", "uniform", "ptq", LOWER, DEPLOY}
    for s in steps:
        if s.name not in known:
            raise ValueError(f"{text!r}: unknown step {s.text!r}; transforms are "
                             f"{list(TRANSFORMS)}, converters are {list(convert.MODES)}, "
                             "sub-byte steps are mixed(flash=..,ram=..), w<bits>a<bits>, ptq, "
                             "qat, int, mcu")
    names = [s.name for s in steps]
    if DEPLOY in names and names.index(DEPLOY) != len(names) - 1:
        raise ValueError(f"{text!r}: {names[names.index(DEPLOY) + 1]} after mcu: mcu "
                         "(deployment) must be the last step")
    if subbyte(steps):
        _check_subbyte(steps, text)
        if model is not None:
            from tinyopt.mixed import dag
            dag.check_supported(model)  # before pruning or training, not after them
            check_budget(steps, model, decompose_rank, text)
    else:
        _check_litert(steps, text)
    return [s.text for s in steps]


def policy_step(steps: list[Step]) -> Step | None:
    """The step that carries the bit policy (None on the LiteRT path)."""
    return next((s for s in steps if s.policy), None)


def make_policy(pol: dict, model, calibration=None, **measure):
    """The :class:`tinyopt.mixed.policy.Policy` a policy dict asks for, for ``model``.

    Arguments:
        pol: a :class:`Step`'s ``policy``.
        model: the float model.
        calibration: float images, needed by ``search=accuracy`` (the sensitivity is measured
            on them, :func:`tinyopt.mixed.accuracy_search.accuracy_driven`).
        **measure: passed to :func:`tinyopt.mixed.sensitivity.layer_sensitivity` (``samples``);
            or ``sensitivity=`` a table, which skips the measurement.

    Raises:
        tinyopt.mixed.search.BudgetError: a budget that no bit assignment meets.
        ValueError: ``search=accuracy`` without calibration images (or a table).
    """
    from tinyopt.mixed.policy import Policy
    from tinyopt.mixed.search import memory_driven
    if pol["kind"] == "uniform":
        return Policy.uniform(model, pol["w"], pol["a"], pol["granularity"])
    if pol.get("search", "memory") == "accuracy":
        from tinyopt.mixed.accuracy_search import accuracy_driven
        return accuracy_driven(model, pol["flash"], pol["ram"], calibration,
                               pol["granularity"], **measure)
    return memory_driven(model, pol["flash"], pol["ram"], pol["granularity"])


def check_budget(steps: list[Step], model, decompose_rank: int = 1, text: str = "") -> None:
    """Raise ValueError when the spec's memory-driven budget cannot be met on ``model``.

    The check runs on the architecture the policy will see: ``decompose`` changes it (its
    least-squares initialisation is cheap, no training), pruning does not. For
    ``search=accuracy`` it solves the accuracy-aware problem with zero sensitivity (no data, no
    calibration): the same feasibility as the measured search.
    """
    from tinyopt.mixed.search import BudgetError
    step = policy_step(steps)
    if step is None or step.policy["kind"] != "mixed":
        return
    if any(s.name == "decompose" for s in steps):
        from tinyopt.transforms import decompose
        model = decompose.decompose(model, rank=decompose_rank).model
    pol = step.policy
    extra = {}
    if pol.get("search") == "accuracy":  # feasibility only: no calibration before training
        from tinyopt.mixed.accuracy_search import zero_sensitivity
        extra = {"sensitivity": zero_sensitivity(model)}
    try:
        make_policy(pol, model, **extra)
    except BudgetError as e:
        raise ValueError(f"{text or step.text!r}: the budget cannot be met: the smallest "
                         f"reachable flash is {e.min_flash:,} B and the smallest peak RAM "
                         f"{e.min_ram:,} B (at {e.min_ram_layer!r}); asked flash "
                         f"{e.flash_budget:,} B, RAM {e.ram_budget:,} B. Raise the budget to at "
                         f"least mixed(flash={e.min_flash},ram={e.min_ram})") from e
