"""The `whisper` engine: faster-whisper (CTranslate2) ASR on chunks planned by omnibatch.

Requests arrive already cut by `chunking` (at most ~30 s, cut in pauses), so
whisper's own VAD and its sliding window are not needed. Several chunks are
transcribed per model call (`omnibatch.engine.whisper_decode`): encoded as one
batch, each decoded independently (no conditioning on previous text) in its own
language (given, or detected from that same encoder output). By default the text
is decoded without timestamp tokens, as faster-whisper's batched pipeline does
(fewer errors on long recordings), and every chunk is aligned: its segments are
its sentences, timed by their words. With `timestamps=True` whisper writes
timestamp tokens and its segments are kept; where it then stops short of a
chunk's end, the rest of the chunk is decoded again, as its sequential decoder does.

Submitted requests wait in a queue (`omnibatch.engine.batching`); each `step()`
transcribes one batch of chunks of similar length that share a token budget. A
request past the 30 s window runs alone, through faster-whisper's own sliding
window (`WhisperModel.transcribe`).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path

import numpy as np

from omnibatch.engine.batching import BatchingEngine, BatchLimits, Waiting
from omnibatch.errors import EngineError, MissingDependencyError
from omnibatch.records import Generation, Request, Segment, Word
from omnibatch.stitching import join_texts
from omnibatch.words import shift_words, snap_to_speech

SAMPLE_RATE = 16000
WINDOW_S = 30.0  # whisper hears 30 s at a time; longer requests go through its sliding window
_MAX_LENGTH = 448  # whisper's decoder limit, prompt included
_PROMPT_ROOM = 8  # start-of-transcript, language, task and timestamp tokens
_MIN_RESEEK_S = 0.5  # a shorter rest of a chunk is not decoded again
_MAX_RESEEKS = 4  # passes over the rest of a chunk, each starting later than the one before
_LONG = "past the window"  # the batch key of a request that runs alone, through the sliding window
# The faster-whisper releases whose interfaces the decode was checked against (tests/test_whisper_decode.py
# compares its texts with faster-whisper's own batched pipeline).
TESTED_FASTER_WHISPER = ("1.2.1",)

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
        device: str = "auto",
        compute_type: str = "auto",
        beam_size: int = 5,
        cpu_threads: int = 0,
        batch_size: int = 8,
        timestamps: bool = False,
    ) -> None:
        whisper_model = _faster_whisper_model()
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
        self.timestamps = bool(timestamps)
        from omnibatch.engine.whisper_device import place_whisper

        # CUDA float16 where CTranslate2 can run there, else CPU int8 (whisper_device says why).
        placement = place_whisper(device, compute_type)
        device, compute_type = placement.device, placement.compute_type
        try:
            self._whisper = whisper_model(
                self.model, device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (RuntimeError, ValueError) as e:
            raise EngineError(
                f"cannot load the Whisper model in {self.model} on {device} ({compute_type}): {e}"
            ) from e
        from omnibatch.engine.whisper_decode import WhisperDecoder

        try:
            self._decoder = WhisperDecoder(self._whisper)
        except (AttributeError, ImportError, TypeError) as e:
            raise EngineError(_untested_message(e)) from e

    @property
    def languages(self) -> frozenset[str]:
        """The language codes this model can be told to transcribe."""
        return self._decoder.languages

    def _answer_now(self, request: Request) -> Generation | None:
        problem = _check(request)
        if problem is None and request.language is not None and request.language not in self.languages:
            problem = (f"the Whisper model in {self.model} does not know the language {request.language!r}; "
                       f"it knows: {', '.join(sorted(self.languages))}")
        if problem is not None:
            return Generation(request_id=request.id, text="", error=problem)
        if request.audio.size < SAMPLE_RATE // 100:  # under 10 ms: nothing to hear
            return Generation(request_id=request.id, text="", segments=[], finish_reason="stop")
        return None

    def _place(self, request: Request) -> Waiting:
        if request.audio.size > WINDOW_S * SAMPLE_RATE:
            return Waiting(key=_LONG, size=request.audio.size, alone=True)
        # One model call takes one token budget; each chunk has its own language.
        return Waiting(key=_max_new_tokens(request), size=request.audio.size)

    def _run_chosen(self, batch: list[Request], key: Hashable) -> list[Generation]:
        if key == _LONG:
            return [self._transcribe_long(request) for request in batch]
        return self._transcribe_batch(batch)

    def close(self) -> None:
        self._decoder = None
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
        decodes = self._decoder.decode(
            audios, [r.language for r in requests], word_times=[r.word_times for r in requests],
            beam_size=self.beam_size, max_new_tokens=_max_new_tokens(requests[0]), timestamps=self.timestamps,
        )
        generations = []
        for req, decode in zip(requests, decodes):
            segments = decode.segments
            if depth and decode.no_speech_prob > 0.6 and (decode.avg_logprob or 0.0) < -1.0:
                segments = []  # the rest of a chunk is often silence: whisper's own rule for skipping it
            generations.append(Generation(
                request_id=req.id, text=join_texts([s.text for s in segments]), segments=segments,
                output_tokens=decode.tokens, finish_reason="length" if decode.cut_off else "stop",
                language=decode.language, language_probability=decode.language_probability,
                avg_logprob=decode.avg_logprob,
            ))
        # Whisper sometimes stops before the end of a chunk, with a segment opened and never
        # closed. Its sequential decoder then seeks back to the last timestamp and decodes the
        # rest again; a batched decode has no second pass and would drop those words.
        rests = [(k, d.stopped_at) for k, d in enumerate(decodes)
                 if d.stopped_at is not None and 0 < d.stopped_at
                 and audios[k].size / SAMPLE_RATE - d.stopped_at >= _MIN_RESEEK_S]
        if rests and depth < _MAX_RESEEKS:
            # The rest is decoded in the language the chunk was decoded in.
            rest = [replace(requests[k], audio=audios[k][int(stop * SAMPLE_RATE):],
                            language=decodes[k].language) for k, stop in rests]
            again = self._run_batch(rest, depth + 1)
            for (k, stop), gen in zip(rests, again):
                generations[k] = _append(generations[k], gen, offset=stop)
        return generations

    def _transcribe_long(self, req: Request) -> Generation:
        """A request past whisper's 30 s window: its own sliding window, still without carried context.

        faster-whisper detects the language of such a request from its first 30 s, with an
        encoder pass of its own.
        """
        audio = np.asarray(req.audio, dtype=np.float32)
        try:
            found, info = self._whisper.transcribe(
                audio,
                language=req.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=False,
                word_timestamps=req.word_times,
            )
            found = list(found)
        except Exception as e:  # noqa: BLE001
            return Generation(request_id=req.id, text="", error=f"whisper failed: {e}")
        duration = audio.size / SAMPLE_RATE
        segments = []
        for s in found:
            text = s.text.strip()
            if not text:
                continue
            start = min(max(float(s.start), 0.0), duration)
            words = None
            if s.words:
                words = [Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                         for w in s.words if w.word.strip()]
            segments.append(Segment(start, min(max(float(s.end), start), duration), text, words=words,
                                    avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob)))
        if req.word_times:
            _snap_segments(segments, audio)
        tokens = sum(len(s.tokens) for s in found)
        return Generation(
            request_id=req.id,
            text=join_texts([s.text for s in segments]),
            segments=segments,
            output_tokens=tokens,
            # The sliding window takes its own budget per window: it does not run out.
            finish_reason="stop",
            language=info.language,
            language_probability=float(info.language_probability) if req.language is None else None,
            avg_logprob=_mean_logprob([(float(s.avg_logprob), len(s.tokens)) for s in found]),
        )


def _faster_whisper_model():
    try:
        import faster_whisper
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise MissingDependencyError(
            "the whisper engine needs faster-whisper; install it with: pip install 'omnibatch[whisper]'"
        ) from e
    version = getattr(faster_whisper, "__version__", "unknown")
    if version not in TESTED_FASTER_WHISPER:
        log.warning("faster-whisper %s is installed; the whisper engine was tested with %s "
                    "(pip install 'omnibatch[whisper]' installs that one)", version,
                    ", ".join(TESTED_FASTER_WHISPER))
    return WhisperModel


def _untested_message(error: Exception) -> str:
    import faster_whisper

    return (f"the whisper engine cannot drive faster-whisper {getattr(faster_whisper, '__version__', '?')} "
            f"({error}); it was tested with {', '.join(TESTED_FASTER_WHISPER)}: "
            "pip install 'omnibatch[whisper]' installs that one")


def _snap_segments(segments: list[Segment], audio: np.ndarray) -> None:
    """Move the words of `segments` out of the silences around them; segments follow their words."""
    flat = [w for s in segments for w in s.words or []]
    snapped = iter(snap_to_speech(flat, audio))
    for s in segments:
        if s.words:
            s.words = [next(snapped) for _ in s.words]
            s.start_s, s.end_s = s.words[0].start_s, s.words[-1].end_s


def _mean_logprob(pairs: list[tuple[float | None, int]]) -> float | None:
    """Token-weighted mean of (mean log-probability, tokens) pairs; None when none is known."""
    known = [(lp, n) for lp, n in pairs if lp is not None and n > 0]
    total = sum(n for _, n in known)
    return sum(lp * n for lp, n in known) / total if total else None


def _append(first: Generation, rest: Generation, *, offset: float) -> Generation:
    """`rest` (decoded from `offset` s into the same request) after `first`."""
    if rest.error or not rest.text:
        return first
    # The rest decides how the whole ended: cut off by the budget, or by itself.
    moved = [replace(s, start_s=s.start_s + offset, end_s=s.end_s + offset,
                     words=shift_words(s.words, offset) if s.words is not None else None)
             for s in rest.segments or []]
    return Generation(
        request_id=first.request_id,
        text=join_texts([first.text, rest.text]),
        segments=[*(first.segments or []), *moved],
        output_tokens=first.output_tokens + rest.output_tokens,
        finish_reason=rest.finish_reason,
        language=first.language,
        language_probability=first.language_probability,
        avg_logprob=_mean_logprob([(first.avg_logprob, first.output_tokens),
                                   (rest.avg_logprob, rest.output_tokens)]),
    )


def _check(req: Request) -> str | None:
    if req.audio is None:
        return "the whisper engine transcribes audio, and this request has none"
    if req.audio.ndim != 1:
        return f"the whisper engine needs mono 16 kHz audio, got an array of shape {req.audio.shape}"
    return None


def _max_new_tokens(req: Request) -> int:
    return max(1, min(req.max_new_tokens, _MAX_LENGTH - _PROMPT_ROOM))
