"""What a task is to the runner: how to cut an item, load a region, and finish a file.

`plan` and `load` run in decode worker processes (they must be picklable and
light); `finish` runs in the main process once every region of a file has come
back from the engine. A task may ask for more Thinker passes over text per file
(`followup`, called round after round until it asks for nothing), e.g. a
whole-file caption written from the clip captions, or map-reduce summaries.

A task with a `finalize(results, should_stop)` method gets every finished file
of the shard at once after all Thinker work, with the Thinker engine closed,
and may fill in or fail their rows: the speech stage of `summarize` does this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request


@dataclass
class FileResult:
    """One finished file: its row (task columns only) and what goes beside it."""

    row: dict[str, Any]
    segments: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class Task(Protocol):
    name: str

    def plan(self, item: MediaItem, info: MediaInfo) -> list[Chunk]: ...

    def load(self, item: MediaItem, info: MediaInfo, chunk: Chunk) -> Request: ...

    def followup(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
                 rounds: list[list[Generation]]) -> list[Request]: ...

    def finish(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
               rounds: list[list[Generation]]) -> FileResult: ...
