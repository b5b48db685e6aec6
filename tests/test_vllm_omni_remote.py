"""vLLM-Omni in its own environment: the worker process and the pipe to it, and the deploy chosen for
the GPUs a node has.

vLLM-Omni has no CPU platform, so the worker runs here against a stand-in `vllm_omni` package (its
`Omni` answers as the real one does: stage outputs in completion order, audio in chunks); everything
else is the real code path: a second Python process started as `.venv-omni` would be, JSON over a
pipe of its own, audio as files, the speech engine's prompts and sampling parameters.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from omnibatch.engine.vllm_omni_engine import (
    ONE_GPU_DEPLOY,
    VllmOmniSpeechEngine,
    choose_deploy,
    vllm_omni_available,
)
from omnibatch.engine.vllm_omni_remote import PYTHON_ENV, RemoteOmni, omni_python
from omnibatch.engine.vllm_omni_worker import apply_changes, json_fields
from omnibatch.errors import EngineError, MissingDependencyError
from omnibatch.models.tiny import build_tiny_model
from omnibatch.engine.base import SpeechRequest, codes_for

FAKE_OMNI = '''
import numpy as np


class Params:
    __struct_fields__ = ("temperature", "top_k", "max_tokens", "seed", "stop_token_ids", "output_kind")

    def __init__(self, temperature=0.0, top_k=-1, max_tokens=16, seed=None, stop_token_ids=(), output_kind=None):
        self.temperature, self.top_k, self.max_tokens, self.seed = temperature, top_k, max_tokens, seed
        self.stop_token_ids, self.output_kind = list(stop_token_ids), output_kind or object()


class Out:
    def __init__(self, request_id, kind, text=None, audio=None):
        self.request_id, self.final_output_type, self.error = request_id, kind, None
        self.outputs = [type("C", (), {"text": text})()] if text is not None else []
        self.multimodal_output = {"audio": audio, "sr": 24000} if audio is not None else None


class Omni:
    def __init__(self, model, init_timeout=0, deploy_config=None):
        if "broken" in model:
            raise RuntimeError("CUDA out of memory while loading the talker")
        self.model, self.deploy_config, self.errored = model, deploy_config, False
        self.default_sampling_params_list = [Params(0.4, max_tokens=2048),
                                             Params(0.9, 50, 4096, 42, [7]), Params(0.0, max_tokens=65536)]

    def generate(self, prompts, params, py_generator=False, use_tqdm=True):
        assert py_generator and not use_tqdm and all(isinstance(p, Params) for p in params)
        assert all(not isinstance(p.output_kind, (str, int, type(None))) for p in params)  # kept, not sent
        for i in reversed(range(len(prompts))):
            rid = f"{i}_uuid{i}"
            said = prompts[i]["prompt"].split("say nothing else.\\n\\n", 1)[1].split("<|im_end|>", 1)[0]
            if "explode" in said:
                raise RuntimeError("stage 1 failed")
            yield Out(rid, "text", text=said)
            n = 24 * (i + 1) * params[1].max_tokens
            yield Out(rid, "audio", audio=[np.full(n // 2, 0.1 * (i + 1), np.float32),
                                           np.full((1, n - n // 2), 0.1 * (i + 1), np.float32)])

    def close(self):
        pass
'''


@pytest.fixture(scope="module")
def fake_env(tmp_path_factory) -> dict[str, str]:
    """A PYTHONPATH holding a stand-in `vllm_omni` package, as `.venv-omni` holds the real one."""
    root = tmp_path_factory.mktemp("fake-omni-env")
    package = root / "vllm_omni" / "entrypoints"
    package.mkdir(parents=True)
    (root / "vllm_omni" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "omni.py").write_text(textwrap.dedent(FAKE_OMNI))
    return {"PYTHONPATH": str(root)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def remote(fake_env, model: str = "/models/qwen3-omni", **kw) -> RemoteOmni:
    return RemoteOmni(model, python=Path(sys.executable), deploy_config=kw.pop("deploy_config", None),
                      init_timeout=30, extra_env=fake_env, **kw)


def test_worker_serves_defaults_outputs_and_audio_over_its_pipe(fake_env):
    omni = remote(fake_env, deploy_config="/etc/one-gpu.yaml")
    try:
        thinker, talker, code2wav = omni.default_sampling_params_list
        assert talker == {"temperature": 0.9, "top_k": 50, "max_tokens": 4096, "seed": 42, "stop_token_ids": [7]}
        prompt = "<|im_start|>user\nsay nothing else.\n\nHello there.<|im_end|>\n"
        outputs = list(omni.generate([{"prompt": prompt}], [thinker, {**talker, "max_tokens": 100}, code2wav]))
        assert [(o.request_id, o.final_output_type) for o in outputs] == [("0_uuid0", "text"), ("0_uuid0", "audio")]
        assert outputs[0].outputs[0].text == "Hello there."
        chunks = outputs[1].multimodal_output["audio"]
        assert [c.size for c in chunks] == [1200, 1200] and np.allclose(np.concatenate(chunks), 0.1)
        assert not list(omni._work.iterdir())  # audio files are removed once read
        with pytest.raises(EngineError, match="stage 1 failed"):
            list(omni.generate([{"prompt": prompt.replace("Hello", "explode")}], [thinker, talker, code2wav]))
    finally:
        omni.close()
    assert omni._proc.poll() == 0 and not omni._work.exists()


def test_a_worker_that_cannot_start_says_why(fake_env):
    with pytest.raises(EngineError, match="CUDA out of memory while loading the talker"):
        remote(fake_env, model="/models/broken")


def test_speech_engine_speaks_through_the_worker(fake_env, tiny_dir):
    def factory(model, *, deploy_config, init_timeout):
        return RemoteOmni(model, python=Path(sys.executable), deploy_config=deploy_config,
                          init_timeout=init_timeout, extra_env=fake_env)

    engine = VllmOmniSpeechEngine(str(tiny_dir), omni_factory=factory, deploy_config="/etc/deploy.yaml")
    try:
        out = engine.speak([SpeechRequest("a", "First summary.", "Chelsie", 10.0),
                            SpeechRequest("b", "Second summary here.", "Aiden", 0.15)])
        assert out[0].error is None and out[0].spoken_text == "First summary." and out[0].sample_rate == 24000
        expected = 24 * codes_for(10.0)  # the talker's limit came through the pipe
        assert out[0].audio.size == expected and np.allclose(out[0].audio, 0.1)
        assert out[1].capped and out[1].audio.size == 0.15 * 24000 and np.allclose(out[1].audio, 0.2)
    finally:
        engine.close()


def test_sampling_fields_survive_json_and_only_changes_are_applied():
    class Params:
        __struct_fields__ = ("temperature", "stop_token_ids", "allowed", "output_kind")

        def __init__(self, temperature=0.0, stop_token_ids=(), allowed=frozenset(), output_kind=None):
            self.temperature, self.stop_token_ids, self.allowed, self.output_kind = (
                temperature, stop_token_ids, allowed, output_kind)

    kind = object()
    base = Params(0.9, (1, 2), frozenset({3}), kind)
    assert json_fields(base) == {"temperature": 0.9, "stop_token_ids": [1, 2], "allowed": [3]}
    changed = apply_changes(base, {"temperature": 0.0, "stop_token_ids": [1, 2], "unknown": 5})
    assert changed.temperature == 0.0 and changed.stop_token_ids == (1, 2) and changed.output_kind is kind


def test_deploy_follows_the_gpus_a_node_has():
    assert choose_deploy(2, 80.0) is None  # vLLM-Omni's own: Thinker on GPU 0, Talker + Code2Wav on GPU 1
    assert choose_deploy(1, 139.8) == str(ONE_GPU_DEPLOY)  # one H200
    with pytest.raises(EngineError, match="two GPUs"):
        choose_deploy(1, 79.2)  # one H100: refused with what would fit
    with pytest.raises(EngineError, match="no CPU platform"):
        choose_deploy(0, None)


def test_one_gpu_deploy_puts_every_stage_on_gpu_0_within_its_memory():
    deploy = yaml.safe_load(ONE_GPU_DEPLOY.read_text())
    stages = deploy["stages"]
    assert [s["stage_id"] for s in stages] == [0, 1, 2] and {s["devices"] for s in stages} == {"0"}
    shares = [s["gpu_memory_utilization"] for s in stages]
    assert sum(shares) <= 0.92
    # The Thinker's share of a 141 GB H200 holds its ~63 GB of bf16 weights with room for a KV cache.
    assert shares[0] * 141 > 63 + 15
    assert stages[1]["input_connectors"] == {"from_stage_0": "connector_of_shared_memory"}
    assert stages[1]["default_sampling_params"]["seed"] == 42


def test_the_omni_environment_is_found_or_named(tmp_path, monkeypatch):
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(MissingDependencyError, match="bootstrap.sh --gpu-omni"):
        omni_python()
    assert not vllm_omni_available() or __import__("importlib").util.find_spec("vllm_omni")
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    assert omni_python() == Path(sys.executable) and vllm_omni_available()
