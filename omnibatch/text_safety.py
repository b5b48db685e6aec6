"""Text from outside (file names, manifest fields, error messages) made safe to store and to print.

Two functions, used at the boundaries:

    display_path(b"caf\\xe9.wav" as a path)  -> "caf\\xe9.wav"   valid UTF-8, for tables and messages
    printable("ok\\x1b[2Jboom")              -> "ok\\x1b[2Jboom"  no raw control character for a terminal

A file name on Linux is bytes; Python keeps the bytes that are not UTF-8 as lone
surrogates (U+DC80..U+DCFF, "surrogateescape"), which open() understands and
pyarrow, JSON writers and strict UTF-8 streams refuse. So the real path stays
what the program opens, and its display form is what it stores and shows.
"""

from __future__ import annotations

import os
import re

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls, DEL, C1 controls, and the Unicode characters that reorder or break lines on a terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNPRINTABLE_EXCEPT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    # U+DC80..U+DCFF stand for the undecodable byte 0x80..0xFF (surrogateescape).
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def display_text(text: str) -> str:
    """`text` as valid UTF-8: each lone surrogate becomes a backslash escape.

    A surrogate that stands for an undecodable byte shows as that byte (`\\xe9`);
    any other (from a JSON `"\\ud800"`) as `\\ud800`. Text without surrogates is
    returned as it is.
    """
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(_escape_surrogate, text)


def display_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A path as valid UTF-8 text for tables and messages; undecodable bytes become `\\xNN`.

    The result is for people and tables only: open the original path, not this.
    """
    value = os.fspath(path)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return display_text(value)


def has_surrogates(text: str) -> bool:
    """Whether `text` holds a lone surrogate: a string no UTF-8 writer accepts."""
    return _SURROGATE.search(text) is not None


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return _escape_surrogate(match)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with no control character left raw, so quoting it cannot drive a terminal.

    C0 and C1 controls (ESC included), DEL, the Unicode line separators and bidi
    overrides become backslash escapes (`\\x1b`, `\\n`, `\\u202e`), and lone
    surrogates become `\\xNN` as in display_text. `keep_newlines` leaves "\\n"
    alone, for multi-line messages whose lines are escaped.
    """
    value = str(text)
    pattern = _UNPRINTABLE_EXCEPT_NEWLINE if keep_newlines else _UNPRINTABLE
    if pattern.search(value) is None:
        return value
    return pattern.sub(_escape_control, value)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def control_characters(text: str) -> str:
    """The C0/C1 control characters in `text` (DEL included), escaped, for a refusal message; "" if none."""
    if _CONTROL.search(text) is None:
        return ""
    return ", ".join(printable(c) for c in dict.fromkeys(_CONTROL.findall(text)))


_GENERATED_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def generated_text(text: str) -> str:
    """A model's text as rows and subtitles hold it: no control bytes, line breaks kept.

    A random-weight (or confused) model can emit byte tokens such as ESC or NUL; they
    would reach Parquet cells, SRT cues and every terminal that prints them. A tab or
    carriage return becomes a space; every other C0/C1 control character (DEL included)
    is dropped.
    """
    if _GENERATED_CONTROL.search(text) is None and "\t" not in text:
        return text
    return _GENERATED_CONTROL.sub(lambda m: " " if m.group() == "\r" else "", text.replace("\t", " "))
