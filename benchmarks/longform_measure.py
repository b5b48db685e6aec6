"""One measurement of the long-form benchmark, run in a fresh process of its own.

    python longform_measure.py TASK JSON_ARGS     (prints one JSON object on its last line)

Tasks:
- omnibatch: `run_shard` over files with the whisper engine (probe, VAD, chunks,
  decode pool, engine feed, stitching, Parquet), then the texts from the Parquet.
- peer: faster-whisper's own `BatchedInferencePipeline` on the same files and model.
- decode_chunk: what omnibatch does before the engine for one file: the VAD
  planning pass over the streamed audio, then one decode per planned chunk.
- peer_decode: faster-whisper's `decode_audio` of the whole file (what the peer
  does before its VAD), for comparison.

A fresh process per case makes peak RSS (getrusage) that case's alone. CPU
seconds cover the process and its reaped children (ffmpeg, decode workers).
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def usage() -> dict:
    for child in multiprocessing.active_children():  # reap decode workers so their usage counts
        child.join(timeout=30)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The children's ru_maxrss is not reported: a forked child starts with its parent's RSS on
    # its books, so it says more about this process than about ffmpeg. The caller samples the tree.
    return {
        "peak_rss_mb": round(me.ru_maxrss / 1024, 1),  # Linux reports KiB
        "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
    }


def transcribe_omnibatch(files: list[str], out: str, language: str) -> dict:
    import pyarrow.parquet as pq

    from omnibatch.config import RunConfig
    from omnibatch.run.executor import run_shard

    config = RunConfig(task="transcribe", inputs=files, out=out, engine="whisper", language=language,
                       formats=["parquet"], resume=False, workers=1)
    t0 = time.perf_counter()
    stats = run_shard(config, progress=False)
    wall = time.perf_counter() - t0
    texts, errors = {}, {}
    for part in sorted((Path(out) / "transcribe").glob("*.parquet")):
        for row in pq.read_table(part, columns=["path", "status", "error", "text"]).to_pylist():
            texts[row["path"]] = row["text"] or ""
            if row["status"] != "ok":
                errors[row["path"]] = row["error"]
    return {"texts": texts, "errors": errors, "wall_s": round(wall, 2), "regions": stats.regions,
            "engine_s": round(stats.engine_s, 2), "audio_s": round(stats.media_seconds, 2)}


def transcribe_peer(files: list[str], language: str, batch_size: int, beam_size: int) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from omnibatch.models.whisper_assets import ensure_whisper_base

    t0 = time.perf_counter()
    model = WhisperModel(str(ensure_whisper_base()), device="cpu", compute_type="int8", cpu_threads=0)
    pipeline = BatchedInferencePipeline(model)
    texts, audio_s, regions = {}, 0.0, 0
    for f in files:
        segments, info = pipeline.transcribe(str(Path(f).resolve()), language=language,
                                             batch_size=batch_size, beam_size=beam_size)
        segments = list(segments)
        texts[str(Path(f).resolve())] = " ".join(s.text.strip() for s in segments if s.text.strip())
        audio_s += info.duration
        regions += len({s.seek for s in segments})  # one seek per VAD chunk
    return {"texts": texts, "errors": {}, "wall_s": round(time.perf_counter() - t0, 2),
            "regions": regions, "audio_s": round(audio_s, 2)}


def decode_chunk(file: str) -> dict:
    """The one-pass decode stream (VAD and cuts on the stream, each chunk's samples from it)."""
    from omnibatch.config import RunConfig
    from omnibatch.media import probe
    from omnibatch.pipeline.speech_plan import speech_chunks
    from omnibatch.records import MediaItem
    from omnibatch.vad import silero_model_path

    path = Path(file).resolve()
    item = MediaItem(id="bench", path=path, source=file)
    config = RunConfig(task="transcribe", inputs=[file], out="/nonexistent")
    silero_model_path()
    info = probe(path)
    before = rss_mb()
    t0 = time.perf_counter()
    first = None
    samples = chunks = 0
    for _chunk, audio in speech_chunks(item, info, config):
        first = first or time.perf_counter()
        samples += audio.size
        chunks += 1
        del audio
    t2 = time.perf_counter()
    t1 = first or t2
    # One pass: "plan" is the time to the first chunk (the VAD look-ahead), "decode" the rest.
    return {"audio_s": round(info.duration_s, 2), "chunks": chunks,
            "chunk_audio_s": round(samples / 16000, 2), "plan_s": round(t1 - t0, 2),
            "decode_s": round(t2 - t1, 2), "wall_s": round(t2 - t0, 2), "rss_before_mb": round(before, 1)}


def peer_decode(file: str) -> dict:
    from faster_whisper.audio import decode_audio

    before = rss_mb()
    t0 = time.perf_counter()
    audio = decode_audio(str(file), sampling_rate=16000)
    wall = time.perf_counter() - t0
    return {"audio_s": round(audio.size / 16000, 2), "wall_s": round(wall, 2),
            "rss_before_mb": round(before, 1)}


TASKS = {"omnibatch": transcribe_omnibatch, "peer": transcribe_peer, "decode_chunk": decode_chunk,
         "peer_decode": peer_decode}

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = TASKS[sys.argv[1]](**json.loads(sys.argv[2]))
    result.update(usage())
    print(json.dumps(result))
