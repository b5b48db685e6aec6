"""Progress a person can read while a shard runs: media seconds, chunks and a real ETA, per stage.

At a terminal, one tqdm bar per stage that matters, in media seconds:

    decode  12.4/40.0 min audio decoded, 25 chunks
    engine   9.0/40.0 min audio back from the engine, 18/25 chunks, ETA from its rate
    speech   3/10 files spoken (summarize only)

Elsewhere (a Slurm job, a pipe) no bars: one log line every `LOG_EVERY_S`
seconds (files done, media hours done, realtime factor, ETA), written to the
shard's log and to stderr.

The counts come from the scheduler's own counters (`Scheduler.decoded_s`,
`engine_done_s`, `regions`, `regions_done`, `spoken`), read by a watcher thread,
so a 40-minute file moves the bars chunk by chunk instead of jumping at its end.
Media seconds not known before the run (no manifest duration, no
`_run/durations.json`) are not probed again: the decode workers probe each file anyway, and the
bars' total is re-estimated from those durations as they land.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnibatch.records import MediaItem

log = logging.getLogger("omnibatch.progress")
LOG_EVERY_S = 30.0
REFRESH_S = 0.5


@dataclass(frozen=True)
class Snapshot:
    """What the scheduler has done so far, in media seconds and counts."""

    files_done: int = 0
    decoded_s: float = 0.0
    engine_s: float = 0.0  # media seconds whose first-pass answer is back
    chunks_decoded: int = 0
    chunks_done: int = 0
    spoken: int = 0


def eta_seconds(done: float, total: float, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far, or None before there is a rate."""
    if done <= 0 or elapsed_s <= 0 or total <= 0:
        return None
    return max(0.0, total - done) / (done / elapsed_s)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def media_amount(done_s: float, total_s: float | None = None) -> str:
    """Seconds of media in the unit that reads best for the larger figure: "15 s", "4.2 min", "1.35 h";
    with `total_s`, "done/total unit" in that one unit."""
    largest = max(done_s, total_s or 0.0)
    if largest < 60:
        scale, unit, digits = 1.0, "s", 0
    elif largest < 3600:
        scale, unit, digits = 60.0, "min", 1
    else:
        scale, unit, digits = 3600.0, "h", 2
    done = f"{done_s / scale:.{digits}f}"
    return f"{done}/{total_s / scale:.{digits}f} {unit}" if total_s is not None else f"{done} {unit}"


def progress_line(label: str, snap: Snapshot, files_total: int, media_total_s: float, elapsed_s: float,
                  engine_elapsed_s: float) -> str:
    """The periodic line of a run that is not at a terminal."""
    rate = snap.engine_s / engine_elapsed_s if engine_elapsed_s > 0 else 0.0
    eta = eta_seconds(snap.engine_s, media_total_s, engine_elapsed_s)
    return (f"{label}: {snap.files_done}/{files_total} files, {media_amount(snap.engine_s, media_total_s)} "
            f"of media done ({snap.chunks_done}/{snap.chunks_decoded} chunks), "
            f"{rate:.1f}x realtime, elapsed {clock(elapsed_s)}, ETA {clock(eta)}")


class RunProgress:
    """The bars (interactive) or the periodic lines (not) of one shard."""

    def __init__(self, label: str, files_total: int, media_total_s: float, *, interactive: bool,
                 speech: bool = False, log_every_s: float = LOG_EVERY_S, stream: Any = None) -> None:
        self.label, self.files_total, self.media_total_s = label, files_total, media_total_s
        self.interactive, self.log_every_s = interactive, log_every_s
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.engine_started: float | None = None
        self._last_line = self.started
        self._lock = threading.Lock()
        self.last = Snapshot()
        self.bars: dict[str, Any] = {}
        if interactive:
            from tqdm import tqdm

            common = {"file": self.stream, "dynamic_ncols": True, "unit": "s", "unit_scale": False,
                      "bar_format": "{desc:<22} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s media "
                                    "[{elapsed}<{remaining}, {rate_fmt}]{postfix}"}
            self.bars["decode"] = tqdm(total=media_total_s, desc=f"{label} decode", position=0, **common)
            self.bars["engine"] = tqdm(total=media_total_s, desc=f"{label} engine", position=1, **common)
            if speech:
                self.bars["speech"] = tqdm(total=0, desc=f"{label} speech", position=2, file=self.stream,
                                           dynamic_ncols=True, unit="file")

    def set_media_total(self, seconds: float) -> None:
        """The total as now estimated (files whose duration was not known up front are probed by the
        decode workers as they come; until then they count at the mean of those probed)."""
        with self._lock:
            self.media_total_s = seconds
            for name in ("decode", "engine"):
                if name in self.bars:
                    self.bars[name].total = self.media_total_s
                    self.bars[name].refresh()

    def update(self, snap: Snapshot, to_speak: int = 0) -> None:
        with self._lock:
            now = time.monotonic()
            if self.engine_started is None and snap.engine_s > 0:
                # The rate counts from the first answer: loading the model is not throughput.
                self.engine_started = now
            if self.bars:
                self._move("decode", snap.decoded_s - self.last.decoded_s, f"{snap.chunks_decoded} chunks")
                self._move("engine", snap.engine_s - self.last.engine_s,
                           f"{snap.chunks_done}/{snap.chunks_decoded} chunks, {snap.files_done}/"
                           f"{self.files_total} files")
                if "speech" in self.bars:
                    bar = self.bars["speech"]
                    bar.total = to_speak
                    bar.update(snap.spoken - self.last.spoken)
            elif now - self._last_line >= self.log_every_s:
                self._last_line = now
                self.emit_line(snap, now)
            self.last = snap

    def _move(self, name: str, delta: float, postfix: str) -> None:
        bar = self.bars[name]
        if bar.total is not None and bar.n + delta > bar.total:
            bar.total = bar.n + delta  # a probe said less than the decode found
        bar.set_postfix_str(postfix, refresh=False)
        bar.update(delta)

    def emit_line(self, snap: Snapshot, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        engine_elapsed = now - self.engine_started if self.engine_started is not None else 0.0
        line = progress_line(self.label, snap, self.files_total, self.media_total_s, now - self.started,
                             engine_elapsed)
        log.info(line)
        if logging.getLogger().getEffectiveLevel() > logging.INFO:  # the console shows INFO only with -v
            print(line, file=self.stream, flush=True)
        return line

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def known_media(items: Sequence[MediaItem], out_dir: Path) -> tuple[float, list[str]]:
    """(seconds known without probing, paths still to probe): manifest durations, then `_run/durations.json`."""
    from omnibatch.run.durations import cached_durations

    cached = cached_durations(out_dir)
    known, unknown = 0.0, []
    for it in items:
        if it.duration_s is not None:
            known += it.duration_s
        elif str(it.path) in cached:
            known += cached[str(it.path)]
        else:
            unknown.append(str(it.path))
    return known, unknown


def estimated_total(known_s: float, unknown_files: int, probed_files: int, probed_s: float,
                    files_total: int) -> float:
    """Media seconds of the whole shard: what was known up front, plus the files that were not at the
    mean duration of the files probed so far; exact once every file has been probed."""
    if probed_files >= files_total > 0:
        return probed_s
    if not unknown_files or not probed_files:
        return known_s
    return known_s + unknown_files * probed_s / probed_files


@contextmanager
def watching(progress: RunProgress, read: Callable[[], tuple[Snapshot, int]], *,
             total: Callable[[], float] | None = None, interval_s: float = REFRESH_S) -> Iterator[RunProgress]:
    """Refresh `progress` from `read()` every `interval_s` in a thread while the block runs;
    `total()`, when given, re-estimates the media total each time (nothing is probed twice)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                if total is not None:
                    progress.set_media_total(total())
                progress.update(*read())
            except Exception as exc:  # noqa: BLE001 - a progress display never stops a run
                log.debug("progress update failed: %s", exc)

    thread = threading.Thread(target=loop, name="omnibatch-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            progress.update(*read())
        finally:
            progress.close()


@contextmanager
def probing_bar(what: str, *, interactive: bool | None = None, stream: Any = None) -> Iterator[Callable[[int, int], None]]:
    """A callback for `durations.probe_durations(progress=...)`: a bar at a terminal, else a line every
    `LOG_EVERY_S` seconds and one at the end."""
    stream = stream or sys.stderr
    interactive = stream.isatty() if interactive is None else interactive
    state: dict[str, Any] = {"bar": None, "last": time.monotonic(), "seen": (0, 0)}

    def update(done: int, total: int) -> None:
        state["seen"] = (done, total)
        if interactive:
            if state["bar"] is None:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, desc=what, unit="file", file=stream, dynamic_ncols=True)
            bar = state["bar"]
            bar.update(done - bar.n)
        elif time.monotonic() - state["last"] >= LOG_EVERY_S:
            state["last"] = time.monotonic()
            print(f"{what}: {done}/{total} files", file=stream, flush=True)

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].close()
        elif state["seen"][1] and not interactive:
            print(f"{what}: {state['seen'][0]}/{state['seen'][1]} files", file=stream, flush=True)
