"""The one home for turning untrusted names into C text and file-system paths.

Names travel in users' files: Keras ``.h5`` / ``.keras`` models, saved IntegerGraph files and
``.tflite`` tensor names. Anything from such a file is untrusted, so no name reaches generated C
or a path raw: every place that writes one goes through a function here.

- :func:`c_identifier`: a C identifier (``[A-Za-z_][A-Za-z0-9_]*``, no keyword, no reserved
  ``__x`` / ``_X`` name, bounded length). A name that had to change gets a short hash of the
  original appended, so two different names never share an identifier (unless one is chosen
  to collide with another's hash on purpose: the hash keeps honest names apart, and a collision
  only makes two outputs share a name, it never reaches code).
- :func:`c_comment`: text safe inside ``/* ... */``: printable ASCII only, no ``*/`` or ``/*``,
  no newline, carriage return or backslash (so no line splice), no ``??`` (so no trigraph),
  bounded length.
- :func:`c_string`: the body of a C string literal, every byte that is not plain printable
  ASCII written as a three-digit octal escape (``"``, ``\\`` and ``?`` escaped too).
- :func:`path_component` and :func:`path_slug`: one folder or file name.

Refuse or slugify (the decision, docs/integer.md "Names"): a name the *caller* passes explicitly
as a path component (``mcu.deploy(..., name=...)``) that is not a plain component is REFUSED
with a ValueError naming it and the fix (:func:`path_component`): the caller chose it and can
choose another, and a silently rewritten folder would not be where they look. A name that comes
with the model (``graph.name``, a layer or tensor name, i.e. from a file) is SLUGIFIED
(:func:`path_slug`, :func:`c_identifier`): the user did not type it and could not fix it without
editing the model; the original is kept only inside a sanitised comment (:func:`c_comment`).

This module imports nothing from tinyopt (a bottom stage, beside ``files``).
"""

from __future__ import annotations

import hashlib
import re

# C11 keywords (C99's plus the _Keywords) and the names the standard headers the generated code
# includes make macros or types of, which would break an identifier the same way.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local asm typeof bool true false NULL alignas alignof noreturn
static_assert thread_local int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t
uintptr_t intptr_t size_t main
""".split())

IDENTIFIER_MAX = 48
COMMENT_MAX = 80
COMPONENT_MAX = 100
_HASH_CHARS = 8
_PLAIN_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]


def _text(text, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__} {text!r}")
    return text


def c_identifier(text: str, what: str = "name", max_len: int = IDENTIFIER_MAX) -> str:
    """A safe C identifier made from ``text``, deterministic.

    Arguments:
        text: any string (e.g. a graph name from a model file).
        what: what ``text`` is, for the error message.
        max_len: longest identifier returned (at least 16).

    Returns:
        ``text`` itself when it already is a plain identifier (``[A-Za-z][A-Za-z0-9_]*``, no
        ``__``, not a keyword, at most ``max_len`` characters); otherwise the runs of other
        characters turned into ``_``, a leading ``m_`` when it would not start with a letter,
        cut to length, plus ``_`` and 8 hex digits of the SHA-256 of ``text`` (so two different
        names that slug alike stay different).

    Raises:
        TypeError: ``text`` is not a str.
        ValueError: ``max_len`` below 16.
    """
    text = _text(text, what)
    if max_len < 16:
        raise ValueError(f"c_identifier max_len must be at least 16, got {max_len}")
    if (re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", text) and "__" not in text
            and text not in C_KEYWORDS and len(text) <= max_len):
        return text
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"m_{slug}".rstrip("_")
    slug = slug[:max_len - _HASH_CHARS - 1].rstrip("_")
    return f"{slug}_{_hash(text)}"


def c_comment(text: str, max_len: int = COMMENT_MAX) -> str:
    """``text`` made safe to sit inside a C block comment, for a human reader.

    Arguments:
        text: any string.
        max_len: longest result before the ``...`` marking a cut (at least 8).

    Returns:
        Printable ASCII only: every other character (newline, CR, tab, NUL, non-ASCII) and every
        backslash becomes ``_``; a ``?`` directly before another ``?`` becomes ``_`` (no trigraph
        ``??x``); ``*/`` and ``/*`` are split by a space; a leading or trailing ``/`` or ``*`` is
        padded with a space (so neither ``/*{text}`` nor ``{text}*/`` can form a delimiter).
        Cut to ``max_len`` characters (then ``...`` appended), so at most ``max_len + 5`` long.

    Raises:
        TypeError: ``text`` is not a str.
    """
    text = _text(text, "comment text")
    s = "".join(ch if " " <= ch <= "~" and ch != "\\" else "_" for ch in text)
    s = re.sub(r"\?(?=\?)", "_", s)
    while "*/" in s or "/*" in s:  # a space never forms a new pair
        s = s.replace("*/", "* /").replace("/*", "/ *")
    if len(s) > max(8, max_len):  # a prefix of a clean text is clean
        s = s[:max(8, max_len)] + "..."
    if s[:1] in ("/", "*"):
        s = " " + s
    if s[-1:] in ("/", "*"):
        s = s + " "
    return s


def c_string(text: str) -> str:
    """The body of a C string literal holding ``text``'s UTF-8 bytes exactly.

    Arguments:
        text: any string.

    Returns:
        Printable ASCII other than ``"``, ``\\`` and ``?`` as is; those three as ``\\"``,
        ``\\\\`` and ``\\?`` (no trigraph); every other byte as a three-digit octal escape
        ``\\ooo`` (three digits, so a following digit is never taken into the escape). Put it
        between double quotes.

    Raises:
        TypeError: ``text`` is not a str.
    """
    text = _text(text, "string text")
    out = []
    for b in text.encode("utf-8", "surrogatepass"):
        ch = chr(b)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= b <= 0x7E:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def path_component(text: str, what: str = "name") -> str:
    """``text`` itself, checked to be one plain path component (REFUSED otherwise).

    For names a caller passes explicitly (e.g. ``mcu.deploy(..., name=...)``): a name that would
    leave the folder it is joined to, or could not be one folder name, is an error, never
    rewritten (module docstring).

    Arguments:
        text: the proposed folder or file name.
        what: what it is (e.g. ``"mcu.deploy name"``), for the error message.

    Returns:
        ``text`` unchanged.

    Raises:
        TypeError: not a str.
        ValueError: empty, longer than 100 characters, containing ``/``, ``\\``, ``..``, NUL or
            another control character, or starting with ``.``; the message names the value and
            the fix.
    """
    text = _text(text, what)
    why = None
    if not text:
        why = "is empty"
    elif len(text) > COMPONENT_MAX:
        why = f"is {len(text)} characters long (at most {COMPONENT_MAX})"
    elif "/" in text or "\\" in text:
        why = "contains a path separator ('/' or '\\')"
    elif ".." in text:
        why = "contains '..'"
    elif text.startswith("."):
        why = "starts with '.' (a hidden file, or '.' itself)"
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        why = "contains a control character (NUL, newline, ...)"
    if why is not None:
        shown = text if len(text) <= 120 else text[:120] + "..."
        raise ValueError(f"{what} {shown!r} {why}: it must be a single folder name; pass a "
                         f"plain name such as {path_slug(text or 'model')!r} (letters, digits, "
                         f"'_', '-', '.', '+')")
    return text


def path_slug(text: str, what: str = "name") -> str:
    """A safe single path component made from a name that came with a model (SLUGIFIED).

    Arguments:
        text: e.g. ``graph.name`` (untrusted: from a model or graph file).
        what: what it is, for the error message.

    Returns:
        ``text`` itself when it is plain (``[A-Za-z0-9_][A-Za-z0-9_.+-]*``, no ``..``, at most
        100 characters), else :func:`c_identifier` of it (letters, digits and ``_`` plus a hash
        of the original), which is always a plain component.

    Raises:
        TypeError: ``text`` is not a str.
    """
    text = _text(text, what)
    if _PLAIN_COMPONENT.fullmatch(text) and ".." not in text and len(text) <= COMPONENT_MAX:
        return text
    return c_identifier(text, what)
