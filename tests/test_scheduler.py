"""The scheduler on its own: a task without media and a deterministic fake engine.

What is checked is the feed itself: every file exactly once, the in-flight bound
kept, a file's next pass queued before other files' first passes are done, one
rejected request failing only its file, and a stop leaving nothing half-done.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine, FakeTask, fake_probe

from omnibatch.errors import Interrupted
from omnibatch.output.tables import FileRow
from omnibatch.pipeline.feed import EngineFeed
from omnibatch.pipeline.scheduler import Scheduler
from omnibatch.pipeline.tasks import FIRST_PASS
from omnibatch.records import MediaItem


def items(*specs: dict) -> list[MediaItem]:
    return [MediaItem(id=s["id"], path=Path(f"/nonexistent/{s['id']}.wav"), source=f"test:{k}",
                      extra={k: v for k, v in s.items() if k != "id"}) for k, s in enumerate(specs)]


def base_row(item, info):
    return FileRow(id=item.id, path=str(item.path), duration_s=info.duration_s if info else None)


def run(task, files, engine, *, workers=0, should_stop=lambda: False):
    feed = EngineFeed(lambda: engine)
    scheduler = Scheduler(task, files, feed, base_row, workers=workers, should_stop=should_stop,
                          prober=fake_probe)
    return [f.result.row for f in scheduler.run()], scheduler, feed


MANY = [{"id": f"f{k}", "regions": 3 + (k * 7) % 11} for k in range(12)]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_file_once_within_the_bound(workers):
    engine = FakeEngine(batch_size=3, bound=7)
    rows, scheduler, feed = run(FakeTask(rounds=(2, 1)), items(*MANY), engine, workers=workers)
    assert sorted(r.id for r in rows) == sorted(s["id"] for s in MANY)
    assert all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert engine.max_seen <= 7
    # Regions, then a round of 2 and a round of 1, per file, each asked exactly once.
    expected = sum(s["regions"] + 3 for s in MANY)
    assert len(engine.submitted) == len({s.id for s in engine.submitted}) == expected
    assert scheduler.regions == sum(s["regions"] for s in MANY)
    if workers == 0:  # decode is instant inline, so the engine must always have been kept full
        assert feed.stats.mean_in_flight > 3, feed.stats


def test_rows_do_not_depend_on_batching_or_order():
    """Answers come back shuffled and in batches of any size; each file's row is the same."""
    task = FakeTask(rounds=(2, 1))
    a, _, _ = run(task, items(*MANY), FakeEngine(batch_size=1, bound=1, seed=1))
    b, _, _ = run(task, items(*MANY), FakeEngine(batch_size=5, bound=16, seed=2))
    assert {r.id: r.text for r in a} == {r.id: r.text for r in b}


def test_next_pass_is_queued_before_other_files_finish_their_first():
    engine = FakeEngine(batch_size=2, bound=4)
    rows, _, _ = run(FakeTask(rounds=(1,)), items(*MANY), engine)
    first_round = next(s for s in engine.submitted if s.step != FIRST_PASS)
    last_region = max(s.at for s in engine.submitted if s.step == FIRST_PASS)
    assert first_round.at < last_region, "a file's second pass waited for every file's first pass"
    # ... and a finished file is handed on while others are still in flight.
    assert rows[0].id == first_round.item_id


def test_a_rejected_request_fails_only_its_file():
    engine = FakeEngine(batch_size=3, bound=6, reject=["f3#00002", "f5#r0.1"])
    rows, _, _ = run(FakeTask(rounds=(2,)), items(*MANY), engine)
    by_id = {r.id: r for r in rows}
    assert len(rows) == len(MANY)
    assert by_id["f3"].status == "error" and by_id["f3"].error_stage == "engine"
    assert "region 2.0-3.0 s" in by_id["f3"].error
    assert by_id["f5"].status == "error" and by_id["f5"].error_stage == "engine"
    assert all(r.status == "ok" for k, r in by_id.items() if k not in ("f3", "f5"))


def test_probe_and_decode_failures_are_rows_with_their_stage():
    files = items({"id": "good", "regions": 4}, {"id": "noprobe", "fail": "probe"},
                  {"id": "corrupt", "regions": 6, "fail_decode_at": 3}, {"id": "good2", "regions": 2})
    engine = FakeEngine()
    rows, _, _ = run(FakeTask(rounds=(1,)), files, engine)
    by_id = {r.id: r for r in rows}
    assert (by_id["noprobe"].status, by_id["noprobe"].error_stage) == ("error", "probe")
    assert (by_id["corrupt"].status, by_id["corrupt"].error_stage) == ("error", "decode")
    assert "corrupt at 3 s" in by_id["corrupt"].error
    assert by_id["good"].status == by_id["good2"].status == "ok"
    # The corrupt file's regions decoded before the fault are not asked for again, nor its rounds.
    assert not any(s.item_id == "corrupt" and s.step != FIRST_PASS for s in engine.submitted)


def test_an_engine_that_is_never_needed_is_never_built():
    built = []

    def factory():
        built.append(1)
        return FakeEngine()

    feed = EngineFeed(factory)
    scheduler = Scheduler(FakeTask(), items({"id": "x", "fail": "probe"}), feed, base_row, workers=0,
                          prober=fake_probe)
    rows = [f.result.row for f in scheduler.run()]
    assert [r.status for r in rows] == ["error"] and not built


def test_a_stop_hands_on_only_whole_files():
    engine = FakeEngine(batch_size=2, bound=4)
    seen = []

    def stop_after_three():
        return len(seen) >= 3

    feed = EngineFeed(lambda: engine)
    scheduler = Scheduler(FakeTask(rounds=(2, 1)), items(*MANY), feed, base_row, workers=0,
                          should_stop=stop_after_three, prober=fake_probe)
    with pytest.raises(Interrupted):
        for finished in scheduler.run():
            seen.append(finished.result.row)
    assert len(seen) == 3 and all(r.status == "ok" for r in seen)
    full, _, _ = run(FakeTask(rounds=(2, 1)), items(*MANY), FakeEngine())
    expected = {r.id: r.text for r in full}
    assert all(r.text == expected[r.id] for r in seen)


def test_a_decode_worker_that_dies_fails_its_file_and_the_run_goes_on():
    files = items({"id": "a", "regions": 2}, {"id": "crash", "crash": True}, {"id": "b", "regions": 3},
                  {"id": "c", "regions": 1})
    rows, _, _ = run(FakeTask(rounds=()), files, FakeEngine(), workers=1)
    by_id = {r.id: r for r in rows}
    assert sorted(by_id) == ["a", "b", "c", "crash"]
    assert by_id["crash"].status == "error" and "decode worker died" in by_id["crash"].error
    assert all(by_id[k].status == "ok" for k in "abc")


RUN_AND_WAIT = """
import sys
sys.path.insert(0, {tests!r})
from test_scheduler import items, run
from fake_engine import FakeEngine, FakeTask
run(FakeTask(rounds=()), items({{"id": "slow", "regions": 1000, "slow_s": 0.05}}), FakeEngine(), workers=1)
"""


def test_decode_workers_die_with_a_killed_main_process():
    """SIGKILL of the main process (no cleanup can run) must not leave decode workers behind."""
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    tests = str(Path(__file__).resolve().parent)
    main = subprocess.Popen([sys.executable, "-c", RUN_AND_WAIT.format(tests=tests)])
    try:
        deadline = time.monotonic() + 60
        while not (workers := psutil.Process(main.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers, "no decode worker started"
        time.sleep(0.5)  # the worker is decoding (and sets its parent-death signal first thing)
        main.kill()
        main.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"decode workers outlived the main process: {[p.pid for p in alive]}"
    finally:
        if main.poll() is None:
            main.kill()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failed_file_stops_being_decoded(workers):
    """The engine refuses a long file's first region: the rest of that file is not decoded (its
    worker moves on), and the next file is still done in full."""
    files = items({"id": "long", "regions": 400, "slow_s": 0.01}, {"id": "next", "regions": 3})
    engine = FakeEngine(batch_size=1, bound=1, reject=["long#00000"])
    rows, scheduler, _ = run(FakeTask(rounds=()), files, engine, workers=workers)
    by_id = {r.id: r for r in rows}
    assert by_id["long"].error == "region 0.0-1.0 s: rejected by the fake engine"
    assert by_id["next"].status == "ok"
    decoded_long = scheduler.regions + scheduler.discarded - 3  # what was queued ahead, and thrown away
    assert decoded_long < 100, f"{decoded_long} of the 400 regions decoded although the first failed"


def test_every_row_records_how_long_its_file_took():
    """`processing_s`: from the file's probe to its row, on ok rows and error rows alike."""
    files = items({"id": "slow", "regions": 10, "slow_s": 0.05}, {"id": "quick", "regions": 1},
                  {"id": "noprobe", "fail": "probe"})
    rows, _, _ = run(FakeTask(rounds=(1,)), files, FakeEngine(), workers=1)
    by_id = {r.id: r for r in rows}
    assert all(r.processing_s is not None and r.processing_s >= 0 for r in rows), by_id
    assert by_id["slow"].processing_s >= 0.45  # its ten regions took 0.05 s each to decode, after the probe
    assert by_id["noprobe"].status == "error" and by_id["noprobe"].processing_s < by_id["slow"].processing_s
