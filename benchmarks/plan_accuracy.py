"""How close `omnibatch plan --calibrate` gets to the real run's wall time (whisper engine, this CPU).

Two sets of spoken files (espeak-ng, different texts, lengths, voices and
speaking rates; each set mixes several voices, and no voice is in both): set A
is only calibrated on (`omnibatch plan A --calibrate --json`, the defaults:
180 s of pieces from up to 6 files, runs of a third, two thirds and all of
them, 3 times each, a line through each size's median), set B is planned with
the profile measured on A and then really transcribed (`omnibatch transcribe B
--engine whisper`, a fresh process, timed from start to exit). The bar: the
plan's wall time lands within 35% of the real one. `--self` also calibrates B
on itself (pieces cut from B, the way a user runs it): a second figure, and
two more minutes.

Each run is added to the results (`runs`), so the table shows every run made
with this method; `--fresh` starts the list over.

    .venv/bin/python benchmarks/plan_accuracy.py [--files 5] [--repeat 6] [--self] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

METHOD = "median of 3 runs at 3 sizes, least-squares start + realtime factor"
VOICES_A = [("en-us", 160), ("en-gb-scotland", 180)]
VOICES_B = [("en-gb", 150), ("en-029", 175), ("en-gb-x-rp", 165)]

SENTENCES = [
    "The committee met on Tuesday to discuss the budget for the coming year and agreed on most points.",
    "Rain is expected over the northern hills tonight, clearing by morning with a light westerly wind.",
    "She opened the old wooden box and found a bundle of letters tied with a faded blue ribbon.",
    "Engineers tested the bridge for three weeks before the city allowed the first cars to cross it.",
    "A good archive keeps every recording with a note of who spoke, where and when it was made.",
    "The train left the station ten minutes late, but it arrived in the capital right on time.",
]


def omnibatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "omnibatch", *args]


def make_set(folder: Path, files: int, repeat: int, offset: int, voices: list[tuple[str, int]]) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        words = [SENTENCES[(offset + i + k) % len(SENTENCES)] for k in range(repeat + i)]
        voice, rate = voices[i % len(voices)]
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(folder / f"talk-{offset}-{i}.wav"),
                        " ".join(words)], check=True, capture_output=True)


def plan_json(folder: Path, env: dict, *extra: str) -> dict:
    done = subprocess.run(omnibatch("plan", str(folder), "--engine", "whisper", "--json", *extra),
                          capture_output=True, text=True, env=env, check=True, timeout=1800)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--self", dest="self_calibration", action="store_true",
                    help="also calibrate set B on itself")
    ap.add_argument("--fresh", action="store_true", help="forget the runs recorded before")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "plan_accuracy.json")
    args = ap.parse_args()
    from omnibatch.manifests import read_inputs
    from omnibatch.run.plan import make_plan, probe_for_plan
    from omnibatch.run.throughput import ThroughputProfile

    began, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "OMNIBATCH_CACHE": str(tmp_path / "cache")}
        make_set(tmp_path / "A", args.files, args.repeat, offset=0, voices=VOICES_A)
        make_set(tmp_path / "B", args.files, args.repeat + 2, offset=3, voices=VOICES_B)
        t0 = time.perf_counter()
        cal_a = plan_json(tmp_path / "A", env, "--calibrate")
        calibration_s = time.perf_counter() - t0
        plain_b = plan_json(tmp_path / "B", env)
        profile = ThroughputProfile(engine="whisper", gpu="cpu", task="transcribe",
                                    realtime_factor=cal_a["realtime_factor"], startup_s=cal_a["startup_s"],
                                    source="calibrated on set A", measured=True)
        os.environ["OMNIBATCH_CACHE"] = env["OMNIBATCH_CACHE"]
        durations = probe_for_plan(read_inputs([str(tmp_path / "B")]).items, None)
        planned_from_a = make_plan(durations, profile).estimated_wall_hours * 3600
        t0 = time.perf_counter()
        subprocess.run(omnibatch("transcribe", str(tmp_path / "B"), "--engine", "whisper", "--out",
                                 str(tmp_path / "out")), capture_output=True, env=env, check=True, timeout=3600)
        real = time.perf_counter() - t0
        cal_b = plan_json(tmp_path / "B", env, "--calibrate") if args.self_calibration else None
    run = {
        "at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_1min": [round(load_before, 2),
                                                                        round(os.getloadavg()[0], 2)],
        "set_a_media_s": round(cal_a["media_hours"] * 3600, 1), "set_b_media_s": round(plain_b["media_hours"] * 3600, 1),
        "calibrated_on_a": {"realtime_factor": round(cal_a["realtime_factor"], 3),
                            "startup_s": round(cal_a["startup_s"], 3), "source": cal_a["throughput_source"]},
        "calibration_wall_s": round(calibration_s, 1),
        "real_wall_s": round(real, 2),
        "planned_from_a_s": round(planned_from_a, 2),
        "error_from_a": round(planned_from_a / real - 1, 3),
        "builtin_estimate_s": round(plain_b["estimated_wall_hours"] * 3600, 2),
        "error_builtin": round(plain_b["estimated_wall_hours"] * 3600 / real - 1, 3),
        "passed": abs(planned_from_a / real - 1) <= 0.35,
        "benchmark_wall_s": round(time.perf_counter() - began, 1),
    }
    if cal_b is not None:
        run["planned_from_b_self_s"] = round(cal_b["estimated_wall_hours"] * 3600, 2)
        run["error_from_b_self"] = round(cal_b["estimated_wall_hours"] * 3600 / real - 1, 3)
    runs = [] if args.fresh else previous_runs(args.results)
    runs.append(run)
    result = {
        "machine": f"{os.cpu_count()} CPUs", "engine": "whisper (bundled base, int8)", "method": METHOD,
        "files_per_set": args.files, "voices_a": VOICES_A, "voices_b": VOICES_B, "bar": 0.35,
        "passed_runs": sum(r["passed"] for r in runs), "runs": runs,
    }
    rows = ["| run | set B media s | real wall s | calibrated on A: plan s | error | on B itself: error "
            "| built-in: error | load avg |", "|---|---|---|---|---|---|---|---|"]
    for k, r in enumerate(runs, 1):
        own = f"{r['error_from_b_self']:+.1%}" if "error_from_b_self" in r else "-"
        rows.append(f"| {k} ({r['at']}) | {r['set_b_media_s']} | {r['real_wall_s']} | {r['planned_from_a_s']} | "
                    f"{r['error_from_a']:+.1%} | {own} | {r['error_builtin']:+.1%} | "
                    f"{r['load_average_1min'][0]}-{r['load_average_1min'][1]} |")
    rows.append(f"\n{result['passed_runs']} of {len(runs)} runs within the 35% bar ({METHOD}).\n")
    write_results(args.results, result, "\n".join(rows))


def previous_runs(path: Path) -> list[dict]:
    """The runs recorded with this method (a results file from an earlier method is not mixed in)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("runs", [])) if data.get("method") == METHOD else []


if __name__ == "__main__":
    main()
