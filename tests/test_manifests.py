"""The input stage: every accepted form of INPUT (manifests, folders, files), its naming, ordering and
resolution. The refusals, each with its file and line, are in test_manifest_refusals.py.

Media files are never opened by this stage, so the folder tests use empty files
with media names.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _manifest_files import touch, write_jsonl

from omnibatch.manifests import Inputs, Skipped, derive_id, read_inputs
from omnibatch.media.extensions import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS
from omnibatch.records import MediaItem


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
