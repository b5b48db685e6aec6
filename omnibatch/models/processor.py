"""Loading a Qwen3-Omni processor, as every engine does it."""

from __future__ import annotations

from omnibatch.errors import EngineError, describe_error
from omnibatch.models.resolve import ModelSpec


def load_processor(spec: ModelSpec, engine: str):
    """The model's own processor (tokenizer, chat template, audio and vision preprocessing)."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(spec.source)
    except Exception as e:
        raise EngineError(f"cannot load the processor of {spec.label}: {describe_error(e)}") from e
    if type(processor).__name__ != "Qwen3OmniMoeProcessor":
        raise EngineError(
            f"{spec.label} has a {type(processor).__name__}, not a Qwen3OmniMoeProcessor: the {engine} engine "
            "runs the Qwen3-Omni family only"
        )
    return processor
