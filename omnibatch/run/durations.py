"""Media durations for sharding, probed once per run folder: `DIR/_run/durations.json`.

Every shard must compute the same assignment, so every shard must see the same
durations. Probing is not guaranteed to agree across nodes (a file system that
times out on one node, a file replaced mid-run), so the probed values are
published once and then read by everyone: the first shard to finish probing
links its file into place (atomic, and it fails if another got there first);
a shard that loses that race drops its own values and adopts the published
ones. `omnibatch submit` and `--parallel` probe before any shard starts, so
shards normally just read the file.

The file is keyed by the set of paths it covers; a run over a changed manifest
reprobes only the paths it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omnibatch.records import MediaItem

log = logging.getLogger("omnibatch")
CACHE_NAME = "durations.json"
_PROBE_THREADS = 8  # ffprobe runs as a process: threads overlap its I/O and start-up


def cache_path(out_dir: Path) -> Path:
    return Path(out_dir) / "_run" / CACHE_NAME


Progress = Callable[[int, int], None]  # (files probed so far, files to probe)


def item_durations(items: Sequence[MediaItem], out_dir: Path, *, cache: Path | None = None,
                   progress: Progress | None = None) -> list[float]:
    """Each item's duration: the manifest's when given, else the probed one (0 when unreadable).

    Probed values are published in `cache` (default: the run folder's `_run/durations.json`).
    """
    # An item with an origin (a remote object, a dataset cell) is not probed here: it weighs 0 until decoded.
    unknown = sorted({str(it.path) for it in items if it.duration_s is None and it.origin is None})
    probed: dict[str, float] = {}
    if unknown:
        probed = _published_durations(unknown, cache or cache_path(out_dir), progress)
    return [it.duration_s if it.duration_s is not None else probed.get(str(it.path), 0.0) for it in items]


def cached_durations(out_dir: Path) -> dict[str, float]:
    """The run folder's published durations, read only (empty when there are none)."""
    found = _read(cache_path(out_dir))
    return {p: float(v) for p, v in found["durations"].items()} if found else {}


def probe_durations(paths: Sequence[str], progress: Progress | None = None) -> dict[str, float]:
    """ffprobe each path; a missing or unreadable file counts 0 (its error row comes later)."""
    from omnibatch.media import probe

    def one(path: str) -> float:
        try:
            return float(probe(path).duration_s)
        except Exception:  # noqa: BLE001 - any failure just means "weighs nothing" here
            return 0.0

    found: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=_PROBE_THREADS) as pool:
        for path, seconds in zip(paths, pool.map(one, paths), strict=True):
            found[path] = seconds
            if progress is not None:
                progress(len(found), len(paths))
    return found


def _digest(paths: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("durations"), dict) else None


def _published_durations(paths: list[str], cache: Path, progress: Progress | None = None) -> dict[str, float]:
    digest = _digest(paths)
    found = _read(cache)
    if found and found.get("paths_digest") == digest:
        return {p: float(found["durations"][p]) for p in paths}
    known = {p: float(v) for p, v in (found or {}).get("durations", {}).items()}
    missing = [p for p in paths if p not in known]
    log.info("probing the duration of %d files to balance shards (cached in %s)", len(missing), cache)
    known.update(probe_durations(missing, progress))
    mine = {p: known[p] for p in paths}
    blob = json.dumps({"paths_digest": digest, "durations": mine}, indent=0, sort_keys=True) + "\n"
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    tmp.write_text(blob)
    try:
        if found is None and not cache.exists():
            os.link(tmp, cache)  # first writer wins; fails if another shard published first
        else:
            os.replace(tmp, cache)  # a cache for another manifest (or a damaged one): supersede it
    except FileExistsError:
        theirs = _read(cache)
        if theirs and theirs.get("paths_digest") == digest:
            return {p: float(theirs["durations"][p]) for p in paths}
    finally:
        tmp.unlink(missing_ok=True)
    return mine
