"""The transformers engine on the tiny Qwen3-Omni: real speech (espeak-ng), real frames (ffmpeg)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from omnibatch.engine import build_engine, resolve_engine_name
from omnibatch.engine.base import Engine
from omnibatch.engine.batching import BatchLimits, Waiting, choose_batch
from omnibatch.engine.transformers_engine import (
    TransformersEngine,
    batch_key,
    check_request,
    estimate_tokens,
)
from omnibatch.errors import InputError
from omnibatch.models.tiny import MARKER_FILE
from omnibatch.records import Request
from tests._engine_media import make_video_frames, speak
from tests.fake_engine import step_until_empty

MAX_NEW = 12

# transformers' processor feeds torch tensors to np.arange (audio in video): upstream's, harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def engine(tiny_dir):
    eng = TransformersEngine(str(tiny_dir), batch_size=8, max_new_tokens=MAX_NEW)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return {
        "short": speak("go forward ten meters", folder, "short"),
        "long": speak("the quick brown fox jumps over the lazy dog near the river bank", folder, "long"),
        "frames": make_video_frames(frames=4, fps=2.0, width=96, height=64),
    }


@pytest.fixture(scope="module")
def requests(media):
    return [
        Request("speech-long", "Transcribe the English audio into text.", audio=media["long"]),
        Request("text", "Summarize: the meeting moved to Friday."),
        Request("video", "Describe this video.", video=media["frames"], video_fps=2.0),
        Request("speech-short", "Transcribe the audio into text.", audio=media["short"]),
        Request("video+audio", "Describe this video.", video=media["frames"], video_fps=2.0,
                audio=media["short"][:32000]),
    ]


def test_media_is_real(media):
    assert media["short"].dtype == np.float32 and 0.8 < media["short"].size / 16000 < 4
    assert np.abs(media["short"]).max() > 0.05  # speech, not silence
    assert media["frames"].shape == (4, 64, 96, 3) and media["frames"].std() > 10


def test_engine_loads_only_the_thinker(engine):
    assert engine.name == "transformers" and engine.model == "tiny-qwen3-omni-v1"
    assert engine.spec.is_tiny and engine.device.type in ("cpu", "cuda")
    names = [n for n, _ in engine.thinker.named_parameters()]
    assert names and not any(n.startswith(("talker", "code2wav")) for n in names)


def test_one_generation_per_request_in_order(engine, requests):
    out = engine.generate(requests)
    assert [g.request_id for g in out] == [r.id for r in requests]
    for g in out:
        assert g.error is None, g
        assert 1 <= g.output_tokens <= MAX_NEW and g.text
        assert g.prompt_tokens > 10
    by_id = {g.request_id: g for g in out}
    # ~13 audio tokens per second of speech on top of the same template
    extra = by_id["speech-long"].prompt_tokens - by_id["speech-short"].prompt_tokens
    seconds = (requests[0].audio.size - requests[3].audio.size) / 16000
    assert abs(extra - 13 * seconds) < 8
    assert by_id["video+audio"].prompt_tokens > by_id["video"].prompt_tokens + 20  # 2 s of audio interleaved


def test_greedy_is_deterministic(engine, requests):
    first = engine.generate(requests)
    second = engine.generate(requests)
    assert [(g.text, g.output_tokens) for g in first] == [(g.text, g.output_tokens) for g in second]


def test_batch_equals_one_by_one(engine, requests):
    """Left padding must not change any row: a batch gives what each request gives alone."""
    batched = engine.generate(requests)
    alone = [engine.generate([r])[0] for r in requests]
    for b, a in zip(batched, alone):
        assert b.request_id == a.request_id
        assert (b.text, b.prompt_tokens, b.output_tokens) == (a.text, a.prompt_tokens, a.output_tokens)


def test_per_request_token_limit(engine, requests):
    capped = replace(requests[0], id="capped", max_new_tokens=3)
    out = engine.generate([capped, requests[0]])
    assert out[0].output_tokens == 3 and out[1].output_tokens == MAX_NEW
    assert engine.generate([capped])[0].text == out[0].text


def test_bad_requests_fail_alone(engine, requests, media):
    good = engine.generate(requests)
    bad = [
        Request("empty-audio", "Transcribe.", audio=np.zeros(0, dtype=np.float32)),
        # Passes the cheap checks but the processor rejects it (aspect ratio > 200) inside a
        # batch with good videos at the same fps: the batch must be retried one by one.
        Request("thin-video", "Describe.", video=np.full((2, 16, 4000, 3), 128, np.uint8), video_fps=2.0),
        Request("no-fps", "Describe.", video=media["frames"]),
    ]
    mixed = [requests[0], bad[0], requests[2], bad[1], requests[4], bad[2], requests[1]]
    out = engine.generate(mixed)
    assert [g.request_id for g in out] == [r.id for r in mixed]
    errors = {g.request_id: g.error for g in out if g.error}
    assert set(errors) == {"empty-audio", "thin-video", "no-fps"}
    assert "too short" in errors["empty-audio"] and "aspect ratio" in errors["thin-video"]
    assert "video_fps" in errors["no-fps"]
    expected = {g.request_id: g.text for g in good}
    for g in out:
        if not g.error:
            assert g.text == expected[g.request_id]


def test_captioner_variant_takes_audio_only(tiny_dir, tmp_path, media):
    folder = tmp_path / "captioner"
    shutil.copytree(tiny_dir, folder)
    marker = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**marker, "variant": "captioner"}))
    eng = TransformersEngine(str(folder), max_new_tokens=4)
    assert eng.spec.variant == "captioner"
    out = eng.generate([
        Request("cap", None, audio=media["short"]),
        Request("prompted", "Describe.", audio=media["short"]),
    ])
    assert out[0].error is None and out[0].output_tokens == 4
    assert "no text prompt" in out[1].error


def test_check_request_messages():
    audio = np.zeros(16000, np.float32)
    assert check_request(Request("ok", "x", audio=audio)) is None
    assert "1-D" in check_request(Request("a", "x", audio=np.zeros((2, 100), np.float32)))
    assert "NaN" in check_request(Request("a", "x", audio=np.full(1000, np.nan, np.float32)))
    assert "uint8" in check_request(Request("v", "x", video=np.zeros((2, 8, 8, 3), np.float32), video_fps=1))
    flat = np.zeros((8, 8, 3), np.uint8)
    assert "(T, H, W, 3)" in check_request(Request("v", "x", video=flat, video_fps=1))
    assert "no prompt" in check_request(Request("n", None))


def test_batches_group_by_processor_settings_and_length():
    """The engine's keys and sizes through the chooser: drained batch by batch, as `step()` draws them."""
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    reqs = [
        Request("a3", "x", audio=np.zeros(48000, np.float32)),
        Request("v1", "x", video=frames, video_fps=1.0),
        Request("t", "x"),
        Request("a1", "x", audio=np.zeros(16000, np.float32)),
        Request("v2", "x", video=frames, video_fps=2.0),
        Request("va", "x", video=frames, video_fps=1.0, audio=np.zeros(16000, np.float32)),
        Request("a2", "x", audio=np.zeros(32000, np.float32)),
    ]
    assert batch_key(reqs[5]).audio_in_video and not batch_key(reqs[1]).audio_in_video

    def drain(queue, limits):
        batches = []
        while queue:
            chosen = choose_batch([Waiting(batch_key(r), estimate_tokens(r)) for r in queue], limits)
            batches.append(sorted(queue[i].id for i in chosen))
            queue = [r for i, r in enumerate(queue) if i not in chosen]
        return batches

    batches = drain(list(reqs), BatchLimits(batch_size=2))
    assert sorted(batches) == [["a1", "t"], ["a2", "a3"], ["v1"], ["v2"], ["va"]]
    assert batches[:2] == [["a2", "a3"], ["a1", "t"]]  # full batches first, the least padded one first
    budget = drain([reqs[0], reqs[3], reqs[6]], BatchLimits(batch_size=8, max_batch_tokens=90))
    assert sorted(budget) == [["a1", "a2"], ["a3"]]


def test_submit_and_step_give_what_generate_gives(engine, requests):
    """Results come back by id from the queue, a refused request at once, and equal generate()'s."""
    expected = {g.request_id: g for g in engine.generate(requests)}
    assert isinstance(engine, Engine) and engine.max_in_flight == 4 * 8
    refused = Request("nothing", None)
    engine.submit([*reversed(requests), refused])
    assert engine.in_flight == len(requests) + 1
    first = engine.step()
    assert [(g.request_id, "no prompt" in g.error) for g in first] == [("nothing", True)]
    got = step_until_empty(engine)
    assert got == expected
    assert engine.step() == []


def test_finish_reason_says_whether_the_budget_ran_out(engine, requests, monkeypatch):
    out = engine.generate([replace(requests[1], id="capped", max_new_tokens=2), requests[1]])
    assert [(g.output_tokens, g.finish_reason) for g in out] == [(2, "length"), (MAX_NEW, "length")]
    # Random weights never say <|im_end|>; a model whose every token ends the turn stops at once.
    monkeypatch.setattr(engine, "_eos_ids", list(range(len(engine.processor.tokenizer))))
    (stopped,) = engine.generate([requests[1]])
    assert (stopped.error, stopped.output_tokens, stopped.finish_reason) == (None, 0, "stop")


def test_build_engine_registry(tiny_dir):
    assert resolve_engine_name("auto") in ("transformers", "vllm")
    with pytest.raises(InputError, match="transformers"):
        build_engine("nope", None)
    eng = build_engine("transformers", str(tiny_dir), max_new_tokens=2)
    try:
        assert isinstance(eng, TransformersEngine)
        assert eng.generate([Request("t", "hi")])[0].output_tokens == 2
    finally:
        eng.close()
