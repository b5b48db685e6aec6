"""Feed benchmark: does the pipeline keep the engine busy, at a CPU cost near decoding's own?

    .venv/bin/python benchmarks/feed.py               # full: 4 x 10 min, 10 min and 3 h MP3s (~2 min)
    .venv/bin/python benchmarks/feed.py --quick       # smoke run, short files (under a minute)
    .venv/bin/python benchmarks/feed.py --whisper     # also the real whisper engine against faster-whisper

All figures are taken against baselines measured in the same run (the machine is shared):
- limit: CPU per audio second of bare ffmpeg decoding (16 kHz mono f32le) plus Silero VAD
  over the decoded samples; limit capacity = audio s / (decode CPU + VAD CPU);
- feed capacity: audio s per CPU s of the pipeline's decode workers and their ffmpeg
  children (`run_shard` with an engine that costs nothing), and of the decode stage
  alone (`omnibatch.pipeline.stream.stream_speech_chunks`); target >= 0.8 of the limit;
- engine-bound: a simulated engine at 0.5x the feed's capacity: busy fraction from the
  first submit to the last result, target >= 0.95; requests in flight against its bound;
- feed-bound: the same engine at 5x: pipeline audio s per wall s, target >= 0.9 x feed
  capacity x workers;
- memory: peak RSS of the whole process tree on a 10-minute and a 3-hour MP3, target
  3 h <= 1.5 x 10 min; and the ffmpeg (and ffprobe) processes each file costs;
- --whisper: the whole pipeline with the whisper engine against faster-whisper's
  `BatchedInferencePipeline` on one recording, by wall time, target >= 1.0x.
Writes benchmarks/results/feed.json (feed-quick.json with --quick) and a Markdown table
beside it. See benchmarks/README.md, "Feed".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from longform import TreePeak, machine  # noqa: E402
from longform_media import duration_of, long_recording, looped, run  # noqa: E402
from results_io import write_results  # noqa: E402

LANGUAGE = "en"
TARGETS = {"feed_to_limit": 0.8, "busy_fraction": 0.95, "throughput_to_feed": 0.9, "rss_long_to_short": 1.5,
           "whisper_speed_to_peer": 1.0}
SLOW, FAST = 0.5, 5.0  # the simulated engine's rate, in multiples of feed capacity x workers
FREE_RATE = 1e9  # an engine that costs nothing: the feed-capacity run


# --- media -------------------------------------------------------------------------

def cut(src: Path, start_s: float, seconds: float, dst: Path) -> Path:
    """`seconds` of `src` from `start_s`, MP3 frames copied (no re-encoding)."""
    if not dst.is_file():
        tmp = dst.with_suffix(".tmp" + dst.suffix)
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{start_s:.3f}", "-i", str(src),
             "-t", f"{seconds:.3f}", "-c", "copy", str(tmp)])
        tmp.rename(dst)
    return dst


def prepare_media(cache: Path, quick: bool) -> dict:
    """An espeak-ng reading of licence text (~10 min; 77 s with --quick), looped to the lengths needed."""
    rec = long_recording(cache, "espeak", max_words=200 if quick else 1700, min_seconds=0.0)
    short_s, long_s, set_s = (60.0, 300.0, 60.0) if quick else (600.0, 10800.0, 600.0)
    folder = rec.path.parent
    short = looped(rec.path, short_s, folder / f"loop-{int(short_s)}s.mp3")
    long_ = looped(rec.path, long_s, folder / f"loop-{int(long_s)}s.mp3")
    source = looped(rec.path, 4 * set_s, folder / f"loop-{int(4 * set_s)}s.mp3")
    # Four different stretches of the loop, so the files' chunk plans differ.
    throughput = [cut(source, k * set_s, set_s, folder / f"feed-set-{int(set_s)}s-{k}.mp3") for k in range(4)]
    files = [rec.path, short, long_, *throughput]
    durations = {str(f): round(duration_of(f), 3) for f in files}
    label = (lambda s: f"{s / 60:g} min" if s < 3600 else f"{s / 3600:g} h")
    return {"recording": rec, "short": (label(short_s), short), "long": (label(long_s), long_),
            "throughput": throughput, "set_label": f"4 x {label(set_s)}", "durations": durations}


# --- running measurements ----------------------------------------------------------

class FfmpegCounter:
    """A folder with `ffmpeg` and `ffprobe` shims put first on PATH for the pipeline's process only:
    each logs its arguments to a file and execs the real program (same process, same CPU books).
    omnibatch.media.ffmpeg runs both by name unless OMNIBATCH_FFMPEG/OMNIBATCH_FFPROBE say otherwise."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("ffmpeg", "ffprobe"):
            real = shutil.which(name)
            if real is None:
                raise SystemExit(f"{name} is not installed")
            shim = folder / name
            shim.write_text(f'#!/bin/sh\nprintf "%s\\t%s\\n" {name} "$*" >> "$FEED_FFMPEG_LOG"\n'
                            f'exec {real} "$@"\n')
            shim.chmod(0o755)

    def env(self, log: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("OMNIBATCH_FFMPEG", "OMNIBATCH_FFPROBE")}
        env["PATH"] = f"{self.folder}{os.pathsep}{env.get('PATH', '')}"
        env["FEED_FFMPEG_LOG"] = str(log)
        return env

    @staticmethod
    def count(log: Path, files: list[str]) -> dict:
        """Processes started per input file, by program; calls naming none of the files are 'other'."""
        per = {str(Path(f).resolve()): {"ffmpeg": 0, "ffprobe": 0} for f in files}
        other = {"ffmpeg": 0, "ffprobe": 0}
        lines = log.read_text().splitlines() if log.is_file() else []
        for line in lines:
            prog, _, args = line.partition("\t")
            owner = next((f for f in per if f"file:{f}" in args or f" {f}" in f" {args}"), None)
            (per[owner] if owner else other)[prog] = (per[owner] if owner else other).get(prog, 0) + 1
        n = max(len(per), 1)
        return {"ffmpeg_per_file": round(sum(p["ffmpeg"] for p in per.values()) / n, 2),
                "ffprobe_per_file": round(sum(p["ffprobe"] for p in per.values()) / n, 2),
                "per_file": {Path(f).name: p for f, p in per.items()}, "other": other}


def measure(task: str, env: dict[str, str] | None = None, **kwargs) -> dict:
    """Run one task of feed_measure.py in a fresh process: its JSON, plus the tree's peak RSS, its CPU
    (the process and every descendant it reaped, from this process's children's usage) and load."""
    load_before = os.getloadavg()[0]
    cmd = [sys.executable, str(HERE / "feed_measure.py"), task, json.dumps(kwargs)]
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreePeak(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    sampler.done.set()
    sampler.join()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"feed_measure.py {task} failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - t0, 2)
    tree_cpu = kids.ru_utime + kids.ru_stime - kids_before.ru_utime - kids_before.ru_stime
    result["tree_cpu_s"] = round(tree_cpu, 2)
    result["tree_peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# --- the parts ---------------------------------------------------------------------

def limit(files: list[Path]) -> dict:
    r = measure("limit", files=[str(f) for f in files])
    per = {row["file"]: row for row in r["files"]}
    return {"per_file": per, "vad_block_s": r["vad_block_s"], "load_1min": r["load_1min"]}


def limit_of(lim: dict, files: list[Path]) -> dict:
    rows = [lim["per_file"][str(f)] for f in files]
    audio = sum(x["audio_s"] for x in rows)
    dec, vad = sum(x["decode_cpu_s"] for x in rows), sum(x["vad_cpu_s"] for x in rows)
    return {"audio_s": round(audio, 2), "decode_cpu_s": round(dec, 3), "vad_cpu_s": round(vad, 3),
            "decode_audio_s_per_cpu_s": ratio(audio, dec), "vad_audio_s_per_cpu_s": ratio(audio, vad),
            "capacity_audio_s_per_cpu_s": ratio(audio, dec + vad)}


class Pipeline:
    """Runs `run_shard` in fresh processes with ffmpeg counted; one folder per run."""

    def __init__(self, work: Path, runner: str, workers: int, engine: dict, counter: FfmpegCounter) -> None:
        self.work, self.runner, self.workers = work, runner, workers
        self.engine, self.counter = engine, counter
        self.runs = 0

    def __call__(self, files: list[Path], rate: float | None, durations: dict[str, float], *,
                 whisper: bool = False) -> dict:
        self.runs += 1
        tag = f"run{self.runs}"
        log = self.work / f"{tag}-ffmpeg.log"
        engine = {"kind": "whisper"} if whisper else {**self.engine, "kind": "simulated",
                                                       "rate_audio_s_per_s": rate}
        names = [str(f) for f in files]
        r = measure("pipeline", env=self.counter.env(log), files=names, out=str(self.work / tag),
                    workers=self.workers, runner=self.runner, engine=engine,
                    language=LANGUAGE if whisper else None, texts=whisper)
        audio = sum(durations[n] for n in names)
        r["audio_s"] = round(audio, 2)
        r["ffmpeg"] = self.counter.count(log, names)
        r["throughput_audio_s_per_wall_s"] = ratio(audio, r["wall_s"])
        r["feed_audio_s_per_cpu_s"] = ratio(audio, r["children_cpu_s"])
        if r["stats"].get("error"):
            raise SystemExit(f"the pipeline failed on some files: {r['stats'].get('failed')}")
        return r


def summary(run_: dict) -> dict:
    """The figures of one pipeline run that the report shows (the rest stays in `runs`)."""
    e = run_.get("engine") or {}
    return {
        "audio_s": run_["audio_s"], "wall_s": run_["wall_s"], "process_wall_s": run_["process_wall_s"],
        "throughput_audio_s_per_wall_s": run_["throughput_audio_s_per_wall_s"],
        "decode_cpu_s": run_["children_cpu_s"], "main_cpu_s": run_["main_cpu_s"],
        "tree_cpu_s": run_["tree_cpu_s"],
        "feed_audio_s_per_cpu_s": run_["feed_audio_s_per_cpu_s"],
        # With the scheduler's own CPU too (what counts if decoding ever runs in the main process).
        "all_audio_s_per_cpu_s": ratio(run_["audio_s"], run_["children_cpu_s"] + run_["main_cpu_s"]),
        "tree_peak_rss_mb": run_["tree_peak_rss_mb"], "main_peak_rss_mb": run_["peak_rss_mb"],
        "regions": run_["stats"].get("regions"),
        "executor_stats": {k: run_["stats"].get(k) for k in ("engine_busy_fraction", "mean_in_flight",
                                                             "in_flight_bound", "engine_calls")},
        "engine": {k: e.get(k) for k in ("calls", "requests", "audio_s", "busy_s", "span_s", "busy_fraction",
                                         "mean_in_flight", "max_in_flight_seen", "bound")} if e else None,
        "first_submit_after_s": round(e["first_submit"] - run_["t_run_start"], 3)
        if e.get("first_submit") else None,
        # The same busy seconds over the whole run, start-up (workers, first file's VAD) included.
        "busy_fraction_of_run": ratio(e["busy_s"], e["last_result"] - run_["t_run_start"])
        if e.get("last_result") else None,
        "ffmpeg_per_file": run_["ffmpeg"]["ffmpeg_per_file"],
        "ffprobe_per_file": run_["ffmpeg"]["ffprobe_per_file"],
        "load_1min": run_["load_1min"],
    }  # fmt: skip


def whisper_part(rec, pipe: Pipeline, durations: dict[str, float]) -> dict:
    """Whole-pipeline wall time, whisper engine against the peer's batched pipeline, same file, same run."""
    from longform import BATCH_SIZE, BEAM_SIZE
    from longform import measure as longform_measure
    from longform_text import word_errors

    print("  whisper: peer ...", flush=True)
    peer = longform_measure("peer", files=[str(rec.path.resolve())], language=LANGUAGE,
                            batch_size=BATCH_SIZE, beam_size=BEAM_SIZE)
    print("  whisper: omnibatch ...", flush=True)
    ours = pipe([rec.path], None, durations, whisper=True)
    ours_text = ours.pop("texts", {}).get(str(rec.path.resolve()), "")
    peer_text = peer.pop("texts", {}).get(str(rec.path.resolve()), "")
    return {
        "file": str(rec.path), "audio_s": durations[str(rec.path)], "reference_words": rec.words,
        "omnibatch": {"process_wall_s": ours["process_wall_s"], "run_shard_wall_s": ours["wall_s"],
                      "tree_cpu_s": ours["tree_cpu_s"], "tree_peak_rss_mb": ours["tree_peak_rss_mb"],
                      "regions": ours["stats"].get("regions"),
                      "ffmpeg_per_file": ours["ffmpeg"]["ffmpeg_per_file"],
                      "wer": word_errors([rec.reference], [ours_text], "whisper").as_dict()},
        "peer": {"process_wall_s": peer["process_wall_s"], "wall_s": peer["wall_s"], "cpu_s": peer["cpu_s"],
                 "tree_peak_rss_mb": peer["tree_peak_rss_mb"], "regions": peer["regions"],
                 "wer": word_errors([rec.reference], [peer_text], "whisper").as_dict()},
        # Process wall times on both sides: model loading, decoding, everything a user waits for.
        "speed_to_peer": ratio(peer["process_wall_s"], ours["process_wall_s"]),
        "target": TARGETS["whisper_speed_to_peer"],
    }  # fmt: skip


def verdict(value: float | None, target: float, at_most: bool = False) -> bool | None:
    if value is None:
        return None
    return value <= target if at_most else value >= target


# --- report ------------------------------------------------------------------------

def markdown(r: dict) -> str:
    m, s = r["machine"], r["settings"]
    lines = [
        (f"Run {r['date']} on {m['cpu']}, {m['cores']} cores ({'quick' if r['quick'] else 'full'} run, "
         f"`{r['command']}`, {r['total_s'] / 60:.1f} min, runner `{s['runner']}`, {s['workers']} decode "
         f"worker(s)). Load average (1 min) {r['load_1min'][0]} at the start, {r['load_1min'][1]} at the end."),
        "",
        "| figure | value | target | met |",
        "| --- | --- | --- | --- |",
    ]

    def row(label, value, target, met):
        mark = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {value} | {target} | {mark} |")

    lim, feed = r["limit"], r["feed"]
    row(f"limit ({r['media']['set']}): ffmpeg decode, audio s per CPU s",
        lim["decode_audio_s_per_cpu_s"], "", None)
    row("limit: Silero VAD alone, audio s per CPU s", lim["vad_audio_s_per_cpu_s"], "", None)
    row("limit capacity: audio s / (decode + VAD CPU)", lim["capacity_audio_s_per_cpu_s"], "", None)
    p = feed["pipeline"]
    row("feed capacity, pipeline (decode workers + ffmpeg), audio s per CPU s",
        p["feed_audio_s_per_cpu_s"], "", None)
    row("  with the main process (scheduler, stitching, Parquet) too", p["all_audio_s_per_cpu_s"], "", None)
    row("feed capacity / limit (pipeline)", feed["pipeline_to_limit"], f">= {TARGETS['feed_to_limit']}",
        feed["pipeline_met"])
    if feed["stream"].get("skipped"):
        row("feed capacity, decode stage alone", "not measured: " + feed["stream"]["skipped"], "", None)
    else:
        row("feed capacity, decode stage alone (stream_speech_chunks), audio s per CPU s",
            feed["stream"]["audio_s_per_cpu_s"], "", None)
        row("feed capacity / limit (decode stage alone)", feed["stream_to_limit"],
            f">= {TARGETS['feed_to_limit']}", feed["stream_met"])
    eb, fb = r["engine_bound"], r["feed_bound"]
    e = eb["run"]["engine"] or {}
    row(f"engine at {SLOW}x feed ({eb['rate_audio_s_per_s']:.1f} audio s/s): busy fraction",
        e.get("busy_fraction"), f">= {TARGETS['busy_fraction']}", eb["met"])
    row("  busy fraction from the start of run_shard (first submit after, s)",
        f"{eb['run']['busy_fraction_of_run']} ({eb['run']['first_submit_after_s']})", "", None)
    row("  requests in flight at each step: mean (bound)", f"{e.get('mean_in_flight')} ({e.get('bound')})",
        "", None)
    f_ = fb["run"]
    row(f"engine at {FAST}x feed ({fb['rate_audio_s_per_s']:.1f} audio s/s): pipeline audio s per wall s",
        f_["throughput_audio_s_per_wall_s"], f">= {TARGETS['throughput_to_feed']} x "
        f"{fb['feed_x_workers']:.1f} = {TARGETS['throughput_to_feed'] * fb['feed_x_workers']:.1f}", fb["met"])
    row("  ratio to feed capacity x workers", fb["throughput_to_feed"], "", None)
    mem = r["memory"]
    for c in mem["cases"]:
        row(f"peak RSS, process tree, {c['case']} MP3 (main process alone), MB",
            f"{c['tree_peak_rss_mb']} ({c['main_peak_rss_mb']})", "", None)
    row("peak RSS, longest / shortest", mem["ratio"], f"<= {TARGETS['rss_long_to_short']}", mem["met"])
    for c in mem["cases"]:
        row(f"processes per file, {c['case']}: ffmpeg (ffprobe)",
            f"{c['ffmpeg_per_file']} ({c['ffprobe_per_file']})", "", None)
    row(f"processes per file, {r['media']['set']}: ffmpeg (ffprobe)",
        f"{p['ffmpeg_per_file']} ({p['ffprobe_per_file']})", "", None)
    w = r.get("whisper")
    if w:
        row(f"whisper engine, {w['audio_s'] / 60:.1f} min: omnibatch / peer speed "
            "(wall, model load included)",
            w["speed_to_peer"], f">= {w['target']}", verdict(w["speed_to_peer"], w["target"]))
        row("  wall s: omnibatch (peer)",
            f"{w['omnibatch']['process_wall_s']} ({w['peer']['process_wall_s']})", "", None)
        row("  WER % (whisper normalizer): omnibatch (peer)",
            f"{w['omnibatch']['wer']['wer']:.2f} ({w['peer']['wer']['wer']:.2f})", "", None)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 x 1 min, 1 and 5 min files")
    parser.add_argument("--whisper", action="store_true", help="also run the whisper engine against "
                        "faster-whisper's batched pipeline on the ~10 min recording (slow)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) - 1)),
                        help="decode workers (default: cores - 1, at most 4)")
    parser.add_argument("--runner", choices=["new", "old"], default="new",
                        help="new: omnibatch.run.executor.run_shard; old: the wave runner, for comparison")
    parser.add_argument("--batch-size", type=int, default=8, help="the simulated engine's batch")
    parser.add_argument("--max-in-flight", type=int, default=32, help="the simulated engine's bound")
    parser.add_argument("--per-call-s", type=float, default=0.005,
                        help="the simulated engine's cost per step")
    parser.add_argument("--cache", type=Path, help="where media is built once (default: "
                        "$OMNIBATCH_CACHE/bench or ~/.cache/omnibatch/bench)")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/feed.json, "
                        "feed-quick.json with --quick); the Markdown table goes beside it (.md)")
    args = parser.parse_args(argv)

    if args.runner == "new":
        from feed_measure import load_run_shard

        load_run_shard("new")  # fail before building anything if the scheduler is not there yet
    from omnibatch.models.whisper_assets import cache_root

    cache = args.cache or cache_root() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    out = args.out or HERE / "results" / ("feed-quick.json" if args.quick else "feed.json")
    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)

    print("preparing media ...", flush=True)
    media = prepare_media(cache, args.quick)
    durations = media["durations"]
    (short_label, short), (long_label, long_) = media["short"], media["long"]
    throughput = media["throughput"]
    engine = {"per_call_s": args.per_call_s, "batch_size": args.batch_size,
              "max_in_flight": args.max_in_flight}

    with tempfile.TemporaryDirectory(prefix="omnibatch-feed-") as tmp:
        work = Path(tmp)
        pipe = Pipeline(work, args.runner, args.workers, engine, FfmpegCounter(work / "shim"))

        print("limit: bare ffmpeg decode, then VAD alone ...", flush=True)
        lim = limit([*throughput, short, long_])
        set_limit = limit_of(lim, throughput)

        print(f"feed capacity: {media['set_label']} with an engine that costs nothing ...", flush=True)
        free = pipe(throughput, FREE_RATE, durations)
        feed_cap = free["feed_audio_s_per_cpu_s"]
        stream = measure("stream", files=[str(f) for f in throughput])
        if not stream.get("skipped"):
            s_audio = sum(x["audio_s"] for x in stream["files"])
            stream["audio_s_per_cpu_s"] = ratio(s_audio, sum(x["cpu_s"] for x in stream["files"]))
        feed_x_workers = feed_cap * args.workers

        print(f"engine-bound: engine at {SLOW}x feed capacity ...", flush=True)
        slow = pipe(throughput, SLOW * feed_x_workers, durations)
        print(f"feed-bound: engine at {FAST}x feed capacity ...", flush=True)
        fast = pipe(throughput, FAST * feed_x_workers, durations)

        cases = []
        for label, f in ((short_label, short), (long_label, long_)):
            print(f"memory: {label} ...", flush=True)
            r = summary(pipe([f], FAST * feed_x_workers, durations))
            r["limit"] = limit_of(lim, [f])
            r["feed_to_limit"] = ratio(r["feed_audio_s_per_cpu_s"], r["limit"]["capacity_audio_s_per_cpu_s"])
            cases.append({"case": label, "file": str(f), **r})

        whisper = None
        if args.whisper:
            print("whisper engine against faster-whisper ...", flush=True)
            whisper = whisper_part(media["recording"], pipe, durations)

    busy = (slow.get("engine") or {}).get("busy_fraction")
    fast_ratio = ratio(fast["throughput_audio_s_per_wall_s"], feed_x_workers)
    pipeline_to_limit = ratio(feed_cap, set_limit["capacity_audio_s_per_cpu_s"])
    stream_to_limit = (None if stream.get("skipped")
                       else ratio(stream["audio_s_per_cpu_s"], set_limit["capacity_audio_s_per_cpu_s"]))
    rss_ratio = ratio(cases[-1]["tree_peak_rss_mb"], cases[0]["tree_peak_rss_mb"])
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/feed.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "machine": machine(),
        "load_1min": [load_start, round(os.getloadavg()[0], 2)],
        "note": "shared machine: other work may run at the same time; compare ratios, not absolute speeds",
        "settings": {"runner": args.runner, "workers": args.workers, "simulated_engine": engine,
                     "slow_x": SLOW, "fast_x": FAST, "vad_block_s_in_limit": lim["vad_block_s"],
                     "ffmpeg_counting": "PATH shims that log and exec the real ffmpeg/ffprobe"},
        "targets": TARGETS,
        "media": {"recording": str(media["recording"].path), "set": media["set_label"],
                  "throughput_files": [str(f) for f in throughput], "short": str(short), "long": str(long_),
                  "durations_s": durations},
        "limit": {**set_limit, "per_file": lim["per_file"], "load_1min": lim["load_1min"]},
        "feed": {"pipeline": summary(free), "pipeline_to_limit": pipeline_to_limit,
                 "pipeline_met": verdict(pipeline_to_limit, TARGETS["feed_to_limit"]),
                 "stream": stream, "stream_to_limit": stream_to_limit,
                 "stream_met": verdict(stream_to_limit, TARGETS["feed_to_limit"])},
        "engine_bound": {"rate_audio_s_per_s": SLOW * feed_x_workers, "run": summary(slow),
                         "met": verdict(busy, TARGETS["busy_fraction"])},
        "feed_bound": {"rate_audio_s_per_s": FAST * feed_x_workers, "feed_x_workers": feed_x_workers,
                       "run": summary(fast), "throughput_to_feed": fast_ratio,
                       "met": verdict(fast_ratio, TARGETS["throughput_to_feed"])},
        "memory": {"cases": cases, "ratio": rss_ratio,
                   "met": verdict(rss_ratio, TARGETS["rss_long_to_short"], at_most=True)},
        "whisper": whisper,
        "ffmpeg_per_run": {name: run_["ffmpeg"] for name, run_ in
                           (("feed", free), ("engine_bound", slow), ("feed_bound", fast))},
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_results(out, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
