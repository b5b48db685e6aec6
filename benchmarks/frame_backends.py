"""Frame sampling for one caption clip: ffmpeg against decord, on a few kinds of video.

The issue's rule for decord: keep it only if it is measured better for some
input. This times `omnibatch.media.sample_frames` exactly as the caption task
calls it (a 30 s clip at the task's defaults: 1 frame/s, at most 32 frames
within 256x32x32 pixels, the file probed once beforehand as the task does), once
with `backend="ffmpeg"` and once with `backend="decord"`, for an early clip and
a late clip of each input. The inputs are made here by ffmpeg (testsrc2 with
motion, 640x360 at 30 fps, 90 s):

- `h264.mp4`: H.264 with x264's default keyframe interval (250 frames);
- `vp9.webm`: VP9 (libvpx-vp9) in WebM;
- `h264-long-gop.mp4`: H.264 with one keyframe every 60 s (1800 frames), so a
  late clip must be decoded from a keyframe far before it;
- `h264-1080p.mp4`: H.264 at 1920x1080, where each decoded frame costs more.

Each case is timed `--repeat` times, alternating the backends; the median
counts. Also reported: the mean absolute difference between the two backends'
frames (0-255), to show they sample the same pictures.

    .venv/bin/python benchmarks/frame_backends.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

LENGTH_S = 90
CLIP_S = 30.0
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
INPUTS = {
    "h264.mp4": ("testsrc2=size=640x360:rate=30", X264),
    "vp9.webm": ("testsrc2=size=640x360:rate=30",
                 ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-b:v", "1M"]),
    "h264-long-gop.mp4": ("testsrc2=size=640x360:rate=30",
                          X264 + ["-g", "1800", "-keyint_min", "1800", "-sc_threshold", "0"]),
    "h264-1080p.mp4": ("testsrc2=size=1920x1080:rate=30", X264),
}


def make_inputs(folder: Path) -> dict[str, Path]:
    paths = {}
    for name, (source, codec) in INPUTS.items():
        path = folder / name
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source, "-t",
                        str(LENGTH_S), *codec, "-y", str(path)], check=True)
        paths[name] = path
    return paths


def time_clip(path: Path, start_s: float, backend: str, probed) -> tuple[float, object]:
    from omnibatch.config import RunConfig
    from omnibatch.media import sample_frames

    defaults = RunConfig(task="caption", inputs=[], out="")
    t0 = time.perf_counter()
    frames = sample_frames(path, fps=defaults.fps, max_frames=defaults.max_frames, max_pixels=defaults.max_pixels,
                           start_s=start_s, end_s=start_s + CLIP_S, backend=backend, probed=probed)
    return time.perf_counter() - t0, frames


def main() -> None:
    import decord
    import numpy as np

    from omnibatch.media.probe import probe_detailed

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "frame_backends.json")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    cases = []
    with tempfile.TemporaryDirectory(prefix="frame-backends-") as tmp:
        for name, path in make_inputs(Path(tmp)).items():
            probed = probe_detailed(path)
            for where, start in (("early", 0.0), ("late", LENGTH_S - CLIP_S)):
                times: dict[str, list[float]] = {"ffmpeg": [], "decord": []}
                got = {}
                for r in range(args.repeat):
                    for backend in (("ffmpeg", "decord") if r % 2 == 0 else ("decord", "ffmpeg")):
                        seconds, frames = time_clip(path, start, backend, probed)
                        times[backend].append(seconds)
                        got[backend] = frames
                a, b = got["ffmpeg"], got["decord"]
                same = a.frames.shape == b.frames.shape
                diff = (float(np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16)).mean())
                        if same else None)
                ff, dc = statistics.median(times["ffmpeg"]), statistics.median(times["decord"])
                cases.append({"input": name, "clip": f"{where} ({start:.0f}-{start + CLIP_S:.0f} s)",
                              "frames": int(a.frames.shape[0]), "size": list(a.size),
                              "ffmpeg_s": round(ff, 4), "decord_s": round(dc, 4),
                              "ffmpeg_runs_s": [round(t, 4) for t in times["ffmpeg"]],
                              "decord_runs_s": [round(t, 4) for t in times["decord"]],
                              "decord_over_ffmpeg": round(dc / ff, 3), "faster": "decord" if dc < ff else "ffmpeg",
                              "mean_abs_pixel_diff": None if diff is None else round(diff, 2),
                              "same_frame_count": same})
                print(cases[-1], flush=True)
    result = {"machine": f"{os.cpu_count()} CPUs", "decord": decord.__version__,
              "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0],
              "repeat": args.repeat, "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "decord_faster_cases": sum(c["faster"] == "decord" for c in cases), "cases": cases}
    rows = ["| input | clip | frames | ffmpeg s | decord s | decord / ffmpeg | pixel diff |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {c['input']} | {c['clip']} | {c['frames']} | {c['ffmpeg_s']:.3f} | {c['decord_s']:.3f} | "
             f"{c['decord_over_ffmpeg']:.2f}x | {c['mean_abs_pixel_diff']} |" for c in cases]
    rows.append(f"\nMedian of {args.repeat} runs each; decord faster in {result['decord_faster_cases']} of "
                f"{len(cases)} cases.\n")
    write_results(args.results, result, "\n".join(rows))


if __name__ == "__main__":
    main()
