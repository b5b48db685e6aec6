"""Each task stopped mid-pass and rerun: every item exactly once, rows equal to an uninterrupted run.

The real tasks, real media (espeak-ng speech, an ffmpeg test video) and the real
executor; the engine is the deterministic fake (its answers depend only on the
request), so an interrupted-then-resumed run must write exactly what a run
left alone writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _summarize_media import long_speech, music_video
from fake_engine import FakeEngine, FakeSpeech
from mediagen import make_speech

from omnibatch.config import RunConfig
from omnibatch.errors import Interrupted
from omnibatch.run.executor import run_shard

VOLATILE = {"model", "engine", "processing_s"}  # processing_s: wall time


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "long": long_speech(folder / "long.mp3", 2),  # ~70 s: several regions of 10 s
        "mid": long_speech(folder / "mid.wav", 1, voice="en-gb"),
        "short": make_speech(folder / "short.wav", "A short sentence to close the set."),
        "video": music_video(folder / "video.mp4", 8.0),  # no speech: summarize captions it
    }


def manifest(folder: Path, files: dict[str, Path]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps({"id": k, "path": str(p)}) + "\n" for k, p in files.items()))
    return path


def rows_of(out: Path, table: str) -> list[dict]:
    return [r for part in sorted((out / table).glob("part-*.parquet")) for r in pq.read_table(part).to_pylist()]


def comparable(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in rows}


class Run:
    """run_shard with fake engines; `stop_after` stops the shard once the engine has answered that many."""

    def __init__(self, config: RunConfig, monkeypatch) -> None:
        self.config = config
        self.engines: list[FakeEngine] = []
        self.speech: list[FakeSpeech] = []
        from omnibatch.pipeline import summarize

        def build_speech(_config):
            engine = FakeSpeech(batch_size=1)
            self.speech.append(engine)
            return engine

        monkeypatch.setattr(summarize, "build_speech", build_speech)

    def factory(self, _config):
        engine = FakeEngine(batch_size=2, bound=4)
        self.engines.append(engine)
        return engine

    def __call__(self, stop_after: int | None = None, spoken_before_stop: int | None = None):
        def should_stop() -> bool:
            answered = sum(len(e.returned) for e in self.engines)
            spoken = sum(len(s.spoken) for s in self.speech)
            return ((stop_after is not None and answered >= stop_after)
                    or (spoken_before_stop is not None and spoken >= spoken_before_stop))

        return run_shard(self.config, engine_factory=self.factory, progress=False, should_stop=should_stop)


def config_for(task: str, inputs: Path, out: Path, **options) -> RunConfig:
    return RunConfig(task=task, inputs=[str(inputs)], out=str(out), chunk_seconds=10.0, clip_seconds=10.0,
                     workers=0, **options)


CASES = {
    "transcribe": dict(options={"formats": ["parquet", "srt"]}, stop_after=5),
    "caption": dict(options={}, stop_after=6),
    "summarize-text": dict(options={"speak": False, "summary_piece_chars": 200, "max_words": 10}, stop_after=9),
    "summarize-speech": dict(options={"summary_piece_chars": 200, "max_words": 10}, stop_after=None,
                             spoken=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_interrupted_then_resumed_equals_uninterrupted(case, media, tmp_path, monkeypatch):
    spec = CASES[case]
    task = case.split("-")[0]
    inputs = manifest(tmp_path, media)
    reference = Run(config_for(task, inputs, tmp_path / "ref", **spec["options"]), monkeypatch)
    reference()
    expected = comparable(rows_of(tmp_path / "ref", task))
    assert set(expected) == set(media) and all(r["status"] == "ok" for r in expected.values()), expected

    run = Run(config_for(task, inputs, tmp_path / "out", **spec["options"]), monkeypatch)
    with pytest.raises(Interrupted):
        run(stop_after=spec["stop_after"], spoken_before_stop=spec.get("spoken"))
    kept = rows_of(tmp_path / "out", task)
    assert len(kept) < len(media), "the stop came too late to interrupt anything"
    if case == "summarize-speech":
        # The Thinker work was all done before speech began: every summary is kept, staged.
        staged = rows_of(tmp_path / "out" / "_run" / "stage", task)
        assert {r["id"] for r in staged} | {r["id"] for r in kept} == set(media)
    stats = Run(config_for(task, inputs, tmp_path / "out", **spec["options"]), monkeypatch)
    again = stats()
    final = rows_of(tmp_path / "out", task)
    assert sorted(r["id"] for r in final) == sorted(media), "every item exactly once"
    assert comparable(final) == expected
    assert again.skipped_done == len(kept)
    if case == "summarize-speech":
        assert again.resumed_speech > 0 and not stats.engines, "a speech-only rerun needs no Thinker"
        wavs = sorted(p.name for p in (tmp_path / "out" / "audio").glob("*.wav"))
        assert wavs == sorted(f"{k}.wav" for k in media)
    if task == "transcribe":
        segments = rows_of(tmp_path / "out", "segments")
        ref_segments = rows_of(tmp_path / "ref", "segments")
        key = lambda r: (r["id"], r["index"])  # noqa: E731
        assert sorted(segments, key=key) == sorted(ref_segments, key=key)


def test_segments_left_without_their_rows_are_not_doubled(media, tmp_path, monkeypatch):
    """A kill after a part of segments but before the part of rows: the rerun redoes those files
    and their segments appear once."""
    inputs = manifest(tmp_path, media)
    run = Run(config_for("transcribe", inputs, tmp_path / "out"), monkeypatch)
    run()
    expected = sorted(rows_of(tmp_path / "out", "segments"), key=lambda r: (r["id"], r["index"]))
    for part in (tmp_path / "out" / "transcribe").glob("part-*.parquet"):
        part.unlink()  # the rows never made it to disk; the segments did
    again = Run(config_for("transcribe", inputs, tmp_path / "out"), monkeypatch)()
    assert again.skipped_done == 0 and again.ok == len(media)
    segments = sorted(rows_of(tmp_path / "out", "segments"), key=lambda r: (r["id"], r["index"]))
    assert segments == expected


def test_error_rows_share_the_current_part(tmp_path, monkeypatch):
    missing = {f"gone{k}": tmp_path / f"gone{k}.wav" for k in range(25)}
    inputs = manifest(tmp_path, missing)
    stats = Run(config_for("transcribe", inputs, tmp_path / "out"), monkeypatch)()
    assert stats.error == 25 and stats.failed_by_stage == {"probe": 25}
    parts = list((tmp_path / "out" / "transcribe").glob("part-*.parquet"))
    assert len(parts) == 1 and len(rows_of(tmp_path / "out", "transcribe")) == 25
