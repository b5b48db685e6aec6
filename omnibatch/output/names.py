"""File names for item ids, which come from manifests and may hold anything.

Two distinct ids must never get names that one disk would take for the same
file: outputs (subtitles/<name>.srt, audio/<name>.wav) would overwrite each
other. Disks on macOS and Windows ignore case, so "Talk" and "talk" count as the
same name. The rule that guarantees it:

- an id is kept as it is only when it is already a lowercase-safe name (a-z, 0-9,
  '.', '_', '-'; starting with a letter, digit or '_'; not ending in '.'; not a name
  Windows reserves) and does not end in '-' + 16 hex digits;
- every other id becomes its cleaned text, '-', and 16 hex digits of its SHA-256.

Kept names are distinct ids, so they differ even ignoring case (they hold no
capitals); hashed names always end in '-' + 16 hex digits and kept names never
do, so the two kinds cannot meet; two hashed names are equal only when 64 bits of
SHA-256 are. Ids that omnibatch derives (`talk-1a2b3c4d`: 8 hex digits) are kept.
"""

from __future__ import annotations

import hashlib
import re

HASH_DIGITS = 16
MAX_NAME = 120  # the longest name returned; leaves room for an extension under the 255-byte limit
_MAX_STEM = MAX_NAME - HASH_DIGITS - 4  # a hashed name's cleaned part
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEEPABLE = re.compile(r"[a-z0-9_][a-z0-9._-]*")
_LOOKS_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_DIGITS}}}")
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

    The same id always gives the same name, and distinct ids give names that differ
    even ignoring case (see the module docstring). `ep-001` stays `ep-001`; `Talk`
    becomes `Talk-<16 hex>`, `a/b` becomes `a_b-<16 hex>`. The result never starts
    with '.' or '-', is never empty, never climbs directories and is at most 120
    characters.
    """
    if _keepable(item_id):
        return item_id
    cleaned = _UNSAFE.sub("_", item_id).strip("_").lstrip(".-")[:_MAX_STEM] or "item"
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned = "_" + cleaned
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    return f"{cleaned}-{digest}"


def _keepable(item_id: str) -> bool:
    return (
        len(item_id) <= MAX_NAME
        and _KEEPABLE.fullmatch(item_id) is not None
        and not item_id.endswith(".")
        and _LOOKS_HASHED.fullmatch(item_id[-HASH_DIGITS - 1 :]) is None
        and item_id.split(".")[0] not in _RESERVED
    )
