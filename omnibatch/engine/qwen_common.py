"""What every Qwen3-Omni Thinker backend shares: request checks, stop tokens, reply decoding,
sampling per variant, and the reasoning split of the Thinking variant.

The transformers and vLLM engines both turn token ids into a `Generation` with
`finish_generation`, so the same ids give the same row in either, and a Thinking
model's reasoning is handled in one place:

- Qwen3-Omni-Thinking writes `<think>` reasoning `</think>` and then its answer.
  `</think>` is an added token that is not special, so it survives
  `skip_special_tokens` and the split is done on the decoded text.
- A generation that ends before `</think>` (the token limit came first, or the
  model stopped) has no answer: it is an error saying so, never a transcript
  made of reasoning. Its reasoning is still returned, for the person debugging it.
- Qwen's guidance for the Thinking variant is sampling (temperature 0.6, top-p
  0.95, top-k 20; greedy decoding repeats itself endlessly) and a budget of many
  thousand tokens. The Instruct and Captioner variants decode greedily.

No torch or transformers import here: the helpers are pure, and tested without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnibatch.errors import EngineError, InputError
from omnibatch.records import Generation, Request

SAMPLE_RATE = 16000
AUDIO_TOKENS_PER_S = 13  # after the audio encoder's 8x downsampling of 100 mel frames/s
MIN_AUDIO_SAMPLES = 160  # one mel frame; the encoder cannot take less
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # every Qwen3-Omni turn ends with <|im_end|>
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Qwen's budget guidance for the Thinking variant: reasoning takes thousands of tokens.
THINKING_MAX_NEW_TOKENS = 32768
FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. temperature 0 means greedy (top_p and top_k unused)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


GREEDY = Sampling()
THINKING_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=20)


def default_sampling(variant: str) -> Sampling:
    """Qwen's recommended decoding for the variant: sampling for Thinking, greedy otherwise."""
    return THINKING_SAMPLING if variant == "thinking" else GREEDY


def resolve_sampling(variant: str, *, temperature: float | None = None, top_p: float | None = None,
                     top_k: int | None = None) -> Sampling:
    """The variant's default, with any value the user gave instead; each value is checked."""
    base = default_sampling(variant)
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise InputError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        base = Sampling(float(temperature), base.top_p, base.top_k)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise InputError(f"top_p must be a fraction in (0, 1], got {top_p!r}")
        base = Sampling(base.temperature, float(top_p), base.top_k)
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise InputError(f"top_k must be an integer >= 0 (0 = no cut), got {top_k!r}")
        base = Sampling(base.temperature, base.top_p, top_k)
    return base


def token_limit(request: Request, variant: str, cap: int | None) -> int:
    """How many tokens one request may generate.

    Instruct / Captioner: the request's own limit, at most `cap` (the engine's
    `max_new_tokens` option). Thinking: the request limits the tasks set size an
    answer alone, and the reasoning comes first, so every request gets the whole
    thinking budget: `cap` when given (the CLI passes `--max-new-tokens` there),
    else THINKING_MAX_NEW_TOKENS.
    """
    if variant == "thinking":
        return max(1, cap if cap is not None else THINKING_MAX_NEW_TOKENS)
    limit = request.max_new_tokens if cap is None else min(request.max_new_tokens, cap)
    return max(1, limit)


def stop_token_ids(tokenizer: Any, label: str) -> list[int]:
    """The ids that end a reply (`<|im_end|>`, `<|endoftext|>`), named here rather than trusting each
    saved generation config. Random weights never emit them: the token limit bounds the tiny model."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
    found = [i for i in ids if i is not None and i != tokenizer.unk_token_id]
    if not found:
        raise EngineError(f"{label}: the tokenizer has no <|im_end|> token; is this a Qwen3-Omni model?")
    return found


def until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    for n, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:n]
    return tokens


def decode_reply(tokenizer: Any, tokens: list[int]) -> str:
    """The reply text of `tokens` (stop token already removed)."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    # A character cut in half by the token limit is not text (vLLM's detokenizer drops it too).
    return text.rstrip("\ufffd")


@dataclass(frozen=True)
class Reply:
    answer: str
    reasoning: str | None  # None: the variant does not reason
    complete: bool  # False: a Thinking reply that never reached its answer (no </think>)


def split_reasoning(text: str) -> Reply:
    """A Thinking model's reply as reasoning and answer.

    The model opens with `<think>` (or the chat template did, in which case the
    reply starts inside the reasoning); everything up to the first `</think>` is
    reasoning, the rest is the answer.
    """
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN):]
    head, marker, tail = body.partition(THINK_CLOSE)
    if not marker:
        return Reply(answer="", reasoning=head.strip(), complete=False)
    return Reply(answer=tail.strip(), reasoning=head.strip(), complete=True)


def finish_generation(request_id: str, text: str, *, variant: str, prompt_tokens: int, output_tokens: int,
                      finish_reason: str | None) -> Generation:
    """The Generation for a decoded reply: the answer, and for Thinking its reasoning apart."""
    reason = finish_reason if finish_reason in FINISH_REASONS else None
    if variant != "thinking":
        return Generation(request_id=request_id, text=text.strip(), prompt_tokens=prompt_tokens,
                          output_tokens=output_tokens, finish_reason=reason)
    reply = split_reasoning(text)
    error = None
    if not reply.complete:
        if reason == "length":
            error = (f"the Thinking model's answer never arrived: it was still reasoning (no {THINK_CLOSE}) "
                     f"when it reached the token limit ({output_tokens} tokens); raise --max-new-tokens")
        else:
            error = (f"the Thinking model stopped before its answer: its reply has no {THINK_CLOSE} after "
                     f"{output_tokens} tokens of reasoning")
    return Generation(request_id=request_id, text=reply.answer, error=error, reasoning=reply.reasoning or None,
                      prompt_tokens=prompt_tokens, output_tokens=output_tokens, finish_reason=reason)


def saved_video_size(processor: Any, is_tiny: bool) -> dict[str, int] | None:
    """The tiny model's own small video size (the processor's call-time default would override it)."""
    if not is_tiny:
        return None
    size = getattr(processor.video_processor, "size", None)
    if size is None:
        return None
    return {k: int(v) for k, v in dict(size).items() if v is not None}


# -- requests ---------------------------------------------------------------------------


def check_request(request: Request) -> str | None:
    """Why `request` cannot be run, or None. Cheap checks before the processor sees it."""
    if request.audio is not None:
        audio = request.audio
        if not isinstance(audio, np.ndarray) or audio.ndim != 1:
            return f"audio must be a 1-D float32 array at {SAMPLE_RATE} Hz, got {_shape_of(audio)}"
        if audio.size < MIN_AUDIO_SAMPLES:
            return f"audio is too short ({audio.size} samples); at least {MIN_AUDIO_SAMPLES} are needed"
        if not np.isfinite(audio).all():
            return "audio contains NaN or infinite samples"
    if request.video is not None:
        video = request.video
        if not isinstance(video, np.ndarray) or video.ndim != 4 or video.shape[-1] != 3:
            return f"video must be uint8 frames shaped (T, H, W, 3), got {_shape_of(video)}"
        if video.dtype != np.uint8:
            return f"video frames must be uint8, got {video.dtype}"
        if min(video.shape[:3]) < 1:
            return f"video has no frames or no pixels: shape {video.shape}"
        if not request.video_fps or request.video_fps <= 0:
            return "video_fps must be given (> 0) with video frames"
    if request.prompt is None and request.audio is None and request.video is None:
        return "the request has no prompt, audio or video"
    if request.max_new_tokens < 1:
        return f"max_new_tokens must be at least 1, got {request.max_new_tokens}"
    return None


def estimate_tokens(request: Request) -> int:
    """A rough prompt length, used to sort and size batches."""
    tokens = len(request.prompt or "") // 3 + 16
    if request.audio is not None:
        tokens += math.ceil(request.audio.size / SAMPLE_RATE * AUDIO_TOKENS_PER_S)
    if request.video is not None:
        t, h, w = request.video.shape[:3]
        tokens += max(1, t // 2) * max(1, (h // 32) * (w // 32))
    return tokens


def is_device_failure(error: BaseException) -> bool:
    # A CUDA error (not out-of-memory) leaves the context unusable for every later request.
    return isinstance(error, RuntimeError) and "CUDA error" in str(error)


def _shape_of(value: object) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None:
        return type(value).__name__
    return f"{type(value).__name__} shape={shape} dtype={dtype}"
