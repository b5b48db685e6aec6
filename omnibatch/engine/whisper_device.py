"""Where the whisper engine runs: CUDA with float16 where CTranslate2 can run there, else CPU int8.

CTranslate2 4.x is built against CUDA 12: on a GPU it loads cuBLAS 12
(`libcublas.so.12`, and cuDNN 9 for the encoder's convolutions). An environment
that has only CUDA 13 libraries (the vLLM 0.33 stack) sees the GPU but cannot
run Whisper on it. The pip wheels `nvidia-cublas-cu12` and `nvidia-cudnn-cu12`
supply those libraries; they are loaded from site-packages here, since
CTranslate2 looks for them only on the system's library path.

No ctranslate2 import at module load: `choose_device` is pure, `cuda_status`
asks CTranslate2 and the dynamic loader.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omnibatch.errors import EngineError, InputError

log = logging.getLogger(__name__)

# The libraries CTranslate2's CUDA path opens, and the pip wheel that ships each.
CUDA12_LIBRARIES = {
    "libcublas.so.12": "nvidia-cublas-cu12",
    "libcublasLt.so.12": "nvidia-cublas-cu12",
}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CudaStatus:
    gpus: int  # CUDA devices CTranslate2 sees
    missing: tuple[str, ...]  # libraries it would need and cannot load

    @property
    def usable(self) -> bool:
        return self.gpus > 0 and not self.missing


@dataclass(frozen=True)
class Placement:
    device: str
    compute_type: str
    note: str | None = None  # why a GPU that is there is not used


def choose_device(device: str, compute_type: str, status: CudaStatus) -> Placement:
    """The device and compute type for `device` ("auto", "cpu", "cuda[:N]") and `compute_type` ("auto" or
    CTranslate2's own name), given what CTranslate2 can use here (pure)."""
    wanted = (device or "auto").strip().lower()
    if wanted.split(":")[0] not in DEVICES:
        raise InputError(f"whisper device {device!r}: use auto, cpu or cuda")
    if wanted == "auto":
        if status.usable:
            return Placement("cuda", "float16" if compute_type == "auto" else compute_type)
        note = None
        if status.gpus:
            note = (f"CTranslate2 sees {status.gpus} GPU(s) but cannot run on them: {_missing(status)}; "
                    "whisper runs on the CPU (int8)")
        return Placement("cpu", "int8" if compute_type == "auto" else compute_type, note)
    if wanted.startswith("cuda"):
        if not status.gpus:
            raise EngineError("whisper device cuda was asked for, but CTranslate2 sees no CUDA GPU here "
                              "(ctranslate2.get_cuda_device_count() is 0); use -E device=cpu")
        if status.missing:
            raise EngineError(f"whisper cannot run on the GPU: {_missing(status)}; or use -E device=cpu")
        return Placement(wanted, "float16" if compute_type == "auto" else compute_type)
    return Placement("cpu", "int8" if compute_type == "auto" else compute_type)


def _missing(status: CudaStatus) -> str:
    wheels = sorted({CUDA12_LIBRARIES.get(lib, lib) for lib in status.missing})
    return (f"CTranslate2 needs CUDA 12's {', '.join(status.missing)}, which this environment lacks "
            f"(install {' '.join(wheels)}, or the CUDA 12 toolkit's libraries)")


def cuda_status() -> CudaStatus:
    """What CTranslate2 can use on this machine (0 GPUs when it is not installed)."""
    try:
        import ctranslate2
    except ImportError:
        return CudaStatus(0, ())
    try:
        gpus = int(ctranslate2.get_cuda_device_count())
    except Exception:  # noqa: BLE001 - a CPU-only build or a broken driver: no GPU for it
        gpus = 0
    if not gpus:
        return CudaStatus(0, ())
    return CudaStatus(gpus, tuple(lib for lib in CUDA12_LIBRARIES if not _load(lib)))


def _load(library: str) -> bool:
    """Make `library` loadable for CTranslate2: from the system path, or from a pip wheel's folder
    (loaded by full path, globally, so CTranslate2's own dlopen by name finds it)."""
    try:
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    for root in map(Path, sys.path):
        candidate = root / "nvidia" / "cublas" / "lib" / library
        if candidate.is_file():
            try:
                ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


def place_whisper(device: str, compute_type: str) -> Placement:
    """`choose_device` for this machine; a GPU left unused is named in a warning."""
    status = cuda_status() if (device or "auto").strip().lower() != "cpu" else CudaStatus(0, ())
    placement = choose_device(device, compute_type, status)
    if placement.note:
        log.warning("%s", placement.note)
    return placement
