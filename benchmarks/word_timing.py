"""Word timing: how far omnibatch's word start times fall from where each word was spoken.

    .venv/bin/python benchmarks/word_timing.py            # full run, ~5 min on an idle 2-core CPU
    .venv/bin/python benchmarks/word_timing.py --quick    # smoke run (tests/test_benchmarks.py)

The recording is assembled so that every word's start is known: each word of a
passage is synthesized on its own by espeak-ng, trimmed to its sound (first and
last sample above -60 dBFS) and placed at a chosen offset. Phrases of 4-9 words
rotate over five voices and speeds (American, British, Scottish, two variants),
so no figure belongs to one voice. White noise at -50 dBFS (RMS; `--noise-dbfs`,
`none` for digital silence) lies under the whole recording, so that a pause is
quiet, not zeros. Two layouts of the same words:

  spaced     30-200 ms of silence between the words of a phrase (random), 0.5-1.2 s between phrases
  abutting   no silence between the words of a phrase (each word's sound starts where the last
             one's ends), 0.5-1.2 s between phrases

Systems, each on the same WAV file:

  whisper     omnibatch's transcribe task with the whisper engine (bundled Whisper base, int8,
              beam 5): its decode pass (Silero VAD, chunks cut in pauses), the engine, the
              stitched file's words (`TranscribeTask.finish`, what DIR/words/ holds)
  aligner     the aligner the Qwen3-Omni engines use for word times (`omnibatch.align`), on the
              same chunks, given the reference words heard in each chunk: the tiny Qwen model's
              own text is random, so the aligner is measured on the true text (a real model's
              transcript would add its recognition errors)
  peer        faster-whisper's `BatchedInferencePipeline.transcribe(word_timestamps=True)` on the
              same model, its own VAD and defaults: the timing a faster-whisper user gets

Words are matched to the reference by their text (lowercase, punctuation removed,
difflib's longest matching blocks); the error of a matched word is its start minus
the true start. Reported per system and layout: words matched, median and 90th
percentile of |error|, mean error (negative: early), and the median per voice.
Target: median |error| <= 0.1 s for the whisper engine on the spaced layout.
Writes benchmarks/results/word_timing.json and .md (word_timing-quick.* with --quick).
"""

from __future__ import annotations

import argparse
import difflib
import platform
import random
import re
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from results_io import write_results  # noqa: E402

from benchmarks.passages import RIVER_VALLEY  # noqa: E402
from omnibatch.config import RunConfig  # noqa: E402
from omnibatch.media import probe  # noqa: E402
from omnibatch.records import MediaItem  # noqa: E402

RATE = 16000
FLOOR = 1e-3  # -60 dBFS: where a synthesized word's sound begins and ends
NOISE_DBFS = -50.0  # the noise under the whole recording (RMS)
VOICES = (("en-us", 165), ("en-gb", 150), ("en-gb-scotland", 160), ("en-us+f3", 175), ("en-gb-x-rp+m3", 140))
PASSAGE = RIVER_VALLEY + " " + (
    "In the museum near the station you can see tools, maps and letters from those early days. "
    "A small boat still waits by the old bridge, painted blue and green every summer. "
    "Children learn to swim in the shallow bend where the current is slow and the sand is warm. "
    "At night the frogs sing, and the lights of the town shine on the dark surface of the water. "
    "Nobody remembers who planted the tall trees along the bank, but everyone agrees they belong there."
)
QUICK_SENTENCES = 2


@dataclass(frozen=True)
class Truth:
    word: str
    start_s: float
    end_s: float
    voice: str


def normalize(word: str) -> str:
    return re.sub(r"[^a-z0-9']+", "", word.lower())


def speak(word: str, voice: str, speed: int) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", word], capture_output=True, check=True
    ).stdout
    pcm = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "-", "-ar", str(RATE), "-ac", "1", "-f", "f32le", "-"],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout
    audio = np.frombuffer(pcm, dtype=np.float32)
    loud = np.flatnonzero(np.abs(audio) > FLOOR)
    return audio[loud[0] : loud[-1] + 1].copy() if loud.size else audio[:0].copy()


def assemble(
    words: list[str], layout: str, seed: int, noise_dbfs: float | None = NOISE_DBFS
) -> tuple[np.ndarray, list[Truth]]:
    """The recording of `words` in phrases, and where each word is."""
    rng = random.Random(seed)
    pieces, truth, t = [np.zeros(int(0.7 * RATE), np.float32)], [], 0.7
    k, phrase = 0, 0
    while k < len(words):
        voice, speed = VOICES[phrase % len(VOICES)]
        size = rng.randint(4, 9)
        for j, word in enumerate(words[k : k + size]):
            if j:
                gap = rng.uniform(0.03, 0.2) if layout == "spaced" else 0.0
                pieces.append(np.zeros(round(gap * RATE), np.float32))
                t += round(gap * RATE) / RATE
            clip = speak(word, voice, speed)
            truth.append(Truth(word, t, t + clip.size / RATE, voice))
            pieces.append(clip)
            t += clip.size / RATE
        k += size
        phrase += 1
        pause = rng.uniform(0.5, 1.2)
        pieces.append(np.zeros(round(pause * RATE), np.float32))
        t += round(pause * RATE) / RATE
    audio = np.concatenate(pieces)
    if noise_dbfs is not None:
        audio = audio + np.random.default_rng(seed).standard_normal(audio.size) * 10 ** (noise_dbfs / 20)
    return audio.astype(np.float32), truth


def write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm.tobytes())


# -- systems ---------------------------------------------------------------------------------


def run_whisper(path: Path, engine) -> tuple[list[tuple[str, float]], list, list]:
    """omnibatch's transcribe task with the whisper engine: (word, start) in the file, and its chunks."""
    from omnibatch.output.tables import FileRow
    from omnibatch.pipeline.transcribe import TranscribeTask

    task = TranscribeTask(
        RunConfig(
            task="transcribe",
            inputs=[str(path)],
            out=str(path.parent / "out"),
            engine="whisper",
            language="en",
            formats=[],
        )
    )
    item = MediaItem(id=path.stem, path=path, source=str(path))
    info = probe(path)
    regions = list(task.decode(item, info))
    chunks = [r.chunk for r in regions]
    audios = [r.request.audio for r in regions]
    generations = engine.generate([r.request for r in regions])
    result = task.finish(FileRow(id=item.id), item, info, chunks, generations, [])
    return [(w.word, w.start_s) for w in result.words], chunks, audios


def run_aligner(chunks, audios, truth: list[Truth], aligner) -> list[tuple[str, float]]:
    """The Qwen engines' aligner on each chunk, given the reference words whose middle lies in it."""
    from omnibatch.packing import TimeMap

    texts = []
    for chunk in chunks:  # a chunk of packed speech holds its pieces' audio only
        inside = [t.word for t in truth
                  if any(a <= (t.start_s + t.end_s) / 2 < b for a, b in chunk.spans)]
        texts.append(" ".join(inside))
    found = aligner.align(audios, texts, ["en"] * len(chunks))
    return [
        (w.text, TimeMap.for_chunk(chunk).to_file(w.start_s))
        for chunk, aligned in zip(chunks, found)
        for w in aligned.words or []
    ]


def run_peer(path: Path, model_path: str) -> list[tuple[str, float]]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    whisper_model = WhisperModel(model_path, device="cpu", compute_type="int8")
    segments, _ = BatchedInferencePipeline(whisper_model).transcribe(
        str(path), language="en", batch_size=8, beam_size=5, word_timestamps=True
    )
    return [(w.word, float(w.start)) for s in segments for w in s.words or []]


# -- scoring ---------------------------------------------------------------------------------


def score(found: list[tuple[str, float]], truth: list[Truth]) -> dict:
    ref = [normalize(t.word) for t in truth]
    hyp = [normalize(w) for w, _ in found]
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    errors, by_voice = [], {}
    for block in matcher.get_matching_blocks():
        for d in range(block.size):
            t = truth[block.a + d]
            error = found[block.b + d][1] - t.start_s
            errors.append(error)
            by_voice.setdefault(t.voice, []).append(abs(error))
    e = np.abs(np.array(errors)) if errors else np.array([np.nan])
    return {
        "words": len(truth),
        "matched": len(errors),
        "median_abs_s": round(float(np.median(e)), 4),
        "p90_abs_s": round(float(np.percentile(e, 90)), 4),
        "mean_s": round(float(np.mean(errors)), 4) if errors else None,
        "within_0_1_s": round(float(np.mean(e <= 0.1)), 4),
        "median_abs_by_voice_s": {v: round(float(np.median(x)), 4) for v, x in sorted(by_voice.items())},
    }


def table(result: dict) -> str:
    noise = "none (digital silence)" if result["noise_dbfs"] is None else f"{result['noise_dbfs']} dBFS"
    lines = [
        f"Run {result['when']} on {result['machine']} ({'quick' if result['quick'] else 'full'} run, "
        f"`benchmarks/word_timing.py`, {result['wall_s']:.0f} s); noise under the recording: {noise}.",
        "",
        "| layout | system | words matched | median abs error, s | p90 abs error, s | mean error, s | "
        "within 0.1 s | median abs error by voice, s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for layout, systems in result["layouts"].items():
        for name, s in systems.items():
            voices = ", ".join(f"{v} {x:.3f}" for v, x in s["median_abs_by_voice_s"].items())
            lines.append(
                f"| {layout} ({result['durations_s'][layout]:.0f} s) | {name} | {s['matched']}/{s['words']} "
                f"| {s['median_abs_s']:.3f} | {s['p90_abs_s']:.3f} | {s['mean_s']:+.3f} | "
                f"{s['within_0_1_s']:.0%} | {voices} |"
            )
    target = result["layouts"]["spaced"]["whisper"]["median_abs_s"]
    lines += [
        "",
        f"Target: whisper median abs start error <= 0.1 s on the spaced layout: {target:.3f} s "
        f"({'met' if target <= 0.1 else 'NOT met'}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two sentences, for a smoke test")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnibatch-word-timing"))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--noise-dbfs",
        default=str(NOISE_DBFS),
        help="RMS level of the white noise under the recording, or none (default %(default)s)",
    )
    args = parser.parse_args()
    noise = None if args.noise_dbfs.strip().lower() == "none" else float(args.noise_dbfs)
    out = args.out or HERE / "results" / ("word_timing-quick.json" if args.quick else "word_timing.json")
    started = time.perf_counter()
    text = PASSAGE
    if args.quick:
        text = " ".join(s.strip() + "." for s in PASSAGE.split(".")[:QUICK_SENTENCES])
    words = text.split()
    args.work.mkdir(parents=True, exist_ok=True)

    from omnibatch.align import WordAligner
    from omnibatch.engine.whisper_engine import WhisperEngine

    engine = WhisperEngine()
    aligner = WordAligner()
    result: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": f"{platform.processor() or platform.machine()}, {_cpus()} CPUs",
        "voices": [f"{v} (speed {s})" for v, s in VOICES],
        "noise_dbfs": noise,
        "layouts": {},
        "durations_s": {},
    }
    for layout in ("spaced", "abutting"):
        audio, truth = assemble(words, layout, args.seed, noise)
        path = args.work / f"{layout}.wav"
        write_wav(path, audio)
        result["durations_s"][layout] = round(audio.size / RATE, 2)
        found, chunks, audios = run_whisper(path, engine)
        systems = {"whisper": score(found, truth)}
        systems["aligner (reference text)"] = score(run_aligner(chunks, audios, truth, aligner), truth)
        systems["peer: faster-whisper batched"] = score(run_peer(path, engine.model), truth)
        result["layouts"][layout] = systems
    engine.close()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(out, result, table(result))


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
