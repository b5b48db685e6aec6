"""Nothing lost, nothing mixed: what the run folder guarantees when runs collide, settings change,
outputs go missing, parts are corrupt, files fail or lie about their length.

The real executor, real media and real ffmpeg; the engine is the deterministic
fake (tests/fake_engine.py), so a redone file must equal what was there before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mediagen import make_speech
from test_interrupt_resume import Run, comparable, config_for, manifest, rows_of

from omnibatch.errors import InputError
from omnibatch.output.parquet import PartWriter, UnreadablePart, part_files, read_written
from omnibatch.run.locks import shard_lock
from omnibatch.run.rundir import RunDir


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    texts = ["The first file says one short thing.", "A second file, a little longer, says two things here.",
             "Number three is brief.", "The fourth and last one closes the set of spoken files."]
    return {f"f{k}": make_speech(folder / f"f{k}.wav", t) for k, t in enumerate(texts)}


def ids_in(out: Path, table: str) -> Counter:
    return Counter(r["id"] for r in rows_of(out, table))


# -- part names -----------------------------------------------------------------------------------


def test_two_writers_of_one_shard_never_overwrite_each_other(tmp_path):
    schema = pa.schema([pa.field("id", pa.string()), pa.field("status", pa.string())])
    a = PartWriter(tmp_path, schema, shard_index=0, fingerprint="fp", rows_per_part=1)
    b = PartWriter(tmp_path, schema, shard_index=0, fingerprint="fp", rows_per_part=1)  # same next number
    a.add([{"id": "a1", "status": "ok"}])
    b.add([{"id": "b1", "status": "ok"}])
    a.add([{"id": "a2", "status": "ok"}])
    assert sorted(read_written(tmp_path, "fp")) == ["a1", "a2", "b1"]
    assert len(set(a.written + b.written)) == 3


def test_part_numbers_past_five_digits_are_read_in_order(tmp_path):
    schema = pa.schema([pa.field("id", pa.string()), pa.field("status", pa.string())])
    writer = PartWriter(tmp_path, schema, shard_index=0, fingerprint="fp", rows_per_part=1)
    writer._seq = 99_999
    writer.add([{"id": "x", "status": "error"}])
    writer.add([{"id": "x", "status": "ok"}])  # a retried error: the later part wins
    names = [p.name for p in part_files(tmp_path)]
    assert names == ["part-00000-99999.parquet", "part-00000-100000.parquet"]
    assert read_written(tmp_path, "fp")["x"].status == "ok"


# -- ownership ------------------------------------------------------------------------------------


def test_a_shard_held_by_another_run_is_refused_and_nothing_is_written(speech, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run = Run(config_for("transcribe", manifest(tmp_path, speech), out), monkeypatch)
    with shard_lock(out, "transcribe", 0):
        with pytest.raises(InputError, match="being written by another run of transcribe shard 0"):
            run()
    assert not (out / "transcribe").exists()
    run()  # the lock died with its holder: the next run goes ahead
    assert ids_in(out, "transcribe") == Counter(list(speech))


def test_two_concurrent_cli_runs_on_one_folder(tmp_path):
    """The second of two real processes on one (task, shard) is refused with exit 2 while the first
    writes; the first completes with every item once."""
    media = tmp_path / "media"
    media.mkdir()
    for k in range(6):
        make_speech(media / f"s{k}.wav", "A sentence that takes the tiny model a moment to transcribe. " * 2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "omnibatch", "transcribe", str(media), "--out", str(out), "--engine",
           "transformers", "--formats", "parquet", "--workers", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / "_run" / "locks" / "transcribe-00000.lock"
    try:
        import time

        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.stat().st_size) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "being written by another run of transcribe shard 0" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert second.stderr.count("error:") == 1
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    written = ids_in(out, "transcribe")  # folder ids: the name and a hash of the path
    assert sorted(i.split("-")[0] for i in written) == [f"s{k}" for k in range(6)]
    assert set(written.values()) == {1}, "every item once"


# -- settings -------------------------------------------------------------------------------------


def test_no_resume_with_new_settings_replaces_every_shard(speech, tmp_path, monkeypatch):
    inputs = manifest(tmp_path, speech)
    out = tmp_path / "out"
    for shard in range(3):
        Run(config_for("transcribe", inputs, out, max_new_tokens=64).with_shard(shard, 3), monkeypatch)()
    assert sum(ids_in(out, "transcribe").values()) == len(speech)
    changed = config_for("transcribe", inputs, out, max_new_tokens=32)
    with pytest.raises(InputError, match="different settings .*max_new_tokens.*--no-resume"):
        Run(changed, monkeypatch)()
    changed.resume = False
    Run(changed, monkeypatch)()
    fingerprint = changed.fingerprint()
    for table in ("transcribe", "segments"):
        for part in part_files(out / table):
            assert pq.read_schema(part).metadata[b"omnibatch.fingerprint"].decode() == fingerprint, part
    assert ids_in(out, "transcribe") == Counter(list(speech))  # each id once, one configuration
    superseded = list((out / "_run" / "superseded").rglob("part-*.parquet"))
    assert len([p for p in superseded if p.parent.name == "transcribe"]) >= 3  # kept aside, not deleted
    markers = sorted(p.name for p in (out / "_run" / "completions").iterdir())
    assert markers == ["transcribe-00000-of-00001"]  # the old shards' markers went with their settings


def test_a_refused_run_records_no_settings(speech, tmp_path, monkeypatch):
    out = tmp_path / "out"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "path": ""}\n')
    with pytest.raises(InputError):
        Run(config_for("transcribe", bad, out, max_new_tokens=64), monkeypatch)()
    assert not RunDir(out).config_path("transcribe").exists()
    Run(config_for("transcribe", manifest(tmp_path, speech), out, max_new_tokens=32), monkeypatch)()
    assert ids_in(out, "transcribe") == Counter(list(speech))


# -- what an ok row vouches for -------------------------------------------------------------------


def test_ok_rows_whose_segments_are_gone_are_redone(speech, tmp_path, monkeypatch):
    inputs = manifest(tmp_path, speech)
    out = tmp_path / "out"
    Run(config_for("transcribe", inputs, out), monkeypatch)()
    rows, segments = comparable(rows_of(out, "transcribe")), rows_of(out, "segments")
    for part in part_files(out / "segments"):
        part.unlink()  # a part lost outside omnibatch (or a disk that failed between the two writes)
    again = Run(config_for("transcribe", inputs, out), monkeypatch)()
    assert again.redone == len(speech) and again.skipped_done == 0
    assert comparable(rows_of(out, "transcribe")) == rows
    key = lambda r: (r["id"], r["index"])
    assert sorted(rows_of(out, "segments"), key=key) == sorted(segments, key=key)


def test_a_rerun_that_adds_a_subtitle_format_writes_it_for_the_files_already_done(speech, tmp_path,
                                                                                   monkeypatch):
    inputs = manifest(tmp_path, speech)
    out = tmp_path / "out"
    Run(config_for("transcribe", inputs, out, formats=["parquet"]), monkeypatch)()
    assert not (out / "subtitles").exists()
    again = Run(config_for("transcribe", inputs, out, formats=["parquet", "srt"]), monkeypatch)()
    assert again.redone == len(speech)
    assert sorted(p.name for p in (out / "subtitles").glob("*.srt")) == sorted(f"{k}.srt" for k in speech)
    assert ids_in(out, "transcribe") == Counter(list(speech))


def test_a_missing_spoken_summary_is_spoken_again_without_the_thinker(speech, tmp_path, monkeypatch):
    inputs = manifest(tmp_path, speech)
    out = tmp_path / "out"
    options = dict(summary_piece_chars=200, max_words=10)
    Run(config_for("summarize", inputs, out, **options), monkeypatch)()
    (out / "audio" / "f1.wav").unlink()
    rerun = Run(config_for("summarize", inputs, out, **options), monkeypatch)
    stats = rerun()
    assert stats.redone == 1 and stats.resumed_speech == 1 and not rerun.engines
    assert (out / "audio" / "f1.wav").exists()
    rows = {r["id"]: r for r in rows_of(out, "summarize")}
    assert len(rows_of(out, "summarize")) == len(speech) and rows["f1"]["audio_path"] == "audio/f1.wav"


# -- corrupt folders and unusable outputs ---------------------------------------------------------


def test_a_corrupt_part_is_named_not_a_traceback(speech, tmp_path, monkeypatch):
    inputs = manifest(tmp_path, speech)
    out = tmp_path / "out"
    Run(config_for("transcribe", inputs, out), monkeypatch)()
    bad = out / "transcribe" / "part-00000-00007.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UnreadablePart, match="part-00000-00007.parquet is not a readable Parquet part"):
        Run(config_for("transcribe", inputs, out), monkeypatch)()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnibatch", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("damage", ["config", "part", "out-is-a-file"])
def test_an_unusable_output_folder_exits_2_with_one_line(damage, speech, tmp_path):
    out = tmp_path / "out"
    wav = str(speech["f2"])
    if damage == "out-is-a-file":
        out.write_text("not a folder")
    else:
        done = cli("transcribe", wav, "--out", str(out), "--engine", "whisper", "--workers", "0")
        assert done.returncode == 0, done.stderr
        if damage == "config":
            (out / "_run" / "config-transcribe.json").write_text("{not json")
        else:
            (out / "transcribe" / "part-00000-00003.parquet").write_bytes(b"garbage")
    again = cli("transcribe", wav, "--out", str(out), "--engine", "whisper", "--workers", "0")
    assert again.returncode == 2, again.stderr
    assert "Traceback" not in again.stderr and again.stderr.count("error:") == 1, again.stderr
    named = {"config": "config-transcribe.json", "part": "part-00000-00003.parquet",
             "out-is-a-file": "is a file, not a folder"}[damage]
    assert named in again.stderr


# -- work that a failed or lying file no longer costs ---------------------------------------------


def test_a_file_longer_than_max_duration_is_refused_before_decoding(tmp_path, monkeypatch):
    import soundfile as sf

    slow = tmp_path / "ten-hours.wav"  # 36,000 samples at 1 Hz: a 72 KB file that lasts ten hours
    sf.write(slow, np.zeros(36_000, dtype=np.int16), 1, subtype="PCM_16")
    short = make_speech(tmp_path / "short.wav", "A short one.")
    run = Run(config_for("transcribe", manifest(tmp_path, {"slow": slow, "short": short}), tmp_path / "out"),
              monkeypatch)
    stats = run()
    rows = {r["id"]: r for r in rows_of(tmp_path / "out", "transcribe")}
    assert rows["short"]["status"] == "ok"
    assert rows["slow"]["error_stage"] == "probe" and "more than --max-duration 6 h" in rows["slow"]["error"]
    assert stats.regions == rows["short"]["num_chunks"]  # nothing of the long file was decoded


# -- a stop that the engine step in flight cannot hold up -----------------------------------------

_STUCK_SHARD = """
import sys, time
sys.path[:0] = {paths!r}
from fake_engine import FakeEngine
from omnibatch.config import RunConfig
from omnibatch.run.attempt import shard_attempt
from omnibatch.run.executor import run_shard

class Stuck(FakeEngine):
    def step(self):
        if len(self.returned) >= 2:
            print("stuck", flush=True)
            time.sleep(600)  # a batch that takes ten minutes
        return super().step()

config = RunConfig.from_json(open({config!r}).read())
with shard_attempt(config) as attempt:
    run_shard(config, engine_factory=lambda c: Stuck(batch_size=1, bound=1), progress=False,
              should_stop=attempt.should_stop)
"""


def test_a_stop_signal_ends_the_shard_within_its_deadline_however_long_the_step(speech, tmp_path,
                                                                                monkeypatch):
    import os
    import signal
    import time

    out = tmp_path / "out"
    config = config_for("transcribe", manifest(tmp_path, speech), out, rows_per_part=1)
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    tests = str(Path(__file__).parent)
    script = _STUCK_SHARD.format(paths=[tests, str(Path(tests).parent)], config=str(config_file))
    env = {**os.environ, "OMNIBATCH_STOP_GRACE": "3"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "stuck"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3 and 2.5 < took < 30, (proc.returncode, took, proc.stderr.read())
    attempts = json.loads((out / "_run" / "attempts" / "transcribe-00000-of-00001.json").read_text())
    assert attempts[-1]["state"] == "stopped" and "did not end within 3 s" in attempts[-1]["detail"]
    kept = ids_in(out, "transcribe")
    assert 1 <= sum(kept.values()) < len(speech)  # the files committed before the step are kept
    again = Run(config_for("transcribe", manifest(tmp_path, speech), out, rows_per_part=1), monkeypatch)()
    assert again.skipped_done == sum(kept.values())
    assert ids_in(out, "transcribe") == Counter(list(speech))


# -- a disk that fills up -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (needs root, as the test machines have); skipped where mounting is not allowed."""
    import os

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0 or os.geteuid() != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    import os

    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_a_disk_that_fills_mid_run_loses_nothing_and_the_rerun_completes(speech, small_disk, tmp_path,
                                                                        monkeypatch):
    many = {f"{k}-{n}": p for n in range(6) for k, p in speech.items()}  # 24 files, a part each
    inputs = manifest(tmp_path, many)
    options = dict(formats=["parquet", "srt", "vtt", "txt"], rows_per_part=1)
    reference = Run(config_for("transcribe", inputs, tmp_path / "ref", **options), monkeypatch)
    reference()
    expected = comparable(rows_of(tmp_path / "ref", "transcribe"))
    out = small_disk / "out"
    filler = fill(small_disk, 160 * 1024)  # room to start, not to finish
    with pytest.raises(OSError) as failed:
        Run(config_for("transcribe", inputs, out, **options), monkeypatch)()
    assert failed.value.errno == 28  # ENOSPC: the run stops; it does not turn files into error rows
    kept = rows_of(out, "transcribe")
    assert 0 < len(kept) < len(many) and all(r["status"] == "ok" for r in kept)
    filler.unlink()
    again = Run(config_for("transcribe", inputs, out, **options), monkeypatch)()
    assert again.error == 0
    assert comparable(rows_of(out, "transcribe")) == expected
    assert ids_in(out, "transcribe") == Counter(list(many))
    assert sorted(p.name for p in (out / "subtitles").glob("*.srt")) == sorted(f"{k}.srt" for k in many)
    assert not list(out.rglob(".*.tmp-*")), "a temporary file was left behind"


def test_a_full_disk_is_refused_up_front_with_one_line(speech, small_disk):
    fill(small_disk, 0)
    done = cli("transcribe", str(speech["f0"]), "--out", str(small_disk / "out"), "--engine", "whisper")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("error:") == 1 and "no space left" in done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr


def test_failure_lines_follow_the_exit_code_contract():
    import errno

    from omnibatch.cli.failures import failure

    code, line = failure(OSError(errno.ENOSPC, "No space left on device", "/x/part.parquet"))
    assert code == 3 and "no space left" in line and "/x/part.parquet" in line and "kept" in line
    code, line = failure(PermissionError(errno.EACCES, "Permission denied", "/x"))
    assert code == 2 and "cannot write /x" in line
    code, line = failure(InputError("bad"))
    assert (code, line) == (2, "error: bad")
    code, line = failure(ZeroDivisionError("boom"))
    assert code == 3 and "ZeroDivisionError: boom" in line and "Run the same command again" in line
    report = line.rsplit("with ", 1)[1].rstrip(".")
    assert "ZeroDivisionError" in Path(report).read_text()


def test_a_read_only_output_folder_is_refused_up_front_with_one_line(speech, small_disk):
    (small_disk / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = cli("transcribe", str(speech["f0"]), "--out", str(small_disk / "out"), "--engine", "whisper")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("error:") == 1 and "cannot be written (Read-only file system)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_refused_for_its_inputs_is_not_a_failed_shard(tmp_path):
    out = tmp_path / "out"
    refused = cli("transcribe", str(tmp_path / "not-there.wav"), "--out", str(out), "--engine", "whisper")
    assert refused.returncode == 2 and refused.stderr.count("error:") == 1, refused.stderr
    assert not list(out.glob("_run/attempts/*.json"))
    assert not (out / "_run" / "config-transcribe.json").exists()  # no settings recorded either
    status = cli("status", str(out))  # so the folder holds no run at all, let alone a failed shard
    assert status.returncode == 2 and "holds no omnibatch run" in status.stderr, (status.stdout, status.stderr)
