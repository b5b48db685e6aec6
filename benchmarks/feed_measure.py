"""One measurement of the feed benchmark, run in a fresh process of its own.

    python feed_measure.py TASK JSON_ARGS     (prints one JSON object on its last line)

Tasks:
- limit: what decoding and VAD cost at the least, per file: bare ffmpeg decoding
  to 16 kHz mono f32le (its CPU from wait4), then `omnibatch.vad.speech_probabilities`
  over the samples held in memory (decoding them is not timed).
- pipeline: `run_shard` over files, with the simulated engine (`sim_engine`) or the
  whisper engine; reports the engine's figures and the CPU of this process and of
  its reaped children (decode workers, and the ffmpeg processes they started).
- stream: the decode stage alone, what a decode worker does for a transcribe file
  (probe, then the one-pass stream of `omnibatch.pipeline.stream` through
  `speech_plan.speech_chunks`), in this process: no workers, no engine.

A fresh process per measurement keeps one case's memory and CPU apart from the next.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SAMPLE_RATE = 16000
VAD_BLOCK_S = 30.0  # block size handed to the VAD in the limit measure
STAT_FIELDS = ("ok", "error", "media_seconds", "regions", "engine_calls", "engine_s", "engine_busy_fraction",
               "mean_in_flight", "in_flight_bound", "failed")


def cpu(which: int) -> float:
    ru = resource.getrusage(which)
    return ru.ru_utime + ru.ru_stime


def reap_children() -> None:
    for child in multiprocessing.active_children():  # decode workers: their CPU counts once reaped
        child.join(timeout=30)


# --- limit -------------------------------------------------------------------------

def limit(files: list[str]) -> dict:
    from omnibatch.vad import silero_model_path, speech_probabilities

    model = silero_model_path()
    for _ in speech_probabilities([__import__("numpy").zeros(SAMPLE_RATE, dtype="float32")], model):
        pass  # loads the ONNX session outside the timed part
    return {"files": [limit_one(Path(f), model) for f in files], "vad_block_s": VAD_BLOCK_S}


def limit_one(path: Path, model: Path) -> dict:
    import numpy as np

    from omnibatch.vad import speech_probabilities

    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar",
           str(SAMPLE_RATE), "pipe:"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    pcm = bytearray()
    while block := proc.stdout.read(1 << 22):
        pcm += block
    _, status, ru = os.wait4(proc.pid, 0)
    decode_wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}")
    samples = np.frombuffer(bytes(pcm), dtype=np.float32)
    del pcm
    step = int(VAD_BLOCK_S * SAMPLE_RATE)
    t0, c0 = time.perf_counter(), time.process_time()
    windows = 0
    for probs in speech_probabilities((samples[i:i + step] for i in range(0, samples.size, step)), model):
        windows += probs.size
    vad_cpu, vad_wall = time.process_time() - c0, time.perf_counter() - t0
    return {"file": str(path), "audio_s": round(samples.size / SAMPLE_RATE, 3),
            "decode_cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "decode_wall_s": round(decode_wall, 3),
            "vad_cpu_s": round(vad_cpu, 3), "vad_wall_s": round(vad_wall, 3), "vad_windows": windows}


# --- pipeline ----------------------------------------------------------------------

def load_run_shard(runner: str):
    """The scheduler's `run_shard`: the new executor, or the old wave runner for comparison."""
    if runner == "old":
        from omnibatch.pipeline.runner import run_shard

        return run_shard
    try:
        from omnibatch.run.executor import run_shard
    except ImportError as exc:
        raise SystemExit(
            f"the feed benchmark's pipeline parts need omnibatch.run.executor.run_shard, which is not "
            f"importable yet ({exc}); run with --runner old to try them on the wave runner") from None
    return run_shard


def pipeline(files: list[str], out: str, workers: int, runner: str, engine: dict,
             language: str | None = None, texts: bool = False) -> dict:
    from omnibatch.config import RunConfig

    run_shard = load_run_shard(runner)
    made = []
    if engine["kind"] == "simulated":
        from sim_engine import SimulatedEngine

        def factory(config):
            made.append(SimulatedEngine(engine["rate_audio_s_per_s"], engine["per_call_s"],
                                        engine["batch_size"], engine["max_in_flight"]))
            return made[-1]
        config = RunConfig(task="transcribe", inputs=files, out=out, formats=["parquet"], resume=False,
                           workers=workers, language=language)
        kwargs = {"engine_factory": factory}
    elif engine["kind"] == "whisper":
        config = RunConfig(task="transcribe", inputs=files, out=out, engine="whisper", language=language,
                           formats=["parquet"], resume=False, workers=workers)
        kwargs = {}
    else:
        raise ValueError(f"unknown engine kind {engine['kind']!r}")

    self_before, kids_before = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    stats = run_shard(config, progress=False, **kwargs)
    wall = time.perf_counter() - t0
    reap_children()
    result = {
        "wall_s": round(wall, 3),
        "main_cpu_s": round(cpu(resource.RUSAGE_SELF) - self_before, 3),
        "children_cpu_s": round(cpu(resource.RUSAGE_CHILDREN) - kids_before, 3),
        # The executor's own feed figures (engine_busy_fraction, ...) beside the engine's, as a cross-check.
        "stats": {k: getattr(stats, k, None) for k in STAT_FIELDS},
        "t_run_start": t0,
    }
    if made:
        result["engine"] = made[0].stats.as_dict()
        result["engine"]["bound"] = made[0].max_in_flight
        result["engines_made"] = len(made)
    if texts:
        result["texts"] = read_texts(Path(out))
    return result


def read_texts(out: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    texts = {}
    for part in sorted((out / "transcribe").glob("*.parquet")):
        for row in pq.read_table(part, columns=["path", "text"]).to_pylist():
            texts[row["path"]] = row["text"] or ""
    return texts


# --- the decode stage alone ----------------------------------------------------------

def stream(files: list[str]) -> dict:
    """CPU of the decode stage alone, per file, in this process and its ffmpeg children: probe, then
    `omnibatch.pipeline.speech_plan.speech_chunks` (the one-pass stream, `stream_speech_chunks`,
    with the run's chunking and VAD options), which yields each chunk with its samples."""
    try:
        from omnibatch.pipeline.speech_plan import speech_chunks
        from omnibatch.pipeline.stream import stream_speech_chunks  # noqa: F401 - what is measured
    except ImportError as exc:
        return {"skipped": f"the one-pass decode stream is not importable ({exc})"}
    from omnibatch.config import RunConfig
    from omnibatch.media import probe
    from omnibatch.records import MediaItem
    from omnibatch.vad import silero_model_path

    silero_model_path()
    rows = []
    for k, f in enumerate(files):
        path = Path(f).resolve()
        item = MediaItem(id=f"bench-{k}", path=path, source=f)
        config = RunConfig(task="transcribe", inputs=[f], out="/nonexistent")
        self_before, kids_before = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        info = probe(path)
        chunks, samples = 0, 0
        for _chunk, audio in speech_chunks(item, info, config):
            chunks += 1
            samples += int(audio.size)
        rows.append({"file": str(path), "audio_s": round(info.duration_s, 3), "chunks": chunks,
                     "chunk_audio_s": round(samples / SAMPLE_RATE, 3),
                     "wall_s": round(time.perf_counter() - t0, 3),
                     "cpu_s": round(cpu(resource.RUSAGE_SELF) - self_before
                                    + cpu(resource.RUSAGE_CHILDREN) - kids_before, 3)})
    return {"files": rows}


TASKS = {"limit": limit, "pipeline": pipeline, "stream": stream}

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = TASKS[sys.argv[1]](**json.loads(sys.argv[2]))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
