"""The contract every engine keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from omnibatch.records import Generation, Request


class Engine(Protocol):
    name: str  # "transformers", "vllm", "whisper", ...
    model: str  # the model path or id, as written to the `model` column

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Run all requests, batching as the engine sees fit.

        Returns one Generation per request, in the order given. A request the
        engine rejects comes back with `error` set; only an engine crash raises
        (EngineError).
        """
        ...

    def close(self) -> None: ...
