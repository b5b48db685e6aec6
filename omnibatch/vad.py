"""Find where people speak: Silero VAD over a stream of audio blocks.

The Silero VAD v6 network ships inside the faster-whisper wheel as an ONNX file
and runs with onnxruntime. It reads 512-sample windows (32 ms at 16 kHz), each
preceded by the last 64 samples of the window before, and carries an LSTM
state from window to window. `detect_speech` keeps that state, the unfinished
window and the open speech region across blocks, so a 3-hour file is scanned
block by block in flat memory.
"""

from __future__ import annotations

import functools
import importlib.util
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


def detect_speech(
    blocks: Iterable[np.ndarray],
    sample_rate: int = SAMPLE_RATE,
    options: VadOptions | None = None,
) -> list[Region]:
    """Speech regions (start_s, end_s) in a stream of mono float32 blocks at 16 kHz.

    Blocks may have any length; the result does not depend on how the audio is cut
    into blocks. Only one block and a few hundred bytes of state are held at once.
    """
    opt = options or VadOptions()
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"Silero VAD v6 reads 16 kHz audio, got {sample_rate} Hz; resample when decoding")
    tracker = _RegionTracker(opt, window_s=WINDOW / SAMPLE_RATE)
    samples = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += len(block)
            yield block

    for probs in speech_probabilities(counted(blocks), opt.model_path):
        tracker.feed(probs)
    return tracker.finish(samples / sample_rate)


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
    tracker.feed(probs)
    return tracker.finish(duration_s if duration_s is not None else len(probs) * window_s)


def speech_probabilities(
    blocks: Iterable[np.ndarray], model_path: Path | None = None
) -> Iterator[np.ndarray]:
    """Per-window speech probabilities (one per 512 samples), yielded block by block.

    The last partial window is zero-padded, so the total count is ceil(samples / 512).
    """
    session = _load_session(str(model_path or silero_model_path()))
    h = np.zeros(_STATE_SHAPE, dtype=np.float32)
    c = np.zeros(_STATE_SHAPE, dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    pending = np.zeros(0, dtype=np.float32)  # samples that do not fill a window yet

    def score(samples: np.ndarray) -> np.ndarray:
        nonlocal h, c, context
        windows = samples.reshape(-1, WINDOW)
        # Window k is read with the tail of window k-1 in front of it.
        previous_tails = np.concatenate([context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([previous_tails, windows], axis=1))
        context = windows[-1, -CONTEXT:].copy()
        out = []
        for i in range(0, len(batch), _MAX_WINDOWS_PER_RUN):
            probs, h, c = session.run(None, {"input": batch[i : i + _MAX_WINDOWS_PER_RUN], "h": h, "c": c})
            out.append(np.asarray(probs, dtype=np.float32).reshape(-1))
        return np.concatenate(out)

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"detect_speech needs mono 1-D blocks, got shape {block.shape}")
        if pending.size:
            block = np.concatenate([pending, block])
        whole = (block.size // WINDOW) * WINDOW
        pending = block[whole:].copy()
        if whole:
            yield score(block[:whole])
    if pending.size:
        yield score(np.pad(pending, (0, WINDOW - pending.size)))


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
        self.regions: list[Region] = []

    def feed(self, probs: np.ndarray) -> None:
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
                    self._close(self.silence_from)
        self.windows_seen += len(probs)

    def finish(self, duration_s: float) -> list[Region]:
        """Close the open region at the end of the audio (the last window was zero-padded)."""
        if self.start is not None:
            self._close(self.silence_from if self.silence_from is not None else duration_s)
        return self.regions

    def _close(self, end: float) -> None:
        if self.start is not None and end - self.start >= self.min_speech:
            self.regions.append((round(self.start, 3), round(end, 3)))
        self.start = self.silence_from = None
