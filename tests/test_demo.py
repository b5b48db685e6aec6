"""`omnibatch demo`: the three jobs on the example media, real words from the bundled Whisper model beside
them, printable text from the random tiny model; and the committed examples/ work from a fresh clone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omnibatch.demo import EXAMPLE_NAMES, SENTENCES, bundled_examples
from omnibatch.manifests import read_inputs
from omnibatch.pipeline.scheduler import printable_generation
from omnibatch.records import Generation, Segment, Word
from omnibatch.text_safety import generated_text

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
ROOT = Path(__file__).resolve().parents[1]
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.mark.slow
def test_demo_shows_real_whisper_words_and_printable_tiny_text(tmp_path):
    media, out = tmp_path / "media", tmp_path / "out"
    result = subprocess.run([OMNIBATCH, "demo", "--out", str(out), "--media", str(media)],
                            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in media.iterdir() if p.suffix != ".jsonl") == sorted(EXAMPLE_NAMES)
    assert "meaningless" in result.stderr and str(out) in result.stderr
    assert "Warning" not in result.stderr  # no library warning leaks (the Talker's repetition penalty)
    # Real words: Whisper base hears espeak-ng's sentences, and the demo prints them.
    heard = {r["id"]: r["text"].lower() for r in pq.read_table(out / "whisper" / "transcribe").to_pylist()}
    assert "light rain expected in the evening" in heard["weather"]
    assert "flour" in heard["recipe"] and "searchable" in heard["welcome"]
    assert "whisper: Tomorrow will be" in result.stdout and "rain expected in the evening" in result.stdout
    for task in ("transcribe", "caption", "summarize"):
        rows = pq.read_table(out / task).to_pylist()
        assert len(rows) == len(EXAMPLE_NAMES) and {r["status"] for r in rows} == {"ok"}, task
    # The random model's text holds no control bytes: not in rows, segments or subtitles, nor printed.
    texts = [r["text"] for r in pq.read_table(out / "transcribe").to_pylist()]
    texts += [r["text"] for r in pq.read_table(out / "segments").to_pylist()]
    texts += [r["caption"] for r in pq.read_table(out / "caption").to_pylist()]
    texts += [c["caption"] for r in pq.read_table(out / "caption").to_pylist() for c in r["clips"]]
    summaries = pq.read_table(out / "summarize").to_pylist()
    texts += [r[k] or "" for r in summaries for k in ("summary", "transcript")]
    texts += [p.read_text() for p in (out / "subtitles").iterdir()]
    assert not [t for t in texts if CONTROL.search(t)]
    assert not CONTROL.search(result.stdout) and not CONTROL.search(result.stderr)
    spoken = pq.read_table(out / "summarize").to_pylist()
    assert all((out / r["audio_path"]).is_file() and r["sample_rate"] == 24000 for r in spoken)


def test_examples_are_committed_small_and_listed_by_the_manifests():
    manifest = bundled_examples()
    assert manifest == ROOT / "examples" / "manifest.jsonl"
    sizes = [(ROOT / "examples" / name).stat().st_size for name in EXAMPLE_NAMES]
    assert sum(sizes) < 500_000, sizes
    said = {json.loads(line)["id"]: json.loads(line)["meta"]["spoken_text"]
            for line in manifest.read_text().splitlines()}
    assert set(said.values()) <= set(SENTENCES.values()) and len(said) == len(EXAMPLE_NAMES)
    # Every example manifest (examples/ and manifests/) names files that exist in a fresh clone.
    manifests = [manifest, ROOT / "examples" / "manifest.csv",
                 *sorted((ROOT / "manifests").glob("example.*"))]
    for path in manifests:
        items = read_inputs([path]).items
        assert items, path
        assert all(Path(i.path).is_file() for i in items), (path, [i.path for i in items])


def test_generated_text_loses_control_bytes_and_keeps_lines():
    assert generated_text("ok\x1b[2J\x00b\tc\r\nd\x85e\x7f") == "ok[2Jb c \nde"
    assert generated_text("plain\nlines, 100%") == "plain\nlines, 100%"
    generation = Generation(request_id="r", text="a\x1ab", reasoning="x\x00y",
                            segments=[Segment(0.0, 1.0, "s\x07t", words=[Word(0.0, 1.0, "w\x1bo")])])
    printable_generation(generation)
    assert (generation.text, generation.reasoning) == ("ab", "xy")
    assert generation.segments[0].text == "st" and generation.segments[0].words[0].text == "wo"
