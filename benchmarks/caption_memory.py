"""Peak memory of caption's decode path on a 5-minute and a 30-minute video: it must not grow with length.

    .venv/bin/python benchmarks/caption_memory.py                 # 5 and 30 minutes, 640x360 at 10 fps
    .venv/bin/python benchmarks/caption_memory.py --minutes 1 3   # a quick look

Each case runs in a fresh process (so getrusage's peak RSS is that case's alone)
and does what a decode worker does for one file: probe, then the task's one pass
(`decode`: the audio track streamed once for VAD, the online clip cuts and each
clip's sound; frames sampled within each clip only), dropping each request once
measured, as a worker hands it off.

Peak RSS is the Python process's own (getrusage), and its sum with the ffmpeg
decoders it runs (sampled every 20 ms).

A second mode, `window`, also keeps the last `--wave-seconds` of decoded clips, as
the scheduler holds up to the task's `hold_seconds` (300 s for caption) ahead of
the engine: what the main process holds for video, bounded by that window.

Writes JSON (default benchmarks/results/caption_memory.json). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_video(path: Path, minutes: float, size: str, fps: float) -> Path:
    """testsrc2 picture and a 220 Hz tone, H.264 + AAC in MP4: a fast encode of any length."""
    if path.exists():
        return path
    seconds = minutes * 60
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=16000:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "32k", "-ac", "1", "-shortest", str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(path)
    return path


# -- one case, in its own process ----------------------------------------------------------------


def run_case(path: str, mode: str, backend: str, clip_seconds: float, wave_seconds: float,
             options: dict) -> dict:
    from omnibatch.config import RunConfig
    from omnibatch.pipeline.caption import CaptionTask
    from omnibatch.records import MediaItem

    config = RunConfig(task="caption", inputs=[path], out="/nonexistent", clip_seconds=clip_seconds, **options)
    task = CaptionTask(config, variant="instruct", frame_backend=backend)
    item = MediaItem(id="bench", path=Path(path).resolve(), source="benchmark")
    baseline = rss_mb()
    started = time.perf_counter()
    clips = frames = 0
    largest = held_peak = 0
    from omnibatch.pipeline.decode_pool import Decoded, Failed, decode_events

    held: list[tuple[float, int]] = []  # (clip seconds, bytes) of requests the scheduler would hold
    planned = None
    for event in decode_events(task, 0, item):
        if isinstance(event, Failed):
            raise RuntimeError(event.error)
        if not isinstance(event, Decoded):
            continue
        planned = planned or time.perf_counter()  # the first clip: the one pass has begun
        request, chunk = event.region.request, event.region.chunk
        size = _bytes(request)
        largest = max(largest, size)
        clips += 1
        frames += 0 if request.video is None else request.video.shape[0]
        if mode == "window":  # the scheduler holds up to hold_seconds of decoded clips ahead of the engine
            held.append((chunk.duration_s, size))
            while sum(s for s, _ in held) > wave_seconds:
                held.pop(0)
            held_peak = max(held_peak, sum(b for _, b in held))
        del request, event
    done = time.perf_counter()
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clips": clips,
        "frames": frames,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(me.ru_maxrss / 1024, 1),  # Linux reports KiB
        "largest_request_mb": round(largest / 2**20, 2),
        "held_requests_peak_mb": round(held_peak / 2**20, 1) if mode == "window" else None,
        "plan_s": round((planned or done) - started, 2),
        "load_s": round(done - (planned or started), 2),
    }


def _bytes(request) -> int:
    return sum(a.nbytes for a in (request.audio, request.video) if a is not None)


class TreePeak(threading.Thread):
    """Samples the summed RSS of a process and its ffmpeg/ffprobe children every 20 ms.

    Only children that already run ffmpeg count: one that is vforked but not yet exec'd shares
    the parent's memory and would count it twice."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    if p is root or p.name() in ("ffmpeg", "ffprobe"):
                        total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._done.wait(0.02)


# -- the driver ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30])
    parser.add_argument("--size", default="640x360", help="video size WxH")
    parser.add_argument("--video-fps", type=float, default=10.0)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (RunConfig.fps)")
    parser.add_argument("--max-frames", type=int, default=32)
    parser.add_argument("--wave-seconds", type=float, default=300.0,
                        help="media seconds of decoded clips held, for --modes window (caption's hold_seconds)")
    parser.add_argument("--modes", nargs="+", default=["decode", "window"], choices=["decode", "window"])
    parser.add_argument("--backends", nargs="+", default=["ffmpeg", "decord"], choices=["ffmpeg", "decord"],
                        help="frame samplers to compare (the caption task uses ffmpeg)")
    parser.add_argument("--media-dir", type=Path, default=Path("/tmp/omnibatch-bench-media"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "caption_memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {"fps": args.fps, "max_frames": args.max_frames}

    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_case(spec["path"], spec["mode"], spec["backend"], args.clip_seconds,
                                  args.wave_seconds, options)))
        return

    args.media_dir.mkdir(parents=True, exist_ok=True)
    # The runner's window holds requests whatever sampled their frames: measure it with the task's sampler.
    combos = [("decode", b) for b in args.backends] if "decode" in args.modes else []
    if "window" in args.modes:
        combos.append(("window", "ffmpeg"))
    cases = []
    for minutes in args.minutes:
        t0 = time.perf_counter()
        path = make_video(args.media_dir / f"caption-{minutes:g}min-{args.size}-{args.video_fps:g}fps.mp4",
                          minutes, args.size, args.video_fps)
        made = time.perf_counter() - t0
        for mode, backend in combos:
            child = json.dumps({"path": str(path), "mode": mode, "backend": backend})
            cmd = [sys.executable, __file__, "--child", child, "--clip-seconds", str(args.clip_seconds),
                   "--fps", str(args.fps), "--max-frames", str(args.max_frames),
                   "--wave-seconds", str(args.wave_seconds)]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
            sampler = TreePeak(proc.pid)
            sampler.start()
            stdout, stderr = proc.communicate()
            sampler.stop()
            if proc.returncode != 0:
                sys.exit(f"case {minutes} min {mode}/{backend} failed:\n{stderr[-3000:]}")
            result = json.loads(stdout.strip().splitlines()[-1])
            result.update(minutes=minutes, mode=mode, backend=backend, with_ffmpeg_peak_rss_mb=sampler.peak_mb,
                          wall_s=round(time.perf_counter() - t0, 1), media_made_s=round(made, 1))
            cases.append(result)
            print(f"{minutes:>5g} min  {mode:6s} {backend:6s}  clips {result['clips']:>3}  "
                  f"peak {result['peak_rss_mb']:7.1f} MB (baseline {result['baseline_rss_mb']:.1f}, "
                  f"with ffmpeg {result['with_ffmpeg_peak_rss_mb']:.1f})  "
                  f"largest request {result['largest_request_mb']} MB  plan {result['plan_s']} s  "
                  f"load {result['load_s']} s", flush=True)

    ratios = {}
    for mode, backend in combos:
        by_len = sorted((c for c in cases if (c["mode"], c["backend"]) == (mode, backend)),
                        key=lambda c: c["minutes"])
        if len(by_len) >= 2:
            short, long = by_len[0], by_len[-1]
            above_long = long["peak_rss_mb"] - long["baseline_rss_mb"]
            above_short = max(short["peak_rss_mb"] - short["baseline_rss_mb"], 1e-9)
            ratios[f"{mode}/{backend}"] = {
                "cases": f"{long['minutes']:g} min / {short['minutes']:g} min",
                "peak_rss_ratio": round(long["peak_rss_mb"] / short["peak_rss_mb"], 3),
                "above_baseline_ratio": round(above_long / above_short, 3),
            }
    for key, r in ratios.items():
        print(f"{key}: peak RSS {r['cases']} = {r['peak_rss_ratio']}x (above the import baseline: "
              f"{r['above_baseline_ratio']}x)")
    report = {
        "benchmark": "caption_memory",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]},
        "settings": {"size": args.size, "video_fps": args.video_fps, "clip_seconds": args.clip_seconds,
                     "fps": args.fps, "max_frames": args.max_frames, "max_pixels": 256 * 32 * 32,
                     "wave_seconds": args.wave_seconds},
        "cases": cases,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
