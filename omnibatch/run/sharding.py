"""Deterministic sharding: shard I of N is a pure function of the item list and its durations.

Shards are balanced by media duration, not file count: one 3-hour file weighs as
much as 360 thirty-second ones. Items are placed longest first, each into the
shard with the least media so far (fewer items, then the lower index, break
ties), which keeps every shard within one file's length of the mean. Durations
are compared in whole milliseconds so every node, whatever its float habits or
JSON round trips, computes the same assignment. Within a shard, items keep
their manifest order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from omnibatch.config import RunConfig
from omnibatch.records import MediaItem


def assign_shards(durations: Sequence[float | None], count: int) -> list[int]:
    """The shard (0..count-1) of each item, given each item's duration in seconds.

    An unknown, negative or non-finite duration counts 0: such an item weighs
    nothing, and items of equal weight spread round-robin (ties go to the shard
    with fewer items).
    """
    if count < 1:
        raise ValueError(f"need at least one shard, got {count}")
    weights = [_millis(d) for d in durations]
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    heap = [(0, 0, shard) for shard in range(count)]  # (media ms, items, shard index)
    assigned = [0] * len(weights)
    for i in order:
        load, n, shard = heapq.heappop(heap)
        assigned[i] = shard
        heapq.heappush(heap, (load + weights[i], n + 1, shard))
    return assigned


def select_shard(items: Sequence[MediaItem], index: int, count: int,
                 durations: Sequence[float | None] | None = None) -> list[MediaItem]:
    """Shard `index` of `count`, in manifest order. `durations` default to the items' own."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count} is not a valid shard (need 0 <= I < N)")
    if durations is None:
        durations = [item.duration_s for item in items]
    if len(durations) != len(items):
        raise ValueError(f"{len(durations)} durations for {len(items)} items")
    if count == 1:
        return list(items)
    assigned = assign_shards(durations, count)
    return [item for item, shard in zip(items, assigned, strict=True) if shard == index]


def shard_items(items: Sequence[MediaItem], config: RunConfig) -> list[MediaItem]:
    """The configured shard's items; durations the manifest lacks are probed once per run folder."""
    if config.num_shards == 1:
        return list(items)
    from omnibatch.run.durations import item_durations

    durations = item_durations(items, config.out_dir)
    return select_shard(items, config.shard_index, config.num_shards, durations)


def _millis(seconds: float | None) -> int:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return 0
    return int(round(seconds * 1000))
