"""The input stage's refusals: every bad INPUT refused with its file and line, all at once, before any
work starts. The accepted forms are in test_manifests.py.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _manifest_files import refusal, touch, write_jsonl


def test_malformed_json_and_non_objects_name_file_and_line(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"path": "ok.wav"}, '{"path": "a.wav",', "", '["a list"]', "42", '"text"', {"path": "z.wav"}],
    )
    message = refusal([manifest])
    assert f"{manifest}:2: malformed JSON" in message
    assert f"{manifest}:4: expected a JSON object" in message and "list" in message
    assert f"{manifest}:5: expected a JSON object" in message
    assert f"{manifest}:6: expected a JSON object" in message
    assert f"{manifest}:1:" not in message and f"{manifest}:7:" not in message
    assert "4 problems" in message


def test_not_utf8_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"path": "a.wav"}\n{"path": "\xff.wav"}\n')
    assert f"{manifest}:2: not UTF-8" in refusal([manifest])


def test_json_array_file_is_explained(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"path": "a.wav"}], indent=2))
    message = refusal([manifest])
    assert f"{manifest}:1: this is a JSON array" in message and "one object per line" in message


def test_missing_empty_and_non_string_paths(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "a", "text": "no path"},
            {"id": "b", "path": ""},
            {"id": "c", "path": "   "},
            {"id": "d", "path": 12},
            {"id": "e", "audio_filepath": ["x.wav"]},
            {"id": "f", "path": None},
            {"id": "g", "path": "a.wav", "file": "b.wav"},
        ],
    )
    message = refusal([manifest])
    assert f"{manifest}:1: no path" in message
    assert f'{manifest}:2: "path" is empty' in message
    assert f'{manifest}:3: "path" is empty' in message
    assert f'{manifest}:4: "path" must be a string, not 12' in message
    assert f'{manifest}:5: "audio_filepath" must be a string' in message
    assert f"{manifest}:6: no path" in message
    assert f'{manifest}:7: "path" and "file" name different files' in message


def test_bad_ids(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "", "path": "a.wav"},
            {"id": "  ", "path": "b.wav"},
            {"id": 1.5, "path": "c.wav"},
            {"id": True, "path": "d.wav"},
            {"id": {"x": 1}, "path": "e.wav"},
        ],
    )
    message = refusal([manifest])
    assert f'{manifest}:1: "id" is empty' in message
    assert f'{manifest}:2: "id" is empty' in message
    assert f'{manifest}:3: "id" must be a string or an integer, not 1.5' in message
    assert f'{manifest}:4: "id" must be a string or an integer, not True' in message
    assert f'{manifest}:5: "id" must be a string or an integer' in message


def test_bad_durations_and_language(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"path": "a.wav", "duration": "long"},
            {"path": "b.wav", "duration": -1},
            {"path": "c.wav", "duration_s": True},
            '{"path": "d.wav", "duration": NaN}',
            {"path": "e.wav", "duration": [1]},
            {"path": "f.wav", "duration": 1, "duration_s": 2},
            {"path": "g.wav", "language": 5},
        ],
    )
    message = refusal([manifest])
    assert f"{manifest}:1: \"duration\" must be a number of seconds >= 0, not 'long'" in message
    assert f'{manifest}:2: "duration" must be a number' in message and "not -1" in message
    assert f'{manifest}:3: "duration_s" must be a number' in message
    assert f'{manifest}:4: "duration" must be a number' in message
    assert f'{manifest}:5: "duration" must be a number' in message
    assert f'{manifest}:6: "duration" and "duration_s" disagree' in message
    assert f'{manifest}:7: "language" must be a string' in message


def test_all_problems_of_one_line_are_reported_together(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "", "duration": "x"}])
    message = refusal([manifest])
    line = next(line for line in message.splitlines() if f"{manifest}:1:" in line)
    assert "no path" in line and '"id" is empty' in line and '"duration"' in line


def test_duplicate_ids_within_a_file_name_both_lines(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"id": "ep", "path": "a.wav"}, {"id": "x", "path": "b.wav"}, {"id": "ep", "path": "c.wav"}],
    )
    message = refusal([manifest])
    assert f'{manifest}:3: duplicate id "ep" (first at {manifest}:1)' in message


def test_duplicate_ids_are_checked_across_inputs(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "ep", "path": "a.wav"}])
    second = tmp_path / "b.csv"
    second.write_text("id,path\nother,b.wav\nep,c.wav\n")
    assert f'{second}:3: duplicate id "ep" (first at {first}:1)' in refusal([first, second])
    # An integer id and its string form are the same id.
    third = write_jsonl(tmp_path / "c.jsonl", [{"id": 5, "path": "a.wav"}, {"id": "5", "path": "b.wav"}])
    assert f'{third}:2: duplicate id "5" (first at {third}:1)' in refusal([third])


def test_the_same_file_named_twice_is_refused(tmp_path: Path) -> None:
    media = touch(tmp_path / "d" / "a.wav")
    message = refusal([tmp_path / "d", media])
    assert f"{media}: {media} is named twice (first by {tmp_path / 'd'})" in message


def test_the_same_input_named_twice_is_refused_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "path": "a.wav"}])
    message = refusal(["m.jsonl", "m.jsonl", "./m.jsonl"])
    assert "m.jsonl: named twice on the command line (first as m.jsonl)" in message
    assert "./m.jsonl: named twice" in message and "duplicate id" not in message
    assert "2 problems" in message


def test_many_problems_are_capped_with_a_count(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", ["{oops"] * 50)
    message = refusal([manifest])
    assert "50 problems" in message
    assert f"{manifest}:20: malformed JSON" in message and f"{manifest}:21:" not in message
    assert f"... and 30 more in {manifest}" in message


def test_problems_of_several_inputs_are_reported_together(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a"}])
    message = refusal([bad, tmp_path / "nope.jsonl", tmp_path / "gone"])
    assert f"{bad}:1: no path" in message
    assert f"{tmp_path / 'nope.jsonl'}: does not exist" in message
    assert f"{tmp_path / 'gone'}: does not exist" in message


def test_csv_without_a_path_column(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,audio,language\na,a.wav,en\n")
    message = refusal([manifest])
    assert f"{manifest}:1: no path column" in message and '"audio_filepath"' in message


def test_csv_row_problems_count_the_header_as_line_one(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,duration\na,a.wav,1\n,,\nb,b.wav,soon\nc,c.wav\nd,d.wav,1,extra\n")
    message = refusal([manifest])
    assert f"{manifest}:3: no path" in message
    assert f'{manifest}:4: "duration" must be a number' in message
    assert f"{manifest}:5: 2 cells, but the header has 3 columns" in message
    assert f"{manifest}:6: 4 cells, but the header has 3 columns" in message
    assert f"{manifest}:2:" not in message


def test_csv_bad_header_and_bad_quoting(tmp_path: Path) -> None:
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("path,id,path\na.wav,a,a.wav\n")
    assert f"{repeated}:1: the header row repeats path" in refusal([repeated])
    quoting = tmp_path / "quoting.csv"
    quoting.write_text('path,id\na.wav,a\n"b.wav"x,b\n')
    assert f"{quoting}:3: bad CSV" in refusal([quoting])


def test_csv_not_utf8(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path\na.wav\n\xe9t\xe9.wav\n")
    assert f"{manifest}:3: not UTF-8" in refusal([manifest])


def test_parquet_refusals_name_the_row(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b", "a"], "path": ["a.wav", None, "c.wav"], "duration": [1.0, 2.0, -3.0]}),
        manifest,
    )
    message = refusal([manifest])
    assert f"{manifest} row 2: no path" in message
    assert f'{manifest} row 3: "duration" must be a number' in message
    no_path = tmp_path / "no-path.parquet"
    pq.write_table(pa.table({"id": ["a"], "audio": ["a.wav"]}), no_path)
    assert f"{no_path}: no path column" in refusal([no_path])


def test_parquet_duplicate_ids(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "a"], "path": ["1.wav", "2.wav", "3.wav"]}), manifest)
    assert f'{manifest} row 3: duplicate id "a" (first at {manifest} row 1)' in refusal([manifest])


def test_unreadable_and_corrupt_files(tmp_path: Path) -> None:
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text('{"path": "a.wav"}\n')
    assert f"{not_gzip}: cannot read it" in refusal([not_gzip]) and "gzip" in refusal([not_gzip])

    truncated = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(("\n".join(json.dumps({"path": f"{n}.wav"}) for n in range(5000)) + "\n").encode())
    truncated.write_bytes(whole[: len(whole) // 2])
    message = refusal([truncated])
    assert f"{truncated}: cannot read it after line" in message and "corrupt or truncated" in message

    csv_gz = tmp_path / "cut.csv.gz"
    csv_gz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert f"{csv_gz}: cannot read it" in refusal([csv_gz])

    parquet = tmp_path / "junk.parquet"
    parquet.write_bytes(b"this is not parquet at all")
    assert f"{parquet}: cannot read it as Parquet" in refusal([parquet])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.wav"}])
    manifest.chmod(0)
    try:
        assert f"{manifest}: cannot open it: Permission denied" in refusal([manifest])
    finally:
        manifest.chmod(0o644)


def test_empty_manifests_and_folders(tmp_path: Path) -> None:
    only_comments = write_jsonl(tmp_path / "m.jsonl", ["# nothing yet", ""])
    assert f"{only_comments}: the manifest has no entries" in refusal([only_comments])
    empty_file = tmp_path / "e.jsonl"
    empty_file.write_bytes(b"")
    assert f"{empty_file}: the manifest has no entries" in refusal([empty_file])
    header_only = tmp_path / "h.csv"
    header_only.write_text("id,path\n")
    assert f"{header_only}: the manifest has no entries" in refusal([header_only])
    empty_csv = tmp_path / "z.csv"
    empty_csv.write_text("")
    assert f"{empty_csv}: the manifest has no entries" in refusal([empty_csv])
    no_rows = tmp_path / "n.parquet"
    pq.write_table(pa.table({"path": pa.array([], pa.string())}), no_rows)
    assert f"{no_rows}: the manifest has no entries" in refusal([no_rows])

    folder = tmp_path / "folder"
    touch(folder / "notes.txt")
    touch(folder / ".hidden.wav")
    (folder / "empty-sub").mkdir()
    message = refusal([folder])
    assert f"{folder}: no media files in this folder (2 other files or folders passed over" in message


def test_missing_inputs_and_unknown_kinds(tmp_path: Path) -> None:
    assert f"{tmp_path / 'nope.wav'}: does not exist" in refusal([tmp_path / "nope.wav"])
    notes = touch(tmp_path / "notes.txt")
    message = refusal([notes])
    assert f"{notes}: neither a manifest" in message and ".jsonl" in message and ".wav" in message
    assert "no inputs" in refusal([])


def test_nothing_is_returned_when_one_input_is_bad(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"path": "a.wav"}])
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json"])
    message = refusal([good, bad])
    assert f"{bad}:1: malformed JSON" in message and str(good) + ":" not in message
