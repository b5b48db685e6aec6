"""Progress in media seconds: the ETA arithmetic, bars at a terminal, periodic lines elsewhere."""

from __future__ import annotations

import io
import logging

from omnibatch.run.progress import RunProgress, Snapshot, eta_seconds, media_amount, progress_line


def test_eta_from_the_rate_so_far():
    assert eta_seconds(0, 100, 10) is None
    assert eta_seconds(25, 100, 10) == 30  # 2.5 media s per s, 75 left


def test_progress_line_says_files_hours_rate_and_eta():
    line = progress_line("transcribe 0/1", Snapshot(files_done=2, engine_s=1800, chunks_decoded=70, chunks_done=60),
                         files_total=5, media_total_s=7200, elapsed_s=700, engine_elapsed_s=600)
    assert "2/5 files" in line and "0.50/2.00 h" in line and "60/70 chunks" in line
    assert "3.0x realtime" in line and "ETA 30m00s" in line


def test_media_amounts_read_in_the_unit_of_the_larger_figure():
    assert media_amount(14.6) == "15 s"  # three short files are not "0.00 h"
    assert media_amount(252) == "4.2 min"
    assert media_amount(4860) == "1.35 h"
    assert media_amount(30, 7200) == "0.01/2.00 h"  # done and total in one unit
    assert media_amount(0, 45) == "0/45 s"


def test_bars_move_by_media_seconds_within_a_file():
    out = io.StringIO()
    meter = RunProgress("transcribe", 1, 2400.0, interactive=True, stream=out)
    meter.update(Snapshot(decoded_s=300, engine_s=0, chunks_decoded=10))
    meter.update(Snapshot(decoded_s=900, engine_s=600, chunks_decoded=30, chunks_done=20))
    assert meter.bars["engine"].n == 600 and meter.bars["decode"].n == 900  # one 40-minute file, chunk by chunk
    meter.close()
    text = out.getvalue()
    assert "engine" in text and "20/30 chunks" in text


def test_not_a_terminal_writes_periodic_lines(caplog):
    out = io.StringIO()
    meter = RunProgress("transcribe", 3, 100.0, interactive=False, stream=out, log_every_s=0.0)
    with caplog.at_level(logging.INFO, logger="omnibatch.progress"):
        meter.update(Snapshot(files_done=1, engine_s=40, chunks_decoded=4, chunks_done=4))
    meter.close()
    assert "1/3 files" in caplog.text
    assert not meter.bars  # no bars off a terminal


def test_the_media_total_is_estimated_from_the_files_probed_so_far():
    from omnibatch.run.progress import estimated_total

    assert estimated_total(100.0, 0, 0, 0.0, 4) == 100.0  # everything known up front
    assert estimated_total(100.0, 2, 0, 0.0, 4) == 100.0  # nothing probed yet: what is known
    assert estimated_total(100.0, 2, 1, 30.0, 4) == 160.0  # two unknown files at the probed mean
    assert estimated_total(100.0, 2, 4, 170.0, 4) == 170.0  # all probed: exact
