"""File names for item ids, which come from manifests and may hold anything."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 100  # leaves room for the hash and an extension under the usual 255-byte limit
# Names Windows refuses whatever the extension; outputs are often copied there.
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}


def safe_filename(item_id: str) -> str:
    """A file name stem for `item_id`: ASCII letters, digits, '.', '_' and '-' only.

    An id that is already such a name is kept as it is, so outputs are easy to
    find. Any other id is cleaned and gets 8 hex digits of its SHA-256, so two ids
    that clean to the same text ("a/b", "a?b") still get different names. The
    result never starts with '.', is never empty and never climbs directories.
    """
    cleaned = _UNSAFE.sub("_", item_id).strip("_") or "item"
    if cleaned[0] == ".":
        cleaned = "_" + cleaned.lstrip(".")
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned = "_" + cleaned
    cleaned = cleaned[:_MAX_STEM]
    if cleaned == item_id:
        return cleaned
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}"
