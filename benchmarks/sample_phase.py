"""How much whisper's WER moves when a chunk's samples move by a fraction of a millisecond.

    .venv/bin/python benchmarks/sample_phase.py RECORDING.mp3 REFERENCE.txt [--shifts-ms 0 1 3]

The one-pass stream cuts each chunk out of the continuous 16 kHz stream; the old
pipeline decoded each chunk again by seeking, which resamples it from the chunk's own
start. The two differ at the sub-sample level only (the chunk plans are the same). This
transcribes the same chunks (same plan, whisper engine, stitched as the pipeline does)
from the stream and from seeking decodes whose start is moved by each shift, and
prints the WER of each, so a WER difference can be read against the spread that
shifts of a millisecond produce. Recordings: the long-form benchmark's
(`~/.cache/omnibatch/bench/long-*/long.mp3`, `reference.txt` beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from longform_text import word_errors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--shifts-ms", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    args = parser.parse_args()

    from omnibatch.engine.base import generate_all
    from omnibatch.engine.whisper_engine import WhisperEngine
    from omnibatch.media import decode_audio, probe
    from omnibatch.pipeline.speech_plan import chunking_options
    from omnibatch.pipeline.stream import stream_speech_chunks
    from omnibatch.records import Request
    from omnibatch.stitching import stitch
    from omnibatch.vad import VadOptions

    reference = args.reference.read_text()
    info = probe(args.recording)
    pairs = list(stream_speech_chunks(args.recording, info.duration_s, chunking_options(30.0), VadOptions(),
                                      item_id="phase"))
    chunks = [c for c, _ in pairs]
    engine = WhisperEngine()

    def wer_of(audios) -> dict:
        requests = [Request(id=c.id, prompt=None, audio=a, language="en") for c, a in zip(chunks, audios)]
        text = stitch(chunks, generate_all(engine, requests), duration_s=info.duration_s).text
        return word_errors([reference], [text], "whisper").as_dict()

    results = {"recording": str(args.recording), "chunks": len(chunks), "stream": wer_of([a for _, a in pairs])}
    for shift in args.shifts_ms:
        audios = [decode_audio(args.recording, start_s=c.start_s + shift / 1000, duration_s=c.duration_s)
                  for c in chunks]
        results[f"seek+{shift:g}ms"] = wer_of(audios)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
