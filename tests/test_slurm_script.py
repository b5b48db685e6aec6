"""The sbatch scripts `omnibatch submit` writes, checked offline against golden files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnibatch.config import RunConfig
from omnibatch.errors import InputError
from omnibatch.run.rundir import RunDir
from omnibatch.run.slurm_script import (
    ARRAY_TEMPLATE,
    SUMMARY_TEMPLATE,
    SlurmOptions,
    array_spec,
    load_template,
    render,
    render_array_script,
    render_summary_script,
)
from omnibatch.run.submit import unfinished_shards
from tests.mediagen import make_speech

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[1]
PYTHON = ["/opt/omnibatch/.venv/bin/python", "-m", "omnibatch"]
OPTIONS = SlurmOptions(num_shards=6, partition="gpu", gpus_per_task=1, cpus_per_task=8, mem="64G",
                       time="4:00:00", account="speech-lab", qos="normal", max_parallel=2,
                       signal_margin_s=600, extra=["--constraint=a100", "--exclusive"])


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("OMNIBATCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with OMNIBATCH_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name} changed; review and rerun with OMNIBATCH_UPDATE_GOLDEN=1"


def test_array_script_matches_golden():
    text = render_array_script(task="transcribe", out=Path("/data/podcasts/out"),
                               config=Path("/data/podcasts/out/_run/config-transcribe.json"),
                               shards=[0, 1, 2, 4], options=OPTIONS, omnibatch=PYTHON)
    check_golden("shard-array.sbatch", text)


def test_summary_script_matches_golden():
    text = render_summary_script(task="transcribe", out=Path("/data/podcasts/out"), array_job="4242",
                                 options=OPTIONS, omnibatch=PYTHON)
    check_golden("run-summary.sbatch", text)


def test_minimal_script_leaves_resources_to_the_cluster_and_quotes_odd_paths():
    out = Path("/data/my run %1")
    text = render_array_script(task="caption", out=out, config=out / "c.json", shards=[3],
                               options=SlurmOptions(num_shards=4), omnibatch=["python3", "-m", "omnibatch"])
    assert "#SBATCH --array=3\n" in text
    assert '#SBATCH --output="/data/my run %%1/_run/slurm/%x-%A_%a.out"' in text
    command = "exec python3 -m omnibatch run-shard '/data/my run %1/c.json' --shard"
    assert command + ' "${SLURM_ARRAY_TASK_ID}/4"' in text
    for absent in ("--partition", "--gpus-per-task", "--mem", "--time=", "--account", "--qos"):
        assert absent not in text
    # bash accepts it
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_array_spec_compresses_shard_lists():
    assert array_spec([0, 1, 2, 3]) == "0-3"
    assert array_spec([1, 3]) == "1,3"
    assert array_spec([8, 0, 1, 2, 5, 7], 4) == "0-2,5,7-8%4"
    with pytest.raises(ValueError):
        array_spec([])


@pytest.mark.parametrize("bad", ["--array=0-3", "--signal=USR1@60", "--no-requeue", "constraint=a100",
                                 "--output=/tmp/x", "--wrap=true", "--dependency=afterok:1"])
def test_pass_through_arguments_cannot_break_the_contract(bad):
    with pytest.raises(InputError):
        SlurmOptions(num_shards=2, extra=[bad])


def test_option_ranges_are_checked():
    for kwargs in ({"num_shards": 0}, {"num_shards": 2, "max_parallel": 0},
                   {"num_shards": 2, "signal_margin_s": 0}):
        with pytest.raises(InputError):
            SlurmOptions(**kwargs)


def test_render_refuses_unknown_placeholders():
    with pytest.raises(KeyError):
        render("{{nope}}", {})


def test_jobs_folder_holds_the_packaged_templates():
    for name in (ARRAY_TEMPLATE, SUMMARY_TEMPLATE):
        assert (REPO / "jobs" / name).read_text() == load_template(name)


def test_unfinished_shards_reads_completion_markers(tmp_path):
    rundir = RunDir(tmp_path)
    config = RunConfig(task="transcribe", inputs=[], out=str(tmp_path))
    for i in (0, 2):
        rundir.mark_complete("transcribe", config.with_shard(i, 4).shard_label, {"fingerprint": "x"})
    rundir.mark_complete("transcribe", config.with_shard(1, 5).shard_label, {"fingerprint": "x"})  # other N
    assert unfinished_shards(rundir, "transcribe", 4) == [1, 3]


def test_submit_dry_run_writes_config_script_and_durations(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i, words in enumerate(["one two three", "four five six seven eight nine ten", "eleven"]):
        make_speech(media / f"s{i}.wav", words)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "path": f"media/s{i}.wav"}) + "\n"
                                for i in range(3)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "omnibatch", "submit", "transcribe", str(manifest), "--out", str(out),
           "--array", "2", "--engine", "transformers", "--language", "en", "--max-new-tokens", "7",
           "--sbatch-arg=--constraint=a100", "--dry-run"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --array=0-1\n" in done.stdout and "#SBATCH --constraint=a100" in done.stdout
    config = RunConfig.from_json((out / "_run" / "config-transcribe.json").read_text())
    got = (config.engine, config.language, config.max_new_tokens, config.num_shards)
    assert got == ("transformers", "en", 7, 2)
    assert config.inputs == [str(manifest)] and config.out == str(out)
    durations = json.loads((out / "_run" / "durations.json").read_text())["durations"]
    assert sorted(durations) == sorted(str(media / f"s{i}.wav") for i in range(3))
    assert all(v > 0.3 for v in durations.values())
    assert (out / "_run" / "slurm" / "transcribe-001.sbatch").read_text() == done.stdout

    # A task option the task does not take is refused by the task's own parser.
    bad = subprocess.run([*cmd[:-1], "--no-such-option", "--dry-run"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "no-such-option" in bad.stderr
    shard = subprocess.run([*cmd, "--shard", "0/2"], capture_output=True, text=True, timeout=120)
    assert shard.returncode != 0 and "--array" in shard.stderr
