"""The long-form benchmark runs end to end in its quick form and reports every number it promises.

It does not judge the numbers (the machine is shared and the quick recording is
short); benchmarks/README.md holds a full run. It needs network access to PyPI once,
for the pocketsphinx source distribution (cached afterwards).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
                       reason="needs espeak-ng and ffmpeg"),
]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_longform_benchmark_reports_all_fields(tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("jiwer")
    pytest.importorskip("psutil")
    out = tmp_path / "longform.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "longform.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["quick"] is True and r["machine"]["cores"] >= 1

    (long_,) = r["long_recordings"]
    for part in (r["human_speech"], long_):
        for system in ("omnibatch", "peer"):
            for normalizer in ("whisper", "simple"):
                w = part["wer"][system][normalizer]
                assert _number(w["wer"]) and w["wer"] >= 0 and w["N"] > 0
            s = part["speed"][system]
            assert s["audio_s"] > 0 and s["wall_s"] > 0 and s["cpu_s"] > 0 and s["peak_rss_mb"] > 0
    assert r["human_speech"]["clips"] == 5
    assert long_["voice"] == "espeak" and long_["reference_words"] > 100 and long_["audio_s"] > 30
    assert _number(long_["wer_gap_points"]) and _number(long_["speed_ratio_omnibatch_to_peer"]["wall"])
    pool = r["long_pooled"]
    assert pool["recordings"] == ["espeak"] and pool["reference_words"] == long_["reference_words"]
    assert pool["wer"] == long_["wer"]  # one recording: pooling changes nothing
    low, high = pool["gap"]["interval_95"]
    assert low <= pool["wer_gap_points"] <= high and isinstance(pool["bar_met"], bool)
    assert pool["bar_met"] == (pool["wer_gap_points"] <= pool["bar_points"])

    cases = r["memory"]["cases"]
    assert [c["case"] for c in cases] == ["1 min", "3 min"]
    for c in cases:
        d = c["decode_chunk"]
        assert d["chunks"] > 0 and d["tree_peak_rss_mb"] > 0 and d["python_peak_rss_mb"] > 0
        assert abs(d["chunk_audio_s"] - c["audio_s"]) < 0.2 * c["audio_s"]  # the chunks cover the speech
        assert c["ffmpeg_baseline"]["audio_s_per_wall_s"] > 0 and c["throughput_ratio_to_ffmpeg"] > 0
        assert c["peer_decode_whole_file"]["peak_rss_mb"] > 0
    assert _number(r["memory"]["tree_peak_ratio_last_to_first"])
    table = out.with_suffix(".md").read_text()
    assert "| decode+chunk" in table and "omnibatch" in table


def test_the_paired_gap_charges_each_error_to_its_block_and_brackets_the_gap(monkeypatch):
    pytest.importorskip("jiwer")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from longform_text import errors_by_block, paired_gap, word_errors

    words = ["w" + "".join(chr(97 + int(d)) for d in f"{k:03d}") for k in range(1000)]  # letters only
    reference = " ".join(words)
    # A: 20 substitutions in the first 100 words, 2 deletions at word 500, 3 words inserted after the last.
    a = [("x" if k < 20 else w) for k, w in enumerate(words) if k not in (500, 501)] + ["ia", "ib", "ic"]
    # B: one substitution in every block of 100.
    b = [("y" if k % 100 == 50 else w) for k, w in enumerate(words)]
    blocks = errors_by_block(reference, " ".join(a))
    assert blocks == [(100, 20)] + [(100, 0)] * 4 + [(100, 2)] + [(100, 0)] * 3 + [(100, 3)]
    assert sum(e for _, e in blocks) == 25 == 10 * word_errors([reference], [" ".join(a)], "simple").wer

    gap = paired_gap([reference], [" ".join(a)], [" ".join(b)], "simple", resamples=2000)
    assert gap.points == pytest.approx(100 * (25 - 10) / 1000) and gap.blocks == 10
    assert gap.low < gap.points < gap.high
    # A's errors sit in three blocks, B's everywhere: drawing A's bad block or not swings the gap widely.
    assert gap.low < 0 < gap.high
    same = paired_gap([reference], [" ".join(b)], [" ".join(b)], "simple")
    assert (same.points, same.low, same.high) == (0.0, 0.0, 0.0)


def test_quick_feed_benchmark_reports_all_fields(tmp_path):
    """The feed benchmark in its quick form: every figure present; one ffmpeg process per file."""
    pytest.importorskip("psutil")
    out = tmp_path / "feed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "feed.py"), "--quick", "--out", str(out),
           "--cache", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["quick"] is True and r["settings"]["runner"] == "new"
    assert _number(r["limit"]["capacity_audio_s_per_cpu_s"]) and r["limit"]["capacity_audio_s_per_cpu_s"] > 0
    assert _number(r["feed"]["pipeline_to_limit"]) and isinstance(r["feed"]["pipeline_met"], bool)
    assert _number(r["feed"]["stream_to_limit"])
    engine = r["engine_bound"]["run"]["engine"]
    assert 0 < engine["busy_fraction"] <= 1 and 0 < engine["mean_in_flight"] <= engine["bound"]
    assert engine["max_in_flight_seen"] <= engine["bound"]  # the feed never exceeds the engine's bound
    assert _number(r["feed_bound"]["throughput_to_feed"])
    assert [c["case"] for c in r["memory"]["cases"]] and _number(r["memory"]["ratio"])
    for run_ in r["ffmpeg_per_run"].values():  # one decode pass per file, whatever its length
        assert run_["ffmpeg_per_file"] == 1 and run_["ffprobe_per_file"] == 1
    assert (out.with_suffix(".md")).read_text().count("|") > 20
