"""The warning every run on the embedded random-weight model prints."""

from __future__ import annotations

TINY_NOTICE = (
    "NOTE: using the embedded tiny Qwen3-Omni with RANDOM weights. It runs every code path, but its text "
    "is meaningless. Pass --model /path/to/Qwen3-Omni (or a hub id) for real output."
)


def uses_tiny_model(model: str | None, engine: str) -> bool:
    return engine != "whisper" and (model is None or model in ("tiny", "tiny-thinking"))
