"""vLLM-Omni running in its own environment (`.venv-omni`), seen from omnibatch as an `Omni`.

`RemoteOmni` starts `vllm_omni_worker.py` with that environment's Python and
offers what `VllmOmniSpeechEngine` uses of `vllm_omni.entrypoints.omni.Omni`:
`default_sampling_params_list` (as dicts of their JSON fields), `generate(...)`
yielding stage outputs, `errored` and `close()`. The worker's own output (vLLM's
log) goes to this process's stderr, never stdout; its answers come on a pipe of
their own.

Which Python: `OMNIBATCH_VLLM_OMNI_PYTHON`, else `.venv-omni/bin/python` beside
the omnibatch checkout (where `scripts/bootstrap.sh --gpu-omni` puts it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from omnibatch.errors import EngineError, MissingDependencyError

log = logging.getLogger(__name__)

PYTHON_ENV = "OMNIBATCH_VLLM_OMNI_PYTHON"
WORKER = Path(__file__).with_name("vllm_omni_worker.py")
INSTALL_HINT = ("scripts/bootstrap.sh --gpu-omni (builds .venv-omni from requirements/gpu-omni-lock.txt), or set "
                f"{PYTHON_ENV} to the Python of an environment with vllm-omni")


def omni_python(environ: dict[str, str] | None = None) -> Path | None:
    """The Python of the vLLM-Omni environment, or None when there is none."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get(PYTHON_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise MissingDependencyError(f"{PYTHON_ENV}={given} is not a Python executable: {INSTALL_HINT}")
        return path
    beside = Path(__file__).resolve().parents[2] / ".venv-omni" / "bin" / "python"
    return beside if beside.is_file() else None


class RemoteOmni:
    """vLLM-Omni's `Omni` in a worker process of another Python environment."""

    def __init__(self, model: str, *, python: Path, deploy_config: str | None, init_timeout: int,
                 worker: Path = WORKER, extra_env: dict[str, str] | None = None) -> None:
        self.errored = False
        self._work = Path(tempfile.mkdtemp(prefix="omnibatch-vllm-omni-"))
        self._calls = 0
        self._lock = threading.Lock()
        read_fd, write_fd = os.pipe()
        command = [str(python), str(worker), model, "--init-timeout", str(init_timeout),
                   "--results-fd", str(write_fd), "--work-dir", str(self._work)]
        if deploy_config:
            command += ["--deploy-config", str(deploy_config)]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only its own environment's packages
        env.update({"VLLM_LOGGING_STREAM": "ext://sys.stderr", **(extra_env or {})})
        log.info("starting vLLM-Omni in %s: %s", python, " ".join(command))
        try:
            log_fd = _stderr_fd()
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log_fd, stderr=log_fd,
                                          pass_fds=(write_fd,), env=env, text=True)
        except OSError as e:
            os.close(read_fd)
            os.close(write_fd)
            raise EngineError(f"cannot start vLLM-Omni's worker with {python}: {e}") from e
        os.close(write_fd)
        self._answers = os.fdopen(read_fd, "r", encoding="utf-8")
        ready = self._next()
        if ready is None or ready.get("event") != "ready":
            why = (ready or {}).get("error") or f"the worker exited with code {self._proc.wait()}"
            self.close()
            raise EngineError(f"vLLM-Omni could not start {model}: {why} (its log is on stderr above)")
        self.default_sampling_params_list = list(ready["defaults"])

    def generate(self, prompts: Sequence[dict[str, Any]], params: Sequence[Any], *, py_generator: bool = True,
                 use_tqdm: bool = False) -> Iterator[Any]:
        """Stage outputs as they finish, shaped as vLLM-Omni's own (request_id, final_output_type, ...)."""
        with self._lock:
            self._calls += 1
            call = self._calls
            self._send({"op": "generate", "call": call, "prompts": list(prompts),
                        "params": [p if isinstance(p, dict) else _as_dict(p) for p in params]})
        while True:
            message = self._next()
            if message is None:
                self.errored = True
                raise EngineError(f"vLLM-Omni's worker exited (code {self._proc.poll()}) while generating")
            if message.get("call") != call:
                continue
            if message.get("event") == "done":
                self.errored = bool(message.get("errored"))
                if message.get("error"):
                    raise EngineError(f"vLLM-Omni failed: {message['error']}")
                return
            yield self._output(message)

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                self._send({"op": "close"})
                proc.wait(timeout=60)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        answers = getattr(self, "_answers", None)
        if answers is not None:
            answers.close()
        shutil.rmtree(self._work, ignore_errors=True)

    # -- the pipe --------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message) + "\n")
        self._proc.stdin.flush()

    def _next(self) -> dict[str, Any] | None:
        line = self._answers.readline()
        return json.loads(line) if line else None

    def _output(self, message: dict[str, Any]) -> Any:
        audio = []
        for name in message.get("audio") or []:
            audio.append(np.load(name))
            os.unlink(name)
        multimodal: dict[str, Any] = {"audio": audio or None}
        if "sample_rate" in message:
            multimodal["sample_rate"] = message["sample_rate"]
        completions = [SimpleNamespace(text=message["text"])] if message.get("text") is not None else []
        return SimpleNamespace(request_id=message.get("request_id", ""), final_output_type=message.get("kind"),
                               multimodal_output=multimodal, outputs=completions, error=message.get("error"))


def _stderr_fd() -> int:
    """This process's stderr as a file descriptor: the worker's log goes there, never to stdout."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (e.g. captured): the real one
        return 2


def _as_dict(params: Any) -> dict[str, Any]:
    names = getattr(params, "__struct_fields__", None) or [n for n in vars(params) if not n.startswith("_")]
    return {n: getattr(params, n) for n in names}
