"""`omnibatch` end to end through its console script: real media, real engines, Parquet read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.mediagen import make_speech, write_bytes

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
SPOKEN = {
    "wav": "the quick brown fox jumps over the lazy dog",
    "mp3": "please call stella and ask her to bring these things",
    "m4a": "a rainbow is a division of white light into many beautiful colors",
    "mp4": "the birch canoe slid on the smooth planks",
    "webm": "glue the sheet to the dark blue background",
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def with_video(speech: Path, out: Path, vcodec: str, acodec: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-i", str(speech), "-shortest",
           "-c:v", vcodec, "-pix_fmt", "yuv420p", "-c:a", acodec, str(out))
    return out


@pytest.fixture(scope="session")
def mixed_manifest(tmp_path_factory) -> Path:
    """Speech in five containers (three audio, two video) and one corrupt file."""
    root = tmp_path_factory.mktemp("mixed")
    media = root / "media"
    media.mkdir()
    wavs = {k: make_speech(media / f"{k}-src.wav", text) for k, text in SPOKEN.items()}
    os.replace(wavs["wav"], media / "speech.wav")
    ffmpeg("-i", str(wavs["mp3"]), "-c:a", "libmp3lame", str(media / "speech.mp3"))
    ffmpeg("-i", str(wavs["m4a"]), "-c:a", "aac", str(media / "speech.m4a"))
    with_video(wavs["mp4"], media / "talk.mp4", "libx264", "aac")
    with_video(wavs["webm"], media / "talk.webm", "libvpx-vp9", "libopus")
    write_bytes(media / "corrupt.mp4", os.urandom(4096))
    for k in ("mp3", "m4a", "mp4", "webm"):
        wavs[k].unlink()
    lines = [
        {"id": "wav", "path": "media/speech.wav", "language": "en", "meta": {"said": SPOKEN["wav"]}},
        {"id": "mp3", "path": "media/speech.mp3", "language": "en"},
        {"id": "m4a", "audio_filepath": "media/speech.m4a"},
        {"id": "mp4", "file": "media/talk.mp4", "show": "demo"},
        {"id": "webm", "path": "media/talk.webm"},
        {"id": "corrupt", "path": "media/corrupt.mp4"},
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([OMNIBATCH, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def rows_by_id(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(folder).to_pylist()}


def test_help_is_instant_and_imports_nothing_heavy():
    started = time.perf_counter()
    result = run_cli("--help")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and "transcribe" in result.stdout
    assert elapsed < 1.0, f"omnibatch --help took {elapsed:.2f} s"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, omnibatch.cli; "
         "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


@pytest.mark.slow
def test_transcribe_mixed_manifest_on_the_tiny_model(mixed_manifest, tmp_path):
    out = tmp_path / "out"
    result = run_cli("transcribe", str(mixed_manifest), "--out", str(out), "--max-new-tokens", "8")
    assert result.returncode == 1, result.stderr  # one item failed
    assert "meaningless" in result.stderr
    rows = rows_by_id(out / "transcribe")
    assert set(rows) == {"wav", "mp3", "m4a", "mp4", "webm", "corrupt"}
    assert {k: r["status"] for k, r in rows.items() if r["status"] != "ok"} == {"corrupt": "error"}
    assert "corrupt.mp4" in rows["corrupt"]["error"] and "damaged" in rows["corrupt"]["error"]
    for key in SPOKEN:
        row = rows[key]
        assert row["engine"] == "transformers" and row["error"] is None
        assert row["text"] and row["num_chunks"] >= 1
        assert row["kind"] == ("video" if key in ("mp4", "webm") else "audio")
        assert 1.0 < row["duration_s"] < 20.0
    assert json.loads(rows["mp4"]["extra"]) == {"show": "demo"}
    assert json.loads(rows["wav"]["extra"]) == {"meta": {"said": SPOKEN["wav"]}}
    # The same table through DuckDB; the run folder records the config and versions.
    con = duckdb.connect()
    counts = dict(con.execute(
        f"select status, count(*) from read_parquet('{out}/transcribe/*.parquet') group by 1").fetchall())
    assert counts == {"ok": 5, "error": 1}
    config = json.loads((out / "_run" / "config-transcribe.json").read_text())
    assert config["task"] == "transcribe" and config["max_new_tokens"] == 8
    assert "transformers" in json.loads((out / "_run" / "versions.json").read_text())
    for key in SPOKEN:
        assert (out / "subtitles" / f"{key}.srt").read_text().startswith("1\n")

    # A rerun does nothing again, and still reports the failed item in its exit code.
    again = run_cli("transcribe", str(mixed_manifest), "--out", str(out), "--max-new-tokens", "8")
    assert again.returncode == 1 and "6 already done" in again.stderr
    assert len(pq.read_table(out / "transcribe")) == 6


@pytest.mark.slow
def test_transcribe_with_whisper_gives_the_spoken_words(mixed_manifest, tmp_path):
    import jiwer

    out = tmp_path / "out"
    result = run_cli("transcribe", str(mixed_manifest), "--out", str(out), "--engine", "whisper",
                     "--language", "en")
    assert result.returncode == 1, result.stderr
    rows = rows_by_id(out / "transcribe")
    said = [SPOKEN[k] for k in SPOKEN]
    heard = [rows[k]["text"].lower().replace(",", "").replace(".", "") for k in SPOKEN]
    # Whisper base on espeak-ng's robotic voice: a real recognizer, so judge the set, not each clip.
    assert jiwer.wer(said, heard) < 0.3, list(zip(said, heard))
    segments = pq.read_table(out / "segments").to_pylist()
    for seg in segments:
        assert 0 <= seg["start_s"] < seg["end_s"] <= rows[seg["id"]]["duration_s"] + 0.01


def test_bad_manifest_is_refused_with_its_line_number(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "x.wav"}\n{"id": "b" "path": "y.wav"}\n')
    result = run_cli("transcribe", str(manifest), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "m.jsonl:2" in result.stderr
    assert not (tmp_path / "out" / "transcribe").exists()


def test_version_prints_the_package_version():
    from omnibatch import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"omnibatch {__version__}"


def _commands() -> list[str]:
    from typer.main import get_command

    from omnibatch.cli import app

    group = get_command(app)
    return [name for name, command in group.commands.items() if not command.hidden]


def test_every_help_shows_human_metavars():
    import re

    python_types = re.compile(r"<(str|int|float|path|bool|list\[[^\]]*\]|[a-z]+ range)>|\{[a-z_]+\}")
    commands = _commands()
    assert {"transcribe", "caption", "summarize", "submit", "status", "demo"} <= set(commands)
    for name in ["", *commands]:
        result = run_cli(*([name] if name else []), "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert not python_types.search(result.stdout), (name, python_types.findall(result.stdout))
    usage = run_cli("transcribe", "--help").stdout
    assert "Usage: omnibatch transcribe [OPTIONS] [INPUT...]" in usage  # optional: --dataset names one too
    assert "--out DIR" in usage and "--shard I/N" in usage and "-E, --engine-option KEY=VALUE" in usage


def test_job_commands_list_only_the_engines_that_run_them(tmp_path):
    assert "auto | vllm | transformers | whisper" in run_cli("transcribe", "--help").stdout
    for task in ("caption", "summarize"):
        text = run_cli(task, "--help").stdout
        assert "auto | vllm | transformers." in text and "| whisper" not in text, task
        out = tmp_path / task
        result = run_cli(task, "examples/manifest.jsonl", "--out", str(out), "--engine", "whisper")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "whisper engine only transcribes" in result.stderr
        assert not out.exists()  # refused before anything, so `status` never sees a failed shard


def test_a_refused_option_is_one_line(tmp_path):
    for args in (["transcribe", "x.wav", "--out", str(tmp_path), "--shard", "9"],
                 ["transcribe", "--out", str(tmp_path)],
                 ["caption", "x.wav", "--out", str(tmp_path), "--no-such-option"]):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    missing = run_cli("status")
    assert missing.returncode == 2 and missing.stderr.splitlines() == [
        "error: Missing argument 'DIR'. (see: omnibatch status --help)"]
