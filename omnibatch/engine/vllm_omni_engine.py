"""Speech on GPU nodes with vLLM-Omni: its thinker -> talker -> code2wav stage pipeline.

vLLM-Omni (PyPI `vllm-omni`, API of 0.30: `vllm_omni.entrypoints.omni.Omni`)
runs Qwen3-Omni as three vLLM engines joined by queues. There is no CPU
platform, so this module imports `vllm_omni` only inside `_make_omni`; every
other part (prompt building, sampling limits, mapping outputs back to requests,
the timeout) is plain Python, tested without it.

How a summary becomes speech here: the Talker speaks what the Thinker writes,
and vLLM cannot force a reply token by token, so the Thinker is asked, greedily,
to read the summary back word for word (`prompts.read_aloud_prompt`); the text
it wrote is returned as `Speech.spoken_text`, and a reply that strays from the
summary is logged.

Where vLLM-Omni runs. vLLM-Omni 0.30 needs other versions of transformers and
vLLM than omnibatch, so it normally lives in its own environment (`.venv-omni`,
`scripts/bootstrap.sh --gpu-omni`) and runs as a worker process driven over a
pipe (`vllm_omni_remote.RemoteOmni`); where `vllm_omni` imports in this process,
it runs here.

Deploy config. `Omni(model, deploy_config=PATH)` places the stages on GPUs
(`choose_deploy`): with two or more GPUs visible, vLLM-Omni's bundled
`deploy/qwen3_omni_moe.yaml` (Thinker on cuda:0, Talker and Code2Wav on cuda:1,
"verified on 2x H100"); with one GPU of at least 120 GB (an H200),
omnibatch's `templates/vllm-omni-qwen3-omni-1gpu.yaml`, the three stages
sharing it; one smaller GPU is refused with what would fit. Give another with
`OMNIBATCH_VLLM_OMNI_DEPLOY_CONFIG` or `deploy_config=`.

Known upstream behaviour this engine guards against:
- Outputs come back in completion order, one per stage with a final output
  (text from the thinker, audio from code2wav), under request ids
  "<index>_<uuid>" that `Omni` assigns: they are mapped back by that index.
- A stage error can leave `generate` waiting forever (vllm-omni issue 322):
  generation runs in a helper thread, and past `timeout_s` every request still
  open fails. The engine is then given up for the rest of the run (its stage
  processes may still hold the GPUs), and the remaining summaries fail at once
  with a message saying to retry them.
- `Omni.generate` closes the pipeline when a request fails; the next batch
  builds a new one.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnibatch.engine.base import SAMPLE_RATE, Speech, SpeechRequest, codes_for
from omnibatch.errors import EngineError, InputError, MissingDependencyError, describe_error
from omnibatch.models.resolve import ModelSpec, resolve_model

log = logging.getLogger(__name__)

DEPLOY_ENV = "OMNIBATCH_VLLM_OMNI_DEPLOY_CONFIG"
ONE_GPU_DEPLOY = Path(__file__).resolve().parents[1] / "templates" / "vllm-omni-qwen3-omni-1gpu.yaml"
# The one-GPU deploy needs the Thinker (~63 GB bf16), the Talker (~7 GB), Code2Wav and their caches.
ONE_GPU_MIN_GIB = 120.0
# Qwen3-Omni-30B-A3B's codec end-of-speech id (talker_config.codec_eos_token_id), used when the
# checkpoint's config cannot be read.
TALKER_EOS_DEFAULT = 2150
_SAMPLE_RATE_KEYS = ("audio_sample_rate", "sample_rate", "sampling_rate", "sr")


@dataclass
class Collected:
    """What came back for one request, assembled from its stage outputs."""

    audio: list[np.ndarray] = field(default_factory=list)  # chunks, in arrival order
    sample_rate: int = SAMPLE_RATE
    text: str | None = None
    error: str | None = None


class VllmOmniSpeechEngine:
    """Qwen3-Omni speech through vLLM-Omni's stage pipeline (GPU only). `model` None: the tiny model."""

    name = "vllm-omni"

    def __init__(
        self,
        model: str | None = None,
        *,
        deploy_config: str | None = None,
        batch_size: int = 32,
        timeout_s: float = 900.0,
        init_timeout_s: int = 1200,
        seed: int = 42,
        omni_factory: Callable[..., Any] | None = None,
        processor: Any = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"speech batch_size must be at least 1, got {batch_size}")
        self.spec: ModelSpec = resolve_model(model)
        if not self.spec.has_talker:
            raise EngineError(f"{self.spec.label} has no Talker and cannot speak: pass --no-speak, or "
                              "--model an Instruct checkpoint with audio output")
        self.model = self.spec.label
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.seed = seed
        self.deploy_config = deploy_config or os.environ.get(DEPLOY_ENV) or None  # None: choose_deploy
        self.init_timeout_s = init_timeout_s
        self._factory = omni_factory or _make_omni
        self._processor = processor
        self._omni: Any = None
        self._dead: str | None = None  # why the pipeline was given up, after a timeout
        self.talker_eos = talker_eos_id(self.spec)

    # -- the SpeechEngine contract -----------------------------------------------------------

    def speak(self, requests: Sequence[SpeechRequest]) -> list[Speech]:
        if self._dead:
            return [Speech(r.id, None, error=self._dead) for r in requests]
        results: dict[int, Speech] = {}
        runnable = []
        for i, request in enumerate(requests):
            if not request.text.strip():
                results[i] = Speech(request.id, None, error="the summary is empty: there is nothing to speak")
            else:
                runnable.append(i)
        if runnable:
            for i, speech in zip(runnable, self._run_isolating([requests[i] for i in runnable])):
                results[i] = speech
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        omni, self._omni = self._omni, None
        if omni is not None and not self._dead:
            omni.close()

    # -- batches ---------------------------------------------------------------------------

    def _run_isolating(self, batch: list[SpeechRequest]) -> list[Speech]:
        """Run a batch; when a request fails it, retry the ones left without audio one by one.

        vLLM-Omni aborts every open request of a `generate` call when one of them
        fails, so the others are asked again alone. A timeout is not retried.
        """
        speeches, problem = self._generate(batch)
        if problem is None or self._dead or len(batch) == 1:
            return speeches
        redo = [i for i, s in enumerate(speeches) if s.error is not None]
        log.info("a speech batch of %d failed (%s); retrying %d one by one", len(batch), problem, len(redo))
        for i in redo:
            speeches[i] = self._run_isolating([batch[i]])[0]
        return speeches

    def _generate(self, batch: list[SpeechRequest]) -> tuple[list[Speech], str | None]:
        omni = self._ensure_omni()
        prompts = build_prompts(batch, self._render)
        params = sampling_params(omni.default_sampling_params_list, batch, seed=self.seed,
                                 talker_eos=self.talker_eos, count_tokens=self._count_tokens)

        def run() -> Iterable[Any]:
            return omni.generate(prompts, params, py_generator=True, use_tqdm=False)

        outputs, problem = consume_with_timeout(run, self.timeout_s)
        if problem is not None and problem.startswith("timeout"):
            self._dead = (f"vLLM-Omni stopped answering for {self.timeout_s:g} s (a stage error can leave it "
                          "waiting: vllm-omni issue 322); the pipeline was given up for this run. Rerun with "
                          "--retry-errors to speak the summaries it left")
            log.error("%s", self._dead)
            self._omni = None
            _close_in_background(omni)
            problem = self._dead
        elif problem is not None and getattr(omni, "errored", False):
            # A dead orchestrator cannot serve the next batch: free its GPUs, build anew on demand.
            self._omni = None
            _try_close(omni)
        return to_speeches(batch, collect_outputs(outputs, len(batch)), problem), problem

    def _ensure_omni(self) -> Any:
        if self._omni is None:
            if self.deploy_config is None and self._factory is _make_omni:
                self.deploy_config = choose_deploy(*visible_gpu_memory())
            try:
                self._omni = self._factory(self.spec.source, deploy_config=self.deploy_config,
                                           init_timeout=self.init_timeout_s)
            except (MissingDependencyError, EngineError):
                raise
            except Exception as e:
                raise EngineError(f"cannot start vLLM-Omni for {self.spec.label}: "
                                  f"{type(e).__name__}: {e}") from e
        return self._omni

    def _render(self, request: SpeechRequest) -> str:
        from omnibatch.prompts import read_aloud_prompt, render_prompt
        from omnibatch.records import Request

        return render_prompt(self.processor, Request(id=request.id, prompt=read_aloud_prompt(request.text)),
                             self.spec.variant)

    def _count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer.encode(text, add_special_tokens=False))

    @property
    def processor(self) -> Any:
        if self._processor is None:
            from omnibatch.models.processor import load_processor

            self._processor = load_processor(self.spec, self.name)
        return self._processor


# -- pure helpers (no vllm_omni needed) -------------------------------------------------------


def build_prompts(batch: Sequence[SpeechRequest],
                  render: Callable[[SpeechRequest], str]) -> list[dict[str, Any]]:
    """One vLLM-Omni prompt per request: the chat text, audio output wanted, the voice by name."""
    return [
        {
            "prompt": render(request),
            "modalities": ["audio"],
            # vLLM-Omni reads the voice from additional_information["speaker"], a one-element list.
            "additional_information": {"speaker": [request.speaker.strip().lower()]},
        }
        for request in batch
    ]


def sampling_params(defaults: Sequence[Any], batch: Sequence[SpeechRequest], *, seed: int, talker_eos: int,
                    count_tokens: Callable[[str], int]) -> list[Any]:
    """Per-stage sampling parameters for a batch, from the deploy's defaults.

    Thinker: greedy (it only repeats the text), room for the text and a little
    more. Talker: the deploy's sampling, seeded, stopping at the codec's end id,
    and at most the batch's longest speech cap. Code2Wav: as deployed.
    """
    if len(defaults) != 3:
        raise EngineError(f"expected the 3 Qwen3-Omni stages (thinker, talker, code2wav), the deploy has "
                          f"{len(defaults)}")
    thinker, talker, code2wav = defaults
    longest_text = max(count_tokens(r.text) for r in batch)
    thinker = with_changes(thinker, temperature=0.0, max_tokens=longest_text + max(16, longest_text // 4))
    stops = sorted(set(_get(talker, "stop_token_ids") or []) | {talker_eos})
    talker = with_changes(talker, seed=seed, max_tokens=max(codes_for(r.max_seconds) for r in batch),
                          stop_token_ids=stops)
    return [thinker, talker, with_changes(code2wav)]


def with_changes(params: Any, **changes: Any) -> Any:
    """A copy of `params` (a vLLM SamplingParams, a dataclass or a dict) with `changes` set.

    A SamplingParams is built anew from its fields, as vLLM-Omni itself does, so
    that what its constructor derives (e.g. the full set of stop ids) follows.
    """
    if isinstance(params, dict):
        return {**params, **changes}
    names = getattr(params, "__struct_fields__", None)
    if names is not None:
        values = {n: getattr(params, n) for n in names
                  if not n.startswith("_") and n != "output_text_buffer_length"}
        return type(params)(**{**values, **changes})
    if dataclasses.is_dataclass(params):
        return dataclasses.replace(params, **changes)
    out = copy.deepcopy(params)
    for key, value in changes.items():
        setattr(out, key, value)
    return out


def _get(params: Any, key: str) -> Any:
    return params.get(key) if isinstance(params, dict) else getattr(params, key, None)


def request_index(request_id: str, count: int) -> int | None:
    """The prompt index in an id `Omni` assigned ("<index>_<uuid>"), or None if it is not one of ours."""
    head, sep, _ = str(request_id).partition("_")
    if not sep or not head.isdigit():
        return None
    index = int(head)
    return index if index < count else None


def collect_outputs(outputs: Iterable[Any], count: int) -> dict[int, Collected]:
    """Group stage outputs (in completion order) by the prompt they answer."""
    collected: dict[int, Collected] = {}
    for output in outputs:
        index = request_index(getattr(output, "request_id", ""), count)
        if index is None:
            log.warning("vLLM-Omni returned an output for an unknown request %r",
                        getattr(output, "request_id", ""))
            continue
        entry = collected.setdefault(index, Collected())
        error = getattr(output, "error", None)
        if error:
            entry.error = str(error)
            continue
        kind = getattr(output, "final_output_type", "text")
        if kind == "audio":
            payload = output.multimodal_output or {}
            entry.audio.extend(audio_chunks(payload.get("audio")))
            for key in _SAMPLE_RATE_KEYS:
                if payload.get(key) is not None:
                    entry.sample_rate = int(_scalar(payload[key]))
                    break
        elif kind == "text":
            completions = getattr(output, "outputs", None) or []
            if completions:
                entry.text = completions[0].text
    return collected


def audio_chunks(payload: Any) -> list[np.ndarray]:
    """Audio as 1-D float32 arrays: a tensor or array (any leading size-1 dims), or a list of chunks."""
    if payload is None:
        return []
    if isinstance(payload, (list, tuple)):
        return [a for p in payload for a in audio_chunks(p)]
    if hasattr(payload, "detach"):  # a torch tensor, on any device
        payload = payload.detach().float().cpu().numpy()
    array = np.asarray(payload, dtype=np.float32)
    if array.size and array.size != max(array.shape, default=1):
        raise EngineError(f"expected mono audio from Code2Wav, got shape {array.shape}")
    return [array.reshape(-1)]


def to_speeches(batch: Sequence[SpeechRequest], collected: dict[int, Collected],
                problem: str | None) -> list[Speech]:
    """One Speech per request: its audio, capped to its length limit, or why there is none."""
    out = []
    for i, request in enumerate(batch):
        entry = collected.get(i)
        if entry is None or (entry.error is None and not entry.audio):
            reason = (entry.error if entry else None) or problem or "vLLM-Omni returned no audio for it"
            out.append(Speech(request.id, None, error=reason))
            continue
        if entry.error is not None:
            out.append(Speech(request.id, None, error=f"vLLM-Omni: {entry.error}"))
            continue
        audio = np.concatenate(entry.audio)
        limit = int(round(request.max_seconds * entry.sample_rate))
        if entry.text is not None and _words(entry.text) != _words(request.text):
            log.warning("%s: the Thinker's read-back differs from the summary; the audio speaks its version",
                        request.id)
        out.append(Speech(request.id, audio[:limit].copy(), entry.sample_rate, capped=audio.size > limit,
                          spoken_text=entry.text))
    return out


def consume_with_timeout(make_iter: Callable[[], Iterable[Any]],
                         timeout_s: float) -> tuple[list[Any], str | None]:
    """Drain `make_iter()` in a helper thread for at most `timeout_s` seconds.

    Returns what arrived and None, or what arrived and a problem: "timeout ..." when
    the deadline passed (the helper thread is left behind, as a daemon), or the
    error it raised. The caller never waits longer than the deadline.
    """
    items: queue.Queue = queue.Queue()
    done = object()

    def drain() -> None:
        try:
            for item in make_iter():
                items.put(("item", item))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            items.put(("error", exc))
        finally:
            items.put(("done", done))

    threading.Thread(target=drain, name="vllm-omni-generate", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    got: list[Any] = []
    problem: str | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got, f"timeout after {timeout_s:g} s"
        try:
            kind, value = items.get(timeout=left)
        except queue.Empty:
            return got, f"timeout after {timeout_s:g} s"
        if kind == "item":
            got.append(value)
        elif kind == "error":
            problem = f"vLLM-Omni failed: {type(value).__name__}: {value}"
        else:
            return got, problem


def talker_eos_id(spec: ModelSpec) -> int:
    from omnibatch.models.resolve import read_model_config

    config = read_model_config(Path(spec.source)) if spec.is_local else None
    talker = (config or {}).get("talker_config") or {}
    return int(talker.get("codec_eos_token_id", TALKER_EOS_DEFAULT))


def _words(text: str) -> list[str]:
    return [w.strip(".,;:!?\"'").lower() for w in text.split()]


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value:
        return _scalar(value[0])
    return value.item() if hasattr(value, "item") else value


def _close_in_background(omni: Any) -> None:
    threading.Thread(target=_try_close, args=(omni,), name="vllm-omni-close", daemon=True).start()


def _try_close(omni: Any) -> None:
    try:
        omni.close()
    except Exception as e:  # noqa: BLE001 - best effort on a pipeline already given up
        log.warning("closing vLLM-Omni after a timeout failed: %s", e)


def choose_deploy(gpus: int, smallest_gib: float | None) -> str | None:
    """The deploy config for `gpus` visible GPUs, the smallest with `smallest_gib` of memory (pure).

    None means vLLM-Omni's own two-GPU default.
    """
    if gpus >= 2:
        return None
    if gpus == 0:
        raise EngineError("the vllm-omni speech engine needs a CUDA GPU (vLLM-Omni has no CPU platform): speak "
                          "with --engine transformers, or pass --no-speak")
    if smallest_gib is not None and smallest_gib < ONE_GPU_MIN_GIB:
        raise EngineError(
            f"one {smallest_gib:.0f} GiB GPU cannot hold Qwen3-Omni's Thinker (~63 GB in bf16), Talker and "
            f"Code2Wav with room for their caches (the one-GPU deploy needs {ONE_GPU_MIN_GIB:.0f} GiB, an H200): "
            "give the job two GPUs (vLLM-Omni's own deploy), or name a deploy config of your own with "
            f"{DEPLOY_ENV}")
    return str(ONE_GPU_DEPLOY)


def visible_gpu_memory() -> tuple[int, float | None]:
    """How many CUDA GPUs this process sees, and the memory of the smallest in GiB (torch is asked)."""
    try:
        import torch
    except ImportError:
        return 0, None
    if not torch.cuda.is_available():
        return 0, None
    count = torch.cuda.device_count()
    sizes = [torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(count)]
    return count, (min(sizes) if sizes else None)


def vllm_omni_available() -> bool:
    """vLLM-Omni imports here, or its own environment is set up (`.venv-omni`, OMNIBATCH_VLLM_OMNI_PYTHON)."""
    import importlib.util

    from omnibatch.engine.vllm_omni_remote import omni_python

    try:
        if importlib.util.find_spec("vllm_omni") is not None:
            return True
    except (ImportError, ValueError):
        pass
    try:
        return omni_python() is not None
    except MissingDependencyError:
        return False


def _make_omni(model: str, *, deploy_config: str | None, init_timeout: int) -> Any:
    """vLLM-Omni's Omni: in this process where it imports, else in its own environment's worker."""
    import importlib.util

    from omnibatch.engine.vllm_omni_remote import INSTALL_HINT, RemoteOmni, omni_python

    if importlib.util.find_spec("vllm_omni") is not None:
        from vllm_omni.entrypoints.omni import Omni

        kwargs: dict[str, Any] = {"init_timeout": init_timeout}
        if deploy_config:
            kwargs["deploy_config"] = deploy_config
        return Omni(model=model, **kwargs)
    python = omni_python()
    if python is None:
        raise MissingDependencyError(f"the vllm-omni speech engine needs vLLM-Omni on a CUDA node: {INSTALL_HINT}")
    try:
        return RemoteOmni(model, python=python, deploy_config=deploy_config, init_timeout=init_timeout)
    except (EngineError, MissingDependencyError):
        raise
    except Exception as e:
        raise EngineError(f"cannot start vLLM-Omni's worker: {describe_error(e)}") from e
