"""`omnibatch status DIR --html FILE` / `--json`: a run report to look at, from the run folder alone.

What it reads beyond `omnibatch.run.status`:

- throughput over time: each part of a task's table, by its modification time
  (when it was committed) and the media seconds of the ok rows in it, so the
  curve of media hours done against wall time is the run's real pace, per shard;
- errors grouped by cause: the error rows' `error_stage` and their message with
  file names, paths and numbers taken out;
- the slowest files: by each row's `processing_s` (wall seconds from the file's
  probe to its row being finished); rows of parts written before that column
  existed have none and follow, longest media first.

The page is one self-contained HTML file: the plots are inline SVG drawn here,
with no script and nothing fetched from anywhere.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template

from omnibatch.config import TASKS, RunConfig
from omnibatch.run.rundir import RunDir
from omnibatch.run.status import RunStatus, read_status

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "report.html"
SLOWEST = 10


@dataclass
class PartPoint:
    shard: int
    at: float  # epoch seconds: when the part was committed
    media_s: float  # ok rows' media in the part
    rows: int


@dataclass
class ErrorCause:
    stage: str
    message: str  # normalized
    count: int
    example_id: str
    example_error: str


@dataclass
class TaskReport:
    task: str
    started: float | None = None  # the first attempt's start: where the throughput curve begins
    points: list[PartPoint] = field(default_factory=list)
    causes: list[ErrorCause] = field(default_factory=list)
    slowest: list[dict] = field(default_factory=list)  # id, path, duration_s, processing_s, status


@dataclass
class Report:
    status: RunStatus
    tasks: list[TaskReport]
    written: float

    def as_dict(self) -> dict:
        return {"written": self.written, "exit_code": self.status.exit_code(), **asdict(self.status),
                "report": [asdict(t) for t in self.tasks]}


_PATHLIKE = re.compile(r"(?:file:)?/[^\s:'\"()]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalize_error(message: str, *, item_id: str = "", path: str = "") -> str:
    """An error message with what differs between files taken out, so equal causes group together."""
    text = message or ""
    for name in sorted({path, Path(path).name if path else "", item_id} - {""}, key=len, reverse=True):
        text = text.replace(name, "<file>")
    text = _PATHLIKE.sub("<path>", text)
    text = _QUOTED.sub("'…'", text)
    text = _NUMBER.sub("N", text)
    return re.sub(r"\s+", " ", text).strip()[:300]


def collect(root: Path) -> Report:
    status = read_status(root)
    rundir = RunDir(Path(root))
    reports = []
    for t in status.tasks:
        config = rundir.read_config(t.task)
        reports.append(task_report(rundir, config) if config else TaskReport(t.task))
    return Report(status, reports, time.time())


def task_report(rundir: RunDir, config: RunConfig) -> TaskReport:
    import pyarrow.parquet as pq

    from omnibatch.output.parquet import part_files, parts_of_run

    from omnibatch.run.attempt import read_attempts

    report = TaskReport(config.task)
    starts = [a.started for i in range(config.num_shards)
              for a in read_attempts(rundir.attempts_path(config.task, config.with_shard(i, config.num_shards)
                                                          .shard_label))]
    report.started = min(starts) if starts else None
    rows: dict[str, dict] = {}
    for part in parts_of_run(part_files(rundir.table_dir(config.task)), config.fingerprint()):
        names = pq.read_schema(part).names
        wanted = ["id", "path", "status", "error", "duration_s"] + [
            c for c in ("error_stage", "processing_s") if c in names]
        table = pq.read_table(part, columns=wanted).to_pylist()
        media = sum(r["duration_s"] or 0.0 for r in table if r["status"] == "ok")
        shard = int(part.name.split("-")[1])
        report.points.append(PartPoint(shard, part.stat().st_mtime, media, len(table)))
        for r in table:
            rows[r["id"]] = r
    report.points.sort(key=lambda p: p.at)
    groups: dict[tuple[str, str], ErrorCause] = {}
    for r in rows.values():
        if r["status"] != "error":
            continue
        stage = r.get("error_stage") or "unknown"
        key = (stage, normalize_error(r["error"] or "", item_id=r["id"], path=r["path"] or ""))
        if key in groups:
            groups[key].count += 1
        else:
            groups[key] = ErrorCause(stage, key[1], 1, r["id"], r["error"] or "")
    report.causes = sorted(groups.values(), key=lambda c: -c.count)
    report.slowest = [{"id": r["id"], "path": r["path"], "duration_s": r["duration_s"],
                       "processing_s": r.get("processing_s"), "status": r["status"]}
                      for r in slowest(rows.values())]
    return report


def slowest(rows, n: int = SLOWEST) -> list[dict]:
    """The `n` rows that took longest (`processing_s`); rows without one (parts written before the
    column existed) after them, longest media first, since a file's time grows with its media."""
    timed = sorted((r for r in rows if r.get("processing_s") is not None), key=lambda r: -r["processing_s"])
    untimed = sorted((r for r in rows if r.get("processing_s") is None), key=lambda r: -(r["duration_s"] or 0.0))
    return (timed + untimed)[:n]


# -- SVG ------------------------------------------------------------------------------------

_COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]
_STATE_COLORS = {"done": "#16a34a", "running": "#2563eb", "requeued": "#0891b2", "stopped": "#ea580c",
                 "failed": "#dc2626", "pending": "#9ca3af"}


def throughput_svg(points: list[PartPoint], *, started: float | None = None, width: int = 640,
                   height: int = 260) -> str:
    """Media hours done against wall time since the run started: the whole run and each shard."""
    if not points:
        return '<p class="empty">No rows committed yet.</p>'
    t0 = min([p.at for p in points] + ([started] if started else []))
    span = max(max(p.at for p in points) - t0, 1.0)
    total = sum(p.media_s for p in points) / 3600 or 1e-9
    left, bottom, top, right = 56, 36, 12, 12
    w, h = width - left - right, height - top - bottom

    def xy(t: float, hours: float) -> str:
        return f"{left + w * (t - t0) / span:.1f},{top + h - h * hours / total:.1f}"

    series: dict[str, list[PartPoint]] = {"all shards": points}
    shards = sorted({p.shard for p in points})
    if len(shards) > 1:
        for s in shards[:len(_COLORS) - 1]:
            series[f"shard {s}"] = [p for p in points if p.shard == s]
    lines, legend = [], []
    for k, (name, pts) in enumerate(series.items()):
        done, coords = 0.0, [xy(t0, 0.0)]
        for p in pts:
            done += p.media_s / 3600
            coords.append(xy(p.at, done))
        color = _COLORS[k % len(_COLORS)]
        lines.append(f'<polyline class="series" data-series="{html.escape(name)}" fill="none" stroke="{color}" '
                     f'stroke-width="{2.5 if k == 0 else 1.5}" points="{" ".join(coords)}"/>')
        legend.append(f'<text x="{left + 8}" y="{top + 14 + 14 * k}" fill="{color}" font-size="12">'
                      f'{html.escape(name)}</text>')
    axes = (f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#374151"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#374151"/>'
            f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle" font-size="12">wall time '
            f'(0 to {_clock(span)} after the first attempt started)</text>'
            f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11">{total:.2f} h</text>'
            f'<text x="{left - 6}" y="{top + h}" text-anchor="end" font-size="11">0</text>'
            f'<text transform="translate(14,{top + h / 2}) rotate(-90)" text-anchor="middle" font-size="12">'
            'media hours done</text>')
    return (f'<svg id="throughput" role="img" aria-label="media hours done over time" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'{axes}{"".join(lines)}{"".join(legend)}</svg>')


def bars_svg(svg_id: str, values: list[tuple[str, int, str]], *, width: int = 640) -> str:
    """Horizontal bars: (label, count, color)."""
    if not values:
        return '<p class="empty">None.</p>'
    row, label_w = 22, 220
    height = row * len(values) + 8
    most = max(v for _, v, _ in values) or 1
    out = []
    for k, (label, count, color) in enumerate(values):
        y = 4 + k * row
        bar = (width - label_w - 60) * count / most
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
                   f'{html.escape(label[:40])}</text>'
                   f'<rect class="bar" data-label="{html.escape(label)}" data-count="{count}" x="{label_w}" '
                   f'y="{y + 2}" width="{max(bar, 1):.1f}" height="{row - 6}" fill="{color}"/>'
                   f'<text x="{label_w + bar + 6:.1f}" y="{y + 14}" font-size="12">{count}</text>')
    return (f'<svg id="{svg_id}" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(out)}</svg>')


# -- the page -------------------------------------------------------------------------------

def render_html(report: Report) -> str:
    sections = [_task_section(t, r) for t, r in zip(report.status.tasks, report.tasks, strict=True)]
    return Template(TEMPLATE.read_text()).substitute(
        root=html.escape(report.status.root), written=html.escape(time.ctime(report.written)),
        exit_code=report.status.exit_code(), sections="\n".join(sections))


def _task_section(t, r: TaskReport) -> str:
    total = f" of {t.items_total}" if t.items_total is not None else ""
    rate = f"{t.media_s / t.elapsed_s:.1f}x realtime" if t.elapsed_s and t.media_s else "n/a"
    shard_bars = [(s, t.count(s), _STATE_COLORS[s]) for s in _STATE_COLORS if t.count(s)]
    stage_bars = [(f"{c.stage}: {c.message}", c.count, "#dc2626") for c in r.causes]
    causes = "".join(
        f'<tr class="cause"><td>{html.escape(c.stage)}</td><td>{c.count}</td><td>{html.escape(c.message)}</td>'
        f'<td><code>{html.escape(c.example_id)}</code>: {html.escape(c.example_error[:300])}</td></tr>'
        for c in r.causes)
    slow = "".join(
        f'<tr class="slowest"><td><code>{html.escape(str(f["id"]))}</code></td>'
        f'<td class="processing">{_took(f["processing_s"])}</td>'
        f'<td>{(f["duration_s"] or 0) / 60:.1f} min</td><td>{html.escape(str(f["status"]))}</td>'
        f'<td>{html.escape(str(f["path"] or ""))}</td></tr>' for f in r.slowest)
    untimed = sum(f["processing_s"] is None for f in r.slowest)
    note = ("Wall time from each file's probe to its row being finished (it includes waiting for the "
            "engine beside the other files in flight)."
            + (f" {untimed} of them come from parts written before rows recorded it: those follow, "
               "longest media first." if untimed else ""))
    shard_rows = "".join(
        f'<tr class="shard"><td>{html.escape(s.label)}</td><td class="state-{s.state}">{s.state}</td>'
        f'<td>{s.attempts}</td><td>{html.escape(s.detail or "")}</td></tr>' for s in t.shards)
    return f"""
<section class="task" id="task-{html.escape(t.task)}">
<h2>{html.escape(t.task)}</h2>
<div class="cards">
  <div class="card"><b id="{t.task}-shards-done">{t.count("done")}/{t.num_shards}</b> shards done</div>
  <div class="card"><b id="{t.task}-items">{t.ok + t.error}{total}</b> items written</div>
  <div class="card"><b id="{t.task}-ok">{t.ok}</b> ok, <b id="{t.task}-failed">{t.error}</b> failed</div>
  <div class="card"><b id="{t.task}-media-hours">{t.media_s / 3600:.2f}</b> media hours done</div>
  <div class="card"><b>{rate}</b> over {_clock(t.elapsed_s)}</div>
</div>
<h3>Throughput over time</h3>
{throughput_svg(r.points, started=r.started)}
<h3>Shards</h3>
{bars_svg(f"{t.task}-shard-states", shard_bars)}
<table><tr><th>shard</th><th>state</th><th>attempts</th><th>detail</th></tr>{shard_rows}</table>
<h3>Errors by cause</h3>
{bars_svg(f"{t.task}-error-causes", stage_bars)}
<table><tr><th>stage</th><th>items</th><th>cause</th><th>example</th></tr>{causes}</table>
<h3>Slowest files</h3>
<p class="note">{note}</p>
<table><tr><th>id</th><th>took</th><th>media</th><th>status</th><th>path</th></tr>{slow}</table>
</section>"""


def write_html(report: Report, path: Path) -> Path:
    from omnibatch.run.rundir import write_text_atomic

    write_text_atomic(Path(path), render_html(report))
    return Path(path)


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=1, default=str)


def _took(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f} s" if seconds < 60 else _clock(seconds)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


__all__ = ["TASKS", "Report", "collect", "render_html", "report_json", "write_html", "normalize_error"]
