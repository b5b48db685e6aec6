"""The `transformers` engine: the Qwen3-Omni Thinker run with Hugging Face transformers.

The reference implementation, on CPU or CUDA. For text tasks it loads only the
Thinker (`Qwen3OmniMoeThinkerForConditionalGeneration`) from the full
checkpoint; the Talker and Code2Wav weights stay on disk. Spoken output will be
a separate method that loads the full model on first use (not built yet).

Requests are batched by the processor with left padding and decoded greedily.
A batch only holds requests the processor can take together: the same video
frame rate and the same audio-in-video setting (`batch_key`). Submitted requests
wait in a queue (`omnibatch.engine.batching`); each `step()` runs one batch of
similar estimated lengths (`estimate_tokens`) drawn from it, so padding stays small.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnibatch.engine.batching import BatchingEngine, BatchLimits, Waiting
from omnibatch.errors import EngineError, InputError, MissingDependencyError, describe_error
from omnibatch.models.hf_quiet import quiet_transformers
from omnibatch.models.processor import load_processor
from omnibatch.models.resolve import ModelSpec, resolve_model
from omnibatch.prompts import render_prompt, strip_thinking, uses_audio_in_video
from omnibatch.records import Generation, Request

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_TOKENS_PER_S = 13  # after the audio encoder's 8x downsampling of 100 mel frames/s
MIN_AUDIO_SAMPLES = 160  # one mel frame; the encoder cannot take less


@dataclass(frozen=True)
class _BatchKey:
    video: bool
    audio_in_video: bool
    fps: float | None


class TransformersEngine(BatchingEngine):
    """Qwen3-Omni Thinker on transformers. `model` None means the embedded tiny model.

    `batch_size` rows per batch; `max_batch_tokens` caps a batch's padded prompt
    tokens (estimated). `generate(requests)` runs them all and returns them in order.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        max_batch_tokens: int | None = None,
        num_threads: int | None = None,
        video_size: dict[str, int] | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__(BatchLimits(batch_size, max_batch_tokens))
        self.spec: ModelSpec = resolve_model(model)
        torch, self.device, self.dtype = prepare_torch(self.spec, device, dtype, num_threads,
                                                       "the transformers engine")
        self.model = self.spec.label
        self.max_new_tokens = max_new_tokens
        if self.spec.note:
            log.warning("model %s: %s", self.spec.label, self.spec.note)

        self._torch = torch
        with quiet_transformers():
            self.processor = load_processor(self.spec, self.name)
            self.thinker = _load_thinker(self.spec, self.dtype, self.device, attn_implementation)
        tokenizer = self.processor.tokenizer
        self._pad_id = tokenizer.pad_token_id
        # Every Qwen3-Omni turn ends with <|im_end|>; name it here rather than trust each saved
        # generation config. (Random weights never emit it: max_new_tokens bounds the tiny model.)
        stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        self._eos_ids = [i for i in stop if i is not None and i != tokenizer.unk_token_id]
        if not self._eos_ids:
            raise EngineError(
                f"{self.spec.label}: the tokenizer has no <|im_end|> token; is this a Qwen3-Omni model?"
            )
        self._video_size = video_size or self._saved_video_size()

    # -- the Engine contract (submit, step, generate: omnibatch.engine.batching) -------------

    def close(self) -> None:
        self.thinker = None
        self.processor = None
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    # -- batches ---------------------------------------------------------------------------

    def _answer_now(self, request: Request) -> Generation | None:
        problem = check_request(request)
        return None if problem is None else Generation(request_id=request.id, text="", error=problem)

    def _place(self, request: Request) -> Waiting:
        return Waiting(key=batch_key(request), size=estimate_tokens(request))

    def _run_chosen(self, batch: list[Request], key: Hashable) -> list[Generation]:
        return self._run_isolating(batch, key)

    def _run_isolating(self, batch: list[Request], key: _BatchKey) -> list[Generation]:
        """Run a batch; if it fails, run its requests one by one so only the bad one errors."""
        try:
            return self._run_batch(batch, key)
        except Exception as e:
            if _is_device_failure(e):
                raise EngineError(f"the GPU failed and cannot go on: {describe_error(e)}; resume the run") from e
            if len(batch) == 1:
                log.warning("request %s failed: %s", batch[0].id, e)
                return [Generation(request_id=batch[0].id, text="", error=describe_error(e))]
            log.info("batch of %d failed (%s); retrying one by one", len(batch), e)
            return [g for r in batch for g in self._run_isolating([r], key)]

    def _run_batch(self, batch: list[Request], key: _BatchKey) -> list[Generation]:
        torch = self._torch
        inputs = self._prepare(batch, key)
        limits = [self._limit(r) for r in batch]
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            sequences = self.thinker.generate(
                **inputs,
                use_audio_in_video=key.audio_in_video,
                max_new_tokens=max(limits),
                do_sample=False,
                num_beams=1,
                temperature=None,
                top_p=None,
                top_k=None,
                repetition_penalty=None,
                eos_token_id=self._eos_ids,
                pad_token_id=self._pad_id,
            )
        new_tokens = sequences[:, prompt_len:].tolist()
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        out = []
        for request, tokens, limit, n_prompt in zip(batch, new_tokens, limits, prompt_counts):
            # Greedy rows are independent: a row's first `limit` tokens are what a
            # batch of one with that limit would produce.
            tokens = _until_eos(tokens[:limit], self._eos_ids)
            # A row shorter than its limit ended on a stop token (a batch stops only when all rows did).
            finish = "length" if len(tokens) >= limit else "stop"
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
            # A character cut in half by the token limit is not text (vLLM's detokenizer drops it too).
            text = text.rstrip("\ufffd")
            if self.spec.variant == "thinking":
                text = strip_thinking(text)
            out.append(
                Generation(
                    request_id=request.id,
                    text=text.strip(),
                    prompt_tokens=int(n_prompt),
                    output_tokens=len(tokens),
                    finish_reason=finish,
                )
            )
        return out

    def _prepare(self, batch: list[Request], key: _BatchKey):
        texts = [render_prompt(self.processor, r, self.spec.variant) for r in batch]
        audios = [r.audio for r in batch if r.audio is not None]
        videos = [r.video for r in batch if r.video is not None]
        kwargs: dict[str, Any] = {}
        if videos:
            # Frames arrive already sampled at `fps`; cap pixels per frame as upstream's qwen-vl-utils does.
            kwargs.update(
                fps=key.fps,
                do_sample_frames=False,
                use_audio_in_video=key.audio_in_video,
                cap_pixels_per_frame=True,
            )
            if self._video_size:
                kwargs["size"] = dict(self._video_size)
        inputs = self.processor(
            text=texts,
            audio=audios or None,
            videos=videos or None,
            return_tensors="pt",
            padding=True,
            **kwargs,
        )
        moved = {}
        for name, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(self.thinker.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            moved[name] = value
        return moved

    def _limit(self, request: Request) -> int:
        limit = request.max_new_tokens
        if self.max_new_tokens is not None:
            limit = min(limit, self.max_new_tokens)
        return max(1, limit)

    def _saved_video_size(self) -> dict[str, int] | None:
        # The processor's call-time default (upstream's video size) overrides the
        # size saved with the video processor; the tiny model wants its own small one.
        if not self.spec.is_tiny:
            return None
        size = getattr(self.processor.video_processor, "size", None)
        if size is None:
            return None
        return {k: int(v) for k, v in dict(size).items() if v is not None}


# -- pure helpers (no model needed) ----------------------------------------------------


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


def batch_key(request: Request) -> _BatchKey:
    if request.video is None:
        return _BatchKey(video=False, audio_in_video=False, fps=None)
    return _BatchKey(video=True, audio_in_video=uses_audio_in_video(request), fps=float(request.video_fps))


def _until_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    for n, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:n]
    return tokens


def _is_device_failure(error: Exception) -> bool:
    # A CUDA error (not out-of-memory) leaves the context unusable for every later request.
    return isinstance(error, RuntimeError) and "CUDA error" in str(error)


def _shape_of(value: object) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None:
        return type(value).__name__
    return f"{type(value).__name__} shape={shape} dtype={dtype}"


def prepare_torch(spec: ModelSpec, device: str, dtype: str, num_threads: int | None, what: str):
    """Import torch for an engine running `spec`; choose its device, dtype and CPU threads once."""
    try:
        import torch
        import transformers  # noqa: F401 - fail here, with the message below
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs torch and transformers: pip install omnibatch") from e
    chosen = _pick_device(torch, device)
    if chosen.type == "cpu":
        # Tiny matmuls lose more to thread handoff than they gain (4-6x on 2 cores);
        # real weights on a many-core host want the default.
        threads = num_threads or (1 if spec.is_tiny else None)
        if threads:
            torch.set_num_threads(threads)
    return torch, chosen, _pick_dtype(torch, dtype, chosen, spec)


def _pick_device(torch, device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use cpu")
    return chosen


def _pick_dtype(torch, dtype: str, device, spec: ModelSpec):
    if dtype == "auto":
        # float32 on CPU (bf16 matmuls there are slow) and for the tiny model (parity with vLLM);
        # bf16 on GPUs, as the real checkpoints are stored.
        if device.type == "cpu" or spec.is_tiny:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


def _can_spread_over_gpus() -> bool:
    import importlib.util

    import torch

    return torch.cuda.device_count() > 1 and importlib.util.find_spec("accelerate") is not None


def _load_thinker(spec: ModelSpec, dtype, device, attn_implementation: str | None):
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device.type == "cuda" and device.index is None and _can_spread_over_gpus():
        kwargs["device_map"] = "auto"  # spread a large Thinker over all visible GPUs
    try:
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(spec.source, **kwargs)
    except Exception as e:
        raise EngineError(f"cannot load the Thinker of {spec.label}: {describe_error(e)}") from e
    if "device_map" not in kwargs:
        thinker = thinker.to(device)
    return thinker.eval()
