"""The word-timing benchmark runs end to end in its quick form and reports every figure it promises.

The numbers are not judged here (benchmarks/README.md holds a full run).
"""

from __future__ import annotations

import importlib.util
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
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
        reason="needs espeak-ng and ffmpeg",
    ),
    pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None, reason="needs faster-whisper"),
]


def test_quick_word_timing_benchmark_reports_every_system(tmp_path):
    out = tmp_path / "word_timing.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "word_timing.py"),
        "--quick",
        "--out",
        str(out),
        "--work",
        str(tmp_path / "media"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["layouts"]) == {"spaced", "abutting"}
    for systems in result["layouts"].values():
        assert set(systems) == {"whisper", "aligner (reference text)", "peer: faster-whisper batched"}
        for s in systems.values():
            assert 0 < s["matched"] <= s["words"]
            assert all(math.isfinite(s[k]) for k in ("median_abs_s", "p90_abs_s", "mean_s", "within_0_1_s"))
            assert len(s["median_abs_by_voice_s"]) >= 2  # more than one voice
    assert "Target" in out.with_suffix(".md").read_text()
