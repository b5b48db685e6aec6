"""`omnibatch status DIR --html/--json`: a real run's report, rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mediagen import has_tool, make_audio

from omnibatch.run.html_report import collect, normalize_error, slowest

CHROMIUM = next((p for p in (shutil.which("chromium-headless-shell"), shutil.which("chromium"),
                             "/usr/lib/chromium/chromium-headless-shell") if p and Path(p).exists()), None)


def test_errors_group_by_cause():
    a = normalize_error("/data/x/a1.mp3: file not found", item_id="a1", path="/data/x/a1.mp3")
    b = normalize_error("/data/y/b22.mp3: file not found", item_id="b22", path="/data/y/b22.mp3")
    assert a == b
    assert normalize_error("region 0.0-30.0 s: out of memory") == normalize_error("region 30.0-60.0 s: out of memory")


def test_slowest_files_by_processing_time_then_old_rows_by_media():
    rows = [{"id": "long-but-quick", "duration_s": 600.0, "processing_s": 2.0},
            {"id": "short-but-slow", "duration_s": 5.0, "processing_s": 40.0},
            {"id": "old-long", "duration_s": 900.0, "processing_s": None},  # a part from before the column
            {"id": "old-short", "duration_s": 3.0}]
    assert [r["id"] for r in slowest(rows)] == ["short-but-slow", "long-but-quick", "old-long", "old-short"]
    assert [r["id"] for r in slowest(rows, 1)] == ["short-but-slow"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    if not has_tool("ffmpeg"):
        pytest.skip("needs ffmpeg")
    root = tmp_path_factory.mktemp("report")
    media = root / "in"
    media.mkdir()
    for i in range(3):
        make_audio(media / f"tone{i}.wav", 1.0 + i)
    (media / "broken.wav").write_bytes(b"RIFF not really a wav file at all" * 10)
    (media / "broken2.wav").write_bytes(b"RIFF another broken one" * 10)
    out = root / "out"
    done = subprocess.run([sys.executable, "-m", "omnibatch", "transcribe", str(media), "--out", str(out),
                           "--engine", "transformers", "--max-new-tokens", "4", "--formats", "parquet",
                           "--workers", "0", "--no-word-timestamps"], capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    return out


def test_status_json(run_folder):
    done = subprocess.run([sys.executable, "-m", "omnibatch", "status", str(run_folder), "--json"],
                          capture_output=True, text=True, timeout=120)
    data = json.loads(done.stdout)
    task = data["tasks"][0]
    assert task["ok"] == 3 and task["error"] == 2
    report = data["report"][0]
    assert report["causes"][0]["count"] == 2  # both broken files fail for the same reason
    slow = report["slowest"]
    assert len(slow) == 5 and all(f["processing_s"] is not None and f["processing_s"] >= 0 for f in slow)
    taken = [f["processing_s"] for f in slow]
    assert taken == sorted(taken, reverse=True)
    # The rows agree with what the report read: every file row has its processing time.
    import pyarrow.parquet as pq

    table = pq.read_table(run_folder / "transcribe")
    assert table.schema.field("processing_s").type == "double"
    assert sorted(table.column("processing_s").to_pylist(), reverse=True) == taken
    assert sum(p["media_s"] for p in report["points"]) == pytest.approx(6.0, abs=0.2)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium-headless-shell "
                    "(scripts/bootstrap.sh --test does)")
def test_html_report_renders_in_chromium(run_folder, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements/cpu-lock.txt)")
    page_file = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "omnibatch", "status", str(run_folder), "--html", str(page_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # all done, two items failed
    text = page_file.read_text()
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        assert page.inner_text("#transcribe-ok") == "3" and page.inner_text("#transcribe-failed") == "2"
        assert page.inner_text("#transcribe-shards-done") == "1/1"
        assert page.inner_text("#exit-code") == "1"
        curve = page.locator("#throughput polyline")
        assert curve.count() == 1 and curve.first.is_visible()
        box = page.locator("#throughput").bounding_box()
        assert box["width"] > 300 and box["height"] > 150  # the plot is drawn at its size
        cause = page.locator("#transcribe-error-causes rect.bar")
        assert cause.count() == 1 and cause.first.get_attribute("data-count") == "2"
        assert page.locator("tr.slowest").count() == 5
        took = [float(t.removesuffix(" s")) for t in page.locator("tr.slowest td.processing").all_inner_texts()]
        assert took == sorted(took, reverse=True) and all(t >= 0 for t in took)
        assert "Slowest files" in page.inner_text("body")
        browser.close()
    assert all(u.startswith("file:") for u in requests)  # nothing fetched from anywhere


def test_parts_written_before_processing_s_fall_back_to_longest(run_folder, tmp_path):
    """A run folder whose parts predate the column: the report lists the longest files instead."""
    import pyarrow.parquet as pq

    old = tmp_path / "old"
    shutil.copytree(run_folder, old)
    for part in (old / "transcribe").glob("part-*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["processing_s"]), part)  # the schema's metadata goes with it
    slow = collect(old).tasks[0].slowest
    assert [f["processing_s"] for f in slow] == [None] * 5
    assert slow[0]["id"].startswith("tone2") and slow[0]["duration_s"] == pytest.approx(3.0, abs=0.1)
