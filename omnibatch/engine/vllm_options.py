"""Settings of the vLLM engine: what the user asked for, filled in with defaults for the platform.

Pure functions, no vLLM import: the engine imports vLLM, finds out where it runs
(GPU or CPU) and what the installed version supports, then calls these.

Options come from keyword arguments (the CLI's `-E key=value`) and from a JSON
file (`-E config=vllm.json`); a keyword wins over the file.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnibatch.engine.qwen_common import GREEDY, Sampling, resolve_sampling
from omnibatch.errors import InputError

# 40 minutes of audio is 31,200 audio tokens (13 per second) plus the prompt and the answer.
GPU_MAX_MODEL_LEN = 40960
# On CPU the default covers ~20 minutes of audio in one request: vLLM must fit one whole
# sequence in VLLM_CPU_KVCACHE_SPACE (~1.5 GiB at this length for the real 30B Thinker).
# A whole 40-minute file is still possible with -E max_model_len=40960.
CPU_MAX_MODEL_LEN = 16384
# vLLM's own CPU default takes a share of all memory; the tiny model needs almost none.
TINY_CPU_KVCACHE_GIB = 1
# Every request carries at most one audio and one video; images are never sent.
DEFAULT_MM_LIMITS: dict[str, int] = {"audio": 1, "video": 1, "image": 0}

# Keys a config file may hold: the engine's own options.
OPTION_NAMES = (
    "tensor_parallel_size",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "gpu_memory_utilization",
    "limit_mm_per_prompt",
    "dtype",
    "enforce_eager",
    "speculative_config",
    "cpu_kvcache_space_gib",
    "seed",
    "max_new_tokens",
    "video_size",
    "temperature",
    "top_p",
    "top_k",
    "engine_args",
)

# Speculative methods that need no weights of their own (they draft from the prompt).
MODEL_FREE_METHODS = frozenset({"ngram", "ngram_gpu", "suffix"})
# Methods that draft with a separate checkpoint, given as `model`.
DRAFT_MODEL_METHODS = frozenset(
    {"draft_model", "eagle", "eagle3", "dspark", "dflash", "medusa", "mlp_speculator"}
)
# Methods whose draft reads the target's hidden states through the EAGLE-3 interface
# (`SupportsEagle3`), which vLLM's Qwen3-Omni Thinker has.
EAGLE3_INTERFACE_METHODS = frozenset({"eagle3", "dflash"})
# How each method is asked for, for messages (a draft checkpoint trained for the Thinker is needed
# for all but n-gram and suffix).
SPEC_EXAMPLES = {
    "ngram": '{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}',
    "eagle3": '{"method": "eagle3", "model": "/models/eagle3-draft", "num_speculative_tokens": 3}',
    "dflash": '{"method": "dflash", "model": "/models/dflash-draft", "num_speculative_tokens": 8}',
    "draft_model": '{"method": "draft_model", "model": "/models/small-qwen3", "num_speculative_tokens": 4}',
}


@dataclass(frozen=True)
class Platform:
    """Where vLLM runs and what the installed version can do for Qwen3-Omni."""

    on_cpu: bool
    spec_methods: frozenset[str]  # speculative methods this vLLM supports for this model
    model_max_len: int | None  # the Thinker's max_position_embeddings, when the config says


@dataclass(frozen=True)
class VllmSettings:
    tensor_parallel_size: int
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int | None
    gpu_memory_utilization: float
    limit_mm_per_prompt: dict[str, int]
    dtype: str
    enforce_eager: bool
    speculative_config: dict[str, Any] | None
    cpu_kvcache_space_gib: int | None
    seed: int
    max_new_tokens: int | None
    video_size: dict[str, int] | None
    engine_args: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = GREEDY  # the variant's decoding, with the user's overrides

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `vllm.LLM` (besides the model)."""
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.max_model_len,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "limit_mm_per_prompt": dict(self.limit_mm_per_prompt),
            "dtype": self.dtype,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
        }
        if self.max_num_seqs is not None:
            kwargs["max_num_seqs"] = self.max_num_seqs
        if self.speculative_config is not None:
            kwargs["speculative_config"] = dict(self.speculative_config)
        clash = sorted(set(self.engine_args) & set(kwargs))
        if clash:
            raise InputError(
                f"engine_args repeats {', '.join(clash)}: set {'it' if len(clash) == 1 else 'them'} as "
                "engine options of their own (-E name=value), not inside engine_args"
            )
        kwargs.update(self.engine_args)
        return kwargs


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options in a JSON config file (an object whose keys are engine option names)."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"vLLM config file {file} does not exist") from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read vLLM config file {file}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"vLLM config file {file} must hold a JSON object of option: value")
    unknown = sorted(set(data) - set(OPTION_NAMES))
    if unknown:
        raise InputError(
            f"vLLM config file {file} has unknown option(s) {', '.join(unknown)}; it takes: "
            f'{", ".join(OPTION_NAMES)} (put other vLLM engine arguments under "engine_args")'
        )
    return data


def merge_options(given: Mapping[str, Any], config_file: str | Path | None) -> dict[str, Any]:
    """Options from the file, overridden by those given explicitly (None means not given)."""
    merged = read_config_file(config_file) if config_file else {}
    merged.update({k: v for k, v in given.items() if v is not None})
    return merged


def resolve_settings(options: Mapping[str, Any], platform: Platform, *, is_tiny: bool,
                     variant: str = "instruct") -> VllmSettings:
    """Fill in defaults for `platform` and check every value, naming the option at fault."""
    opts = dict(options)
    default_len = CPU_MAX_MODEL_LEN if platform.on_cpu else GPU_MAX_MODEL_LEN
    if platform.model_max_len:
        default_len = min(default_len, platform.model_max_len)
    max_model_len = _positive_int(opts, "max_model_len", default_len)
    # A whole long file is one audio item: vLLM's encoder cache holds at most
    # max_num_batched_tokens embeddings, so a smaller budget would reject it.
    max_num_batched_tokens = _positive_int(opts, "max_num_batched_tokens", max_model_len)
    dtype = opts.get("dtype") or "auto"
    if not isinstance(dtype, str):
        raise InputError(f"dtype must be a name such as auto, bfloat16, float16 or float32, got {dtype!r}")
    if dtype == "auto" and is_tiny:
        dtype = "float32"  # the reference engine runs the tiny model in float32: same numbers
    enforce_eager = opts.get("enforce_eager")
    if enforce_eager is None:
        enforce_eager = platform.on_cpu  # on CPU a compile costs ~35 s at every start
    elif not isinstance(enforce_eager, bool):
        raise InputError(f"enforce_eager must be true or false, got {enforce_eager!r}")
    memory = opts.get("gpu_memory_utilization", 0.9)
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not 0 < memory <= 1:
        raise InputError(f"gpu_memory_utilization must be a fraction in (0, 1], got {memory!r}")
    # vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB.
    kv_space = _positive_int(opts, "cpu_kvcache_space_gib", None)
    if kv_space is None and platform.on_cpu and is_tiny:
        kv_space = TINY_CPU_KVCACHE_GIB
    seed = opts.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return VllmSettings(
        tensor_parallel_size=_positive_int(opts, "tensor_parallel_size", 1),
        max_model_len=max_model_len,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=_positive_int(opts, "max_num_seqs", None),
        gpu_memory_utilization=float(memory),
        limit_mm_per_prompt=check_mm_limits(opts.get("limit_mm_per_prompt")),
        dtype=dtype,
        enforce_eager=enforce_eager,
        speculative_config=check_speculative_config(opts.get("speculative_config"), platform),
        cpu_kvcache_space_gib=kv_space,
        seed=seed,
        max_new_tokens=_positive_int(opts, "max_new_tokens", None),
        video_size=_check_video_size(opts.get("video_size")),
        engine_args=_check_engine_args(opts.get("engine_args")),
        sampling=resolve_sampling(variant, temperature=opts.get("temperature"), top_p=opts.get("top_p"),
                                  top_k=opts.get("top_k")),
    )


def check_mm_limits(value: Any) -> dict[str, int]:
    if value is None:
        return dict(DEFAULT_MM_LIMITS)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    ):
        raise InputError(
            f'limit_mm_per_prompt must be a JSON object of modality: count, e.g. {{"audio": 1, "video": 1}}, '
            f"got {value!r}"
        )
    unknown = sorted(set(value) - set(DEFAULT_MM_LIMITS))
    if unknown:
        raise InputError(
            f"limit_mm_per_prompt: unknown modality {', '.join(unknown)}; use audio, video, image"
        )
    return {**DEFAULT_MM_LIMITS, **value}


def check_speculative_config(value: Any, platform: Platform) -> dict[str, Any] | None:
    """Pass on a speculative config only for a method this vLLM supports for Qwen3-Omni, with what
    that method needs; every refusal names the option at fault and how to ask for the method."""
    if value is None:
        return None
    supported = sorted(platform.spec_methods)
    listed = ", ".join(supported) or "none"
    if not isinstance(value, dict):
        raise InputError(f"speculative_config must be a JSON object, e.g. {SPEC_EXAMPLES['ngram']}, got {value!r}")
    method = value.get("method")
    if not method:
        raise InputError(f'speculative_config needs a "method"; this vLLM supports for Qwen3-Omni: {listed}')
    if method not in platform.spec_methods:
        why = ""
        if method == "mtp" or str(method).endswith("_mtp"):
            why = " (Qwen3-Omni checkpoints have no multi-token-prediction layers)"
        elif method == "eagle":
            why = " (the Qwen3-Omni Thinker has the EAGLE-3 interface, not EAGLE-1's: use eagle3)"
        elif method in EAGLE3_INTERFACE_METHODS:
            why = " (it needs vLLM's EAGLE-3 interface on the Qwen3-Omni Thinker, which this vLLM lacks)"
        elif method == "ngram_gpu" and platform.on_cpu:
            why = " (ngram_gpu runs on GPUs; use ngram on CPU)"
        raise InputError(
            f"speculative method {method!r} is not supported for Qwen3-Omni by the installed vLLM{why}; "
            f"supported: {listed}"
        )
    tokens = value.get("num_speculative_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise InputError(f"speculative_config: num_speculative_tokens must be a positive integer, got {tokens!r}")
    if method in DRAFT_MODEL_METHODS:
        _check_draft_model(method, value.get("model"))
    if method in ("ngram", "ngram_gpu"):
        if not tokens:
            raise InputError(f'speculative method "{method}" needs "num_speculative_tokens", e.g. '
                             f"{SPEC_EXAMPLES['ngram']}")
        low, high = value.get("prompt_lookup_min"), value.get("prompt_lookup_max")
        for name, n in (("prompt_lookup_min", low), ("prompt_lookup_max", high)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise InputError(f"speculative_config: {name} must be a positive integer, got {n!r}")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            raise InputError(f"speculative_config: prompt_lookup_min ({low}) must not exceed "
                             f"prompt_lookup_max ({high})")
    return dict(value)


def _check_draft_model(method: str, model: Any) -> None:
    """A draft checkpoint is a local folder with a config.json, or a hub id (fetched by vLLM)."""
    example = SPEC_EXAMPLES.get(method, SPEC_EXAMPLES["draft_model"])
    if not model or not isinstance(model, str):
        raise InputError(f'speculative method {method!r} needs the draft checkpoint as "model", e.g. {example}')
    from omnibatch.models.resolve import looks_like_hub_id

    folder = Path(model).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise InputError(f"speculative_config: the draft model folder {folder} has no config.json; pass "
                             "the folder of a draft checkpoint trained for this model")
        return
    if not looks_like_hub_id(model):
        raise InputError(f"speculative_config: the draft model {model} does not exist (no such folder, and "
                         "not a hub id such as owner/name)")


def supported_spec_methods(
    known_methods: Iterable[str], *, on_cpu: bool, eagle3: bool, dspark: bool
) -> frozenset[str]:
    """Which of the installed vLLM's speculative methods can serve the Qwen3-Omni Thinker.

    Drafting from the prompt (ngram, suffix) works for any model; eagle3 and dflash
    need the model class to expose its hidden states (`SupportsEagle3`; a DFlash
    draft reads them as an EAGLE-3 one does); dspark needs vLLM's
    Qwen3-Omni draft validation; a generic draft model works for any target. MTP
    needs prediction layers the Qwen3-Omni checkpoints do not have.
    """
    known = set(known_methods)
    usable = set((MODEL_FREE_METHODS | {"draft_model"}) & known)
    if eagle3:
        usable |= EAGLE3_INTERFACE_METHODS & known
    if dspark:
        usable |= {"dspark"} & known
    if on_cpu:
        usable.discard("ngram_gpu")
    return frozenset(usable)


def literal_values(tp: Any) -> set[str]:
    """All strings of a (nested) typing.Literal, e.g. vLLM's SpeculativeMethod."""
    out: set[str] = set()
    for arg in typing.get_args(tp):
        if isinstance(arg, str):
            out.add(arg)
        else:
            out |= literal_values(arg)
    return out


def _positive_int(opts: Mapping[str, Any], name: str, default: int | None) -> Any:
    value = opts.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_video_size(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values())
    ):
        raise InputError(
            f'video_size must be a JSON object such as {{"longest_edge": 401408, "shortest_edge": 3136}}, '
            f"got {value!r}"
        )
    return dict(value)


def _check_engine_args(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"engine_args must be a JSON object of vLLM engine arguments, got {value!r}")
    return dict(value)
