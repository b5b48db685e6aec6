"""Parquet parts: atomic, bounded, fingerprinted, readable by pyarrow, DuckDB and datasets."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest

from omnibatch.output.parquet import PartWriter, drop_rows, part_files, read_written, remove_shard_parts
from omnibatch.output.tables import SEGMENT_SCHEMA, file_schema


def row(i: int, status: str = "ok") -> dict:
    return {"id": f"f{i}", "path": f"/m/f{i}.wav", "status": status, "error": None if status == "ok" else "bad",
            "duration_s": 1.5 * i, "model": "m", "engine": "e", "language": "en", "kind": "audio",
            "extra": None, "text": f"text {i}", "num_chunks": 1}


def test_parts_are_bounded_numbered_and_fingerprinted(tmp_path):
    writer = PartWriter(tmp_path, file_schema("transcribe"), shard_index=3, fingerprint="abc", rows_per_part=4)
    writer.add(row(i) for i in range(10))
    assert [p.name for p in part_files(tmp_path)] == ["part-00003-00000.parquet", "part-00003-00001.parquet"]
    writer.flush()
    parts = part_files(tmp_path)
    assert [pq.read_metadata(p).num_rows for p in parts] == [4, 4, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    # A second writer for the same shard continues the numbering instead of overwriting.
    again = PartWriter(tmp_path, file_schema("transcribe"), shard_index=3, fingerprint="abc")
    again.add([row(99)])
    again.flush()
    assert part_files(tmp_path)[-1].name == "part-00003-00003.parquet"
    written = read_written(tmp_path, "abc")
    assert set(written) == {f"f{i}" for i in range(10)} | {"f99"}
    assert read_written(tmp_path, "other") == {}


def test_tables_read_back_with_pyarrow_duckdb_and_datasets(tmp_path):
    writer = PartWriter(tmp_path / "transcribe", file_schema("transcribe"), shard_index=0, fingerprint="x",
                        rows_per_part=2)
    writer.add([row(1), row(2, "error"), row(3)])
    writer.flush()
    seg = PartWriter(tmp_path / "segments", SEGMENT_SCHEMA, shard_index=0, fingerprint="x")
    seg.add([{"id": "f1", "index": 0, "start_s": 0.0, "end_s": 1.0, "text": "a"}])
    seg.flush()

    table = pq.read_table(tmp_path / "transcribe")
    assert table.num_rows == 3
    assert sorted(table.column("status").to_pylist()) == ["error", "ok", "ok"]
    con = duckdb.connect()
    counts = con.execute(
        f"select status, count(*) from read_parquet('{tmp_path}/transcribe/*.parquet') group by 1 order by 1"
    ).fetchall()
    assert counts == [("error", 1), ("ok", 2)]
    seg_rows = con.execute(f"select id, start_s, end_s from read_parquet('{tmp_path}/segments/*.parquet')").fetchall()
    assert seg_rows == [("f1", 0.0, 1.0)]

    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=str(tmp_path / "transcribe" / "*.parquet"), split="train")
    assert sorted(ds["id"]) == ["f1", "f2", "f3"]


def test_drop_rows_rewrites_and_removes_empty_parts(tmp_path):
    writer = PartWriter(tmp_path, file_schema("transcribe"), shard_index=0, fingerprint="x", rows_per_part=2)
    writer.add([row(1), row(2, "error"), row(3, "error")])
    writer.flush()
    assert drop_rows(tmp_path, {"f2", "f3"}) == 2
    assert len(part_files(tmp_path)) == 1
    assert pq.read_table(tmp_path).column("id").to_pylist() == ["f1"]


def test_remove_shard_parts_keeps_other_shards(tmp_path):
    for shard in (0, 1):
        w = PartWriter(tmp_path, file_schema("transcribe"), shard_index=shard, fingerprint="x")
        w.add([row(shard)])
        w.flush()
    remove_shard_parts(tmp_path, 0)
    assert [p.name for p in part_files(tmp_path)] == ["part-00001-00000.parquet"]


def test_schema_refuses_a_row_of_the_wrong_type(tmp_path):
    writer = PartWriter(tmp_path, file_schema("transcribe"), shard_index=0, fingerprint="x")
    bad = row(1)
    bad["duration_s"] = "long"
    writer.add([bad])
    with pytest.raises(Exception):
        writer.flush()
