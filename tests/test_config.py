from omnibatch.config import RunConfig


def test_fingerprint_ignores_where_and_how_fast_but_not_what():
    base = RunConfig(task="transcribe", inputs=["a.jsonl"], out="/o")
    moved = RunConfig(task="transcribe", inputs=["b.jsonl"], out="/p", shard_index=1, num_shards=4, workers=8)
    assert base.fingerprint() == moved.fingerprint()
    assert base.fingerprint() != RunConfig(task="transcribe", inputs=[], out="/o", model="m").fingerprint()
    assert base.fingerprint() != RunConfig(task="transcribe", inputs=[], out="/o", language="en").fingerprint()


def test_config_round_trips_through_json():
    config = RunConfig(task="caption", inputs=["x"], out="/o", engine_options={"tensor_parallel_size": 2})
    again = RunConfig.from_json(config.to_json())
    assert again == config and again.fingerprint() == config.fingerprint()
    assert again.with_shard(2, 3).shard_label == "00002-of-00003"
