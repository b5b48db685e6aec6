"""Datasets as inputs: save_to_disk folders, hub-style Parquet and JSONL, --dataset; bytes decoded by the
confined ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mediagen import make_audio, make_speech
from omnibatch.errors import InputError
from omnibatch.manifests import read_inputs
from omnibatch.media.staging import staged
from omnibatch.pipeline.decode_pool import Failed, Probed, decode_events, probe_media
from omnibatch.records import UNSTAGED_PATH

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
datasets = pytest.importorskip("datasets")


def _rows(tmp_path: Path) -> list[dict]:
    speech = make_speech(tmp_path / "hello.wav", "hello world, this is a test")
    tone = make_audio(tmp_path / "tone.wav", 1.5)
    return [
        {"audio": {"bytes": speech.read_bytes(), "path": "hello.wav"}, "speaker": "amy", "path": "orig/a.wav"},
        {"audio": {"bytes": tone.read_bytes(), "path": "tone.wav"}, "speaker": "bob", "path": None},
        {"audio": {"bytes": b"this is not audio at all" * 10, "path": "junk.wav"}, "speaker": "cy", "path": None},
    ]


def _as_dataset(columns: dict[str, list], features: dict, split: str | None = "train"):
    """A real `datasets.Dataset` over an Arrow table as the Audio feature stores it ({bytes, path}).

    Built from Arrow directly: datasets 5 encodes Audio values through torchcodec, which this
    environment does not have; the stored layout is the same."""
    import pyarrow as pa
    from datasets.table import InMemoryTable

    media = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrays = {key: pa.array(values, type=media if key == "audio" else None) for key, values in columns.items()}
    info = datasets.DatasetInfo(features=datasets.Features(features))
    return datasets.Dataset(InMemoryTable(pa.table(arrays)), info=info,
                            split=datasets.NamedSplit(split) if split else None)


def _dataset(tmp_path: Path):
    rows = _rows(tmp_path)
    columns = {key: [r[key] for r in rows] for key in rows[0]}
    return _as_dataset(columns, {"audio": datasets.Audio(decode=False), "speaker": datasets.Value("string"),
                                 "path": datasets.Value("string")})


def test_a_save_to_disk_folder_is_read_row_by_row_without_holding_bytes(tmp_path):
    folder = tmp_path / "ds"
    _dataset(tmp_path).save_to_disk(str(folder))
    items = read_inputs([str(folder)]).items
    assert [it.id for it in items] == ["ds-train-000000", "ds-train-000001", "ds-train-000002"]
    first = items[0]
    assert first.path == UNSTAGED_PATH and first.origin is not None and first.origin.kind == "dataset"
    assert first.extra == {"speaker": "amy", "path": "orig/a.wav"}
    assert first.display_path.endswith("[0].audio")
    import pickle

    assert len(pickle.dumps(items)) < 4000  # addresses only, no media bytes

    with staged(first) as local:
        assert local.path.is_file() and local.path.name == "hello.wav"
        assert os.stat(local.path).st_mode & 0o777 == 0o600
        assert os.stat(local.path.parent).st_mode & 0o777 == 0o700
        info = probe_media(local)
        assert 1.0 < info.duration_s < 5.0
    assert not local.path.exists()  # removed when the item is done


def test_a_corrupt_blob_is_an_error_of_its_own(tmp_path):
    folder = tmp_path / "ds"
    _dataset(tmp_path).save_to_disk(str(folder))
    junk = read_inputs([str(folder)]).items[2]

    class NoDecode:
        def decode(self, item, info):
            return iter(())

    events = list(decode_events(NoDecode(), 0, junk))
    assert len(events) == 1 and isinstance(events[0], Failed) and events[0].stage == "probe"
    assert "junk.wav" in events[0].error and "not a media file" in events[0].error
    good = list(decode_events(NoDecode(), 1, read_inputs([str(folder)]).items[1]))
    assert isinstance(good[0], Probed)


def test_hub_style_parquet_with_an_audio_struct_column(tmp_path):
    files = tmp_path / "pq"
    _dataset(tmp_path).to_parquet(str(files / "train-00000.parquet"))
    items = read_inputs([str(files / "train-00000.parquet")]).items
    assert len(items) == 3 and items[1].extra["speaker"] == "bob"
    with staged(items[1]) as local:
        assert 1.4 < probe_media(local).duration_s < 1.6


def test_a_dataset_dict_folder_and_a_missing_split(tmp_path):
    folder = tmp_path / "dd"
    datasets.DatasetDict({"test": _dataset(tmp_path)}).save_to_disk(str(folder))
    assert len(read_inputs([str(folder)]).items) == 3
    from omnibatch.manifests.datasets_input import DatasetSpec

    with pytest.raises(InputError, match="no split 'dev'"):
        read_inputs([DatasetSpec(str(folder), split="dev").as_input()])
    with pytest.raises(InputError, match="no column 'speech'"):
        read_inputs([DatasetSpec(str(folder), split="test", column="speech").as_input()])


def test_paths_in_a_dataset_are_local_files(tmp_path):
    (tmp_path / "clips").mkdir()
    make_audio(tmp_path / "clips" / "one.wav", 1.0)
    ds = _as_dataset({"audio": [{"bytes": None, "path": "clips/one.wav"}], "id": ["first"]},
                     {"audio": datasets.Audio(decode=False), "id": datasets.Value("string")})
    pq.write_table(ds.data.table, tmp_path / "meta.parquet")  # to_parquet would embed the file's bytes
    (item,) = read_inputs([str(tmp_path / "meta.parquet")]).items
    assert item.id == "first" and item.origin is None and item.path == tmp_path / "clips" / "one.wav"


def test_a_hub_style_jsonl_names_its_media_in_an_audio_key(tmp_path):
    (tmp_path / "clips").mkdir()
    make_audio(tmp_path / "clips" / "one.wav", 1.0)
    make_audio(tmp_path / "clips" / "two.wav", 1.0)
    data = tmp_path / "metadata.jsonl"
    data.write_text('{"audio": "clips/one.wav", "text": "first words", "speaker": "amy"}\n'
                    '{"audio": "clips/two.wav", "text": "second words", "speaker": "bob"}\n')
    items = read_inputs([str(data)]).items
    assert [i.path for i in items] == [tmp_path / "clips" / "one.wav", tmp_path / "clips" / "two.wav"]
    assert [i.extra["speaker"] for i in items] == ["amy", "bob"] and items[1].extra["text"] == "second words"
    assert [i.id for i in items] == ["metadata-000000", "metadata-000001"]  # <file>-<record>, stable
    data.write_text('{"audio": {"path": "clips/one.wav"}, "id": "x", "n": 18446744073709551616}\n'
                    '{"audio": "clips/two.wav", "id": "x"}\n')  # past 64 bits: a manifest holds it, so must this
    with pytest.raises(InputError, match=r'metadata.jsonl:2: duplicate id "x" \(first at .*metadata.jsonl:1\)'):
        read_inputs([str(data)])


def test_a_hub_style_jsonl_with_bad_lines_is_refused_line_by_line(tmp_path):
    # datasets' json builder would fail on any of these naming no line; they are refused as a manifest's are.
    data = tmp_path / "metadata.jsonl"
    data.write_text('{"audio": "a.wav", "text": "fine"}\n'
                    '{"audio": "\\udc80.wav"}\n'
                    "not json\n"
                    '{"audio": "c.wav", "deep": ' + "[" * 5000 + "]" * 5000 + "}\n"
                    '["a list"]\n'
                    '{"audio": "e.wav", "n": ' + "9" * 5000 + "}\n")
    with pytest.raises(InputError) as refused:
        read_inputs([str(data)])
    text = str(refused.value)
    assert "5 problems" in text and "metadata.jsonl:1:" not in text
    assert 'metadata.jsonl:2: "audio" holds a lone surrogate (\\udc80)' in text
    assert "metadata.jsonl:3: malformed JSON" in text
    assert "metadata.jsonl:4: malformed JSON: nested too deeply" in text
    assert "metadata.jsonl:5: expected a JSON object" in text
    assert "metadata.jsonl:6: a number with more than 4300 digits" in text


@pytest.mark.slow
def test_transcribe_a_dataset_end_to_end_with_whisper(tmp_path):
    """`--dataset PATH --split S --audio-column C`: real words from the bundled whisper model."""
    source = tmp_path / "src"
    source.mkdir()
    _dataset(tmp_path).to_parquet(str(source / "train-00000-of-00001.parquet"))
    out = tmp_path / "out"
    result = subprocess.run([OMNIBATCH, "transcribe", "--dataset", str(source), "--split", "train",
                             "--audio-column", "audio", "--out", str(out), "--engine", "whisper",
                             "--language", "en", "--workers", "1"],
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                            env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 1, result.stderr  # the junk row fails alone
    rows = {r["id"]: r for r in pq.read_table(out / "transcribe").to_pylist()}
    assert len(rows) == 3, rows.keys()
    words = rows["src-train-000000"]["text"].lower()
    assert "world" in words and "test" in words, words
    assert rows["src-train-000002"]["error"] and "not a media file" in rows["src-train-000002"]["error"]
    assert rows["src-train-000000"]["path"].endswith("[0].audio")
