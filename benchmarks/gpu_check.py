"""First contact with a CUDA GPU: the tiny Qwen3-Omni through omnibatch's transformers engines on the GPU.

One script, one JSON of figures, at most a few minutes on one H200. It needs only what a bare GPU
image has (CUDA torch, transformers) plus torchvision and accelerate if the image lacks them (small
wheels, carried in: see benchmarks/README.md, "GPU check"); no vLLM, no model hub, no ffmpeg, no
pyarrow. Run it from the repository root:

    PYTHONPATH=. python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json

What it checks, each part a key of the JSON:

- `environment`: torch, transformers, CUDA, the GPU, whether accelerate (device_map) is there.
- `thinker_cpu`: the tiny Thinker (built locally, deterministic) on CPU in float32, greedy: the
  reference tokens for a fixed set of requests (audio, text).
- `thinker_cuda_fp32`: the same on CUDA in float32. Parity that should hold: the prompt token ids
  are identical (the processor runs on the CPU either way) and so are the greedy tokens, except
  where two logits tie within float32 rounding (random weights give near-flat logits); each
  divergence is reported with the top-2 logit margin at that step on CPU.
- `thinker_cuda_bf16`: the same in bfloat16, as real checkpoints run. Not token-identical (bf16
  rounds the near-flat logits of random weights differently); reported: tokens agreeing with CPU,
  and that every output is finite and of the requested length.
- `weights_to_device`: the Thinker loaded with device_map straight to the GPU (accelerate), and
  the host memory it took, against loading on the host and moving.
- `speech_cuda_bf16`: the full tiny model (Thinker, Talker, Code2Wav) speaking two summaries on
  CUDA in bfloat16 through the speech engine: finite 24 kHz audio within its length cap.
- `feed_cuda`: throughput of omnibatch's engine feed (EngineFeed, the scheduler's queue) with the
  transformers engine on the GPU: requests/s, generated tokens/s, engine busy fraction, against
  the same feed on the CPU (a smaller set; the ratio is per request).

On a machine without CUDA the CUDA parts are skipped with a message saying so, and the CPU parts
run (the script is tested that way). Exit code 0 when every part that ran held; 1 when a check
failed (its part says which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000


def log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def requests(count: int, *, seconds: float = 4.0, max_new_tokens: int = 16):
    """Deterministic requests: tones with noise as audio (ASR prompt), and text prompts."""
    import numpy as np

    from omnibatch.records import Request

    rng = np.random.default_rng(1234)
    out = []
    for i in range(count):
        if i % 4 == 3:
            out.append(Request(f"text-{i}", f"Summarize: request number {i} about the weather and the news.",
                               max_new_tokens=max_new_tokens))
            continue
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        tone = 0.2 * np.sin(2 * np.pi * (180 + 40 * i) * t) + 0.02 * rng.standard_normal(t.size)
        out.append(Request(f"audio-{i}", "Transcribe the audio into text.", audio=tone.astype(np.float32),
                           max_new_tokens=max_new_tokens))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def environment() -> dict[str, Any]:
    import importlib.util

    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "accelerate": importlib.util.find_spec("accelerate") is not None,
        "torchvision": importlib.util.find_spec("torchvision") is not None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16=torch.cuda.is_bf16_supported())
    return info


def run_thinker(model: str, device: str, dtype: str, reqs, *, batch_size: int = 1) -> dict[str, Any]:
    """The engine's generations for `reqs`, with the generated token ids of each (batches of one: no
    padding, so CPU and GPU see the very same inputs)."""
    import omnibatch.engine.transformers_engine as te

    t0 = time.perf_counter()
    engine = te.TransformersEngine(model, device=device, dtype=dtype, batch_size=batch_size)
    load_s = time.perf_counter() - t0
    decoded: list[list[int]] = []
    tokens: dict[str, list[int]] = {}
    decode, finish = te.decode_reply, te.finish_generation

    def recording_decode(tokenizer, ids):  # the engine decodes a row's ids, then finishes that row
        decoded.append(list(ids))
        return decode(tokenizer, ids)

    def recording_finish(request_id, text, **kw):
        tokens[request_id] = decoded.pop()
        return finish(request_id, text, **kw)

    te.decode_reply, te.finish_generation = recording_decode, recording_finish
    try:
        t1 = time.perf_counter()
        out = engine.generate(reqs)
        gen_s = time.perf_counter() - t1
        prompt_ids = {r.id: engine._prepare([r], te.batch_key(r))["input_ids"][0].tolist() for r in reqs}
    finally:
        te.decode_reply, te.finish_generation = decode, finish
        engine.close()
    errors = {g.request_id: g.error for g in out if g.error}
    return {"device": device, "dtype": dtype, "load_s": round(load_s, 3), "generate_s": round(gen_s, 3),
            "requests": len(reqs), "errors": errors, "prompt_ids": prompt_ids, "tokens": tokens,
            "output_tokens": sum(g.output_tokens for g in out)}


def first_step_margins(model: str, reqs) -> dict[str, float]:
    """On CPU float32: the gap between the two largest logits at each request's first generated step."""
    import torch

    from omnibatch.engine.transformers_engine import TransformersEngine, batch_key

    engine = TransformersEngine(model, device="cpu", dtype="float32", batch_size=1)
    margins = {}
    try:
        for r in reqs:
            inputs = engine._prepare([r], batch_key(r))
            with torch.inference_mode():
                out = engine.thinker.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                              return_dict_in_generate=True, eos_token_id=engine._eos_ids,
                                              pad_token_id=engine._pad_id)
            top = torch.topk(out.scores[0][0].float(), 2).values
            margins[r.id] = float(top[0] - top[1])
    finally:
        engine.close()
    return margins


def compare(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    same_prompts = reference["prompt_ids"] == other["prompt_ids"]
    identical, agreeing, total, diverged = 0, 0, 0, {}
    for rid, ref in reference["tokens"].items():
        got = other["tokens"].get(rid, [])
        identical += ref == got
        n = next((k for k, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
        agreeing += n
        total += max(len(ref), 1)
        if ref != got:
            diverged[rid] = n
    return {"prompt_ids_identical": same_prompts, "requests_identical": identical, "requests": len(reference["tokens"]),
            "leading_tokens_agreeing": round(agreeing / total, 3) if total else 1.0, "diverged_at": diverged}


def weights_to_device(model: str) -> dict[str, Any]:
    """Load the Thinker with device_map (straight to the GPU) in a child process, and without, and
    report each one's peak host memory: the difference is what a 63 GB Thinker would cost the host."""
    import subprocess

    code = ("import resource,sys,torch; sys.path.insert(0, %r)\n"
            "from transformers import Qwen3OmniMoeThinkerForConditionalGeneration as T\n"
            "kw = {'device_map': {'': 'cuda:0'}} if sys.argv[1] == 'map' else {}\n"
            "m = T.from_pretrained(%r, dtype=torch.bfloat16, **kw)\n"
            "m = m if kw else m.to('cuda:0')\n"
            "print(next(m.parameters()).device, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
            % (str(ROOT), model))
    out: dict[str, Any] = {}
    for mode in ("map", "move"):
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            out[mode] = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
            continue
        where, rss = done.stdout.split()
        out[mode] = {"device": where, "peak_host_mb": round(float(rss), 1)}
    return out


def speech(model: str, device: str, dtype: str) -> dict[str, Any]:
    import numpy as np

    from omnibatch.engine.base import SpeechRequest
    from omnibatch.engine.speech_transformers import TransformersSpeechEngine

    t0 = time.perf_counter()
    engine = TransformersSpeechEngine(model, device=device, dtype=dtype, batch_size=2)
    load_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        out = engine.speak([SpeechRequest("one", "The meeting starts at nine.", "Ethan", 2.0),
                            SpeechRequest("two", "Rain falls on the roof.", "Ethan", 1.5)])
        speak_s = time.perf_counter() - t1
    finally:
        engine.close()
    results = []
    for s in out:
        finite = s.audio is not None and bool(np.isfinite(s.audio).all())
        results.append({"id": s.request_id, "error": s.error, "seconds": round(s.duration_s, 3),
                        "sample_rate": s.sample_rate, "finite": finite, "capped": s.capped})
    ok = all(r["error"] is None and r["finite"] and r["sample_rate"] == 24000 and 0 < r["seconds"] <= 2.0
             for r in results)
    return {"device": device, "dtype": dtype, "load_s": round(load_s, 3), "speak_s": round(speak_s, 3),
            "results": results, "ok": ok}


def feed(model: str, device: str, dtype: str, count: int, *, batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """The scheduler's engine queue (EngineFeed) kept full with `count` requests, as a run keeps it."""
    from omnibatch.engine.transformers_engine import TransformersEngine
    from omnibatch.pipeline.feed import EngineFeed

    feed_ = EngineFeed(lambda: TransformersEngine(model, device=device, dtype=dtype, batch_size=batch_size,
                                                  max_new_tokens=max_new_tokens))
    feed_.ensure()
    pending = requests(count, max_new_tokens=max_new_tokens)
    done = 0
    t0 = time.perf_counter()
    while done < count:
        room = feed_.room()
        if room and pending:
            feed_.submit(pending[:room])
            pending = pending[room:]
        done += len(feed_.step())
    wall = time.perf_counter() - t0
    stats = feed_.stats
    feed_.close()
    return {"device": device, "dtype": dtype, "requests": count, "batch_size": batch_size,
            "wall_s": round(wall, 3), "requests_per_s": round(count / wall, 2),
            "output_tokens_per_s": round(stats.output_tokens / wall, 1), "busy_fraction": round(stats.busy_fraction, 3),
            "mean_in_flight": round(stats.mean_in_flight, 1), "truncated": stats.truncated}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="omnibatch on a CUDA GPU: tiny Qwen3-Omni, transformers engines.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the parts left once this has passed")
    parser.add_argument("--feed-requests", type=int, default=256, help="requests through the GPU feed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("OMNIBATCH_CACHE", tempfile.mkdtemp(prefix="omnibatch-gpu-check-"))
    result: dict[str, Any] = {"skipped": {}, "failed": {}}
    checks: list[tuple[str, bool]] = []

    def part(name: str, needs_cuda: bool, fn) -> Any:
        if needs_cuda and not result["environment"]["cuda_available"]:
            result["skipped"][name] = "torch sees no CUDA GPU here: skipped (run this on a GPU node)"
            log(f"{name}: SKIPPED, torch sees no CUDA GPU here")
            return None
        if time.perf_counter() - started > args.budget_s:
            result["skipped"][name] = f"over the time budget of {args.budget_s:g} s"
            log(f"{name}: SKIPPED, over the time budget")
            return None
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - recorded, the other parts still run
            result["failed"][name] = f"{type(exc).__name__}: {exc}"
            log(f"{name}: FAILED: {exc}\n{traceback.format_exc()}")
            return None
        result[name] = value
        log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
        return value

    result["environment"] = environment()
    log(f"environment: {json.dumps(result['environment'])}")
    from omnibatch.models.tiny import ensure_tiny_model

    model = str(ensure_tiny_model())
    reqs = requests(8)
    cpu = part("thinker_cpu", False, lambda: run_thinker(model, "cpu", "float32", reqs))
    fp32 = part("thinker_cuda_fp32", True, lambda: run_thinker(model, "cuda", "float32", reqs))
    bf16 = part("thinker_cuda_bf16", True, lambda: run_thinker(model, "cuda", "bfloat16", reqs))
    if cpu and fp32:
        parity = compare(cpu, fp32)
        if parity["diverged_at"]:
            parity["cpu_first_step_margin"] = first_step_margins(model, [r for r in reqs if r.id in parity["diverged_at"]])
        result["parity_fp32"] = parity
        checks.append(("prompt ids identical on CPU and CUDA", parity["prompt_ids_identical"]))
        checks.append(("CUDA fp32 greedy tokens = CPU fp32 for most requests",
                       parity["requests_identical"] >= parity["requests"] - 1))
    if cpu and bf16:
        result["parity_bf16"] = compare(cpu, bf16)
        checks.append(("bf16: every request answered", not bf16["errors"] and bf16["output_tokens"] == cpu["output_tokens"]))
    if cpu:
        checks.append(("CPU: every request answered", not cpu["errors"]))
    loads = part("weights_to_device", True, lambda: weights_to_device(model))
    if loads:
        checks.append(("device_map puts the weights on the GPU", str(loads.get("map", {}).get("device", "")).startswith("cuda")))
    sp = part("speech_cuda_bf16", True, lambda: speech(model, "cuda", "bfloat16"))
    if sp:
        checks.append(("speech on CUDA bf16: finite 24 kHz audio within its cap", sp["ok"]))
    if not result["environment"]["cuda_available"]:
        sp_cpu = part("speech_cpu", False, lambda: speech(model, "cpu", "float32"))
        if sp_cpu:
            checks.append(("speech on CPU fp32: finite 24 kHz audio within its cap", sp_cpu["ok"]))
    cpu_feed = part("feed_cpu", False, lambda: feed(model, "cpu", "float32", 8, batch_size=8, max_new_tokens=16))
    gpu_feed = part("feed_cuda", True, lambda: feed(model, "cuda", "bfloat16", args.feed_requests, batch_size=32,
                                                    max_new_tokens=16))
    if cpu_feed and gpu_feed:
        result["feed_speedup_per_request"] = round(gpu_feed["requests_per_s"] / cpu_feed["requests_per_s"], 2)
        checks.append(("the GPU feed kept the engine busy (>= 80% of its time)", gpu_feed["busy_fraction"] >= 0.8))
    result["checks"] = [{"check": c, "held": bool(ok)} for c, ok in checks]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["peak_host_mb"] = round(peak_rss_mb(), 1)
    for name in ("thinker_cpu", "thinker_cuda_fp32", "thinker_cuda_bf16"):  # ids are for parity, not the file
        if isinstance(result.get(name), dict):
            result[name] = {k: v for k, v in result[name].items() if k not in ("prompt_ids", "tokens")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for c, ok in checks:
        log(f"{'HELD  ' if ok else 'FAILED'} {c}")
    for name, why in result["skipped"].items():
        log(f"skipped {name}: {why}")
    log(f"figures: {args.out} ({result['wall_s']} s)")
    return 0 if all(ok for _, ok in checks) and not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
