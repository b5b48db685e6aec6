"""The input stage: every accepted form of INPUT, and every refusal with its file and line.

Media files are never opened by this stage, so the folder tests use empty files
with media names; what is tested is naming, ordering, resolution and refusal.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omnibatch.errors import InputError
from omnibatch.manifests import Inputs, Skipped, derive_id, read_inputs
from omnibatch.media.extensions import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS
from omnibatch.records import MediaItem

# -- helpers -----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[object | str]) -> Path:
    """Rows are JSON-encoded; a str row is written as the raw line (for malformed input)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def refusal(inputs: list, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        read_inputs(inputs, **kwargs)
    return str(caught.value)


# -- accepted forms ----------------------------------------------------------------------------


def test_jsonl_reads_every_field(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "ep-001", "path": "media/ep-001.mp3", "language": "en", "duration": 1234.5,
             "meta": {"show": "x"}},
            {"id": 7, "path": "/abs/ep-7.wav", "duration_s": "3"},
        ],
    )  # fmt: skip
    inputs = read_inputs([manifest])
    assert isinstance(inputs, Inputs) and inputs.skipped == []
    first, second = inputs.items
    assert first == MediaItem(
        id="ep-001",
        path=tmp_path / "media" / "ep-001.mp3",
        source=f"{manifest}:1",
        language="en",
        duration_s=1234.5,
        extra={"meta": {"show": "x"}},
    )
    assert second.id == "7"  # integer ids become strings
    assert second.path == Path("/abs/ep-7.wav")
    assert second.duration_s == 3.0 and second.language is None and second.extra == {}


def test_jsonl_skips_blank_and_comment_lines_and_counts_them(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        ["# a comment", "", {"path": "a.wav"}, "   ", '  # indented comment', {"path": "b.wav"}],
    )
    items = read_inputs([manifest]).items
    assert [i.source for i in items] == [f"{manifest}:3", f"{manifest}:6"]


def test_jsonl_gz_and_ndjson_and_json_lines(tmp_path: Path) -> None:
    gz = write_jsonl(tmp_path / "m.jsonl.gz", [{"id": "g", "path": "g.flac"}])
    nd = write_jsonl(tmp_path / "m.ndjson", [{"id": "n", "path": "n.flac"}])
    js = write_jsonl(tmp_path / "m.json", [{"id": "j", "path": "j.flac"}])
    items = read_inputs([gz, nd, js]).items
    assert [i.id for i in items] == ["g", "n", "j"]
    assert items[0].path == tmp_path / "g.flac"


def test_jsonl_with_utf8_bom_and_crlf(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'\xef\xbb\xbf{"id": "a", "path": "a.wav"}\r\n{"id": "b", "path": "b.wav"}\r\n')
    assert [i.id for i in read_inputs([manifest]).items] == ["a", "b"]


def test_path_aliases(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "nemo", "audio_filepath": "n.wav", "duration": 2.0, "text": "reference"},
            {"id": "file", "file": "f.wav"},
            {"id": "same", "path": "s.wav", "file": "s.wav"},  # agreeing aliases are fine
        ],
    )
    items = read_inputs([manifest]).items
    assert [i.path.name for i in items] == ["n.wav", "f.wav", "s.wav"]
    assert items[0].extra == {"text": "reference"}  # NeMo's reference text rides along


def test_relative_paths_resolve_against_the_manifest_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_jsonl(
        tmp_path / "lists" / "m.jsonl",
        [{"id": "up", "path": "../media/a.wav"}, {"id": "here", "path": "./b.wav"}],
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    items = read_inputs([os.path.relpath(manifest)]).items  # the manifest itself named relatively
    assert items[0].path == tmp_path / "media" / "a.wav"
    assert items[1].path == tmp_path / "lists" / "b.wav"
    assert all(i.path.is_absolute() for i in items)


def test_tilde_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "h", "path": "~/rec/a.wav"}])
    assert read_inputs([manifest]).items[0].path == tmp_path / "home" / "rec" / "a.wav"
    # The manifest itself may be named with ~ too.
    moved = write_jsonl(tmp_path / "home" / "m.jsonl", [{"id": "x", "path": "x.wav"}])
    assert read_inputs(["~/m.jsonl"]).items[0].path == moved.parent / "x.wav"


def test_default_id_is_stable_readable_and_path_specific(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"path": "a/Episode 01 (Final).mp3"}, {"path": "b/Episode 01 (Final).mp3"}],
    )
    first = read_inputs([manifest]).items
    again = read_inputs([manifest]).items
    assert [i.id for i in first] == [i.id for i in again]
    assert first[0].id != first[1].id  # same name, different folders
    assert re.fullmatch(r"episode-01-final-[0-9a-f]{8}", first[0].id)
    assert first[0].id == derive_id(tmp_path / "a" / "Episode 01 (Final).mp3")
    # A folder scan and a manifest naming the same file agree on its id.
    media = touch(tmp_path / "scan" / "x.wav")
    scanned = read_inputs([tmp_path / "scan"]).items[0].id
    listed = read_inputs([write_jsonl(tmp_path / "n.jsonl", [{"path": str(media)}])]).items[0].id
    assert scanned == listed


def test_extra_keys_are_carried_unchanged(tmp_path: Path) -> None:
    extra = {"meta": {"show": "x", "tags": [1, 2]}, "speaker": None, "score": 0.5, "ok": True}
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "path": "a.wav", **extra}])
    assert read_inputs([manifest]).items[0].extra == extra


def test_null_optional_fields_mean_absent(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"id": None, "path": "a.wav", "language": None, "duration": None}]
    )
    item = read_inputs([manifest]).items[0]
    assert item.id == derive_id(tmp_path / "a.wav")
    assert item.language is None and item.duration_s is None and item.extra == {}


def test_csv(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,audio_filepath,language,duration,show\n"
        "ep-1,media/1.wav,en,12.5,x\n"
        ',media/2.wav,,,"a, quoted\nmultiline cell"\n'
        "\n"
        "007,media/3.wav,de,0,\n"
    )
    items = read_inputs([manifest]).items
    assert [i.source for i in items] == [f"{manifest}:2", f"{manifest}:3", f"{manifest}:6"]
    assert items[0] == MediaItem(
        id="ep-1", path=tmp_path / "media" / "1.wav", source=f"{manifest}:2",
        language="en", duration_s=12.5, extra={"show": "x"},
    )  # fmt: skip
    assert items[1].id == derive_id(tmp_path / "media" / "2.wav")  # empty cell: derived id
    assert items[1].language is None and items[1].duration_s is None
    assert items[1].extra == {"show": "a, quoted\nmultiline cell"}
    assert items[2].id == "007" and items[2].duration_s == 0.0 and items[2].extra == {}


def test_csv_gz(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv.gz"
    manifest.write_bytes(gzip.compress(b"path\nz.wav\n"))
    assert read_inputs([manifest]).items[0].path == tmp_path / "z.wav"


def test_parquet(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    table = pa.table(
        {
            "id": pa.array([1, None, 3], pa.int64()),
            "file": ["a.wav", "/abs/b.wav", "c.mp4"],
            "duration_s": pa.array([1.5, None, 2.0]),
            "language": ["en", None, "fr"],
            "meta": [{"show": "x"}, {"show": "y"}, None],
        }
    )
    pq.write_table(table, manifest)
    items = read_inputs([manifest]).items
    assert [i.id for i in items] == ["1", derive_id(Path("/abs/b.wav")), "3"]
    assert [i.source for i in items] == [f"{manifest} row 1", f"{manifest} row 2", f"{manifest} row 3"]
    assert items[0].path == tmp_path / "a.wav" and items[0].duration_s == 1.5
    assert items[0].language == "en" and items[1].language is None
    assert items[0].extra == {"meta": {"show": "x"}} and items[2].extra == {"meta": None}


def test_folder_scan_is_recursive_sorted_and_lists_what_it_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "media"
    for name in ["b.mp3", "a/z.WAV", "a/y/deep.mkv", "c.txt", "a/notes.jsonl", ".hidden.wav",
                 ".git/objects/x.wav", "README"]:  # fmt: skip
        touch(root / name)
    inputs = read_inputs([root])
    assert [i.path.relative_to(root).as_posix() for i in inputs.items] == [
        "a/y/deep.mkv", "a/z.WAV", "b.mp3",
    ]  # fmt: skip
    assert all(i.source == str(root) for i in inputs.items)
    passed = {s.path.relative_to(root).as_posix(): s.reason for s in inputs.skipped}
    assert set(passed) == {".git", ".hidden.wav", "a/notes.jsonl", "c.txt", "README"}
    assert passed[".git"] == "hidden" and passed[".hidden.wav"] == "hidden"
    assert "not a media file" in passed["c.txt"] and ".txt" in passed["c.txt"]
    assert all(isinstance(s, Skipped) for s in inputs.skipped)


def test_folder_scan_follows_symlinked_folders_inside_it_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root / "real" / "a.wav")
    (root / "link").symlink_to(root / "real")
    (root / "loop").symlink_to(root)
    inputs = read_inputs([root])
    assert [i.path for i in inputs.items] == [root / "link" / "a.wav"]
    assert sum("already scanned" in s.reason for s in inputs.skipped) == 2  # loop, then real


def test_folder_scan_does_not_follow_links_out_of_the_folder(tmp_path: Path) -> None:
    touch(tmp_path / "elsewhere" / "far.wav")
    root = tmp_path / "root"
    touch(root / "near.wav")
    (root / "out-dir").symlink_to(tmp_path / "elsewhere")
    (root / "out-file.wav").symlink_to(tmp_path / "elsewhere" / "far.wav")
    (root / "in-file.wav").symlink_to(root / "near.wav")
    (root / "via").symlink_to(root / "chain")  # inside -> inside -> outside: judged by the final target
    (root / "chain").symlink_to(tmp_path / "elsewhere")
    inputs = read_inputs([root])
    assert [i.path.name for i in inputs.items] == ["in-file.wav", "near.wav"]
    reasons = {s.path.name: s.reason for s in inputs.skipped}
    for name in ("out-dir", "out-file.wav", "via", "chain"):
        assert "outside the folder scanned" in reasons[name], name
        assert str(tmp_path / "elsewhere") in reasons[name]


def test_a_folder_named_through_a_link_is_scanned_inside_its_target(tmp_path: Path) -> None:
    touch(tmp_path / "data" / "a.wav")
    (tmp_path / "data" / "sub").symlink_to(tmp_path / "data")  # a loop, inside the real folder
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    inputs = read_inputs([tmp_path / "alias"])
    assert [i.path for i in inputs.items] == [tmp_path / "alias" / "a.wav"]


def test_custom_media_extensions(tmp_path: Path) -> None:
    touch(tmp_path / "d" / "a.wav")
    touch(tmp_path / "d" / "b.mka")
    items = read_inputs([tmp_path / "d"], media_extensions=frozenset({"mka"})).items
    assert [i.path.name for i in items] == ["b.mka"]


def test_direct_media_files_and_mixed_inputs_keep_their_order(tmp_path: Path) -> None:
    direct = touch(tmp_path / "solo.opus")
    hidden = touch(tmp_path / ".named-directly.wav")  # named explicitly: taken
    touch(tmp_path / "folder" / "f1.wav")
    touch(tmp_path / "folder" / "f2.mp4")
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "m1", "path": "x.wav"}])
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text("id,path\nc1,y.wav\n")
    items = read_inputs([str(manifest), direct, tmp_path / "folder", csv_manifest, hidden]).items
    assert [i.path.name for i in items] == ["x.wav", "solo.opus", "f1.wav", "f2.mp4", "y.wav",
                                            ".named-directly.wav"]  # fmt: skip
    assert items[1].source == str(direct) and items[1].id == derive_id(direct)


def test_extension_sets() -> None:
    assert {".wav", ".flac", ".mp3", ".opus", ".w64"} <= AUDIO_EXTENSIONS
    assert {".mp4", ".mkv", ".webm", ".ts", ".3gp", ".ogv"} <= VIDEO_EXTENSIONS
    assert not AUDIO_EXTENSIONS & VIDEO_EXTENSIONS
    assert MEDIA_EXTENSIONS == AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in MEDIA_EXTENSIONS)


def test_bundled_example_manifests_read() -> None:
    examples = Path(__file__).resolve().parents[1] / "manifests"
    from omnibatch.demo import EXAMPLE_NAMES

    for name, count in [("example.jsonl", 4), ("example.csv", 3)]:
        items = read_inputs([examples / name]).items
        assert len(items) == count
        assert all(i.path.parent == examples.parent / "examples" and i.path.exists() for i in items)
        assert {i.path.name for i in items} <= set(EXAMPLE_NAMES)  # the committed examples/ media


def test_media_files_named_in_a_manifest_need_not_exist(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"path": "missing.wav"}])
    assert not read_inputs([manifest]).items[0].path.exists()


# -- refusals ----------------------------------------------------------------------------------


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
