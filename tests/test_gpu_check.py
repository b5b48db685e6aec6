"""benchmarks/gpu_check.py runs on a machine without CUDA too: its CPU parts hold, and each CUDA part is
skipped with a message saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_skips_its_cuda_parts(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run benchmarks/gpu_check.py itself")
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMNIBATCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    cuda_parts = {"thinker_cuda_fp32", "thinker_cuda_bf16", "weights_to_device", "speech_cuda_bf16", "feed_cuda"}
    assert set(result["skipped"]) == cuda_parts
    assert all("no CUDA GPU" in why for why in result["skipped"].values())
    assert "SKIPPED, torch sees no CUDA GPU here" in done.stderr and done.stdout == ""
    assert result["failed"] == {} and result["checks"] and all(c["held"] for c in result["checks"])
    assert result["thinker_cpu"]["errors"] == {} and result["speech_cpu"]["ok"]
    assert result["feed_cpu"]["requests"] == 8 and result["feed_cpu"]["requests_per_s"] > 0
