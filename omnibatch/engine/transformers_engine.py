"""The `transformers` engine: the Qwen3-Omni Thinker run with Hugging Face transformers.

The reference implementation, on CPU or CUDA. For text tasks it loads only the
Thinker (`Qwen3OmniMoeThinkerForConditionalGeneration`) from the full
checkpoint; the Talker and Code2Wav weights stay on disk. Spoken output is the
speech engine's (`speech_transformers`).

Requests are batched by the processor with left padding. A batch only holds
requests the processor can take together: the same video frame rate and the
same audio-in-video setting (`batch_key`). Submitted requests wait in a queue
(`omnibatch.engine.batching`); each `step()` runs one batch of similar
estimated lengths (`estimate_tokens`) drawn from it, so padding stays small.

Decoding follows the variant (`qwen_common`): greedy for Instruct and
Captioner; for Thinking, Qwen's sampling (temperature 0.6, top-p 0.95, top-k
20, seeded per batch), the thinking budget, and the reasoning split from the
answer. On a GPU the weights go straight to the device (`device_map`, through
accelerate): loading without it would first build the whole checkpoint in host
memory (~63 GB for the 30B Thinker in bf16). `device_map="auto"` with
`max_memory` spreads a large Thinker over several GPUs.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from omnibatch.align import GenerationTimer
from omnibatch.engine.batching import BatchingEngine, BatchLimits, Waiting
from omnibatch.engine.hf_loading import load_weights, prepare_torch
from omnibatch.engine.qwen_common import (  # noqa: F401 - check_request, estimate_tokens: re-exported
    AUDIO_TOKENS_PER_S,
    MIN_AUDIO_SAMPLES,
    SAMPLE_RATE,
    check_request,
    decode_reply,
    estimate_tokens,
    finish_generation,
    is_device_failure,
    resolve_sampling,
    saved_video_size,
    stop_token_ids,
    token_limit,
    until_stop,
)
from omnibatch.errors import EngineError, InputError, describe_error
from omnibatch.models.hf_quiet import quiet_transformers
from omnibatch.models.processor import load_processor
from omnibatch.models.resolve import ModelSpec, resolve_model
from omnibatch.prompts import render_prompt, uses_audio_in_video
from omnibatch.records import Generation, Request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _BatchKey:
    video: bool
    audio_in_video: bool
    fps: float | None


class TransformersEngine(BatchingEngine):
    """Qwen3-Omni Thinker on transformers. `model` None means the embedded tiny model.

    `batch_size` rows per batch; `max_batch_tokens` caps a batch's padded prompt
    tokens (estimated). `max_new_tokens` caps every request's limit (for a
    Thinking model it is every request's budget, default 32768). `temperature`,
    `top_p`, `top_k` override the variant's decoding; `seed` seeds sampling.
    `device_map` ("auto", or a JSON map) and `max_memory` (e.g. {"0": "70GiB",
    "1": "70GiB"}) place the weights. `generate(requests)` runs them all and
    returns them in order.
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
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int = 0,
        device_map: str | dict[str, Any] | None = None,
        max_memory: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(BatchLimits(batch_size, max_batch_tokens))
        if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                           or max_new_tokens < 1):
            raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self.spec: ModelSpec = resolve_model(model)
        self.sampling = resolve_sampling(self.spec.variant, temperature=temperature, top_p=top_p, top_k=top_k)
        self.seed = seed
        torch, self.device, self.dtype = prepare_torch(self.spec, device, dtype, num_threads,
                                                       "the transformers engine")
        self.model = self.spec.label
        self.max_new_tokens = max_new_tokens
        if self.spec.note:
            log.warning("model %s: %s", self.spec.label, self.spec.note)

        self._torch = torch
        with quiet_transformers():
            self.processor = load_processor(self.spec, self.name)
            self.thinker = load_weights(
                _thinker_class(), self.spec, self.dtype, self.device, "the Thinker",
                attn_implementation=attn_implementation, device_map=device_map, max_memory=max_memory)
        tokenizer = self.processor.tokenizer
        self._pad_id = tokenizer.pad_token_id
        self._eos_ids = stop_token_ids(tokenizer, self.spec.label)
        self._video_size = video_size or saved_video_size(self.processor, self.spec.is_tiny)
        self._words = GenerationTimer()

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
        # Transcripts that ask for word times get them from the aligner (omnibatch.align).
        return self._words.add_words(batch, self._run_isolating(batch, key))

    def _run_isolating(self, batch: list[Request], key: _BatchKey) -> list[Generation]:
        """Run a batch; if it fails, run its requests one by one so only the bad one errors."""
        try:
            return self._run_batch(batch, key)
        except Exception as e:
            if is_device_failure(e):
                raise EngineError(f"the GPU failed and cannot go on: {describe_error(e)}; resume the run") from e
            if len(batch) == 1:
                log.warning("request %s failed: %s", batch[0].id, e)
                return [Generation(request_id=batch[0].id, text="", error=describe_error(e))]
            log.info("batch of %d failed (%s); retrying one by one", len(batch), e)
            return [g for r in batch for g in self._run_isolating([r], key)]

    def _run_batch(self, batch: list[Request], key: _BatchKey) -> list[Generation]:
        from transformers import LogitsProcessorList

        from omnibatch.engine.token_logprobs import chosen_token_recorder

        torch = self._torch
        inputs = self._prepare(batch, key)
        limits = [self._limit(r) for r in batch]
        prompt_len = inputs["input_ids"].shape[1]
        if self.sampling.greedy:
            decoding: dict[str, Any] = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            decoding = dict(do_sample=True, temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                            top_k=self.sampling.top_k or None)
            torch.manual_seed(self.seed)  # the same batch samples the same tokens on a rerun
        logprobs = chosen_token_recorder()
        with torch.inference_mode():
            sequences = self.thinker.generate(
                **inputs,
                use_audio_in_video=key.audio_in_video,
                max_new_tokens=max(limits),
                num_beams=1,
                repetition_penalty=None,
                eos_token_id=self._eos_ids,
                pad_token_id=self._pad_id,
                logits_processor=LogitsProcessorList([logprobs]),
                **decoding,
            )
        new_tokens = sequences[:, prompt_len:].tolist()
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        out = []
        for request, tokens, limit, n_prompt in zip(batch, new_tokens, limits, prompt_counts):
            # Greedy rows are independent: a row's first `limit` tokens are what a
            # batch of one with that limit would produce.
            tokens = until_stop(tokens[:limit], self._eos_ids)
            # A row shorter than its limit ended on a stop token (a batch stops only when all rows did).
            finish = "length" if len(tokens) >= limit else "stop"
            out.append(finish_generation(
                request.id, decode_reply(self.processor.tokenizer, tokens), variant=self.spec.variant,
                prompt_tokens=int(n_prompt), output_tokens=len(tokens), finish_reason=finish))
        means = logprobs.means(sequences[:, prompt_len:], [g.output_tokens for g in out])
        return [replace(g, avg_logprob=mean) for g, mean in zip(out, means)]

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
        return token_limit(request, self.spec.variant, self.max_new_tokens)


# -- pure helpers (no model needed) ----------------------------------------------------


def batch_key(request: Request) -> _BatchKey:
    if request.video is None:
        return _BatchKey(video=False, audio_in_video=False, fps=None)
    return _BatchKey(video=True, audio_in_video=uses_audio_in_video(request), fps=float(request.video_fps))


def _thinker_class():
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    return Qwen3OmniMoeThinkerForConditionalGeneration
