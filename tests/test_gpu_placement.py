"""Where work lands on a GPU node, decided without one: GPUs per `--parallel` worker, the whisper
engine's device, and how the transformers engines place their weights (pure functions)."""

from __future__ import annotations

import pytest

from omnibatch.config import RunConfig
from omnibatch.engine.hf_loading import plan_loading
from omnibatch.engine.whisper_device import CudaStatus, choose_device
from omnibatch.errors import EngineError, InputError, MissingDependencyError
from omnibatch.run.local import gpus_per_worker, plan_gpus, visible_gpus, worker_env


def config(**engine_options) -> RunConfig:
    return RunConfig(task="transcribe", inputs=["x"], out="/tmp/o", engine="vllm", engine_options=engine_options)


def test_each_worker_gets_the_gpus_its_engine_asks_for():
    assert gpus_per_worker(config()) == 1
    assert gpus_per_worker(config(tensor_parallel_size=2)) == 2
    assert plan_gpus(4, 2, [str(i) for i in range(8)]) == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    assert plan_gpus(2, 2, ["4", "5", "6", "7"]) == [["4", "5"], ["6", "7"]]  # the ones this job was given
    assert plan_gpus(2, 2, None) == [["0", "1"], ["2", "3"]]  # nothing says which exist: numbered
    assert plan_gpus(3, 1, ["0", "1"]) == [["0"], ["1"], ["0"]]  # one each: shared in turn
    with pytest.raises(InputError, match="needs 8 GPUs, and 4 are visible.*--parallel 2"):
        plan_gpus(4, 2, ["0", "1", "2", "3"])
    with pytest.raises(InputError, match="tensor_parallel_size must be a positive integer"):
        gpus_per_worker(config(tensor_parallel_size="two"))


def test_tensor_parallel_size_from_a_vllm_config_file(tmp_path):
    file = tmp_path / "vllm.json"
    file.write_text('{"tensor_parallel_size": 4}')
    assert gpus_per_worker(config(config=str(file))) == 4
    assert gpus_per_worker(config(config=str(file), tensor_parallel_size=2)) == 2  # -E wins, as in the engine


def test_worker_environment_names_its_gpus():
    env = worker_env(1, 2, {"CUDA_VISIBLE_DEVICES": "2,3,4,5"}, gpus=["4", "5"])
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert worker_env(1, 2, {"CUDA_VISIBLE_DEVICES": "2,3"})["CUDA_VISIBLE_DEVICES"] == "3"
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0, 1"}) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_whisper_runs_on_cuda_in_float16_where_ctranslate2_can():
    gpu = CudaStatus(gpus=1, missing=())
    placed = choose_device("auto", "auto", gpu)
    assert (placed.device, placed.compute_type, placed.note) == ("cuda", "float16", None)
    assert choose_device("auto", "int8_float16", gpu).compute_type == "int8_float16"
    none = choose_device("auto", "auto", CudaStatus(0, ()))
    assert (none.device, none.compute_type, none.note) == ("cpu", "int8", None)
    assert choose_device("cpu", "auto", gpu).device == "cpu"


def test_whisper_says_what_is_missing_for_the_gpu():
    no_cublas = CudaStatus(gpus=2, missing=("libcublas.so.12", "libcublasLt.so.12"))
    placed = choose_device("auto", "auto", no_cublas)
    assert placed.device == "cpu" and "libcublas.so.12" in placed.note and "nvidia-cublas-cu12" in placed.note
    with pytest.raises(EngineError, match="CUDA 12's libcublas.so.12.*nvidia-cublas-cu12"):
        choose_device("cuda", "auto", no_cublas)
    with pytest.raises(EngineError, match="sees no CUDA GPU"):
        choose_device("cuda:0", "auto", CudaStatus(0, ()))
    with pytest.raises(InputError, match="use auto, cpu or cuda"):
        choose_device("tpu", "auto", no_cublas)


def test_weights_go_straight_to_the_gpu():
    one = plan_loading("cuda", None, gpu_count=1, has_accelerate=True)
    assert one.kwargs == {"device_map": {"": "cuda:0"}} and one.move_to is None
    assert plan_loading("cuda", 1, gpu_count=2, has_accelerate=True).kwargs == {"device_map": {"": "cuda:1"}}
    spread = plan_loading("cuda", None, gpu_count=2, has_accelerate=True,
                          max_memory={"0": "70GiB", "1": "70GiB", "cpu": "200GiB"})
    assert spread.kwargs == {"device_map": "auto", "max_memory": {0: "70GiB", 1: "70GiB", "cpu": "200GiB"}}
    assert plan_loading("cpu", None, gpu_count=0, has_accelerate=False).kwargs == {}


def test_without_accelerate_loading_goes_through_host_memory_and_says_so():
    plan = plan_loading("cuda", None, gpu_count=2, has_accelerate=False)
    assert plan.kwargs == {} and plan.move_to == "cuda:0"
    assert "host memory" in plan.warning and "pip install accelerate" in plan.warning
    assert "cannot spread" in plan.warning
    with pytest.raises(MissingDependencyError, match="accelerate"):
        plan_loading("cuda", None, gpu_count=2, has_accelerate=False, device_map="auto")
    with pytest.raises(InputError, match="max_memory must be a JSON object"):
        plan_loading("cuda", None, gpu_count=2, has_accelerate=True, max_memory="70GiB")
