"""`omnibatch demo`: generates its media, runs on the embedded model, and the example manifests then work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omnibatch.demo import EXAMPLE_NAMES

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))


@pytest.mark.slow
def test_demo_runs_and_points_at_its_outputs(tmp_path):
    media, out = tmp_path / "media", tmp_path / "out"
    result = subprocess.run([OMNIBATCH, "demo", "--out", str(out), "--media", str(media)],
                            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in media.iterdir() if p.suffix != ".jsonl") == sorted(EXAMPLE_NAMES)
    assert "meaningless" in result.stderr and str(out) in result.stderr
    for task in ("transcribe", "caption", "summarize"):
        rows = pq.read_table(out / task).to_pylist()
        assert len(rows) == len(EXAMPLE_NAMES) and {r["status"] for r in rows} == {"ok"}, task
    spoken = pq.read_table(out / "summarize").to_pylist()
    assert all((out / r["audio_path"]).is_file() and r["sample_rate"] == 24000 for r in spoken)
    assert all(r["clips"] for r in pq.read_table(out / "caption").to_pylist())
