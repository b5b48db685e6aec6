"""`omnibatch plan --calibrate`: measure the engine on a small sample of the user's own media.

A few files are picked across the duration range, a piece of each is cut (from
10% into the file, so intros and silence at the start weigh less), and the
pieces run through the engine and options of the planned run, twice, each time
as a fresh `omnibatch run-shard` process in a private temporary folder (what a
Slurm array task runs): once over about half of the pieces, once over all. What
it measures, from the two wall times:

- `realtime_factor`: media seconds per wall second of the media-bound work
  (decode, engine, stitching, writing): the extra media over the extra time;
- `startup_s`: what a shard pays whatever its media (the process, imports,
  loading weights, starting decode workers).
"""

from __future__ import annotations

import logging
import os
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
DEFAULT_SAMPLE_S = 120.0
DEFAULT_SAMPLE_FILES = 4
MIN_PIECE_S = 5.0


@dataclass(frozen=True)
class Piece:
    source: MediaItem
    start_s: float
    duration_s: float


def choose_pieces(items: Sequence[MediaItem], durations: Sequence[float], *, sample_s: float = DEFAULT_SAMPLE_S,
                  files: int = DEFAULT_SAMPLE_FILES) -> list[Piece]:
    """Up to `files` files spread over the duration range, a piece of about `sample_s / files` from each."""
    usable = sorted((d, i) for i, d in enumerate(durations) if d >= MIN_PIECE_S)
    if not usable:
        raise InputError("nothing to calibrate on: no input is readable media of at least "
                         f"{MIN_PIECE_S:.0f} s")
    count = max(1, min(files, len(usable)))
    picks = [usable[round(k * (len(usable) - 1) / max(count - 1, 1))] for k in range(count)]
    picks = list(dict.fromkeys(picks))
    each = sample_s / len(picks)
    pieces = []
    for d, i in picks:
        length = min(each, d)
        start = min(0.1 * d, d - length)
        pieces.append(Piece(items[i], start, length))
    return pieces


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
              sample_s: float = DEFAULT_SAMPLE_S, files: int = DEFAULT_SAMPLE_FILES) -> ThroughputProfile:
    """Run the sample through the configured engine; the profile it measured.

    Two runs, each a fresh `omnibatch run-shard` process as a Slurm array task runs it: one over
    about half of the pieces, one over all of them. Both pay the same fixed costs (the process,
    imports, loading the model, starting decode workers), so the difference between them is the
    cost of the extra media alone: wall = startup + media / realtime_factor, solved from the two.
    """
    from omnibatch.media import probe

    pieces = choose_pieces(items, durations, sample_s=sample_s, files=files)
    with tempfile.TemporaryDirectory(prefix="omnibatch-calibrate-") as tmp:
        cuts = []
        for k, piece in enumerate(pieces):
            cuts.append(cut_piece(piece, Path(tmp) / f"piece-{k:02d}", video=config.task == "caption"))
        seconds = [probe(c).duration_s for c in cuts]
        half = max(1, len(cuts) // 2)
        small, full = _folder(Path(tmp) / "small", cuts[:half]), _folder(Path(tmp) / "full", cuts)
        m1, m2 = sum(seconds[:half]), sum(seconds)
        log.info("calibrating %s: %d pieces, %.0f s and %.0f s of media", config.engine, len(cuts), m1, m2)
        t1, engine = _timed_run(config, small, Path(tmp) / "out-small")
        t2, engine = _timed_run(config, full, Path(tmp) / "out-full")
    if len(cuts) > 1 and t2 > t1 and m2 > m1:
        rate = (m2 - m1) / (t2 - t1)
        startup = max(0.0, t1 - m1 / rate)
        how = (f"two runs here, {m1:.0f} s and {m2:.0f} s of media cut from {len(cuts)} of your files: {t1:.1f} s "
               f"and {t2:.1f} s wall")
    else:  # one piece only, or noise swamped the difference: all of it counts as throughput
        rate, startup = m2 / t2, 0.0
        how = f"one run here, {m2:.0f} s of media cut from your files in {t2:.1f} s wall (start not separated)"
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
