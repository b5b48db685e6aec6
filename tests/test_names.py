"""safe_filename: ids from anywhere become file names that are safe and never collide, even ignoring case.

Outputs are named by id (subtitles/<name>.srt, audio/<name>.wav); two ids with one
name would overwrite each other's files, silently. Disks on macOS and Windows
ignore case, so "equal ignoring case" counts as a collision.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnibatch.output.names import HASH_DIGITS, safe_filename

SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
HASHED = re.compile(rf".*-[0-9a-f]{{{HASH_DIGITS}}}")

# Characters that make trouble, mixed into ordinary text: separators, dots, case, controls,
# surrogates (undecodable file-name bytes and JSON "\udc80" escapes), and text that cleans away.
_TRICKY = ["/", "\\", ".", "..", "-", "_", " ", ":", "\x00", "\x1b", "\x9b", "\n", "\udc80", "\udce9",
           "\ud800", "é", "É", "ß", "ẞ", "İ", "日本", "A", "a", "con", "NUL", "-0123456789abcdef"]
ids = st.lists(
    st.one_of(st.characters(categories=["L", "N", "P", "S", "Z", "Cc", "Cs"]), st.sampled_from(_TRICKY)),
    max_size=40,
).map("".join)


def _twins(item_id: str) -> list[str]:
    """Ids built to collide with `item_id`'s name: its name itself, and case variants of both."""
    name = safe_filename(item_id)
    return [item_id, name, name.upper(), name.lower(), item_id.upper(), item_id.lower(), item_id.swapcase()]


def assert_no_collisions(item_ids: set[str]) -> None:
    by_name: dict[str, str] = {}
    for item_id in item_ids:
        key = safe_filename(item_id).lower()
        other = by_name.setdefault(key, item_id)
        assert other == item_id, f"{other!r} and {item_id!r} both map to {safe_filename(item_id)!r}"


def test_plain_lowercase_ids_are_kept() -> None:
    for item_id in ("ep-001", "talk", "show_2024.s01e02", "talk-1a2b3c4d", "_x", "0", "a" * 120):
        assert safe_filename(item_id) == item_id


def test_the_cases_seen_colliding_now_differ() -> None:
    # "a/b" cleaned to "a_b-<hash>"; the id that literally is that name must not take the same name.
    hashed = safe_filename("a/b")
    assert HASHED.fullmatch(hashed) and hashed.startswith("a_b-")
    assert safe_filename(hashed).lower() != hashed.lower()
    # "Talk" and "talk" are one file on a case-insensitive disk.
    assert safe_filename("talk") == "talk"
    assert safe_filename("Talk").lower() != "talk" and safe_filename("Talk").startswith("Talk-")
    assert safe_filename("TALK").lower() != safe_filename("Talk").lower()


def test_names_that_are_not_kept() -> None:
    for item_id in ("Ep-001", "a b", "", ".", "..", ".hidden", "-rf", "con", "nul.txt", "trailing.",
                    "x" * 121, "abc-0123456789abcdef", "日本語", "caf\udce9", "\x1b[31mred"):
        name = safe_filename(item_id)
        assert name != item_id and HASHED.fullmatch(name), (item_id, name)
        assert SAFE.fullmatch(name) and len(name) <= 120
        assert name.split(".")[0].lower() not in {"con", "nul"}


@settings(max_examples=300, deadline=None, database=None)
@given(ids)
def test_any_id_gives_a_safe_stable_name(item_id: str) -> None:
    name = safe_filename(item_id)
    assert SAFE.fullmatch(name), name  # ASCII-safe, never starts with '.' or '-'
    assert len(name) <= 120
    assert ".." not in name.split("/") and not name.endswith(".")
    assert safe_filename(item_id) == name
    assert name == item_id or HASHED.fullmatch(name)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ids, min_size=1, max_size=150, unique=True))
def test_distinct_ids_never_share_a_name_even_ignoring_case(item_ids: list[str]) -> None:
    pool = {twin for item_id in item_ids for twin in _twins(item_id)}
    assert_no_collisions(pool)


def test_a_large_sample_of_near_twins_never_collides() -> None:
    # 60k ids that differ only in case, separators, hashes-as-text and lossy characters.
    stems = ["talk", "Talk", "a/b", "a_b", "a?b", "日本", "中文", "", ".", "con", "ep-001", "x" * 130]
    pool = set()
    for n in range(5000):
        for stem in stems:
            pool.add(f"{stem}{n}")
    pool |= {twin for item_id in list(pool)[:2000] for twin in _twins(item_id)}
    assert len(pool) > 60000
    assert_no_collisions(pool)
