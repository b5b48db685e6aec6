"""Torch and weights for the transformers backends (the Thinker engine and the speech engine alike).

    torch, device, dtype = prepare_torch(spec, "auto", "auto", None, "the Thinker")
    model = load_weights(ModelClass, spec, dtype, device, "the Thinker")

`plan_loading` (pure) decides where the weights go as they load: straight to the
GPU with accelerate's device_map, spread over several GPUs, or built on the host
and moved when accelerate is missing.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from omnibatch.errors import EngineError, InputError, MissingDependencyError, describe_error
from omnibatch.models.resolve import ModelSpec

log = logging.getLogger(__name__)


def prepare_torch(spec: ModelSpec, device: str, dtype: str, num_threads: int | None, what: str):
    """Import torch for an engine running `spec`; choose its device, dtype and CPU threads once."""
    try:
        import torch
        import transformers  # noqa: F401 - fail here, with the message below
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs torch and transformers: pip install omnibatch") from e
    chosen = _pick_device(torch, device)
    if chosen.type == "cpu":
        # Tiny matmuls lose more to thread handoff than they gain (4-6x on 2 cores);
        # real weights on a many-core host want the default.
        threads = num_threads or (1 if spec.is_tiny else None)
        if threads:
            torch.set_num_threads(threads)
    return torch, chosen, _pick_dtype(torch, dtype, chosen, spec)


def _pick_device(torch, device: str):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use cpu")
    return chosen


def _pick_dtype(torch, dtype: str, device, spec: ModelSpec):
    if dtype == "auto":
        # float32 on CPU (bf16 matmuls there are slow) and for the tiny model (parity with vLLM);
        # bf16 on GPUs, as the real checkpoints are stored.
        if device.type == "cpu" or spec.is_tiny:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


# -- loading weights -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """How `from_pretrained` places the weights, and whether the model is moved afterwards."""

    kwargs: dict[str, Any]
    move_to: str | None  # a device to move the loaded model to (no device_map), or None
    warning: str | None = None


def plan_loading(device_type: str, device_index: int | None, *, gpu_count: int, has_accelerate: bool,
                 device_map: str | dict[str, Any] | None = None,
                 max_memory: dict[str, Any] | None = None) -> LoadPlan:
    """Where the weights go as they load (pure: tested without a GPU).

    - CPU: loaded where they are read; no device_map needed.
    - One GPU: `device_map={"": "cuda:N"}`, each tensor straight to the GPU (needs accelerate;
      without it the checkpoint is built in host memory first and moved, with a warning).
    - Several GPUs and no device chosen (`device="cuda"` or auto): `device_map="auto"`, layers
      spread over them; `max_memory` caps each (`{"0": "70GiB", "1": "70GiB", "cpu": "200GiB"}`).
    - An explicit `device_map` is passed on as given.
    """
    memory = _max_memory(max_memory)
    if device_type != "cuda":
        if device_map is not None or memory is not None:
            if not has_accelerate:
                raise MissingDependencyError("device_map and max_memory need accelerate: pip install accelerate")
            return LoadPlan({"device_map": device_map or "cpu", **({"max_memory": memory} if memory else {})},
                            None)
        return LoadPlan({}, None)
    target = f"cuda:{device_index}" if device_index is not None else "cuda:0"
    if not has_accelerate:
        if device_map is not None or memory is not None:
            raise MissingDependencyError("device_map and max_memory need accelerate: pip install accelerate "
                                         "(or pip install 'omnibatch[cuda]')")
        spread = " and cannot spread over the GPUs" if gpu_count > 1 and device_index is None else ""
        return LoadPlan({}, target, warning=(
            "accelerate is not installed: the weights are built in host memory first, then moved to the GPU "
            f"(~2 bytes per parameter of host RAM in bf16; ~63 GB for the 30B Thinker){spread}. "
            "pip install accelerate to load them straight to the GPU"))
    if device_map is None:
        device_map = "auto" if (gpu_count > 1 and device_index is None) else {"": target}
    kwargs: dict[str, Any] = {"device_map": device_map}
    if memory is not None:
        kwargs["max_memory"] = memory
    return LoadPlan(kwargs, None)


def _max_memory(value: dict[str, Any] | None) -> dict[Any, Any] | None:
    """JSON keys are strings: GPU numbers become ints, as accelerate wants them."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise InputError(f'max_memory must be a JSON object such as {{"0": "70GiB", "1": "70GiB", '
                         f'"cpu": "200GiB"}}, got {value!r}')
    return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}


def load_weights(model_class, spec: ModelSpec, dtype, device, what: str, *, attn_implementation: str | None = None,
                 device_map: str | dict[str, Any] | None = None, max_memory: dict[str, Any] | None = None):
    """`model_class.from_pretrained(spec.source)` on `device`, in `dtype`, as `plan_loading` says."""
    import torch

    plan = plan_loading(device.type, device.index, gpu_count=torch.cuda.device_count() if device.type == "cuda"
                        else 0, has_accelerate=importlib.util.find_spec("accelerate") is not None,
                        device_map=device_map, max_memory=max_memory)
    if plan.warning and not spec.is_tiny:
        log.warning("%s: %s", spec.label, plan.warning)
    kwargs: dict[str, Any] = {"dtype": dtype, **plan.kwargs}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = model_class.from_pretrained(spec.source, **kwargs)
    except Exception as e:
        raise EngineError(f"cannot load {what} of {spec.label}: {describe_error(e)}") from e
    if plan.move_to is not None:
        model = model.to(plan.move_to)
    return model.eval()
