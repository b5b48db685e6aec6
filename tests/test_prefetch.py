"""The decode-ahead window: item order, bounded memory, and one bad file never stopping the rest.

A fake task isolates the scheduling logic; the real decode path is covered end to end in test_cli.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnibatch.errors import MediaError
from omnibatch.pipeline import prefetch
from omnibatch.pipeline.prefetch import InlineExecutor, Loaded, Planned, iter_loaded
from omnibatch.records import Chunk, MediaInfo, MediaItem, Request


@dataclass
class CountingTask:
    """Plans `n` 10-second regions per item; item 'bad' fails planning, region 'x#00001' fails loading."""

    regions: dict[str, int]
    loaded: list[str] = field(default_factory=list)
    name: str = "fake"

    def plan(self, item, info):
        if item.id == "bad":
            raise MediaError("not a media file")
        return [Chunk(item.id, i, 10.0 * i, 10.0 * (i + 1)) for i in range(self.regions[item.id])]

    def load(self, item, info, chunk):
        if chunk.id == "x#00001":
            raise MediaError("truncated")
        self.loaded.append(chunk.id)
        return Request(id=chunk.id, prompt="p", audio=np.zeros(160, np.float32))


def items(*ids: str) -> list[MediaItem]:
    return [MediaItem(id=i, path=Path(f"/m/{i}.wav"), source="t") for i in ids]


def fake_probe(monkeypatch):
    monkeypatch.setattr(prefetch, "plan_item",
                        lambda task, item: (MediaInfo(item.path, "wav", 60.0, ()), task.plan(item, None)))


def test_events_come_in_item_order_and_errors_stay_with_their_item(monkeypatch):
    fake_probe(monkeypatch)
    task = CountingTask({"a": 2, "x": 3, "c": 1, "empty": 0})
    events = list(iter_loaded(task, items("a", "bad", "x", "empty", "c"), InlineExecutor()))
    planned = [e.state.item.id for e in events if isinstance(e, Planned)]
    assert planned == ["a", "bad", "x", "empty", "c"]
    loaded = [(e.chunk.id, e.request is not None) for e in events if isinstance(e, Loaded)]
    assert loaded == [("a#00000", True), ("a#00001", True), ("x#00000", True), ("x#00001", False),
                      ("x#00002", True), ("c#00000", True)]
    states = {e.state.item.id: e.state for e in events if isinstance(e, Planned)}
    assert states["bad"].error == "not a media file"
    assert "10.0-20.0 s" in states["x"].error and "truncated" in states["x"].error
    assert states["a"].error is None and states["empty"].complete


def test_pending_media_is_bounded(monkeypatch):
    """Consuming slowly, the window never holds more than max_pending_s of loaded-but-unconsumed media."""
    fake_probe(monkeypatch)
    task = CountingTask({"long": 100})
    stream = iter_loaded(task, items("long"), InlineExecutor(), max_pending_s=50.0)
    consumed = 0
    for event in stream:
        if isinstance(event, Loaded):
            consumed += 1
            in_flight = len(task.loaded) - consumed
            assert in_flight * 10.0 <= 50.0
    assert consumed == 100
