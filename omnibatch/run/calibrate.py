"""`omnibatch plan --calibrate`: measure the engine on a small sample of the user's own media.

A few files are picked across the duration range, pieces are cut from each
(from 10% into the file, so intros and silence at the start weigh less), and
runs over a third, two thirds and all of the pieces go through the engine and
options of the planned run, each several times (`repeats`, the sizes in a
rotated order), each a fresh `omnibatch run-shard` process in a private
temporary folder: what a Slurm array task runs, through the same `run_local` as
`omnibatch transcribe|caption|summarize`, with the same options and decode
worker count. From the median wall time of each size, a least-squares line
`wall = startup_s + media_s / realtime_factor` gives:

- `realtime_factor`: media seconds per wall second of the media-bound work
  (decode, engine, stitching, writing);
- `startup_s`: what a shard pays whatever its media (the process, imports,
  loading weights, starting decode workers).

The medians keep one run slowed by a noisy neighbour from moving the line; the
fit over three sizes keeps the start cost from being the small difference of
two noisy numbers.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.errors import InputError
from omnibatch.records import MediaItem
from omnibatch.run.throughput import ThroughputProfile

log = logging.getLogger("omnibatch")
DEFAULT_SAMPLE_S = 180.0
DEFAULT_SAMPLE_FILES = 6
DEFAULT_REPEATS = 3
MIN_PIECE_S = 5.0
MIN_PIECES = 3  # enough for three run sizes: a file picked alone gives several pieces


@dataclass(frozen=True)
class Piece:
    source: MediaItem
    start_s: float
    duration_s: float


def choose_pieces(items: Sequence[MediaItem], durations: Sequence[float], *, sample_s: float = DEFAULT_SAMPLE_S,
                  files: int = DEFAULT_SAMPLE_FILES) -> list[Piece]:
    """Up to `files` files spread over the duration range, about `sample_s / files` seconds from each
    (in consecutive pieces where fewer files than MIN_PIECES are picked), ordered round-robin over
    the files so that any leading share of the pieces mixes them."""
    usable = sorted((d, i) for i, d in enumerate(durations) if d >= MIN_PIECE_S)
    if not usable:
        raise InputError("nothing to calibrate on: no input is readable media of at least "
                         f"{MIN_PIECE_S:.0f} s")
    count = max(1, min(files, len(usable)))
    picks = [usable[round(k * (len(usable) - 1) / max(count - 1, 1))] for k in range(count)]
    picks = list(dict.fromkeys(picks))
    each = sample_s / len(picks)
    per_file = []
    for d, i in picks:
        length = min(each, d)
        start = min(0.1 * d, d - length)
        split = max(1, min(math.ceil(MIN_PIECES / len(picks)), int(length // MIN_PIECE_S)))
        step = length / split
        per_file.append([Piece(items[i], start + k * step, step) for k in range(split)])
    return [f[k] for k in range(max(len(f) for f in per_file)) for f in per_file if k < len(f)]


def run_sizes(pieces: int) -> list[int]:
    """How many of the pieces each run takes: a third, two thirds and all (fewer sizes for fewer pieces)."""
    return sorted({max(1, math.ceil(pieces * f)) for f in (1 / 3, 2 / 3, 1.0)})


def fit_profile(runs: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(realtime_factor, startup_s) from (media seconds, wall seconds) runs: the least-squares line
    through the median wall of each media size. None when the runs cannot separate the two (one
    size only, or a line that does not rise)."""
    by_size: dict[float, list[float]] = {}
    for media, wall in runs:
        by_size.setdefault(round(media, 3), []).append(wall)
    points = [(m, statistics.median(w)) for m, w in sorted(by_size.items())]
    if len(points) < 2:
        return None
    mean_m = sum(m for m, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    sxx = sum((m - mean_m) ** 2 for m, _ in points)
    slope = sum((m - mean_m) * (t - mean_t) for m, t in points) / sxx
    if not slope > 0:
        return None
    startup = mean_t - slope * mean_m
    if startup < 0:  # noise put the start below zero: the line through the origin instead
        slope = sum(m * t for m, t in points) / sum(m * m for m, _ in points)
        startup = 0.0
    return 1.0 / slope, startup


def cut_piece(piece: Piece, dest: Path, *, video: bool) -> Path:
    """The piece as its own file: 16 kHz mono WAV, or (video tasks) H.264 + AAC in MP4."""
    from omnibatch.media.ffmpeg import FFMPEG, FORMAT_WHITELIST, check_input, input_url, seconds

    path = check_input(piece.source.path)
    out = dest.with_suffix(".mp4" if video else ".wav")
    codec = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"] if video else ["-vn", "-ac", "1",
                                                                                       "-ar", "16000"]
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file",
           "-format_whitelist", FORMAT_WHITELIST, "-ss", seconds(piece.start_s), "-t", seconds(piece.duration_s),
           "-i", input_url(path), *codec, "-y", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise InputError(f"could not cut a calibration sample from {piece.source.display_path}: "
                         f"{done.stderr.strip()[-300:]}")
    return out


def calibrate(config: RunConfig, items: Sequence[MediaItem], durations: Sequence[float], *,
              sample_s: float = DEFAULT_SAMPLE_S, files: int = DEFAULT_SAMPLE_FILES,
              repeats: int = DEFAULT_REPEATS) -> ThroughputProfile:
    """Run the sample through the configured engine; the profile it measured (see the module doc)."""
    from omnibatch.media import probe

    if repeats < 1:
        raise ValueError(f"the calibration repeats must be at least 1, got {repeats}")
    pieces = choose_pieces(items, durations, sample_s=sample_s, files=files)
    runs: list[tuple[float, float]] = []
    engine = ""
    with tempfile.TemporaryDirectory(prefix="omnibatch-calibrate-") as tmp:
        cuts = []
        for k, piece in enumerate(pieces):
            cuts.append(cut_piece(piece, Path(tmp) / f"piece-{k:02d}", video=config.task == "caption"))
        seconds = [probe(c).duration_s for c in cuts]
        sizes = run_sizes(len(cuts))
        folders = {n: _folder(Path(tmp) / f"in-{n}", cuts[:n]) for n in sizes}
        log.info("calibrating %s: %d pieces, runs of %s s of media, %d times each", config.engine, len(cuts),
                 ", ".join(f"{sum(seconds[:n]):.0f}" for n in sizes), repeats)
        for r in range(repeats):
            for k in range(len(sizes)):
                n = sizes[(k + r) % len(sizes)]  # rotated: slow spells of the machine spread over the sizes
                wall, engine = _timed_run(config, folders[n], Path(tmp) / f"out-{n}-{r}")
                runs.append((sum(seconds[:n]), wall))
    fitted = fit_profile(runs)
    walls = ", ".join(f"{m:.0f} s media in {t:.1f} s" for m, t in runs)
    if fitted is not None:
        rate, startup = fitted
        how = (f"{len(runs)} runs here of pieces cut from {len({p.source.id for p in pieces})} of your files "
               f"({walls}); a line fitted through each size's median wall")
    else:  # one size only: all of it counts as throughput
        media = sum(m for m, _ in runs)
        rate, startup = media / sum(t for _, t in runs), 0.0
        how = f"{len(runs)} runs here of one size ({walls}); start not separated"
    name = engine or config.engine
    return ThroughputProfile(engine=name, gpu=_device_kind(name), task=config.task, realtime_factor=rate,
                             startup_s=startup, source=f"measured: {how}", measured=True)


def _folder(folder: Path, files: Sequence[Path]) -> Path:
    folder.mkdir()
    for f in files:
        os.link(f, folder / f.name)
    return folder


def _timed_run(config: RunConfig, folder: Path, out: Path) -> tuple[float, str]:
    """Wall seconds of a fresh `omnibatch run-shard` over `folder`, and the engine it reported."""
    import json
    import sys

    sample = replace(config, inputs=[str(folder)], out=str(out), shard_index=0, num_shards=1, resume=True,
                     retry_errors=False)
    config_file = out.with_suffix(".json")
    config_file.write_text(sample.to_json())
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "omnibatch", "run-shard", str(config_file), "--shard", "0/1"],
                          capture_output=True, text=True, timeout=6 * 3600, check=False)
    wall = time.perf_counter() - t0
    stats_files = sorted((out / "_run" / "stats").glob("*.json"))
    stats = json.loads(stats_files[0].read_text()) if stats_files else {}
    if done.returncode not in (0, 1) or not stats.get("ok"):
        tail = (done.stderr or done.stdout).strip()[-400:]
        raise InputError(f"calibration run failed (exit {done.returncode}): {tail}")
    return wall, str(stats.get("engine") or "")


def _device_kind(engine: str) -> str:
    """What the calibration ran on: the GPU's name, or cpu."""
    if engine == "whisper":
        return "cpu"  # the bundled whisper runs int8 on the CPU unless told otherwise
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0).lower()
            for kind in ("h200", "h100", "a100"):
                if kind in name:
                    return kind
            return name
    except ImportError:
        pass
    return "cpu"
