import json
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from omnibatch.config import (
    AUTO_WORKERS, TASK_OPTIONS, TASKS, CaptionOptions, RunConfig, SummarizeOptions, TranscribeOptions,
)

FIELDS = {f.name for f in fields(RunConfig)}


def other_value(value):
    """A value of the same kind as `value`, but different."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": 1}
    return "en"  # None: the only optional fields here are language and model


def changed(config: RunConfig, name: str) -> RunConfig:
    return replace(config, **{name: other_value(getattr(config, name))})


def own_fields(task: str) -> set[str]:
    return {f.name for f in fields(TASK_OPTIONS[task])}


def test_fingerprint_ignores_where_and_how_fast_but_not_what():
    base = RunConfig(task="transcribe", inputs=["a.jsonl"], out="/o")
    moved = RunConfig(task="transcribe", inputs=["b.jsonl"], out="/p", shard_index=1, num_shards=4, workers=8)
    assert base.fingerprint() == moved.fingerprint()
    assert base.fingerprint() != RunConfig(task="transcribe", inputs=[], out="/o", model="m").fingerprint()
    assert base.fingerprint() != replace(base, inputs=[], language="en").fingerprint()


def test_each_task_reads_its_own_typed_options_record():
    config = RunConfig(task="summarize", inputs=[], out="/o", language="fr", max_words=50, fps=2.0)
    options = config.task_options()
    assert isinstance(options, SummarizeOptions)
    assert (options.language, options.max_words, options.fps) == ("fr", 50, 2.0)
    with pytest.raises(FrozenInstanceError):
        options.max_words = 10  # type: ignore[misc]
    assert isinstance(replace(config, task="transcribe").task_options(), TranscribeOptions)
    assert isinstance(replace(config, task="caption").task_options(), CaptionOptions)
    with pytest.raises(ValueError, match="unknown task"):
        replace(config, task="translate").task_options()


def test_summarize_and_caption_options_never_change_a_transcribe_fingerprint():
    base = RunConfig(task="transcribe", inputs=[], out="/o")
    foreign = (own_fields("summarize") | own_fields("caption")) - own_fields("transcribe")
    assert {"max_words", "summary_piece_chars", "speaker", "speak", "fps", "max_frames", "max_pixels",
            "clip_seconds"} <= foreign
    for name in sorted(foreign):
        assert changed(base, name).fingerprint() == base.fingerprint(), name
    for name in sorted(own_fields("transcribe")):
        assert changed(base, name).fingerprint() != base.fingerprint(), name


def test_summarize_and_transcribe_options_never_change_a_caption_fingerprint():
    base = RunConfig(task="caption", inputs=[], out="/o")
    foreign = (own_fields("summarize") | own_fields("transcribe")) - own_fields("caption")
    assert {"language", "chunk_seconds", "max_words", "speaker", "speak", "summary_piece_chars"} <= foreign
    for name in sorted(foreign):
        assert changed(base, name).fingerprint() == base.fingerprint(), name
    for name in sorted(own_fields("caption")):
        assert changed(base, name).fingerprint() != base.fingerprint(), name


@pytest.mark.parametrize("task", TASKS)
def test_every_task_fingerprints_its_options_and_the_common_fields_only(task):
    base = RunConfig(task=task, inputs=["a"], out="/o", engine_options={"batch_size": 4})
    for name in sorted(own_fields(task) | set(RunConfig._COMMON_FINGERPRINTED) - {"task"}):
        assert changed(base, name).fingerprint() != base.fingerprint(), name
    for name in sorted(FIELDS - own_fields(task) - set(RunConfig._COMMON_FINGERPRINTED)):
        assert changed(base, name).fingerprint() == base.fingerprint(), name
    assert set(base.fingerprinted_fields()) == own_fields(task) | set(RunConfig._COMMON_FINGERPRINTED)


def test_throughput_knobs_stay_out_of_every_fingerprint():
    for task in TASKS:
        base = RunConfig(task=task, inputs=[], out="/o")
        for name in sorted(RunConfig._NOT_FINGERPRINTED):
            assert changed(base, name).fingerprint() == base.fingerprint(), (task, name)
        assert replace(base, workers=AUTO_WORKERS).fingerprint() == base.fingerprint()
    knobs = {"workers", "rows_per_part", "speech_timeout_s", "formats"}
    assert knobs <= RunConfig._NOT_FINGERPRINTED


def test_every_field_is_fingerprinted_or_named_a_throughput_knob():
    """A new RunConfig field must be placed: in a task's record, the common fields, or _NOT_FINGERPRINTED."""
    fingerprinted = set(RunConfig._COMMON_FINGERPRINTED)
    for task in TASKS:
        assert own_fields(task) <= FIELDS  # records read flat fields of the same names
        fingerprinted |= own_fields(task)
    assert FIELDS == fingerprinted | RunConfig._NOT_FINGERPRINTED
    assert not fingerprinted & RunConfig._NOT_FINGERPRINTED


def test_fingerprinted_fields_name_what_differs_between_two_runs():
    """What `omnibatch.run.rundir` lists when a folder holds a run with different settings."""
    earlier = RunConfig(task="transcribe", inputs=[], out="/o")
    now = replace(earlier, chunk_seconds=20.0, max_words=10, workers=4)
    before, after = earlier.fingerprinted_fields(), now.fingerprinted_fields()
    assert sorted(k for k, v in after.items() if before.get(k) != v) == ["chunk_seconds"]


def test_config_round_trips_through_json():
    config = RunConfig(task="caption", inputs=["x"], out="/o", engine_options={"tensor_parallel_size": 2})
    again = RunConfig.from_json(config.to_json())
    assert again == config and again.fingerprint() == config.fingerprint()
    assert again.with_shard(2, 3).shard_label == "00002-of-00003"
    auto = replace(config, workers=AUTO_WORKERS)
    assert json.loads(auto.to_json())["workers"] is None
    assert RunConfig.from_json(auto.to_json()).workers is AUTO_WORKERS


def test_old_config_files_still_read():
    old = {"task": "transcribe", "inputs": ["m.jsonl"], "out": "/o", "engine": "auto", "workers": 2,
           "wave_seconds": 1800.0, "language": "en", "some_retired_field": 1}
    config = RunConfig.from_json(json.dumps(old))
    assert (config.workers, config.language, config.max_words) == (2, "en", 120)
    fresh = RunConfig(task="transcribe", inputs=[], out="/x", language="en")
    assert config.fingerprint() == fresh.fingerprint()


def test_speech_is_packed_for_the_whisper_engine_unless_told():
    base = RunConfig(task="transcribe", inputs=[], out="/o")
    assert not base.packs_speech  # Qwen engines: contiguous chunks, as measured
    assert replace(base, engine=" Whisper ").packs_speech
    assert not replace(base, engine="whisper", pack_speech=False).packs_speech
    assert replace(base, engine="vllm", pack_speech=True).packs_speech
    # The plan changes the rows: a resumed run must not mix packed and contiguous chunks.
    assert base.fingerprint() != replace(base, pack_speech=True).fingerprint()


def test_the_caption_frame_backend_reaches_the_task_and_a_bad_one_is_refused():
    import pytest

    from omnibatch.errors import InputError
    from omnibatch.run.executor import build_task

    config = RunConfig(task="caption", inputs=[], out="/o", frame_backend="decord")
    assert build_task(config).frame_backend == "decord"
    assert config.fingerprint() != RunConfig(task="caption", inputs=[], out="/o").fingerprint()
    with pytest.raises(InputError, match="--frame-backend must be ffmpeg or decord"):
        build_task(RunConfig(task="caption", inputs=[], out="/o", frame_backend="opencv"))
