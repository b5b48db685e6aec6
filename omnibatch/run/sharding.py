"""Deterministic sharding: shard I of N is a pure function of the item list."""

from __future__ import annotations

from collections.abc import Sequence

from omnibatch.records import MediaItem


def select_shard(items: Sequence[MediaItem], index: int, count: int) -> list[MediaItem]:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count} is not a valid shard (need 0 <= I < N)")
    return list(items[index::count])
