"""`omnibatch summarize`: map-reduce planning, speakable text, configuration, the pipeline, end to end.

Real media throughout (espeak-ng speech, ffmpeg video) and the real tiny Qwen3-Omni (Thinker, Talker,
Code2Wav) built locally. The speech engines and the WAV writer are tested in test_speech_engines.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from omnibatch.config import RunConfig
from omnibatch.engine import choose_speech_engine
from omnibatch.engine.base import check_speaker, codes_for, speech_seconds_cap
from omnibatch.errors import InputError
from omnibatch.output.names import safe_filename
from omnibatch.pipeline.summarize import check_summarize_config, step_prompt, token_cap
from omnibatch.summaries import (
    PART_SEPARATOR,
    SummaryStep,
    count_rounds,
    group_texts,
    limit_words,
    plan_round,
    speakable_text,
    split_text,
)
from tests._summarize_media import ffprobe_audio, long_speech, music_video

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def words(text: str) -> list[str]:
    return text.split()


# -- map-reduce planning (pure) ----------------------------------------------------------------


def test_split_text_keeps_every_word_in_order_within_the_limit():
    text = " ".join(f"Sentence number {i} has a few words in it." for i in range(200))
    pieces = split_text(text, 300)
    assert len(pieces) > 1 and all(0 < len(p) <= 300 for p in pieces)
    assert words(" ".join(pieces)) == words(text)
    # Cuts fall at sentence ends when a whole sentence fits.
    assert all(p.endswith(".") for p in pieces)


def test_split_text_cuts_long_sentences_between_words_and_long_words_between_characters():
    sentence = "word " * 100 + "x" * 250
    pieces = split_text(sentence, 60)
    assert all(len(p) <= 60 for p in pieces)
    assert "".join(" ".join(pieces).split()) == "".join(sentence.split())
    cjk = "河谷的历史早在第一批农田出现之前就开始了。" * 20
    pieces = split_text(cjk, 50)
    assert all(len(p) <= 50 for p in pieces) and "".join(pieces) == cjk


def test_group_texts_keeps_order_bounds_size_and_never_leaves_one_alone():
    texts = [f"t{i}" * (3 + i % 4) for i in range(11)]
    groups = group_texts(texts, 25)
    assert [t for g in groups for t in g] == texts
    assert all(len(g) >= 2 for g in groups)
    assert all(len(PART_SEPARATOR.join(g)) <= 25 or len(g) <= 3 for g in groups)
    # Two texts longer than the budget still go together: every reduce round makes progress.
    assert group_texts(["a" * 40, "b" * 40], 25) == [["a" * 40, "b" * 40]]


def test_a_short_transcript_is_one_final_round():
    step = plan_round("A short talk about rivers.", [], 1000)
    assert step == SummaryStep("final", ("A short talk about rivers.",), combines=False)
    assert plan_round("A short talk about rivers.", [["The summary."]], 1000) is None
    assert plan_round("   ", [], 1000) is None


def test_a_40_minute_transcript_maps_reduces_and_ends_with_one_summary():
    # 40 minutes at 150 words a minute: 6,000 words, about 36,000 characters.
    transcript = " ".join(f"In minute {m} the speaker talked about topic {m} at some length."
                          for m in range(600))
    max_chars = 4000
    answers: list[list[str]] = []
    kinds = []
    while (step := plan_round(transcript, answers, max_chars)) is not None:
        kinds.append(step.kind)
        # No prompt grows with the file: every input is within the piece budget (answers here are short).
        assert all(len(text) <= max_chars for text in step.inputs)
        assert (len(step.inputs) == 1) == (step.kind == "final")
        answers.append([f"Summary {len(answers)}.{k} " + "x" * 900 for k in range(len(step.inputs))])
    assert kinds[0] == "map" and kinds[-1] == "final" and "reduce" in kinds
    first = plan_round(transcript, [], max_chars)
    assert words(" ".join(first.inputs)) == words(transcript)
    assert len(answers[-1]) == 1


def test_rounds_end_whatever_the_answers_look_like():
    transcript = "word " * 20000
    pieces = len(split_text(transcript, 1000))
    for answer_chars in (1, 300, 999, 5000):  # even answers longer than the budget
        rounds = count_rounds(transcript, 1000, answer_chars)
        assert 2 <= rounds <= math.ceil(math.log2(pieces)) + 2


def test_empty_partial_summaries_are_dropped():
    transcript = "Some words here. " * 100
    assert plan_round(transcript, [["", "  "]], 200) is None
    step = plan_round(transcript, [["one.", "", "two."]], 200)
    assert step == SummaryStep("final", ("one." + PART_SEPARATOR + "two.",), combines=True)


# -- speakable text and prompts (pure) ---------------------------------------------------------


def test_speakable_text_removes_markdown_and_unreadable_characters():
    md = (
        "## Summary\n\n**Key points**:\n- The *river* valley was farmed\n"
        "- Traders carried [grain](http://example.com) and `salt`\n1. The railway arrived\n\n"
        "The town grew\nover many years. It is quiet today\n| a | b |\n|---|---|\n```py\nprint(1)\n```\n"
    )
    spoken = speakable_text(md)
    assert spoken == ("Summary. Key points: The river valley was farmed. Traders carried grain and salt. "
                      "The railway arrived. The town grew over many years. It is quiet today. a b.")
    assert speakable_text("go\x11\x01 on\ufffd\ufffd now") == "go on now."


def test_speakable_text_is_bounded_in_words():
    text = "The first sentence has six words. The second one is a little longer than that. Third."
    assert speakable_text(text, 10) == "The first sentence has six words."
    assert limit_words("one two three four five six", 4) == "one two three four."
    assert len(speakable_text("word " * 500, 120).split()) == 120


def test_summary_prompts_ask_for_speakable_bounded_text_in_the_language():
    final = step_prompt(SummaryStep("final", ("the talk",)), 0, max_words=80, language="fr",
                        source="transcript")
    assert "at most 80 words" in final and "no markdown" in final and "Write it in French." in final
    assert final.endswith("Transcript:\nthe talk")
    step = SummaryStep("map", ("piece one", "piece two", "piece three"))
    second = step_prompt(step, 1, max_words=80, language=None, source="transcript")
    assert "part 2 of 3" in second and second.endswith("piece two") and "same language" in second
    combine = step_prompt(SummaryStep("final", ("a\n\nb",), combines=True), 0, max_words=80, language="de",
                          source="transcript")
    assert "Combine them" in combine and "whole recording" in combine and "German" in combine
    captions = step_prompt(SummaryStep("final", ("[0:00-0:30] a dog",)), 0, max_words=50, language=None,
                           source="captions")
    assert "Descriptions:\n[0:00-0:30] a dog" in captions
    assert token_cap(SummaryStep("final", ("x",)), 120) < token_cap(step, 120)


def test_speech_length_cap_follows_the_words():
    assert speech_seconds_cap("one two three") == pytest.approx(3 * 0.6 + 5)
    assert codes_for(2.0) == 25
    assert check_speaker("chelsie") == "Chelsie"
    with pytest.raises(InputError, match="Ethan, Chelsie, Aiden"):
        check_speaker("Bob")


# -- configuration and engine choice -------------------------------------------------------------


def test_summarize_refuses_unusable_options_before_any_work(tiny_dir):
    def config(**kw):
        return RunConfig(task="summarize", inputs=[], out="/tmp/x", model=str(tiny_dir), **kw)

    with pytest.raises(InputError, match="whisper engine only transcribes"):
        check_summarize_config(config(engine="whisper"))
    with pytest.raises(InputError, match="unknown speaker"):
        check_summarize_config(config(speaker="Nobody"))
    check_summarize_config(config(speaker="Nobody", speak=False))  # no speech, no voice needed
    with pytest.raises(InputError, match="--max-words"):
        check_summarize_config(config(max_words=0))
    with pytest.raises(InputError, match="--piece-chars"):
        check_summarize_config(config(summary_piece_chars=10))
    with pytest.raises(InputError, match="unknown language"):
        check_summarize_config(config(language="xx"))


def test_summarize_refuses_to_speak_with_a_model_that_has_no_talker(tiny_dir, tmp_path):
    import shutil

    text_only = tmp_path / "text-only"
    shutil.copytree(tiny_dir, text_only)
    cfg = json.loads((text_only / "config.json").read_text())
    cfg["enable_audio_output"] = False
    (text_only / "config.json").write_text(json.dumps(cfg))
    (text_only / "omnibatch.json").unlink()  # a plain local checkpoint, not the embedded model
    config = RunConfig(task="summarize", inputs=[], out=str(tmp_path), model=str(text_only))
    with pytest.raises(InputError, match="no Talker.*--no-speak"):
        check_summarize_config(config)
    check_summarize_config(RunConfig(task="summarize", inputs=[], out=str(tmp_path), model=str(text_only),
                                     speak=False))


def test_speech_engine_follows_the_thinker_engine(monkeypatch):
    import importlib.util

    import omnibatch.engine as engines

    assert choose_speech_engine("transformers") == "transformers"
    monkeypatch.setattr(engines, "cuda_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm_omni" else real_find_spec(name, *a))
    assert choose_speech_engine("vllm") == "vllm-omni"
    assert choose_speech_engine("transformers") == "transformers"
    monkeypatch.setattr(engines, "cuda_available", lambda: False)
    assert choose_speech_engine("vllm") == "transformers"  # vllm-omni has no CPU platform


# -- the pipeline, in process ------------------------------------------------------------------


def run_summarize(tmp_path: Path, inputs: dict[str, Path], tiny_dir: Path, *, calls: list | None = None,
                  events: list | None = None, **options):
    from omnibatch.run.executor import default_engine_factory, run_shard

    def factory(config):
        engine = default_engine_factory(config)

        class Recording:
            """Records (requests, generations) per pass: the regions, then each summary round."""

            name, model = engine.name, engine.model
            max_in_flight = property(lambda self: engine.max_in_flight)
            in_flight = property(lambda self: engine.in_flight)

            def __init__(self):
                self.asked: dict[str, object] = {}

            def submit(self, requests):
                for r in requests:
                    self.asked[r.id] = r
                engine.submit(requests)

            def step(self):
                outs = engine.step()
                if calls is not None:
                    for g in outs:
                        request = self.asked[g.request_id]
                        steps = [step for step, _ in calls]
                        if request.step not in steps:
                            calls.append((request.step, ([], [])))
                        requests, answers = calls[[s for s, _ in calls].index(request.step)][1]
                        requests.append(request)
                        answers.append(g)
                return outs

            def close(self):
                if events is not None:
                    events.append("thinker closed")
                engine.close()

        return Recording()

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": k, "path": str(p)}) + "\n" for k, p in inputs.items()))
    config = RunConfig(task="summarize", inputs=[str(manifest)], out=str(tmp_path / "out"),
                       model=str(tiny_dir), engine="transformers", workers=0, **options)
    stats = run_shard(config, engine_factory=factory, progress=False)
    rows = {r["id"]: r for part in sorted((tmp_path / "out" / "summarize").glob("part-*.parquet"))
            for r in pq.read_table(part).to_pylist()}
    return stats, rows


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    return {
        "long": long_speech(folder / "long.flac", 6),  # about 3.5 minutes
        "short": long_speech(folder / "short.wav", 1, voice="en-gb"),
    }


def test_a_long_transcript_goes_through_map_reduce_without_the_talker(tmp_path, tiny_dir, speech_files,
                                                                      monkeypatch):
    import transformers

    from omnibatch.engine import speech_transformers

    def forbidden(*a, **k):
        raise AssertionError("the Talker was loaded although no speech was asked for")

    monkeypatch.setattr(speech_transformers.TransformersSpeechEngine, "__init__", forbidden)
    monkeypatch.setattr(transformers.Qwen3OmniMoeForConditionalGeneration, "from_pretrained", forbidden)
    calls: list = []
    piece = 200
    stats, rows = run_summarize(tmp_path, {"long": speech_files["long"]}, tiny_dir, calls=calls, speak=False,
                                summary_piece_chars=piece, max_words=10, max_new_tokens=24, chunk_seconds=10)
    (row,) = rows.values()
    assert row["status"] == "ok", row["error"]
    assert (row["audio_path"], row["audio_duration_s"], row["sample_rate"]) == (None, None, None)
    assert not (tmp_path / "out" / "audio").exists()
    transcript = row["transcript"]
    assert len(transcript) > 2 * piece
    # The regions pass, then one pass per summary round, in that order (one file: no overlap).
    assert [step for step, _ in calls] == ["regions"] + [f"round{k}" for k in range(len(calls) - 1)]
    asr, *summary_rounds = [
        tuple(zip(*sorted(zip(reqs, outs), key=lambda ro: ro[0].index))) for _, (reqs, outs) in calls
    ]
    assert all(r.audio is not None for r in asr[0])
    assert len(summary_rounds) >= 2
    first_requests = summary_rounds[0][0]
    pieces = split_text(transcript, piece)
    assert len(first_requests) == len(pieces) >= 2
    for k, (request, text) in enumerate(zip(first_requests, pieces)):
        assert f"part {k + 1} of {len(pieces)}" in request.prompt and request.prompt.endswith(text)
        assert request.audio is None and request.video is None
    for (requests, _), (_, answers) in zip(summary_rounds[1:], summary_rounds):
        # Later rounds read the answers of the round before, in groups: a group is over the budget
        # only when it holds two or three answers, so no prompt grows with the file's length.
        longest = max(len(a.text.strip()) for a in answers)
        for request in requests:
            text = request.prompt.split("Summaries:\n", 1)[1]
            assert len(text) <= max(piece, 3 * longest + 2 * len(PART_SEPARATOR))
    print(f"map-reduce: transcript of {len(transcript)} chars, requests per round "
          f"{[len(requests) for requests, _ in summary_rounds]}")
    final_requests, final_answers = summary_rounds[-1]
    assert len(final_requests) == 1 and "whole recording" in final_requests[0].prompt
    assert row["summary"] == speakable_text(final_answers[0].text, 10)
    assert 0 < len(row["summary"].split()) <= 10


def test_talker_loaded_only_when_speech_is_asked_for(tmp_path, tiny_dir, speech_files, monkeypatch):
    """The control for the test above: the same guard trips as soon as speech is wanted."""
    from omnibatch.engine import speech_transformers

    def forbidden(*a, **k):
        raise AssertionError("speech engine built")

    monkeypatch.setattr(speech_transformers.TransformersSpeechEngine, "__init__", forbidden)
    with pytest.raises(AssertionError, match="speech engine built"):
        run_summarize(tmp_path, {"short": speech_files["short"]}, tiny_dir, max_words=6, max_new_tokens=6)


def test_a_failed_speech_write_fails_only_that_item(tmp_path, tiny_dir, speech_files, monkeypatch):
    from omnibatch.engine import speech_transformers

    built, events = [], []
    real_init = speech_transformers.TransformersSpeechEngine.__init__

    def counting_init(self, *args, **kwargs):
        built.append(args)
        events.append("speech engine built")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(speech_transformers.TransformersSpeechEngine, "__init__", counting_init)
    blocked = tmp_path / "out" / "audio" / f"{safe_filename('short')}.wav"
    blocked.mkdir(parents=True)  # a folder where the WAV must go: the rename fails
    (blocked / "keep").write_text("x")
    stats, rows = run_summarize(tmp_path, speech_files, tiny_dir, events=events,
                                max_words=6, max_new_tokens=6, chunk_seconds=30)
    assert stats.ok == 1 and stats.error == 1
    assert built == [(str(tiny_dir),)]  # one speech engine for the shard, after all Thinker work
    assert events == ["thinker closed", "speech engine built"]
    short, long = rows["short"], rows["long"]
    assert short["status"] == "error" and "cannot write" in short["error"] and short["summary"]
    assert short["audio_path"] is None and short["transcript"]
    assert long["status"] == "ok" and long["audio_path"] == "audio/long.wav"
    assert sf.info(tmp_path / "out" / long["audio_path"]).frames == round(long["audio_duration_s"] * 24000)


# -- the command line, end to end ------------------------------------------------------------------


def test_summarize_cli_writes_a_summary_and_a_wav_per_long_file(tmp_path, tiny_dir):
    media = tmp_path / "media"
    media.mkdir()
    long_speech(media / "talk.mp3", 4)  # about 2.3 minutes
    long_speech(media / "lecture.flac", 3, voice="en-gb")
    music_video(media / "tone.mp4", 8.0)  # no speech: captioned, then summarized
    manifest = tmp_path / "manifest.jsonl"
    lines = [{"id": "ep/001", "path": "media/talk.mp3", "language": "en"},
             {"id": "ep-002", "path": "media/lecture.flac"},
             {"id": "clip", "path": "media/tone.mp4", "meta": {"show": "x"}}]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = subprocess.run(
        [OMNIBATCH, "summarize", str(manifest), "--out", str(out), "--model", str(tiny_dir),
         "--speaker", "Aiden", "--max-words", "12", "--max-new-tokens", "8", "--piece-chars", "400",
         "--clip-seconds", "4", "--language", "en"],
        capture_output=True, text=True, timeout=600,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["id"]: r for part in sorted((out / "summarize").glob("part-*.parquet"))
            for r in pq.read_table(part).to_pylist()}
    assert set(rows) == {"ep/001", "ep-002", "clip"}
    for item_id, row in rows.items():
        assert row["status"] == "ok" and row["error"] is None, row["error"]
        assert row["summary"] and len(row["summary"].split()) <= 12
        assert row["audio_path"] == f"audio/{safe_filename(item_id)}.wav"
        wav = out / row["audio_path"]
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16") == (
            row["sample_rate"], 1, "PCM_16")
        assert info.frames / info.samplerate == pytest.approx(row["audio_duration_s"], abs=1e-9)
        probed = ffprobe_audio(wav)
        assert (probed["codec"], probed["sample_rate"], probed["channels"]) == ("pcm_s16le", 24000, 1)
        assert probed["duration_s"] == pytest.approx(row["audio_duration_s"], abs=1e-3)
        assert 0 < row["audio_duration_s"] <= speech_seconds_cap(row["summary"]) + 1e-9
    assert rows["ep/001"]["transcript"] and rows["ep-002"]["transcript"]
    assert rows["clip"]["transcript"] is None and rows["clip"]["kind"] == "video"
    assert not list((out / "audio").glob(".*"))  # no temporary files left behind
    print(f"summarize CLI on {len(rows)} files: {elapsed:.1f} s")
