"""One manifest entry (a JSON object, a CSV row, a Parquet row) -> one MediaItem.

Every format hands over a dict of column -> value where None means "absent"
(JSON null, an empty CSV cell, a Parquet null), so the rules live here once.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omnibatch.languages import find_language
from omnibatch.media.remote import is_remote, missing_support, object_name
from omnibatch.records import UNSTAGED_PATH, MediaItem, Origin
from omnibatch.text_safety import control_characters, has_surrogates

PATH_KEYS = ("path", "audio_filepath", "file")  # "audio_filepath" is NeMo's name
DURATION_KEYS = ("duration", "duration_s")
KNOWN_KEYS = frozenset({"id", "language", *PATH_KEYS, *DURATION_KEYS})

_SLUG_UNSAFE = re.compile(r"[^\w-]+")
# Deeper values than this cannot be carried to the output: json.dumps and pyarrow recurse on them.
MAX_NESTING = 64
# Python will not turn a longer integer into text (sys.get_int_max_str_digits()); refuse it at input.
MAX_INT_DIGITS = 4300
_MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
_POISON = re.compile("[\x00\ud800-\udfff]")  # a NUL or a lone surrogate: what no table stores as text


class EntryError(Exception):
    """Everything wrong with one entry, as short messages without a location."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def absolute_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> Path:
    """Expand `~`, join to `base_dir` when relative, normalise; the file system is not touched.

    Symlinks are not followed, so an item keeps the name the user gave it (and its id
    survives a remounted disk that keeps the same path).
    """
    return Path(_absolute(os.fspath(path), None if base_dir is None else os.fspath(base_dir)))


def _absolute(path: str, base_dir: str | None) -> str:
    # Plain strings: pathlib costs more than the rest of a manifest line put together.
    expanded = os.path.expanduser(path)
    if base_dir is not None:
        expanded = os.path.join(base_dir, expanded)  # an absolute `expanded` wins
    return os.path.abspath(expanded)


def derive_id(path: str | os.PathLike[str]) -> str:
    """A readable id that is the same on every rerun: `<stem-slug>-<8 hex of sha1(path)>`.

    `path` should be absolute (as MediaItem.path is); the same string always gives the same id.
    """
    text = os.fspath(path)
    try:
        raw = os.fsencode(text)  # a file name's own bytes, undecodable ones included
    except UnicodeEncodeError:  # a surrogate no file name holds; manifests refuse those
        raw = text.encode("utf-8", "surrogatepass")
    digest = hashlib.sha1(raw).hexdigest()[:8]
    stem = os.path.splitext(os.path.basename(text))[0]
    slug = _SLUG_UNSAFE.sub("-", stem.lower()).strip("-_")[:40].strip("-_")
    return f"{slug or 'item'}-{digest}"


def parse_entry(entry: Mapping[str, Any], *, base_dir: str | os.PathLike[str], source: str) -> MediaItem:
    """Build the item for one entry, or raise EntryError listing every problem in it.

    `base_dir` is the absolute folder relative paths are read from (the manifest's).
    """
    problems: list[str] = []
    poisoned = _refuse_poison(entry, problems)
    path_poisoned = any(key in poisoned for key in PATH_KEYS)
    path = None if path_poisoned else _read_path(entry, os.fspath(base_dir), problems)
    item_id = None if "id" in poisoned else _read_id(entry, problems)
    language = None if "language" in poisoned else _read_language(entry, problems)
    duration_s = _read_duration(entry, problems)
    if problems:
        raise EntryError(problems)
    assert path is not None  # _read_path reported a problem otherwise
    origin = None
    if is_remote(path):  # an object in storage: fetched by the worker that decodes it
        origin = Origin("remote", path, object_name(path))
    return MediaItem(
        id=item_id if item_id is not None else derive_id(path),
        path=UNSTAGED_PATH if origin else Path(path),
        origin=origin,
        source=source,
        language=language,
        duration_s=duration_s,
        extra={key: value for key, value in entry.items() if key not in KNOWN_KEYS},
    )


def poison_problems(entry: Mapping[str, Any]) -> list[str]:
    """What in `entry` cannot be stored as text (see `_refuse_poison`); empty when nothing."""
    problems: list[str] = []
    _refuse_poison(entry, problems)
    return problems


def _refuse_poison(entry: Mapping[str, Any], problems: list[str]) -> set[str]:
    """Report every key whose name or value cannot be stored as text; return those keys.

    Lone surrogates (a JSON "\\udc80" escape), NUL characters, integers past Python's
    4300-digit limit and values nested deeper than MAX_NESTING would each crash the run
    later, in pyarrow or json.dumps, so they are refused here with their line.
    """
    poisoned: set[str] = set()
    for key, value in entry.items():
        name = key if isinstance(key, str) else str(key)
        why = _bad_text(name)
        if why is not None:
            problems.append(f'the key "{_as_written(name)}" {why}')
            poisoned.add(key)
            continue
        why = _bad_value(value)
        if why is not None:
            problems.append(f'"{name}" {why}')
            poisoned.add(key)
    return poisoned


def _bad_text(text: str) -> str | None:
    if _POISON.search(text) is None:
        return None
    if has_surrogates(text):
        return (f"holds a lone surrogate ({_surrogates(text)}), which is not a character: write the "
                "character itself (UTF-8), not a \\udcXX escape")
    if "\0" in text:
        return "contains a NUL character"
    return None


def _surrogates(text: str) -> str:
    found = dict.fromkeys(_as_written(c) for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return ", ".join(list(found)[:3])


def _as_written(text: str) -> str:
    """`text` with each lone surrogate as the JSON escape that made it (\\udc80)."""
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _bad_value(value: Any, depth: int = 0) -> str | None:
    """Why `value` (any JSON or Parquet value) cannot be carried, or None.

    Recursion is bounded: past MAX_NESTING levels a value is refused, not descended into.
    """
    kind = type(value)
    if kind is str or isinstance(value, str):
        return None if _POISON.search(value) is None else _bad_text(value)
    if value is None or kind is float or kind is bool:
        return None
    if kind is int or isinstance(value, int):
        too_long = value.bit_length() > _MAX_INT_BITS
        return f"holds an integer of more than {MAX_INT_DIGITS} digits" if too_long else None
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_NESTING:
            return f"is nested more than {MAX_NESTING} levels deep"
        inner = (x for pair in value.items() for x in pair) if isinstance(value, dict) else value
        for part in inner:
            why = _bad_value(part, depth + 1)
            if why is not None:
                return why
    return None


def _read_path(entry: Mapping[str, Any], base_dir: str, problems: list[str]) -> str | None:
    given = {key: entry[key] for key in PATH_KEYS if entry.get(key) is not None}
    if not given:
        problems.append('no path: give the file in "path" (or "audio_filepath", "file")')
        return None
    if len(given) > 1 and len({repr(value) for value in given.values()}) > 1:
        names = " and ".join(f'"{key}"' for key in given)
        problems.append(f"{names} name different files; keep one")
        return None
    key, value = next(iter(given.items()))
    if not isinstance(value, str):
        problems.append(f'"{key}" must be a string, not {_describe(value)}')
        return None
    if not value.strip():
        problems.append(f'"{key}" is empty')
        return None
    if "\0" in value:
        problems.append(f'"{key}" contains a NUL character')
        return None
    if is_remote(value):
        if why := missing_support(value):
            problems.append(why)
            return None
        return value
    return _absolute(value, base_dir)


def _read_id(entry: Mapping[str, Any], problems: list[str]) -> str | None:
    value = entry.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(f'"id" must be a string or an integer, not {_describe(value)}')
        return None
    text = str(value)
    if not text.strip():
        problems.append('"id" is empty: give a name or leave the key out for a derived one')
        return None
    if controls := control_characters(text):
        problems.append(f'"id" contains control characters ({controls}); ids name output files, so use '
                        "printable text")
        return None
    return text


def _read_language(entry: Mapping[str, Any], problems: list[str]) -> str | None:
    value = entry.get("language")
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f'"language" must be a string such as "en", not {_describe(value)}')
        return None
    if controls := control_characters(value):
        problems.append(f'"language" contains control characters ({controls}); give a code such as "en"')
        return None
    if not value.strip():
        return None
    code = find_language(value)
    if code is None:
        problems.append(f'"language" {value.strip()!r} is not a language omnibatch knows: give a code '
                        'such as "en" or an English name (README, "Languages", lists them)')
    return code


def _read_duration(entry: Mapping[str, Any], problems: list[str]) -> float | None:
    found: dict[str, float] = {}
    for key in DURATION_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        seconds = _as_seconds(value)
        if seconds is None:
            problems.append(f'"{key}" must be a number of seconds >= 0, not {_describe(value)}')
            return None
        found[key] = seconds
    if len(set(found.values())) > 1:
        problems.append('"duration" and "duration_s" disagree; keep one')
        return None
    return next(iter(found.values()), None)


def _as_seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        return f"an integer of more than {MAX_INT_DIGITS} digits"  # repr() itself would raise
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
