"""`omnibatch plan`: what a run will cost before it starts: files, media hours, engine hours, shards.

`make_plan` is pure arithmetic over the probed durations and a throughput
profile (`omnibatch.run.throughput`: built in per GPU kind, or measured by
`omnibatch.run.calibrate`). `probe_for_plan` gets the durations, cached: in the
run folder's `_run/durations.json` when an --out is given (the same file that
shards are balanced by), else in `~/.cache/omnibatch/plan-durations.json`,
keyed by path, size and modification time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from omnibatch.records import MediaItem
from omnibatch.run.durations import Progress, item_durations, probe_durations
from omnibatch.run.throughput import ThroughputProfile

# Output bytes per media second, rough: transcripts at ~15 characters a second, written as the row's text,
# segments, words (~4x the text) and three subtitle files; captions ~90 tokens per 30 s clip; summaries
# are dominated by their 24 kHz 16-bit WAV (max_words x 0.6 s + 5 s).
OUTPUT_BYTES_PER_S = {"transcribe": 120.0, "caption": 25.0, "summarize": 10.0}
SUMMARY_WAV_BYTES = 48000 * (120 * 0.6 + 5)


@dataclass
class Plan:
    task: str
    engine: str
    gpu: str
    files: int
    unreadable: int  # probed as 0 s (missing or unreadable): each will be an error row
    media_hours: float
    longest_file_s: float
    shards: int
    estimated_engine_hours: float  # summed over shards, each shard's start included: what the GPUs cost
    estimated_wall_hours: float  # the slowest shard, all shards running at once
    realtime_factor: float  # media seconds per wall second, per shard
    startup_s: float
    throughput_source: str
    measured: bool
    output_bytes: int
    deadline_hours: float | None = None
    suggested_shards: int | None = None  # the fewest shards that meet the deadline (None: none can)
    deadline_note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def shard_wall_s(media_s: float, longest_s: float, shards: int, profile: ThroughputProfile) -> float:
    """Wall seconds of the slowest of `shards` shards: a shard holds at least the longest file."""
    per_shard = max(media_s / max(shards, 1), longest_s)
    return profile.shard_seconds(per_shard)


def suggest_shards(media_s: float, longest_s: float, profile: ThroughputProfile, deadline_s: float,
                   most: int = 100_000) -> int | None:
    """The fewest shards whose slowest finishes within `deadline_s`; None when no count can."""
    if shard_wall_s(media_s, longest_s, most, profile) > deadline_s:
        return None
    budget = (deadline_s - profile.startup_s) * profile.realtime_factor  # media seconds one shard may hold
    if budget <= 0:
        return None
    return max(1, min(most, math.ceil(media_s / budget)))


def make_plan(durations: Sequence[float], profile: ThroughputProfile, *, shards: int = 1,
              deadline_hours: float | None = None) -> Plan:
    if shards < 1:
        raise ValueError(f"--shards must be at least 1, got {shards}")
    media_s = float(sum(durations))
    longest = float(max(durations, default=0.0))
    used = min(shards, max(1, sum(1 for d in durations if d > 0)))  # a shard with no files costs nothing
    engine_s = used * profile.startup_s + media_s / profile.realtime_factor
    out_bytes = OUTPUT_BYTES_PER_S.get(profile.task, 50.0) * media_s
    if profile.task == "summarize":
        out_bytes += SUMMARY_WAV_BYTES * len(durations)
    plan = Plan(task=profile.task, engine=profile.engine, gpu=profile.gpu, files=len(durations),
                unreadable=sum(1 for d in durations if d <= 0), media_hours=media_s / 3600,
                longest_file_s=longest, shards=shards, estimated_engine_hours=engine_s / 3600,
                estimated_wall_hours=shard_wall_s(media_s, longest, used, profile) / 3600 if media_s else 0.0,
                realtime_factor=profile.realtime_factor, startup_s=profile.startup_s,
                throughput_source=profile.source, measured=profile.measured, output_bytes=int(out_bytes))
    if deadline_hours is not None:
        if not deadline_hours > 0:
            raise ValueError(f"--deadline must be a positive number of hours, got {deadline_hours}")
        plan.deadline_hours = deadline_hours
        plan.suggested_shards = suggest_shards(media_s, longest, profile, deadline_hours * 3600)
        if plan.suggested_shards is None:
            plan.deadline_note = (f"no array size meets {deadline_hours:g} h: the longest file alone takes "
                                  f"{shard_wall_s(longest, longest, 1, profile) / 3600:.2f} h on one shard")
    return plan


def user_cache() -> Path:
    from omnibatch.models.whisper_assets import cache_root

    return cache_root() / "plan-durations.json"


def probe_for_plan(items: Sequence[MediaItem], out: Path | None, progress: Progress | None = None) -> list[float]:
    """Each item's duration, probed once and cached (see the module doc)."""
    if out is not None:
        return item_durations(items, out, progress=progress)
    cache = user_cache()
    try:
        known = json.loads(cache.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    keys = {str(it.path): _file_key(it.path) for it in items if it.duration_s is None}
    missing = sorted({p for p, k in keys.items() if k not in known})
    if missing:
        for path, seconds in probe_durations(missing, progress).items():
            if seconds > 0:  # an unreadable file is probed again next time
                known[keys[path]] = seconds
        try:
            from omnibatch.run.rundir import write_text_atomic

            write_text_atomic(cache, json.dumps(known, sort_keys=True) + "\n")
        except OSError:
            pass  # a cache only
    return [it.duration_s if it.duration_s is not None else float(known.get(keys[str(it.path)], 0.0))
            for it in items]


def _file_key(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}|missing"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def format_plan(plan: Plan) -> str:
    lines = [
        f"files: {plan.files}" + (f" ({plan.unreadable} unreadable: they will be error rows)" if plan.unreadable
                                   else ""),
        f"media: {plan.media_hours:.2f} h (longest file {plan.longest_file_s / 60:.1f} min)",
        f"engine: {plan.engine} on {plan.gpu.upper() if plan.gpu != 'cpu' else 'this CPU'}, task {plan.task}: "
        f"{plan.realtime_factor:.1f}x realtime per shard, {plan.startup_s:.0f} s to start "
        f"({'measured' if plan.measured else 'built-in estimate'}: {plan.throughput_source})",
        f"estimated engine time: {plan.estimated_engine_hours:.2f} h over {plan.shards} shard(s); the run "
        f"ends in about {plan.estimated_wall_hours:.2f} h with every shard running at once",
        f"estimated output: {_size(plan.output_bytes)}",
    ]
    if plan.deadline_hours is not None:
        lines.append(f"for a {plan.deadline_hours:g} h deadline: " + (
            f"--array {plan.suggested_shards}" if plan.suggested_shards else plan.deadline_note or "no array size"))
    if not plan.measured:
        lines.append("(estimates: run `omnibatch plan --calibrate` on the node that will do the work to "
                     "measure it on your own media)")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
