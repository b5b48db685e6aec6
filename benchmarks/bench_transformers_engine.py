"""Time the transformers engine on the tiny model: load, batched vs one-by-one, torch threads.

    .venv/bin/python benchmarks/bench_transformers_engine.py [--threads 1 2] [--requests 16]

Speech comes from espeak-ng (decoded by ffmpeg), so the audio lengths are real.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

PHRASES = [
    "go forward ten meters",
    "the quick brown fox jumps over the lazy dog",
    "the meeting starts at nine and we discuss the plan",
    "rain falls on the roof while a dog barks in the distance",
]


def speech(text: str, folder: Path, name: str) -> np.ndarray:
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-f", "f32le", "-ac", "1",
                          "-ar", "16000", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    started = time.perf_counter()
    from omnibatch.engine.transformers_engine import TransformersEngine
    from omnibatch.models.tiny import ensure_tiny_model
    from omnibatch.records import Request

    print(f"import: {time.perf_counter() - started:.2f} s")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = ensure_tiny_model(folder / "cache")
        print(f"tiny model build: {time.perf_counter() - started:.2f} s")
        clips = [speech(p, folder, f"p{i}") for i, p in enumerate(PHRASES)]
        requests = [Request(f"r{i}", "Transcribe the English audio into text.", audio=clips[i % len(clips)])
                    for i in range(args.requests)]
        seconds = sum(r.audio.size for r in requests) / 16000
        for threads in args.threads:
            started = time.perf_counter()
            engine = TransformersEngine(str(model), num_threads=threads, max_new_tokens=args.max_new_tokens)
            load = time.perf_counter() - started
            engine.generate(requests[:2])  # warm up
            started = time.perf_counter()
            out = engine.generate(requests)
            batched = time.perf_counter() - started
            started = time.perf_counter()
            for r in requests:
                engine.generate([r])
            single = time.perf_counter() - started
            tokens = sum(g.output_tokens for g in out)
            print(f"threads={threads}: load {load:.2f} s; {len(requests)} requests ({seconds:.1f} s audio, "
                  f"{tokens} new tokens): batched {batched:.2f} s, one by one {single:.2f} s")
            engine.close()


if __name__ == "__main__":
    main()
