"""Property tests (hypothesis) for hostile inputs: whatever a manifest or a folder holds, the reader
refuses it with its file and line, or reads items whose every string a table and a terminal can take;
never any other exception (issue 11). The example tests are in test_hostile_inputs.py.

The examples are the same on every run (tests/conftest.py); HYPOTHESIS_PROFILE=explore draws new ones.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

from _hostile import RAW_CONTROL, storable
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omnibatch.errors import InputError
from omnibatch.manifests import read_inputs
from omnibatch.output.names import safe_filename
from omnibatch.text_safety import display_text

HYPOTHESIS = settings(max_examples=200, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])


# -- property tests: whatever the input, a refusal with its line or storable items ----------------

_TRICKY = ["\udc80", "\udce9", "\ud800", "\x00", "\x1b", "\x9b", "\n", "\r", "\u2028", '"', "\\", ",",
           "/", "..", "é", "日本", "😀", "\ufeff", "#", "[", "{"]
_printable_chars = st.characters(categories=["L", "N", "P", "S", "Z"])  # any script, emoji, quotes, spaces
texts = st.lists(
    st.one_of(_printable_chars, _printable_chars, st.characters(categories=["Cc"]), st.sampled_from(_TRICKY)),
    max_size=12,
).map("".join)
# Hostile but legal: every script, NaN, huge-but-legal numbers, nesting; what must be read, not refused.
legal_texts = st.text(_printable_chars, min_size=1, max_size=12).filter(str.strip)
legal_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**4000), 10**4000), st.floats(), legal_texts),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(legal_texts, inner, max_size=3), max_leaves=8)
legal_entries = st.fixed_dictionaries(
    {"path": st.one_of(legal_texts, st.sampled_from(["a.wav", "x/b.mp3", "~/c.wav", "/abs/d.flac"]))},
    optional={"id": st.one_of(legal_texts, st.integers(0, 10**30)), "language": legal_texts,
              "duration": st.floats(0, 1e9), "meta": legal_values, "Größe": legal_values})
# One poison in an otherwise legal entry: each would crash pyarrow or json.dumps if it got through.
_poison_texts = st.builds(lambda a, p, b: a + p + b, st.text(_printable_chars, max_size=4),
                          st.sampled_from(["\udc80", "\udce9", "\ud800", "\udfff", "\x00", "\x1b", "\x9b",
                                           "\x7f"]),
                          st.text(_printable_chars, max_size=4))
poisoned_entries = st.one_of(
    st.builds(lambda entry, key, poison: {**entry, key: poison}, legal_entries,
              st.sampled_from(["id", "path", "file", "language", "meta"]), _poison_texts),
    st.builds(lambda entry, poison: {**entry, poison: 1}, legal_entries, _poison_texts),  # in a key
    st.builds(lambda entry, poison: {**entry, "meta": {"a": [poison]}}, legal_entries, _poison_texts),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts,
                    st.sampled_from(["a.wav", "x/b.mp3", "~/c.wav", "/abs/d.flac", "", " "]))
values = st.recursive(scalars,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                      max_leaves=8)
known_keys = st.sampled_from(["id", "path", "audio_filepath", "file", "language", "duration", "duration_s"])
entries = st.dictionaries(st.one_of(known_keys, texts), values, max_size=5)
# An entry that reads unless a value spoils it: a valid path, then anything.
likely_entries = st.builds(lambda path, rest: {"path": path, **rest}, st.sampled_from(["a.wav", "b/c.mp3"]),
                           st.dictionaries(st.one_of(known_keys.filter(lambda k: k != "path"), texts), values,
                                           max_size=3))
json_lines = st.one_of(
    likely_entries.map(json.dumps),  # ensure_ascii: surrogates travel as "\udc80" escapes
    entries.map(json.dumps),
    values.map(json.dumps),
    st.integers(4200, 6000).map(lambda n: '{"path": "a.wav", "n": ' + "7" * n + "}"),
    st.integers(1, 3000).map(lambda n: '{"path": "a.wav", "deep": ' + "[" * n + "]" * n + "}"),
    texts,
    st.binary(max_size=40),
)


def _encode(line: str | bytes) -> bytes:
    return line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")


def assert_refused_with_lines_or_storable(inputs: list, manifest: Path) -> None:
    try:
        result = read_inputs(inputs)
    except InputError as exc:
        text = str(exc)
        assert not RAW_CONTROL.search(text), text
        prefix = f"  {manifest}"
        for line in text.splitlines()[1:-1]:
            if line.startswith("  ... and "):
                continue
            assert line.startswith(prefix), line
            rest = line[len(prefix):]
            assert re.match(r"(:\d+| row \d+): ", rest) or rest == ": the manifest has no entries", line
        event("refused")
        return
    event(f"read {min(len(result.items), 3)}+ items")
    for item in result.items:
        storable(item)


@HYPOTHESIS
@given(st.one_of(
    st.lists(json_lines, max_size=8),
    st.lists(legal_entries.map(json.dumps), min_size=1, max_size=5),
    st.builds(lambda lines, at, bad: lines[:at] + [bad] + lines[at:],
              st.lists(legal_entries.map(json.dumps), max_size=4), st.integers(0, 4),
              poisoned_entries.map(json.dumps)),
))
def test_any_jsonl_manifest_is_refused_with_lines_or_read(lines: list[str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "m.jsonl"
        manifest.write_bytes(b"\n".join(_encode(line) for line in lines) + b"\n")
        assert_refused_with_lines_or_storable([manifest], manifest)


# A hub-style JSONL (its first object names media in "audio", not "path"): the same promise, through
# the dataset reader (which once gave datasets' json builder what a manifest holds and it cannot).
hub_entries = st.builds(lambda entry: {"audio": entry.pop("path"), **entry}, legal_entries)


@HYPOTHESIS
@given(st.builds(lambda first, rest: [first, *rest], hub_entries.map(json.dumps),
                 st.lists(st.one_of(hub_entries.map(json.dumps), json_lines,
                                    poisoned_entries.map(lambda e: json.dumps({"audio": "a.wav", **e}))),
                          max_size=5)))
def test_any_hub_style_jsonl_is_refused_with_lines_or_read(lines: list[str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "m.jsonl"
        manifest.write_bytes(b"\n".join(_encode(line) for line in lines) + b"\n")
        assert_refused_with_lines_or_storable([manifest], manifest)


csv_cells = st.one_of(texts.map(lambda t: display_text(t)), st.sampled_from(["a.wav", "", "x", '"', '""']))


@st.composite
def csv_files(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "anything", "legal"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "legal":  # a header with a path column, rows of its width, cells of any printable text
        header = ["path", *draw(st.lists(st.sampled_from(["id", "language", "duration", "note", "Größe"]),
                                         unique=True, max_size=3))]
        rows = draw(st.lists(st.lists(legal_texts, min_size=len(header), max_size=len(header)), max_size=6))
    else:
        header = draw(st.lists(st.one_of(known_keys, csv_cells), min_size=1, max_size=4))
        rows = draw(st.lists(st.lists(csv_cells, max_size=5), max_size=6))
    buffer = io.StringIO(newline="")
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    writer = csv.writer(buffer, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if kind == "anything" and draw(st.booleans()):  # odd quoting by hand: a cut-off or stray quote, a CR
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', '""', '\r', 'a"b', '"\n'])) + text[at:]
    return text.encode("utf-8")


@HYPOTHESIS
@given(csv_files())
def test_any_csv_manifest_is_refused_with_lines_or_read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "m.csv"
        manifest.write_bytes(data)
        assert_refused_with_lines_or_storable([manifest], manifest)


file_names = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


@HYPOTHESIS
@given(st.lists(st.tuples(file_names, st.sampled_from([b".wav", b".MP3", b"", b".txt"]),
                          st.sampled_from(["file", "folder", "link-out"])),
                max_size=8, unique_by=lambda t: t[0]))
def test_any_file_names_in_a_folder_are_read_or_refused_never_crash(names) -> None:
    with tempfile.TemporaryDirectory() as top:
        root = os.path.join(os.fsencode(top), b"in")
        os.mkdir(root)
        outside = os.path.join(os.fsencode(top), b"outside.wav")
        open(outside, "wb").close()
        made = 0
        for name, suffix, kind in names:
            path = os.path.join(root, name + suffix)
            try:
                if kind == "file":
                    open(path, "wb").close()
                elif kind == "folder":
                    os.mkdir(path)
                    open(os.path.join(path, name + b".wav"), "wb").close()
                else:
                    os.symlink(outside, path)
            except OSError:  # a name this file system refuses (too long, not UTF-8 on some)
                continue
            made += 1
        try:
            inputs = read_inputs([os.fsdecode(root)])
        except InputError as exc:
            text = str(exc)
            assert not RAW_CONTROL.search(text) and "no media files in this folder" in text, text
            event("refused: no media")
            return
        event(f"read {min(len(inputs.items), 3)}+ items")
        assert all(os.path.lexists(item.path) for item in inputs.items)  # the real names, which open
        assert outside not in {os.fsencode(os.path.realpath(i.path)) for i in inputs.items}
        for item in inputs.items:
            storable(item)
        for skipped in inputs.skipped:
            str(skipped).encode("utf-8")
        assert len({safe_filename(i.id).lower() for i in inputs.items}) == len(inputs.items)
        event(f"made {min(made, 4)}+ entries")
