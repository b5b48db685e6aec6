"""Sharding: a pure function of the items and their durations, balanced by media time."""

import json
import random
from pathlib import Path

import pytest

from omnibatch.config import RunConfig
from omnibatch.records import MediaItem
from omnibatch.run.durations import cache_path, item_durations
from omnibatch.run.sharding import assign_shards, select_shard, shard_items
from tests.mediagen import make_audio


def items_with(durations, folder="/m"):
    return [MediaItem(id=f"it-{i:04d}", path=Path(f"{folder}/f{i}.wav"), source=f"m.jsonl:{i + 1}",
                      duration_s=d) for i, d in enumerate(durations)]


def loads(durations, assigned, count):
    total = [0.0] * count
    for d, s in zip(durations, assigned, strict=True):
        total[s] += d or 0.0
    return total


def test_every_item_lands_in_exactly_one_shard_in_manifest_order():
    rng = random.Random(3)
    items = items_with([rng.uniform(1, 3600) for _ in range(200)])
    shards = [select_shard(items, i, 7) for i in range(7)]
    ids = [it.id for shard in shards for it in shard]
    assert sorted(ids) == sorted(it.id for it in items) and len(set(ids)) == len(items)
    for shard in shards:
        order = [items.index(it) for it in shard]
        assert order == sorted(order)


def test_shards_balance_media_time_not_file_count():
    # One 3-hour file and 60 three-minute ones: by count, the long file's shard would hold 4 hours.
    durations = [3 * 3600.0] + [180.0] * 60
    assigned = assign_shards(durations, 2)
    total = loads(durations, assigned, 2)
    assert total == [3 * 3600.0, 3 * 3600.0]
    assert assigned.count(assigned[0]) == 1  # the long file is alone


@pytest.mark.parametrize("seed", range(5))
def test_greedy_keeps_each_shard_within_one_file_of_the_mean(seed):
    rng = random.Random(seed)
    durations = [rng.expovariate(1 / 600) for _ in range(rng.randint(20, 300))]
    count = rng.randint(2, 16)
    total = loads(durations, assign_shards(durations, count), count)
    assert max(total) - min(total) <= max(durations) + 1e-6


def test_assignment_is_stable_and_depends_only_on_the_inputs():
    rng = random.Random(11)
    durations = [round(rng.uniform(0, 100), 3) for _ in range(500)]
    first = assign_shards(durations, 9)
    assert assign_shards(list(durations), 9) == first
    # Float noise below a millisecond (a JSON round trip, another summation order) changes nothing.
    assert assign_shards([d + 1e-7 for d in durations], 9) == first


def test_equal_and_unknown_durations_spread_round_robin():
    assert assign_shards([None] * 7, 3) == [0, 1, 2, 0, 1, 2, 0]
    assert assign_shards([5.0] * 4, 2) == [0, 1, 0, 1]
    # NaN, negative and infinite durations weigh nothing rather than breaking the order.
    assert sorted(assign_shards([float("nan"), -1.0, float("inf"), 0.0], 2)) == [0, 0, 1, 1]


def test_more_shards_than_items_leaves_some_empty():
    items = items_with([10.0, 20.0])
    assert [len(select_shard(items, i, 4)) for i in range(4)] == [1, 1, 0, 0]


def test_invalid_shards_are_refused():
    items = items_with([1.0])
    for index, count in [(1, 1), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError):
            select_shard(items, index, count)
    with pytest.raises(ValueError):
        select_shard(items, 0, 2, durations=[1.0, 2.0])


def test_durations_come_from_the_manifest_without_probing(tmp_path):
    items = items_with([12.5, 7.0], folder=str(tmp_path))  # the files do not even exist
    assert item_durations(items, tmp_path / "out") == [12.5, 7.0]
    assert not cache_path(tmp_path / "out").exists()


def test_missing_durations_are_probed_once_and_cached(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    make_audio(media / "long.wav", 6.0)
    make_audio(media / "short.flac", 1.5)
    (media / "broken.mp3").write_bytes(b"not audio at all" * 10)
    items = [MediaItem(id=n, path=media / n, source="x", duration_s=None)
             for n in ("long.wav", "short.flac", "broken.mp3", "missing.wav")]
    items.append(MediaItem(id="given", path=media / "given.wav", source="x", duration_s=3.0))
    out = tmp_path / "out"
    got = item_durations(items, out)
    assert got[0] == pytest.approx(6.0, abs=0.05) and got[1] == pytest.approx(1.5, abs=0.05)
    assert got[2:] == [0.0, 0.0, 3.0]  # unreadable and missing count 0; the manifest's value is kept
    cached = json.loads(cache_path(out).read_text())
    assert set(cached["durations"]) == {str(media / n) for n in ("long.wav", "short.flac", "broken.mp3",
                                                                    "missing.wav")}
    # Every later shard reads the published values, even if the files changed or vanished since.
    for p in media.iterdir():
        p.unlink()
    assert item_durations(items, out) == got


def test_a_shard_adopts_durations_another_shard_published(tmp_path):
    items = [MediaItem(id="a", path=tmp_path / "a.wav", source="x"),
             MediaItem(id="b", path=tmp_path / "b.wav", source="x")]
    out = tmp_path / "out"
    item_durations(items, out)  # neither exists: both 0, published
    cache = cache_path(out)
    data = json.loads(cache.read_text())
    data["durations"] = {str(tmp_path / "a.wav"): 40.0, str(tmp_path / "b.wav"): 2.0}
    cache.write_text(json.dumps(data))
    assert item_durations(items, out) == [40.0, 2.0]


def test_a_changed_manifest_reprobes_only_new_paths(tmp_path):
    make_audio(tmp_path / "new.wav", 2.0)
    old = [MediaItem(id="a", path=tmp_path / "a.wav", source="x")]
    out = tmp_path / "out"
    item_durations(old, out)
    data = json.loads(cache_path(out).read_text())
    data["durations"][str(tmp_path / "a.wav")] = 99.0  # stands for a value probed earlier
    cache_path(out).write_text(json.dumps(data))
    grown = [*old, MediaItem(id="n", path=tmp_path / "new.wav", source="x")]
    got = item_durations(grown, out)
    assert got[0] == 99.0 and got[1] == pytest.approx(2.0, abs=0.05)


def test_shard_items_uses_the_cached_durations(tmp_path):
    items = [MediaItem(id=f"f{i}", path=tmp_path / f"f{i}.wav", source="x") for i in range(4)]
    out = tmp_path / "out"
    config = RunConfig(task="transcribe", inputs=[], out=str(out), num_shards=2)
    item_durations(items, out)
    data = json.loads(cache_path(out).read_text())
    data["durations"] = {str(tmp_path / "f0.wav"): 100.0, str(tmp_path / "f1.wav"): 1.0,
                         str(tmp_path / "f2.wav"): 1.0, str(tmp_path / "f3.wav"): 1.0}
    cache_path(out).write_text(json.dumps(data))
    first = shard_items(items, config.with_shard(0, 2))
    second = shard_items(items, config.with_shard(1, 2))
    assert [it.id for it in first] == ["f0"] and [it.id for it in second] == ["f1", "f2", "f3"]
    assert shard_items(items, config.with_shard(0, 1)) == items
