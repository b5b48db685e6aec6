"""`omnibatch status DIR --html/--json`: a real run's report, rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mediagen import has_tool, make_audio

from omnibatch.run.html_report import normalize_error

CHROMIUM = next((p for p in (shutil.which("chromium-headless-shell"), shutil.which("chromium"),
                             "/usr/lib/chromium/chromium-headless-shell") if p and Path(p).exists()), None)


def test_errors_group_by_cause():
    a = normalize_error("/data/x/a1.mp3: file not found", item_id="a1", path="/data/x/a1.mp3")
    b = normalize_error("/data/y/b22.mp3: file not found", item_id="b22", path="/data/y/b22.mp3")
    assert a == b
    assert normalize_error("region 0.0-30.0 s: out of memory") == normalize_error("region 30.0-60.0 s: out of memory")


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
    assert report["longest"][0]["duration_s"] == pytest.approx(3.0, abs=0.1)
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
        assert page.locator("tr.longest").count() == 5
        assert "tone2" in page.locator("tr.longest").first.inner_text()
        browser.close()
    assert all(u.startswith("file:") for u in requests)  # nothing fetched from anywhere
