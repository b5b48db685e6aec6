"""Shared by the scale-out tests (resume, local parallel, Slurm): a spoken manifest and its outputs.

    manifest = make_speech_manifest(tmp_path, 12)        # espeak-ng WAVs + one missing file
    config = tiny_config(manifest, tmp_path / "out")    # tiny Qwen3-Omni, small parts
    proc = start_shard(config_file, "0/1")              # `omnibatch run-shard`, own process group
    rows = read_rows(tmp_path / "out")                  # {id: (status, text, duration_s)} from Parquet
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from omnibatch.config import RunConfig
from tests.mediagen import make_speech

SENTENCES = [
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "it is easy to tell the depth of a well",
    "these days a chicken leg is a rare dish",
    "rice is often served in round bowls",
    "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck",
    "the hogs were fed chopped corn and garbage",
    "four hours of steady work faced us",
    "a large size in stockings is hard to sell",
    "the boy was there when the sun rose",
    "a rod is used to catch pink salmon",
    "the source of the huge river is the clear spring",
    "kick the ball straight and follow through",
    "help the woman get back to her feet",
    "a pot of tea helps to pass the evening",
]
MISSING_ID = "gone-missing"


def make_speech_manifest(folder: Path, count: int) -> Path:
    """`count` spoken WAVs of different lengths (one to four sentences) and one missing file."""
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        words = " and ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 4))
        make_speech(media / f"utt-{i:03d}.wav", words)
        lines.append({"id": f"utt-{i:03d}", "path": f"media/utt-{i:03d}.wav", "language": "en"})
    lines.insert(count // 2, {"id": MISSING_ID, "path": "media/not-there.wav"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def tiny_config(manifest: Path, out: Path, **overrides) -> RunConfig:
    # batch_size=1: each region is decoded alone, so its text cannot depend on which other regions
    # happen to share its batch (left padding changes a random model's greedy choices).
    settings = dict(task="transcribe", inputs=[str(manifest)], out=str(out), engine="transformers",
                    max_new_tokens=6, engine_options={"batch_size": 1}, formats=["parquet"],
                    rows_per_part=2, workers=1)
    settings.update(overrides)
    return RunConfig(**settings)


def write_config(config: RunConfig, path: Path) -> Path:
    path.write_text(config.to_json())
    return path


def omnibatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "omnibatch", *args]


def shard_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_shard(config_file: Path, shard: str = "0/1", log: Path | None = None) -> subprocess.Popen:
    """`omnibatch run-shard` in its own process group (so a test can signal all of it)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(omnibatch_cmd("run-shard", str(config_file), "--shard", shard),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=shard_env(), start_new_session=True)
    finally:
        if log:
            out.close()


def run_shard_to_end(config_file: Path, shard: str = "0/1", timeout: float = 600
                     ) -> subprocess.CompletedProcess:
    return subprocess.run(omnibatch_cmd("run-shard", str(config_file), "--shard", shard), capture_output=True,
                          text=True, env=shard_env(), timeout=timeout)


def all_rows(out: Path, table: str = "transcribe") -> list[dict]:
    rows = []
    for part in sorted((out / table).glob("part-*.parquet")):
        rows.extend(pq.read_table(part, columns=["id", "status", "text", "error", "duration_s"]).to_pylist())
    return rows


def read_rows(out: Path, table: str = "transcribe") -> dict[str, tuple[str, str | None, float | None]]:
    """{id: (status, text, duration_s)}; fails if any id was written twice."""
    rows = all_rows(out, table)
    twice = [i for i, n in Counter(r["id"] for r in rows).items() if n > 1]
    assert not twice, f"ids written more than once in {out}: {twice}"
    return {r["id"]: (r["status"], r["text"], r["duration_s"]) for r in rows}


def wait_for(condition, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def row_count(out: Path, table: str = "transcribe") -> int:
    total = 0
    for part in (out / table).glob("part-*.parquet"):
        try:
            total += pq.read_metadata(part).num_rows
        except (OSError, ValueError):  # renamed away under us
            pass
    return total


def run_reference(manifest: Path, folder: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """One uninterrupted single-process run of `manifest` into `folder/out`: its result and rows."""
    out = folder / "out"
    done = run_shard_to_end(write_config(tiny_config(manifest, out), folder / "config.json"))
    return done, read_rows(out)
