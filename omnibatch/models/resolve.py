"""Turn what the user passed as `--model` into a `ModelSpec` the engines can load.

`None` or "tiny" is the embedded tiny model (built on first use), "tiny-thinking"
its Thinking variant. A local folder is read for its config. Anything else that
looks like `owner/name` is a hub id, passed through untouched: downloading is
the engine's business. A hub id that is not in the local cache is checked once
with one short request (`check_hub_reachable`, at most a few seconds), so a run
whose model cannot be fetched fails at once with the command that downloads it,
instead of retrying for minutes inside the engine.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omnibatch.errors import InputError

Variant = Literal["instruct", "thinking", "captioner"]

TINY_ALIASES = frozenset({"tiny", "default"})
TINY_THINKING_ALIASES = frozenset({"tiny-thinking"})
HUB_PROBE_TIMEOUT_S = 5.0  # one HEAD request for the checkpoint's config.json, no retries
# owner/name as the Hugging Face hub spells it (one slash, no path syntax).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class ModelSpec:
    source: str  # absolute local folder, or a hub id
    label: str  # what the `model` column says
    is_local: bool
    is_tiny: bool
    variant: Variant
    has_talker: bool  # the checkpoint can speak (Talker + Code2Wav present and enabled)
    note: str | None = None  # e.g. "random weights: the text is meaningless"


def resolve_model(spec: str | os.PathLike[str] | None, *, cache_dir: Path | None = None) -> ModelSpec:
    """Resolve `--model`: None/"tiny" -> the embedded model, a folder, or a hub id."""
    text = None if spec is None else os.fspath(spec).strip()
    if not text or text.lower() in TINY_ALIASES:
        return _tiny_spec(cache_dir)
    if text.lower() in TINY_THINKING_ALIASES:
        return _tiny_spec(cache_dir, "thinking")

    path = Path(text).expanduser()
    if path.exists():
        return _local_spec(path.resolve())
    if looks_like_hub_id(text):
        return _hub_spec(text)
    raise InputError(
        f"model folder {text} does not exist. Pass an existing local folder with the model's "
        "config.json and weights, a hub id such as Qwen/Qwen3-Omni-30B-A3B-Instruct, or leave "
        "--model out to use the embedded tiny test model"
    )


def model_variant(spec: str | os.PathLike[str] | None) -> Variant:
    """The variant `--model` names, without building the tiny model (which resolve_model would)."""
    text = None if spec is None else os.fspath(spec).strip()
    if not text or text.lower() in TINY_ALIASES:
        return "instruct"
    if text.lower() in TINY_THINKING_ALIASES:
        return "thinking"
    return resolve_model(text).variant


def looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and ".." not in text and not text.startswith((".", "~"))


def detect_variant(name: str, config: dict[str, Any] | None = None) -> Variant:
    """Instruct, Thinking or Captioner, from the checkpoint's name and config.

    Upstream's three Qwen3-Omni checkpoints share one architecture and model
    type (`Qwen3OmniMoeForConditionalGeneration`, `qwen3_omni_moe`), so the name
    is the main signal ("...-Captioner", "...-Thinking"); a config may also name
    it in `_name_or_path`, and omnibatch's own marker file can state it.
    """
    hints = [name]
    if config:
        hints += [str(config.get("_name_or_path", "")), str(config.get("omnibatch_variant", ""))]
    joined = " ".join(hints).lower()
    if "captioner" in joined:
        return "captioner"
    if "thinking" in joined:
        return "thinking"
    return "instruct"


def read_model_config(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {folder / 'config.json'}: {e}") from e


def config_has_talker(config: dict[str, Any] | None) -> bool:
    if not config or config.get("model_type") != "qwen3_omni_moe":
        return False
    # Upstream defaults enable_audio_output to True; the text-only checkpoints set it False.
    return bool(config.get("enable_audio_output", True)) and bool(config.get("talker_config"))


def _tiny_spec(cache_dir: Path | None, variant: Variant = "instruct") -> ModelSpec:
    from omnibatch.models.tiny import TINY_NAMES, ensure_tiny_model, read_marker

    folder = ensure_tiny_model(cache_dir, variant)
    marker = read_marker(folder) or {}
    return ModelSpec(
        source=str(folder),
        label=TINY_NAMES[variant],
        is_local=True,
        is_tiny=True,
        variant=marker.get("variant", variant),
        has_talker=config_has_talker(read_model_config(folder)),
        note=marker.get("note"),
    )


def _local_spec(folder: Path) -> ModelSpec:
    from omnibatch.models.tiny import read_marker

    if not folder.is_dir():
        raise InputError(
            f"--model {folder} is a file; pass the folder that holds config.json and the weights"
        )
    config = read_model_config(folder)
    marker = read_marker(folder) or {}
    is_tiny = marker.get("tiny") is True
    variant = marker.get("variant") or detect_variant(folder.name, config)
    return ModelSpec(
        source=str(folder),
        label=marker.get("name", str(folder)) if is_tiny else str(folder),
        is_local=True,
        is_tiny=is_tiny,
        variant=variant,
        has_talker=config_has_talker(config),
        note=marker.get("note") if is_tiny else None,
    )


def _hub_spec(repo_id: str) -> ModelSpec:
    config = _cached_hub_config(repo_id)
    if config is None and _hub_offline():
        raise InputError(
            f"--model {repo_id} is a hub id, but HF_HUB_OFFLINE=1 is set and it is not in the local "
            "Hugging Face cache. Download it where the hub is reachable (hf download "
            f"{repo_id} --local-dir DIR) and pass the local folder: --model DIR"
        )
    if config is None:
        check_hub_reachable(repo_id)
    variant = detect_variant(repo_id, config)
    if config is not None:
        has_talker = config_has_talker(config)
    else:
        # Not downloaded yet: go by upstream's releases (only Instruct speaks).
        has_talker = variant == "instruct"
    return ModelSpec(
        source=repo_id, label=repo_id, is_local=False, is_tiny=False, variant=variant, has_talker=has_talker
    )


@functools.lru_cache(maxsize=32)
def check_hub_reachable(repo_id: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> None:
    """Fail at once (InputError) when `repo_id`'s config.json cannot be fetched from the hub.

    One HEAD request, with the token huggingface_hub would send, answered within
    `timeout_s` or given up (huggingface_hub itself retries a refused connection
    with backoff for ~25 s, and the engines' loaders for minutes).
    """
    url, headers = _hub_config_url(repo_id)
    box: dict[str, object] = {}

    def probe() -> None:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                box["status"] = response.status
        except urllib.error.HTTPError as e:
            box["status"] = e.code
        except Exception as e:  # noqa: BLE001 - any failure to connect is "unreachable"
            box["error"] = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"

    worker = threading.Thread(target=probe, daemon=True, name="hub-probe")
    worker.start()
    worker.join(timeout_s + 1.0)
    status, error = box.get("status"), box.get("error")
    if worker.is_alive():
        error = f"no answer within {timeout_s:g} s"
    download = (f"Download it where the hub is reachable (hf download {repo_id} --local-dir DIR) and pass "
                "the local folder: --model DIR")
    if error is not None:
        raise InputError(f"--model {repo_id} is a hub id, but the hub ({_hub_endpoint()}) cannot be reached "
                         f"from here ({error}). {download}")
    if status in (401, 403):
        raise InputError(f"--model {repo_id}: the hub refused access (HTTP {status}): the model is gated or "
                         "private. Accept its terms on the hub and log in (hf auth login), or download it "
                         f"elsewhere (hf download {repo_id} --local-dir DIR) and pass --model DIR")
    if status == 404:
        raise InputError(f"--model {repo_id}: the hub has no such model (or it has no config.json): check the "
                         "id, e.g. Qwen/Qwen3-Omni-30B-A3B-Instruct, or pass a local folder")
    if not isinstance(status, int) or status >= 400:
        raise InputError(f"--model {repo_id}: the hub answered HTTP {status} for its config.json. {download}")


def _hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    return endpoint.rstrip("/")


def _hub_config_url(repo_id: str) -> tuple[str, dict[str, str]]:
    headers = {"User-Agent": "omnibatch"}
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:  # noqa: BLE001 - no huggingface_hub, or no token: ask anonymously
        token = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return f"{_hub_endpoint()}/{repo_id}/resolve/main/config.json", headers


def _hub_offline() -> bool:
    flags = (os.environ.get(k, "").lower() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in {"1", "true", "yes", "on"} for flag in flags)


def _cached_hub_config(repo_id: str) -> dict[str, Any] | None:
    """The hub checkpoint's config.json if it is already in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        # HF_HUB_CACHE read now: huggingface_hub reads it once, at import.
        cache_dir = os.environ.get("HF_HUB_CACHE") or None
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except Exception:  # malformed ids and cache layouts: treat as not cached
        return None
    if not isinstance(found, str):
        return None
    try:
        return json.loads(Path(found).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
