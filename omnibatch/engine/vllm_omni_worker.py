"""vLLM-Omni in its own Python environment, driven by omnibatch's speech engine over a pipe.

vLLM-Omni 0.30 needs transformers < 5.15 and vLLM 0.30, omnibatch needs
transformers >= 5.16.1 (and `.[vllm]` brings vLLM 0.33), so the two cannot share
one environment: `scripts/bootstrap.sh --gpu-omni` builds `.venv-omni` from
`requirements/gpu-omni-lock.txt`, and `vllm_omni_remote.RemoteOmni` starts this
file there as a script:

    .venv-omni/bin/python omnibatch/engine/vllm_omni_worker.py MODEL --deploy-config F --results-fd N

It imports nothing of omnibatch (omnibatch's own dependencies are not in that
environment): only the standard library, numpy and vLLM-Omni. Commands come on
stdin, one JSON object a line; answers go, one JSON object a line, to the file
descriptor `--results-fd`, because vLLM writes its own log to stdout and stderr.
Audio comes back as `.npy` files in `--work-dir`.

    -> {"event": "ready", "defaults": [{...}, {...}, {...}]}   the stages' sampling defaults (JSON fields)
    <- {"op": "generate", "call": 1, "prompts": [...], "params": [{...}, {...}, {...}]}
    -> {"event": "output", "call": 1, "request_id": "0_ab12", "kind": "audio", "audio": ["f.npy"], ...}
    -> {"event": "done", "call": 1, "error": null, "errored": false}
    <- {"op": "close"}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import uuid
from typing import Any

_JSON_SCALARS = (str, int, float, bool, type(None))
_SAMPLE_RATE_KEYS = ("audio_sample_rate", "sample_rate", "sampling_rate", "sr")


def json_fields(params: Any) -> dict[str, Any]:
    """The fields of a SamplingParams (or a dict) that survive JSON: scalars and lists of scalars."""
    if isinstance(params, dict):
        items = params.items()
    else:
        names = getattr(params, "__struct_fields__", None) or [n for n in vars(params) if not n.startswith("_")]
        items = ((n, getattr(params, n, None)) for n in names)
    out: dict[str, Any] = {}
    for name, value in items:
        if name.startswith("_"):
            continue
        if isinstance(value, (set, frozenset, tuple)):
            value = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        if isinstance(value, _JSON_SCALARS) or (isinstance(value, list) and all(isinstance(v, _JSON_SCALARS)
                                                                                 for v in value)):
            out[name] = value
    return out


def apply_changes(default: Any, wanted: dict[str, Any]) -> Any:
    """`default` with the JSON fields whose value `wanted` changes; built anew as vLLM-Omni does."""
    seen = json_fields(default)
    changes = {k: v for k, v in wanted.items() if k in seen and seen[k] != v}
    if isinstance(default, dict):
        return {**default, **changes}
    names = getattr(default, "__struct_fields__", None)
    if names is not None:
        values = {n: getattr(default, n) for n in names if not n.startswith("_") and n != "output_text_buffer_length"}
        return type(default)(**{**values, **changes})
    for key, value in changes.items():
        setattr(default, key, value)
    return default


def audio_arrays(payload: Any) -> list[Any]:
    import numpy as np

    if payload is None:
        return []
    if isinstance(payload, (list, tuple)):
        return [a for p in payload for a in audio_arrays(p)]
    if hasattr(payload, "detach"):
        payload = payload.detach().float().cpu().numpy()
    return [np.asarray(payload, dtype=np.float32).reshape(-1)]


def describe_output(output: Any, call: int, work_dir: str) -> dict[str, Any]:
    """One stage output as a JSON message; its audio saved beside it."""
    import numpy as np

    message: dict[str, Any] = {"event": "output", "call": call, "request_id": str(getattr(output, "request_id", "")),
                               "kind": getattr(output, "final_output_type", "text")}
    error = getattr(output, "error", None)
    if error:
        message["error"] = str(error)
        return message
    if message["kind"] == "audio":
        payload = getattr(output, "multimodal_output", None) or {}
        files = []
        for chunk in audio_arrays(payload.get("audio")):
            path = os.path.join(work_dir, f"{uuid.uuid4().hex}.npy")
            np.save(path, chunk)
            files.append(path)
        message["audio"] = files
        for key in _SAMPLE_RATE_KEYS:
            value = payload.get(key)
            if value is not None:
                while isinstance(value, (list, tuple)) and value:
                    value = value[0]
                message["sample_rate"] = int(value.item() if hasattr(value, "item") else value)
                break
    completions = getattr(output, "outputs", None) or []
    if completions:
        message["text"] = getattr(completions[0], "text", None)
    return message


def serve(omni: Any, commands, send, work_dir: str) -> None:
    """Answer commands until `close` (or the end of stdin)."""
    defaults = list(omni.default_sampling_params_list)
    send({"event": "ready", "defaults": [json_fields(d) for d in defaults]})
    for line in commands:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("op") == "close":
            break
        call = int(command.get("call", 0))
        error = None
        try:
            params = [apply_changes(d, w) for d, w in zip(defaults, command["params"], strict=True)]
            for output in omni.generate(command["prompts"], params, py_generator=True, use_tqdm=False):
                send(describe_output(output, call, work_dir))
        except Exception as exc:  # noqa: BLE001 - reported to the engine, which decides
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        send({"event": "done", "call": call, "error": error, "errored": bool(getattr(omni, "errored", False))})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--deploy-config", default=None)
    parser.add_argument("--init-timeout", type=int, default=1200)
    parser.add_argument("--results-fd", type=int, required=True)
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args(argv)
    results = os.fdopen(args.results_fd, "w", buffering=1, encoding="utf-8")

    def send(message: dict[str, Any]) -> None:
        results.write(json.dumps(message) + "\n")
        results.flush()

    try:
        from vllm_omni.entrypoints.omni import Omni

        kwargs: dict[str, Any] = {"init_timeout": args.init_timeout}
        if args.deploy_config:
            kwargs["deploy_config"] = args.deploy_config
        omni = Omni(model=args.model, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the engine turns this into its own error
        traceback.print_exc(file=sys.stderr)
        send({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    try:
        serve(omni, sys.stdin, send, args.work_dir)
    finally:
        try:
            omni.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            traceback.print_exc(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
