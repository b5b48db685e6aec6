"""A NeMo manifest with references through the real whisper engine: words, language, confidence,
WER/CER per file and for the corpus, a NeMo-style output manifest; pyarrow and DuckDB read it all."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from mediagen import make_speech

pytestmark = pytest.mark.slow

REFERENCES = {
    "calm": ("the weather will be calm and clear all through the night", "en-us"),
    "bread": ("fresh bread is baked every morning in the small shop on the corner", "en-gb"),
}


@pytest.fixture(scope="module")
def nemo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nemo")
    lines = []
    for key, (text, voice) in REFERENCES.items():
        wav = make_speech(folder / f"{key}.wav", text, voice=voice)
        lines.append({"audio_filepath": wav.name, "duration": 4.0, "text": text, "speaker": voice})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = folder / "out"
    done = subprocess.run([sys.executable, "-m", "omnibatch", "transcribe", str(manifest), "--out", str(out),
                           "--engine", "whisper", "--workers", "0", "--nemo-manifest", str(folder / "pred.jsonl")],
                          capture_output=True, text=True, timeout=600)
    return folder, out, done


def test_rows_carry_wer_cer_language_and_confidence(nemo_run):
    folder, out, done = nemo_run
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in pq.read_table(out / "transcribe").to_pylist()}
    assert len(rows) == 2
    for row in rows.values():
        assert row["status"] == "ok"
        assert row["language"] == "en" and 0.5 < row["language_probability"] <= 1.0  # detected, not given
        assert row["avg_logprob"] < 0
        assert 0.0 <= row["wer"] < 0.35 and 0.0 <= row["cer"] < 0.25, row  # espeak read by a small whisper
        assert row["reference_words"] == len(json.loads(row["extra"])["text"].split())
    assert "WER " in done.stderr and "over the 2 files with a reference" in done.stderr


def test_words_and_segments_join_their_rows(nemo_run):
    _, out, _ = nemo_run
    words = pq.read_table(out / "words").to_pylist()
    assert words and all(w["end_s"] >= w["start_s"] >= 0 for w in words)
    assert all(w["probability"] is None or 0.0 <= w["probability"] <= 1.0 for w in words)
    segments = pq.read_table(out / "segments").to_pylist()
    assert all(s["avg_logprob"] is not None and 0.0 <= s["no_speech_prob"] <= 1.0 for s in segments)
    rows = {r["id"]: r for r in pq.read_table(out / "transcribe").to_pylist()}
    for item_id, row in rows.items():
        assert row["num_words"] == sum(1 for w in words if w["id"] == item_id) > 0


def test_duckdb_reads_the_tables_and_gives_the_corpus_wer(nemo_run):
    duckdb = pytest.importorskip("duckdb")
    _, out, _ = nemo_run
    con = duckdb.connect()
    (wer,) = con.execute(f"SELECT sum(wer * reference_words) / sum(reference_words) FROM "
                         f"read_parquet('{out}/transcribe/*.parquet')").fetchone()
    stats = json.loads(next((out / "_run" / "stats").glob("transcribe-*.json")).read_text())
    assert stats["corpus_wer"] == pytest.approx(wer, abs=1e-3)
    (n_words,) = con.execute(f"SELECT count(*) FROM read_parquet('{out}/words/*.parquet') w JOIN "
                             f"read_parquet('{out}/transcribe/*.parquet') t USING (id)").fetchone()
    assert n_words == sum(r["num_words"] for r in pq.read_table(out / "transcribe").to_pylist())


def test_the_nemo_manifest_has_pred_text_beside_the_input_keys(nemo_run):
    folder, _, done = nemo_run
    lines = [json.loads(line) for line in (folder / "pred.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and "NeMo manifest" in done.stderr
    for line in lines:
        assert {"audio_filepath", "duration", "text", "speaker", "pred_text", "wer"} <= set(line)
        assert line["pred_text"] and line["text"] in dict((v[0], 1) for v in REFERENCES.values())


def test_a_named_reference_key_and_a_bad_normalizer(tmp_path):
    from omnibatch.config import RunConfig
    from omnibatch.output.tables import TranscribeRow
    from omnibatch.pipeline.transcribe import score_against_reference
    from omnibatch.records import MediaItem

    item = MediaItem(id="x", path=tmp_path / "x.wav", source="m:1", extra={"truth": "a b c d", "text": "no"})
    row = TranscribeRow(id="x", text="a b c")
    score_against_reference(row, item, RunConfig(task="transcribe", inputs=[], out="o", reference_key="truth"))
    assert row.wer == 0.25 and row.reference_words == 4
    bad = subprocess.run([sys.executable, "-m", "omnibatch", "transcribe", str(tmp_path / "x.wav"), "--out",
                          str(tmp_path / "o"), "--engine", "whisper", "--normalizer", "fancy"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--normalizer must be one of basic, none" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_status_reports_the_corpus_wer(nemo_run):
    _, out, _ = nemo_run
    status = subprocess.run([sys.executable, "-m", "omnibatch", "status", str(out), "--write"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stdout
    assert "WER " in status.stdout and "over 2 files with a reference" in status.stdout
    summary = json.loads((out / "_run" / "summary.json").read_text())
    stats = json.loads(next((out / "_run" / "stats").glob("transcribe-*.json")).read_text())
    assert summary["tasks"][0]["corpus_wer"] == pytest.approx(stats["corpus_wer"], abs=1e-3)
