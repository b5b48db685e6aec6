"""How close `omnibatch plan --calibrate` gets to the real run's wall time (whisper engine, this CPU).

Two sets of spoken files (espeak-ng, different texts and lengths): set A is only
calibrated on (`omnibatch plan A --calibrate --json`), set B is planned with the
profile measured on A and then really transcribed (`omnibatch transcribe B
--engine whisper`, a fresh process, timed from start to exit). The bar: the
plan's wall time lands within 35% of the real one. As a second figure, set B is
also calibrated on itself (pieces cut from B, the way a user runs it).

    .venv/bin/python benchmarks/plan_accuracy.py [--files 5] [--repeat 6]
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


def make_set(folder: Path, files: int, repeat: int, offset: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        words = [SENTENCES[(offset + i + k) % len(SENTENCES)] for k in range(repeat + i)]
        subprocess.run(["espeak-ng", "-s", "165", "-w", str(folder / f"talk-{offset}-{i}.wav"), " ".join(words)],
                       check=True, capture_output=True)


def plan_json(folder: Path, env: dict, *extra: str) -> dict:
    done = subprocess.run(omnibatch("plan", str(folder), "--engine", "whisper", "--json", *extra),
                          capture_output=True, text=True, env=env, check=True, timeout=1800)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--sample-seconds", type=float, default=120.0)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "plan_accuracy.json")
    args = ap.parse_args()
    from omnibatch.run.plan import make_plan
    from omnibatch.run.throughput import ThroughputProfile

    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "OMNIBATCH_CACHE": str(tmp_path / "cache")}
        make_set(tmp_path / "A", args.files, args.repeat, offset=0)
        make_set(tmp_path / "B", args.files, args.repeat + 2, offset=3)
        cal_a = plan_json(tmp_path / "A", env, "--calibrate", "--sample-seconds", str(args.sample_seconds))
        plain_b = plan_json(tmp_path / "B", env)
        profile = ThroughputProfile(engine="whisper", gpu="cpu", task="transcribe",
                                    realtime_factor=cal_a["realtime_factor"], startup_s=cal_a["startup_s"],
                                    source="calibrated on set A", measured=True)
        from omnibatch.manifests import read_inputs
        from omnibatch.run.plan import probe_for_plan

        os.environ["OMNIBATCH_CACHE"] = env["OMNIBATCH_CACHE"]
        durations = probe_for_plan(read_inputs([str(tmp_path / "B")]).items, None)
        planned_from_a = make_plan(durations, profile).estimated_wall_hours * 3600
        t0 = time.perf_counter()
        subprocess.run(omnibatch("transcribe", str(tmp_path / "B"), "--engine", "whisper", "--out",
                                 str(tmp_path / "out")), capture_output=True, env=env, check=True, timeout=3600)
        real = time.perf_counter() - t0
        cal_b = plan_json(tmp_path / "B", env, "--calibrate", "--sample-seconds", str(args.sample_seconds))
    planned_from_b = cal_b["estimated_wall_hours"] * 3600
    result = {
        "machine": f"{os.cpu_count()} CPUs", "engine": "whisper (bundled base, int8)",
        "set_a_media_s": round(cal_a["media_hours"] * 3600, 1), "set_b_media_s": round(plain_b["media_hours"] * 3600, 1),
        "files_per_set": args.files, "sample_seconds": args.sample_seconds,
        "calibrated_on_a": {"realtime_factor": cal_a["realtime_factor"], "startup_s": cal_a["startup_s"],
                            "source": cal_a["throughput_source"]},
        "real_wall_s": round(real, 2),
        "planned_from_a_s": round(planned_from_a, 2),
        "error_from_a": round(planned_from_a / real - 1, 3),
        "planned_from_b_self_s": round(planned_from_b, 2),
        "error_from_b_self": round(planned_from_b / real - 1, 3),
        "builtin_estimate_s": round(plain_b["estimated_wall_hours"] * 3600, 2),
        "error_builtin": round(plain_b["estimated_wall_hours"] * 3600 / real - 1, 3),
        "bar": 0.35,
        "passed": abs(planned_from_a / real - 1) <= 0.35,
    }
    table = "\n".join([
        "| plan | wall s | error against the real run |", "|---|---|---|",
        f"| real run of set B ({result['set_b_media_s']} s media) | {result['real_wall_s']} | - |",
        f"| calibrated on set A (different files) | {result['planned_from_a_s']} | {result['error_from_a']:+.1%} |",
        f"| calibrated on set B itself | {result['planned_from_b_self_s']} | {result['error_from_b_self']:+.1%} |",
        f"| built-in CPU figure | {result['builtin_estimate_s']} | {result['error_builtin']:+.1%} |",
    ])
    write_results(args.results, result, table)


if __name__ == "__main__":
    main()
