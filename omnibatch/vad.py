"""Find where people speak: Silero VAD over a stream of audio blocks.

The Silero VAD v6 network ships inside the faster-whisper wheel as an ONNX file
and runs with onnxruntime. It reads 512-sample windows (32 ms at 16 kHz), each
preceded by the last 64 samples of the window before, and carries an LSTM
state from window to window. `SpeechDetector` keeps that state, the unfinished window and
the open speech region across blocks, so a 3-hour file is scanned block by
block in flat memory, and says after each block which regions have closed and
how much of the timeline is settled: that is what lets chunks be cut while the
same stream is still being decoded (`omnibatch.pipeline.stream`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnibatch.errors import MissingDependencyError

SAMPLE_RATE = 16000
WINDOW = 512  # samples the v6 network scores at a time, at 16 kHz
CONTEXT = 64  # samples of the previous window prepended to each window
_STATE_SHAPE = (1, 1, 128)
_MAX_WINDOWS_PER_RUN = 4096  # bounds onnxruntime's working memory for very large blocks

Region = tuple[float, float]


@dataclass(frozen=True)
class VadOptions:
    """threshold: a window with speech probability at or above this starts or continues speech.
    neg_threshold: below this a window counts as silence; in between, the state holds
        (hysteresis). None means threshold - 0.15.
    min_silence_s: speech ends only after this much silence, so short pauses stay inside.
    min_speech_s: shorter regions are dropped (clicks, breaths).
    model_path: the ONNX file; None means the one inside the faster-whisper wheel.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_silence_s: float = 0.3
    min_speech_s: float = 0.25
    model_path: Path | None = None

    @property
    def off_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


class SpeechDetector:
    """Silero VAD fed one block of mono float32 16 kHz samples at a time.

    `feed(block)` returns the regions that block closed. Between blocks the detector
    says how far it has scored (`frontier_s`), where a region still open began
    (`open_start_s`), and up to where its verdict can no longer change (`settled_s`),
    so a planner downstream can act on the first part of a file while the rest is
    still being decoded. The regions do not depend on how the audio is cut into blocks.
    """

    def __init__(self, options: VadOptions | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"Silero VAD v6 reads 16 kHz audio, got {sample_rate} Hz; resample when decoding"
            )
        self.options = options or VadOptions()
        self._scorer = _WindowScorer(self.options.model_path)
        self._tracker = _RegionTracker(self.options, window_s=WINDOW / SAMPLE_RATE)
        self._samples = 0
        self._finished = False

    def feed(self, block: np.ndarray) -> list[Region]:
        """Score `block` (any length) and return the regions it closed, in order."""
        if self._finished:
            raise RuntimeError("SpeechDetector.feed after finish")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"detect_speech needs mono 1-D blocks, got shape {block.shape}")
        self._samples += block.size
        return self._tracker.feed(self._scorer.feed(block))

    def finish(self, duration_s: float | None = None) -> list[Region]:
        """Score the last partial window and close the open region at the end of the audio.

        `duration_s` None means the length of what was fed.
        """
        if self._finished:
            return []
        self._finished = True
        closed = self._tracker.feed(self._scorer.flush())
        end = duration_s if duration_s is not None else self._samples / SAMPLE_RATE
        return closed + self._tracker.finish(end)

    @property
    def frontier_s(self) -> float:
        """Seconds scored so far: whole windows only, until `finish` pads the last one."""
        return self._tracker.windows_seen * self._tracker.window_s

    @property
    def open_start_s(self) -> float | None:
        """Where the region still open began (as its start will read), or None in silence."""
        start = self._tracker.start
        return None if start is None else round(start, 3)

    @property
    def settled_s(self) -> float:
        """Speech before this time is final: every region starting earlier has been returned,
        except the open one, which will be kept and lasts at least until here.

        Inside an open region this lags `frontier_s` by the silence that may still end it,
        and sits at the region's start while the region is too short to be sure it stays.
        Infinite after `finish`. Rounded as region times are.
        """
        if self._finished:
            return math.inf
        t = self._tracker
        if t.start is None:
            return round(self.frontier_s, 3)
        # Closed later, the region ends at the current silence's start or past the frontier.
        sure_until = t.silence_from if t.silence_from is not None else self.frontier_s
        if sure_until - t.start < t.min_speech:
            return round(t.start, 3)
        return round(sure_until, 3)


def detect_speech(
    blocks: Iterable[np.ndarray],
    sample_rate: int = SAMPLE_RATE,
    options: VadOptions | None = None,
) -> list[Region]:
    """Speech regions (start_s, end_s) in a stream of mono float32 blocks at 16 kHz.

    Blocks may have any length; the result does not depend on how the audio is cut
    into blocks. Only one block and a few hundred bytes of state are held at once.
    """
    detector = SpeechDetector(options, sample_rate)
    regions: list[Region] = []
    for block in blocks:
        regions += detector.feed(block)
    return regions + detector.finish()


def regions_from_probabilities(
    probs: Iterable[float],
    options: VadOptions | None = None,
    *,
    window_s: float = WINDOW / SAMPLE_RATE,
    duration_s: float | None = None,
) -> list[Region]:
    """Speech regions from per-window speech probabilities.

    Pure: what `detect_speech` does after the network has scored the windows.
    """
    probs = np.asarray(list(probs), dtype=np.float32)
    tracker = _RegionTracker(options or VadOptions(), window_s=window_s)
    regions = tracker.feed(probs)
    return regions + tracker.finish(duration_s if duration_s is not None else len(probs) * window_s)


def speech_probabilities(
    blocks: Iterable[np.ndarray], model_path: Path | None = None
) -> Iterator[np.ndarray]:
    """Per-window speech probabilities (one per 512 samples), yielded block by block.

    The last partial window is zero-padded, so the total count is ceil(samples / 512).
    """
    scorer = _WindowScorer(model_path)
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"detect_speech needs mono 1-D blocks, got shape {block.shape}")
        probs = scorer.feed(block)
        if probs.size:
            yield probs
    tail = scorer.flush()
    if tail.size:
        yield tail


class _WindowScorer:
    """The network's state across blocks: LSTM state, the previous window's tail, and the
    samples that do not fill a window yet. The session is loaded at the first full window."""

    def __init__(self, model_path: Path | None) -> None:
        self.model_path = model_path
        self._session = None
        self.h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self.c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Probabilities of the whole windows `block` completes (possibly none)."""
        if self.pending.size:
            block = np.concatenate([self.pending, block])
        whole = (block.size // WINDOW) * WINDOW
        self.pending = block[whole:].copy()
        return self._score(block[:whole]) if whole else _NO_PROBS

    def flush(self) -> np.ndarray:
        """The zero-padded last partial window's probability, if there is one."""
        if not self.pending.size:
            return _NO_PROBS
        last = np.pad(self.pending, (0, WINDOW - self.pending.size))
        self.pending = np.zeros(0, dtype=np.float32)
        return self._score(last)

    def _score(self, samples: np.ndarray) -> np.ndarray:
        if self._session is None:
            self._session = _load_session(str(self.model_path or silero_model_path()))
        session = self._session
        windows = samples.reshape(-1, WINDOW)
        # Window k is read with the tail of window k-1 in front of it.
        previous_tails = np.concatenate([self.context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([previous_tails, windows], axis=1))
        self.context = windows[-1, -CONTEXT:].copy()
        out = []
        for i in range(0, len(batch), _MAX_WINDOWS_PER_RUN):
            probs, self.h, self.c = session.run(
                None, {"input": batch[i : i + _MAX_WINDOWS_PER_RUN], "h": self.h, "c": self.c}
            )
            out.append(np.asarray(probs, dtype=np.float32).reshape(-1))
        return np.concatenate(out)


_NO_PROBS = np.zeros(0, dtype=np.float32)


def silero_model_path() -> Path:
    """The Silero VAD v6 ONNX file inside the installed faster-whisper wheel (not imported)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "voice activity detection needs the Silero VAD model shipped with faster-whisper; "
            "install it with: pip install 'omnibatch[whisper]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise MissingDependencyError(
            f"{path} is missing: this faster-whisper does not ship Silero VAD v6; "
            "install the pinned one with: pip install 'omnibatch[whisper]'"
        )
    return path


@functools.lru_cache(maxsize=2)
def _load_session(path: str):
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError(
            "voice activity detection needs onnxruntime; install it with: pip install 'omnibatch[whisper]'"
        ) from e
    opts = onnxruntime.SessionOptions()
    # One thread: VAD runs in decode workers beside others, and the network is tiny.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


class _RegionTracker:
    """Turns a stream of window probabilities into speech regions, with hysteresis."""

    def __init__(self, opt: VadOptions, window_s: float) -> None:
        self.on = opt.threshold
        self.off = opt.off_threshold
        self.min_silence = opt.min_silence_s
        self.min_speech = opt.min_speech_s
        self.window_s = window_s
        self.windows_seen = 0
        self.start: float | None = None  # open region's start, None when in silence
        self.silence_from: float | None = None  # where the current run of silence began, inside a region

    def feed(self, probs: np.ndarray) -> list[Region]:
        """Advance over `probs`; return the regions they closed."""
        closed: list[Region] = []
        w = self.window_s
        for k, p in enumerate(probs.tolist(), start=self.windows_seen):
            t = k * w
            if self.start is None:
                if p >= self.on:
                    self.start, self.silence_from = t, None
            elif p >= self.on:
                self.silence_from = None
            elif p < self.off:
                if self.silence_from is None:
                    self.silence_from = t
                if t + w - self.silence_from >= self.min_silence:
                    closed += self._close(self.silence_from)
        self.windows_seen += len(probs)
        return closed

    def finish(self, duration_s: float) -> list[Region]:
        """Close the open region at the end of the audio (the last window was zero-padded)."""
        if self.start is None:
            return []
        return self._close(self.silence_from if self.silence_from is not None else duration_s)

    def _close(self, end: float) -> list[Region]:
        start, self.start, self.silence_from = self.start, None, None
        if start is not None and end - start >= self.min_speech:
            return [(round(start, 3), round(end, 3))]
        return []
