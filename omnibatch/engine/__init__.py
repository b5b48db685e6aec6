"""Engines by name, imported only when one is built (`omnibatch --help` stays instant)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from omnibatch.engine.base import Engine, SpeechEngine
from omnibatch.errors import InputError

# Thinker engines: name -> (module, class). To add one, add a row; its module is
# imported only when that engine is built. Speech engines (Talker + Code2Wav, the
# contract in engine.base) have a table of their own, below, chosen to follow the
# Thinker engine a run uses (`choose_speech_engine`).
ENGINES: dict[str, tuple[str, str]] = {
    "vllm": ("omnibatch.engine.vllm_engine", "VllmEngine"),
    "transformers": ("omnibatch.engine.transformers_engine", "TransformersEngine"),
    "whisper": ("omnibatch.engine.whisper_engine", "WhisperEngine"),
}

AUTO = "auto"


def engine_names() -> list[str]:
    return [AUTO, *ENGINES]


def build_engine(name: str, model: str | None, **options: Any) -> Engine:
    """Build engine `name` ("auto", "transformers", ...) for `model` (None: the embedded default)."""
    chosen = resolve_engine_name(name)
    module_name, class_name = ENGINES[chosen]
    engine_class = getattr(importlib.import_module(module_name), class_name)
    check_options(chosen, engine_class, options)
    return engine_class(model, **options)


def check_options(name: str, engine_class: type, options: dict[str, Any]) -> None:
    """Refuse an engine option the engine does not take, naming the ones it does."""
    params = inspect.signature(engine_class).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(f"the {name} engine has no option {', '.join(unknown)}; it takes: {', '.join(accepted)}")


def resolve_engine_name(name: str) -> str:
    """"auto" is vLLM where it is installed and a CUDA GPU is visible, else transformers."""
    key = (name or AUTO).strip().lower()
    if key == AUTO:
        if "vllm" in ENGINES and importlib.util.find_spec("vllm") is not None and cuda_available():
            return "vllm"
        return "transformers"
    if key not in ENGINES:
        raise InputError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}")
    return key


def cuda_available() -> bool:
    # Imported here, not at CLI start: torch takes seconds to import.
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


SPEECH_ENGINES: dict[str, tuple[str, str]] = {
    "transformers": ("omnibatch.engine.speech_transformers", "TransformersSpeechEngine"),
    "vllm-omni": ("omnibatch.engine.vllm_omni_engine", "VllmOmniSpeechEngine"),
}


def choose_speech_engine(thinker_engine: str) -> str:
    """`vllm-omni` when the run's Thinker engine is vLLM, vllm-omni is installed and a GPU is visible."""
    key = (thinker_engine or "auto").strip().lower()
    if key == "auto":
        key = resolve_engine_name(key)
    if key == "vllm" and cuda_available():
        from omnibatch.engine.vllm_omni_engine import vllm_omni_available  # here or in its own .venv-omni

        if vllm_omni_available():
            return "vllm-omni"
    return "transformers"


def build_speech_engine(name: str, model: str | None, **options: Any) -> SpeechEngine:
    if name not in SPEECH_ENGINES:
        raise InputError(f"unknown speech engine {name!r}; choose one of: {', '.join(SPEECH_ENGINES)}")
    module_name, class_name = SPEECH_ENGINES[name]
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(model, **options)
