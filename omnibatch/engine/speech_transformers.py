"""Speech with transformers: the full Qwen3-Omni (Thinker, Talker, Code2Wav) speaks a given text.

`Qwen3OmniMoeForConditionalGeneration.generate(return_audio=True)` speaks what
its Thinker writes: the Talker reads the Thinker's token embeddings of the
reply. To have it speak a summary written earlier, the reply is forced: a
logits processor lets the Thinker choose only the summary's next token at each
step, then `<|im_end|>`. The Talker then sees exactly the hidden states of the
summary as a reply, and upstream's own batching (rows that end early are padded
and their audio cut at their own end) stays untouched. Every row shares the
same short user turn, so prompts in a batch have one length.

The Talker samples as upstream does (top-k 50, temperature 0.9), seeded per
batch so a rerun gives the same audio, and may not stop on its first step:
upstream's generate fails on an empty code sequence.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence

import numpy as np

from omnibatch.engine.base import SAMPLE_RATE, SAMPLES_PER_CODE, Speech, SpeechRequest, codes_for
from omnibatch.errors import EngineError, InputError
from omnibatch.models.hf_quiet import quiet_transformers
from omnibatch.models.resolve import ModelSpec, resolve_model

log = logging.getLogger(__name__)


class TransformersSpeechEngine:
    """Qwen3-Omni Talker + Code2Wav on transformers. `model` None means the embedded tiny model."""

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 4,
        num_threads: int | None = None,
        timeout_s: float | None = None,
        seed: int = 0,
        talker_sampling: bool = True,
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"speech batch_size must be at least 1, got {batch_size}")
        from omnibatch.engine.hf_loading import prepare_torch
        from omnibatch.models.processor import load_processor

        self.spec: ModelSpec = resolve_model(model)
        if not self.spec.has_talker:
            raise EngineError(
                f"{self.spec.label} has no Talker (a text-only, Thinking or Captioner checkpoint) and cannot "
                "speak: pass --no-speak, or --model an Instruct checkpoint with audio output"
            )
        torch, self.device, self.dtype = prepare_torch(self.spec, device, dtype, num_threads, "speech")
        self.model = self.spec.label
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.seed = seed
        self.talker_sampling = talker_sampling
        self._torch = torch
        # The Talker is prompted with embeddings, so its repetition penalty (Qwen's default, 1.05) sees
        # only the codes it generates: as intended, yet transformers warns on every batch.
        warnings.filterwarnings("ignore", message=r"Passing `repetition_penalty` with `inputs_embeds`",
                                category=UserWarning, module=r"transformers\.generation\.utils")
        with quiet_transformers():
            self.processor = load_processor(self.spec, self.name)
            self.omni = _load_full_model(self.spec, self.dtype, self.device, device_map, max_memory)
        tokenizer = self.processor.tokenizer
        self._im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self._im_end is None or self._im_end == tokenizer.unk_token_id:
            raise EngineError(f"{self.spec.label}: the tokenizer has no <|im_end|> token")
        self.speakers = {k.lower() for k in (self.omni.config.talker_config.speaker_id or {})}

    # -- the SpeechEngine contract -----------------------------------------------------------

    def speak(self, requests: Sequence[SpeechRequest]) -> list[Speech]:
        results: dict[int, Speech] = {}
        by_speaker: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            problem = self.check(request)
            if problem:
                results[i] = Speech(request.id, None, error=problem)
            else:
                by_speaker.setdefault(request.speaker.lower(), []).append(i)
        for members in by_speaker.values():  # generate() takes one speaker per call
            members.sort(key=lambda i: (len(requests[i].text), i))
            for start in range(0, len(members), self.batch_size):
                batch = members[start:start + self.batch_size]
                for i, speech in zip(batch, self._run_isolating([requests[i] for i in batch])):
                    results[i] = speech
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        self.omni = None
        self.processor = None
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    def check(self, request: SpeechRequest) -> str | None:
        if not request.text.strip():
            return "the summary is empty: there is nothing to speak"
        if request.speaker.lower() not in self.speakers:
            known = ", ".join(sorted(self.speakers))
            return f"{self.model} has no speaker {request.speaker!r}; it has: {known}"
        if not request.max_seconds > 0:
            return f"max_seconds must be positive, got {request.max_seconds}"
        return None

    # -- batches ---------------------------------------------------------------------------

    def _run_isolating(self, batch: list[SpeechRequest]) -> list[Speech]:
        """Run a batch; if it fails, run its requests one by one so only the bad one fails."""
        try:
            return self._run_batch(batch)
        except Exception as e:
            from omnibatch.engine.qwen_common import is_device_failure
            from omnibatch.errors import describe_error

            if is_device_failure(e):
                raise EngineError(f"the GPU failed during speech and cannot go on: {describe_error(e)}; "
                                  "resume the run") from e
            if len(batch) == 1:
                log.warning("speech for %s failed: %s", batch[0].id, e)
                return [Speech(batch[0].id, None, error=describe_error(e))]
            log.info("speech batch of %d failed (%s); retrying one by one", len(batch), e)
            return [s for r in batch for s in self._run_isolating([r])]

    def _run_batch(self, batch: list[SpeechRequest]) -> list[Speech]:
        torch = self._torch
        from transformers import LogitsProcessorList

        tokenizer = self.processor.tokenizer
        replies = [tokenizer.encode(r.text.strip(), add_special_tokens=False) + [self._im_end] for r in batch]
        inputs = self._prompt_inputs(len(batch))
        prompt_len = inputs["input_ids"].shape[1]
        caps = [codes_for(r.max_seconds) for r in batch]
        options = {}
        if self.timeout_s:
            options.update(thinker_max_time=self.timeout_s, talker_max_time=self.timeout_s)
        torch.manual_seed(self.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            sequences, waves = self.omni.generate(
                **inputs,
                speaker=batch[0].speaker,
                return_audio=True,
                thinker_max_new_tokens=max(len(r) for r in replies),
                thinker_eos_token_id=self._im_end,
                thinker_do_sample=False,
                thinker_logits_processor=LogitsProcessorList([ForcedReply(replies, prompt_len)]),
                talker_max_new_tokens=max(caps),
                talker_min_new_tokens=1,
                talker_do_sample=self.talker_sampling,
                **options,
            )
        elapsed = time.perf_counter() - started
        if self.timeout_s and elapsed >= self.timeout_s:
            return [Speech(r.id, None, error=f"speech took longer than {self.timeout_s:g} s and was stopped; "
                           "raise --speech-timeout") for r in batch]
        if not isinstance(waves, list):  # a batch of one comes back as one (1, 1, samples) tensor
            waves = [waves.reshape(-1)]
        generated = sequences[:, prompt_len:].tolist()
        out = []
        for request, reply, tokens, wave, cap in zip(batch, replies, generated, waves, caps):
            if tokens[: len(reply)] != reply:
                raise EngineError(f"{request.id}: the Thinker did not take the forced reply; speech would "
                                  "not match the summary")
            audio = wave.detach().to("cpu", dtype=torch.float32).numpy().reshape(-1)
            limit = int(round(request.max_seconds * SAMPLE_RATE))
            capped = audio.size > limit or audio.size >= (cap - 2) * SAMPLES_PER_CODE
            if not np.isfinite(audio).all():
                out.append(Speech(request.id, None, error="the Talker produced non-finite audio samples"))
                continue
            out.append(Speech(request.id, audio[:limit].copy(), SAMPLE_RATE, capped=capped,
                              spoken_text=request.text.strip()))
        return out

    def _prompt_inputs(self, rows: int):
        from omnibatch.prompts import SPEAK_SUMMARY_PROMPT, render_prompt
        from omnibatch.records import Request

        request = Request(id="speak", prompt=SPEAK_SUMMARY_PROMPT)
        text = render_prompt(self.processor, request, self.spec.variant)
        inputs = self.processor(text=[text] * rows, return_tensors="pt", padding=True)
        return {k: v.to(self.omni.device) if hasattr(v, "to") else v for k, v in inputs.items()}


class ForcedReply:
    """A logits processor that makes row b of a batch write `replies[b]`, then `<|im_end|>` forever.

    `prompt_len` is the (padded) prompt length, so step = current length - prompt_len.
    The last id of each reply is its end token, repeated once the reply is written.
    """

    def __init__(self, replies: list[list[int]], prompt_len: int) -> None:
        self.replies = replies
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.prompt_len
        wanted = [reply[min(step, len(reply) - 1)] for reply in self.replies]
        forced = torch.full_like(scores, float("-inf"))
        rows = torch.arange(scores.shape[0], device=scores.device)
        forced[rows, torch.tensor(wanted, device=scores.device)] = 0.0
        return forced


def _load_full_model(spec: ModelSpec, dtype, device, device_map=None, max_memory=None):
    """The full model, its weights straight to the device (see hf_loading.plan_loading)."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    from omnibatch.engine.hf_loading import load_weights

    model = load_weights(Qwen3OmniMoeForConditionalGeneration, spec, dtype, device, "the Talker and Code2Wav",
                         device_map=device_map, max_memory=max_memory)
    if not getattr(model, "has_talker", False):
        raise EngineError(f"{spec.label} loaded without a Talker (enable_audio_output is off): "
                          "pass --no-speak")
    return model
