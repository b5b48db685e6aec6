"""The `whisper` engine: faster-whisper (CTranslate2) ASR on chunks planned by omnibatch.

Requests arrive already cut by `chunking` (at most ~30 s, cut in pauses), so
whisper's own VAD and its sliding window are not needed. Several chunks are
transcribed per model call through faster-whisper's batched pipeline: the
chunks are laid end to end and each is named as a clip, which the pipeline
encodes and decodes as one batch. Each chunk is decoded independently
(no conditioning on previous text), and its segments come back with times
relative to the chunk. Where whisper stops short of a chunk's end, the rest of
the chunk is decoded again, as whisper's sequential decoder does.

Submitted requests wait in a queue (`omnibatch.engine.batching`); each `step()`
transcribes one batch of chunks of similar length that share a language setting
and a token budget. A request past the 30 s window runs alone.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path

import numpy as np

from omnibatch.engine.batching import BatchingEngine, BatchLimits, Waiting
from omnibatch.errors import EngineError, MissingDependencyError
from omnibatch.records import Generation, Request, Segment

SAMPLE_RATE = 16000
WINDOW_S = 30.0  # whisper hears 30 s at a time; longer requests go through its sliding window
_MAX_LENGTH = 448  # whisper's decoder limit, prompt included
_PROMPT_ROOM = 8  # start-of-transcript, language, task and timestamp tokens
_MIN_RESEEK_S = 0.5  # a shorter rest of a chunk is not decoded again
_MAX_RESEEKS = 4  # passes over the rest of a chunk, each starting later than the one before
_LONG = "past the window"  # the batch key of a request that runs alone, through the sliding window

log = logging.getLogger(__name__)


class WhisperEngine(BatchingEngine):
    """faster-whisper on local CTranslate2 weights; `model` None means the bundled Whisper base.

    `generate(requests)` runs them all and returns them in order.
    """

    name = "whisper"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int = 0,
        batch_size: int = 8,
    ) -> None:
        try:
            from faster_whisper import BatchedInferencePipeline, WhisperModel
        except ImportError as e:
            raise MissingDependencyError(
                "the whisper engine needs faster-whisper; install it with: pip install 'omnibatch[whisper]'"
            ) from e
        if model is None:
            from omnibatch.models.whisper_assets import ensure_whisper_base

            model = ensure_whisper_base()
        path = Path(model).expanduser()
        if not (path / "model.bin").is_file():
            # faster-whisper would take a bare name for a hub id and try to download it.
            raise EngineError(
                f"{model} is not a CTranslate2 Whisper model folder (no model.bin); give a local path "
                "converted with ct2-transformers-converter, or leave --model out for the bundled Whisper base"
            )
        super().__init__(BatchLimits(max(1, batch_size)))
        self.model = str(path)
        self.beam_size = beam_size
        try:
            self._whisper = WhisperModel(
                self.model, device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (RuntimeError, ValueError) as e:
            raise EngineError(
                f"cannot load the Whisper model in {self.model} on {device} ({compute_type}): {e}"
            ) from e
        self._seen = _StopRecorder(self._whisper)
        self._batched = BatchedInferencePipeline(self._seen)

    def _answer_now(self, request: Request) -> Generation | None:
        problem = _check(request)
        if problem is not None:
            return Generation(request_id=request.id, text="", error=problem)
        if request.audio.size < SAMPLE_RATE // 100:  # under 10 ms: nothing to hear
            return Generation(request_id=request.id, text="", segments=[], finish_reason="stop")
        return None

    def _place(self, request: Request) -> Waiting:
        if request.audio.size > WINDOW_S * SAMPLE_RATE:
            return Waiting(key=_LONG, size=request.audio.size, alone=True)
        # One model call takes one language setting and one token budget.
        return Waiting(key=(request.language or "", _max_new_tokens(request)), size=request.audio.size)

    def _run_chosen(self, batch: list[Request], key: Hashable) -> list[Generation]:
        if key == _LONG:
            return [self._transcribe_long(request) for request in batch]
        return self._transcribe_batch(batch)

    def close(self) -> None:
        self._batched = None
        self._whisper = None

    def _transcribe_batch(self, requests: list[Request]) -> list[Generation]:
        try:
            return self._run_batch(requests)
        except Exception as e:  # noqa: BLE001 - one bad request must not sink its batch
            if len(requests) == 1:
                return [Generation(request_id=requests[0].id, text="", error=f"whisper failed: {e}")]
            log.warning("whisper batch of %d failed (%s); retrying one by one", len(requests), e)
            return [g for req in requests for g in self._transcribe_batch([req])]

    def _run_batch(self, requests: list[Request], depth: int = 0) -> list[Generation]:
        audios = [np.asarray(r.audio, dtype=np.float32) for r in requests]
        offsets = np.cumsum([0] + [a.size for a in audios])
        clips = [
            {"start": float(offsets[k]) / SAMPLE_RATE, "end": float(offsets[k + 1]) / SAMPLE_RATE}
            for k in range(len(audios))
        ]
        language = requests[0].language
        self._seen.stopped_at.clear()
        self._seen.token_counts.clear()
        segments, _info = self._batched.transcribe(
            np.concatenate(audios),
            language=language,
            multilingual=language is None,  # detect per chunk: one batch may hold several files
            clip_timestamps=clips,
            beam_size=self.beam_size,
            without_timestamps=False,
            condition_on_previous_text=False,
            max_new_tokens=_max_new_tokens(requests[0]),
            batch_size=len(requests),
        )
        # The pipeline marks each segment with its clip's start (`seek`, in 10 ms frames).
        # It computes that from the clip start in whole samples; do the same, so the keys match.
        fps = self._whisper.frames_per_second
        by_seek = {int(int(c["start"] * SAMPLE_RATE) / SAMPLE_RATE * fps): k for k, c in enumerate(clips)}
        found: list[list] = [[] for _ in requests]
        for seg in segments:
            if depth and seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue  # the rest of a chunk is often silence: whisper's own rule for skipping it
            k = by_seek.get(seg.seek)
            if k is None:  # cannot happen unless the pipeline changes: fall back to the times
                k = max(0, int(np.searchsorted(offsets, seg.start * SAMPLE_RATE, side="right")) - 1)
            found[min(k, len(requests) - 1)].append(seg)
        limit = _max_new_tokens(requests[0])
        finish = ["stop"] * len(requests)
        for seek, k in by_seek.items():
            if self._seen.token_counts.get(seek, 0) >= limit:
                finish[k] = "length"
        generations = [
            _generation(req, segs, offset=clips[k]["start"], duration=audios[k].size / SAMPLE_RATE,
                        finish_reason=finish[k])
            for k, (req, segs) in enumerate(zip(requests, found))
        ]
        # Whisper sometimes stops before the end of a chunk, with a segment opened and never
        # closed. Its sequential decoder then seeks back to the last timestamp and decodes the
        # rest again; the batched pipeline has no second pass and would drop those words.
        rests = []
        for seek, k in by_seek.items():
            stop = self._seen.stopped_at.get(seek)
            if stop is not None and 0 < stop and audios[k].size / SAMPLE_RATE - stop >= _MIN_RESEEK_S:
                rests.append((k, stop))
        if rests and depth < _MAX_RESEEKS:
            rest = [replace(requests[k], audio=audios[k][int(stop * SAMPLE_RATE) :]) for k, stop in rests]
            again = self._run_batch(rest, depth + 1)
            for (k, stop), gen in zip(rests, again):
                generations[k] = _append(generations[k], gen, offset=stop)
        return generations

    def _transcribe_long(self, req: Request) -> Generation:
        """A request past whisper's 30 s window: its own sliding window, still without carried context."""
        try:
            segments, _info = self._whisper.transcribe(
                np.asarray(req.audio, dtype=np.float32),
                language=req.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=False,
            )
            # The sliding window takes its own budget per window: it does not run out.
            return _generation(req, list(segments), offset=0.0, duration=req.audio.size / SAMPLE_RATE,
                               finish_reason="stop")
        except Exception as e:  # noqa: BLE001
            return Generation(request_id=req.id, text="", error=f"whisper failed: {e}")


class _StopRecorder:
    """The WhisperModel as the batched pipeline sees it, noting where each clip's decoding stopped short.

    Everything is the model's own except the step that splits a clip's tokens into
    segments, which also records, for a clip that ended on an open segment, the last
    timestamp (seconds into the clip), and for every clip how many tokens it decoded
    (all of its budget: it was cut off). Both are keyed like the segments' `seek`
    (the clip start in frames).
    """

    def __init__(self, model) -> None:
        self._model = model
        self.stopped_at: dict[int, float] = {}
        self.token_counts: dict[int, int] = {}

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def _split_segments_by_timestamps(
        self, tokenizer, tokens, time_offset, segment_size, segment_duration, seek
    ):
        segments, next_seek, single_timestamp_ending = self._model._split_segments_by_timestamps(
            tokenizer=tokenizer, tokens=tokens, time_offset=time_offset, segment_size=segment_size,
            segment_duration=segment_duration, seek=seek,
        )
        # The pipeline passes seek=0 and gets back where a sequential decoder would go on from.
        fps = self._model.frames_per_second
        self.token_counts[int(time_offset * fps)] = len(tokens)
        if next_seek - seek < segment_size:
            self.stopped_at[int(time_offset * fps)] = (next_seek - seek) / fps
        return segments, next_seek, single_timestamp_ending


def _append(first: Generation, rest: Generation, *, offset: float) -> Generation:
    """`rest` (decoded from `offset` s into the same request) after `first`."""
    if rest.error or not rest.text:
        return first
    # The rest decides how the whole ended: cut off by the budget, or by itself.
    moved = [Segment(round(s.start_s + offset, 3), round(s.end_s + offset, 3), s.text)
             for s in rest.segments or []]
    return Generation(
        request_id=first.request_id,
        text=" ".join(f"{first.text} {rest.text}".split()),
        segments=[*(first.segments or []), *moved],
        output_tokens=first.output_tokens + rest.output_tokens,
        finish_reason=rest.finish_reason,
    )


def _check(req: Request) -> str | None:
    if req.audio is None:
        return "the whisper engine transcribes audio, and this request has none"
    if req.audio.ndim != 1:
        return f"the whisper engine needs mono 16 kHz audio, got an array of shape {req.audio.shape}"
    return None


def _max_new_tokens(req: Request) -> int:
    return max(1, min(req.max_new_tokens, _MAX_LENGTH - _PROMPT_ROOM))


def _generation(
    req: Request, segs: list, *, offset: float, duration: float, finish_reason: str
) -> Generation:
    out: list[Segment] = []
    for s in segs:
        text = s.text.strip()
        if not text:
            continue
        start = min(max(s.start - offset, 0.0), duration)
        end = min(max(s.end - offset, start), duration)
        out.append(Segment(round(float(start), 3), round(float(end), 3), text))
    text = "".join(s.text for s in segs).strip()
    return Generation(
        request_id=req.id,
        text=" ".join(text.split()),
        segments=out,
        output_tokens=sum(len(s.tokens) for s in segs),
        finish_reason=finish_reason,
    )
