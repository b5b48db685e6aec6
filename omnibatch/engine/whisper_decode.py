"""One model call of the whisper engine: a batch of chunks of at most 30 s through CTranslate2.

The decode is built on public interfaces only: faster-whisper's `WhisperModel`
(its feature extractor, `encode`, its tokenizer and the CTranslate2 model it
holds) and CTranslate2's `Whisper.detect_language`, `generate` and `align`. It
does what faster-whisper's batched pipeline does for one batch (the same
features, prompt, beam search settings and suppressed tokens; tests/
test_whisper_decode.py pins the texts to the pipeline's own), and keeps what the
pipeline throws away: each chunk's detected language and its probability (from
the encoder output the decode uses anyway: no second pass), where a chunk's
decode stopped with a segment left open, how many tokens it took, and the word
alignment of every chunk with its own language. Decoded without timestamp
tokens, a chunk's segments are its sentences, timed by their words.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from omnibatch.records import Segment, Word
from omnibatch.stitching import join_texts
from omnibatch.words import snap_to_speech, timed_words, token_start_times

SAMPLE_RATE = 16000
TIME_PRECISION = 0.02  # seconds per timestamp token
TOKENS_PER_S = 50  # encoder frames per second (100 mel frames, stride 2): the alignment's unit
WINDOW_FRAMES = 3000  # 30 s of mel frames: what the encoder always takes
MEDIAN_FILTER = 7  # over the alignment heads' attention, as faster-whisper uses
# Scripts written without spaces: each unicode piece is a word (faster-whisper's split does the same).
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
SENTENCE_ENDS = frozenset(".!?。！？")
PAUSE_S = 1.0  # a pause this long between two words also ends a segment (timestamp-free decoding)


@dataclass
class ChunkDecode:
    """What one chunk's decode gave: segments with chunk-relative times, and how it went."""

    segments: list[Segment]
    tokens: int  # tokens generated
    language: str | None  # the language it was decoded in
    language_probability: float | None  # detected here: its probability; given: None
    avg_logprob: float | None
    no_speech_prob: float | None
    stopped_at: float | None = None  # seconds into the chunk where it stopped with a segment left open
    cut_off: bool = False  # it used its whole token budget


@dataclass(frozen=True)
class Encoded:
    """A batch's encoder output (CTranslate2 StorageView), each row's mel frames with sound, and the
    features it was computed from."""

    output: object
    frames: list[int]
    features: np.ndarray


@dataclass(frozen=True)
class TimedPiece:
    start_s: float
    end_s: float
    tokens: list[int] = field(default_factory=list)


def sentences_of(segment: Segment, *, keep_words: bool) -> list[Segment]:
    """`segment` split into its sentences (and at pauses of PAUSE_S or more), each timed by its words."""
    words = segment.words or []
    if not words:
        return [segment]
    groups, current = [], [words[0]]
    for word in words[1:]:
        if current[-1].text[-1:] in SENTENCE_ENDS or word.start_s - current[-1].end_s >= PAUSE_S:
            groups.append(current)
            current = []
        current.append(word)
    groups.append(current)
    return [replace(segment, start_s=g[0].start_s, end_s=g[-1].end_s, text=join_texts([w.text for w in g]),
                    words=g if keep_words else None) for g in groups]


def split_at_timestamps(tokens: list[int], *, timestamp_begin: int, duration_s: float
                        ) -> tuple[list[TimedPiece], float | None]:
    """Whisper's output tokens as time-stamped pieces, and where decoding stopped short (or None).

    Whisper writes `<t0> text <t1><t1> text <t2>`: a pair of timestamps closes one
    segment and opens the next. The output is read as whisper's own decoders read it:
    a closing single timestamp (`text <t2>` at the end) means the chunk is done; a
    segment opened and never closed is dropped, and its opening time is where a
    sequential decoder would go on from (returned). Without any pair, the whole
    output is one piece, ending at its last timestamp (or the chunk's end).
    """
    is_time = [t >= timestamp_begin for t in tokens]

    def at(k: int) -> float:
        return round((tokens[k] - timestamp_begin) * TIME_PRECISION, 3)

    closes_alone = len(tokens) >= 2 and not is_time[-2] and is_time[-1]
    cuts = [k for k in range(1, len(tokens)) if is_time[k] and is_time[k - 1]]
    if not cuts:
        stamps = [k for k in range(len(tokens)) if is_time[k]]
        end = duration_s
        if stamps and tokens[stamps[-1]] != timestamp_begin:
            end = at(stamps[-1])
        return [TimedPiece(0.0, end, list(tokens))], None
    if closes_alone:
        cuts.append(len(tokens))
    pieces, last = [], 0
    for cut in cuts:
        part = tokens[last:cut]
        pieces.append(TimedPiece(at(last) if is_time[last] else 0.0,
                                 at(cut - 1) if is_time[cut - 1] else duration_s, part))
        last = cut
    stopped = None if closes_alone else at(last - 1)
    return pieces, stopped


class WhisperDecoder:
    """Batches of chunks through one faster-whisper `WhisperModel` (its CTranslate2 model)."""

    def __init__(self, model) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model
        self._ct2 = model.model
        self._make_tokenizer = Tokenizer
        self.multilingual = bool(self._ct2.is_multilingual)
        # faster-whisper lists large-v3's languages for every multilingual model: keep the ones this
        # model's vocabulary has a token for (Whisper base has no <|yue|>).
        vocabulary = model.hf_tokenizer
        self.languages = frozenset(
            code for code in model.supported_languages
            if not self.multilingual or vocabulary.token_to_id(f"<|{code}|>") is not None)
        self._tokenizers: dict[str | None, object] = {}
        self._suppress = list(get_suppressed_tokens(self.tokenizer("en"), [-1]))
        self.max_length = int(model.max_length)

    def tokenizer(self, language: str | None):
        key = language if self.multilingual else None
        if key not in self._tokenizers:
            self._tokenizers[key] = self._make_tokenizer(
                self._model.hf_tokenizer, self.multilingual, task="transcribe", language=key or "en")
        return self._tokenizers[key]

    # -- the steps ----------------------------------------------------------------------

    def encode(self, audios: list[np.ndarray]) -> Encoded:
        """The encoder output of the batch, with each chunk's count of mel frames with sound."""
        features, frames = [], []
        for audio in audios:
            mel = self._model.feature_extractor(audio)[..., :-1]
            frames.append(min(mel.shape[-1], WINDOW_FRAMES))
            if mel.shape[-1] >= WINDOW_FRAMES:
                mel = mel[..., :WINDOW_FRAMES]
            else:
                mel = np.pad(mel, ((0, 0), (0, WINDOW_FRAMES - mel.shape[-1])))
            features.append(mel)
        stacked = np.stack(features).astype(np.float32)
        return Encoded(self._model.encode(stacked), frames, stacked)

    def detect(self, encoded: Encoded) -> list[tuple[str, float]]:
        """Each row's most likely language and its probability, from the encoder output."""
        ranked = self._ct2.detect_language(encoded.output)
        return [(best[0][0][2:-2], float(best[0][1])) for best in ranked]

    def decode(self, audios: list[np.ndarray], languages: list[str | None], *, word_times: list[bool],
               beam_size: int, max_new_tokens: int, timestamps: bool = True) -> list[ChunkDecode]:
        """Decode each chunk (at most 30 s) in `languages[k]` (None: detected from its audio).

        Without `timestamps` whisper writes text only (as faster-whisper's batched pipeline
        does by default); every chunk is then aligned, and its segments are its sentences,
        timed by their words.
        """
        encoded = self.encode(audios)
        used: list[str | None] = list(languages)
        probability: list[float | None] = [None] * len(audios)
        if not self.multilingual:
            used = ["en"] * len(audios)
        elif any(lang is None for lang in languages):
            for k, (code, prob) in enumerate(self.detect(encoded)):
                if used[k] is None:
                    used[k], probability[k] = code, prob
        prompts = [list(self.tokenizer(lang).sot_sequence) for lang in used]
        if not timestamps:
            prompts = [p + [self.tokenizer(lang).no_timestamps] for p, lang in zip(prompts, used)]
        longest = max(len(p) for p in prompts)
        results = self._ct2.generate(
            encoded.output, prompts, beam_size=beam_size, patience=1, length_penalty=1,
            max_length=min(self.max_length, longest + max_new_tokens), suppress_blank=True,
            suppress_tokens=self._suppress, return_scores=True, return_no_speech_prob=True,
            sampling_temperature=0.0, repetition_penalty=1, no_repeat_ngram_size=0,
        )
        out: list[ChunkDecode] = []
        texts: list[list[list[int]]] = []  # per row, the text tokens of each of its segments
        for audio, lang, prob, result in zip(audios, used, probability, results):
            tok = self.tokenizer(lang)
            ids = list(result.sequences_ids[0])
            duration = audio.size / SAMPLE_RATE
            pieces, stopped = split_at_timestamps(ids, timestamp_begin=tok.timestamp_begin,
                                                  duration_s=duration)
            # The pipeline's mean: the beam's length-normalized score times the length, over length + 1.
            avg = float(result.scores[0]) * len(ids) / (len(ids) + 1) if result.scores else None
            no_speech = float(result.no_speech_prob)
            segments, row_texts = [], []
            for piece in pieces:
                text_tokens = [t for t in piece.tokens if t < tok.eot]
                text = tok.decode(text_tokens).strip()
                if text:
                    start = min(max(piece.start_s, 0.0), duration)
                    segments.append(Segment(start, min(max(piece.end_s, start), duration), text,
                                            avg_logprob=avg, no_speech_prob=no_speech))
                    row_texts.append(text_tokens)
            out.append(ChunkDecode(segments, len(ids), lang, prob, avg, no_speech, stopped,
                                   cut_off=len(ids) >= max_new_tokens))
            texts.append(row_texts)
        wanted = [k for k, want in enumerate(word_times) if (want or not timestamps) and out[k].segments]
        by_language: dict[str | None, list[int]] = {}
        for k in wanted:
            by_language.setdefault(out[k].language, []).append(k)
        for language, rows in by_language.items():
            found = self.align(self.select_rows(encoded, rows), [texts[k] for k in rows], language,
                               [audios[k] for k in rows])
            for k, per_segment in zip(rows, found):
                for segment, words in zip(out[k].segments, per_segment):
                    if words:
                        segment.words = words
                        segment.start_s, segment.end_s = words[0].start_s, words[-1].end_s
                if not timestamps:
                    out[k].segments = [piece for segment in out[k].segments
                                       for piece in sentences_of(segment, keep_words=word_times[k])]
        return out

    # -- words --------------------------------------------------------------------------

    def select_rows(self, encoded: Encoded, rows: list[int]) -> Encoded:
        """The encoder output of `rows` only (all of it when that is every row)."""
        if len(rows) == len(encoded.frames):
            return encoded
        frames, features = [encoded.frames[k] for k in rows], encoded.features[rows]
        if encoded.output.device == "cpu":
            import ctranslate2

            picked = np.ascontiguousarray(np.asarray(encoded.output)[rows])
            return Encoded(ctranslate2.StorageView.from_array(picked), frames, features)
        # On a GPU the rows are encoded again (rare: only a batch whose chunks are in several languages).
        return Encoded(self._model.encode(features), frames, features)

    def align(self, encoded: Encoded, texts: list[list[list[int]]], language: str | None,
              audios: list[np.ndarray]) -> list[list[list[Word]]]:
        """Words with times for each row's text, given as the text tokens of each of its segments,
        in `language`: per row, per segment, its words, snapped to the row's audio."""
        tok = self.tokenizer(language)
        token_lists = [[t for segment in row for t in segment] for row in texts]
        results = self._ct2.align(encoded.output, list(tok.sot_sequence), token_lists, encoded.frames,
                                  median_filter_width=MEDIAN_FILTER)
        spaced = language not in NO_SPACE_LANGUAGES
        out = []
        for row, tokens, result, audio in zip(texts, token_lists, results, audios):
            starts = token_start_times(result.alignments, len(tokens) + 1, TOKENS_PER_S)
            probs = list(result.text_token_probs)
            per_segment, first = [], 0
            for segment in row:
                # Each segment's words from its own tokens: a word never spans two segments.
                pieces, piece_tokens = tok.split_to_word_tokens(list(segment))
                per_segment.append(timed_words(pieces, [len(p) for p in piece_tokens], starts[first:],
                                               probs[first:], spaced=spaced))
                first += len(segment)
            duration = audio.size / SAMPLE_RATE
            snapped = iter(Word(min(w.start_s, duration), min(w.end_s, duration), w.text, w.probability)
                           for w in snap_to_speech([w for ws in per_segment for w in ws], audio))
            out.append([[next(snapped) for _ in ws] for ws in per_segment])
        return out
