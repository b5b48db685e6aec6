"""Parquet parts: bounded in rows, written to a temporary name and renamed.

A shard appends parts `part-<shard>-<seq>.parquet`; a killed shard loses at
most the part it was filling. Each part records the run fingerprint in its
metadata, so a rerun knows which rows it may keep (`read_written`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FINGERPRINT_KEY = b"omnibatch.fingerprint"
_PART_RE = re.compile(r"^part-(\d{5})-(\d{5})\.parquet$")


def write_table_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def part_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _PART_RE.match(p.name))


class PartWriter:
    """Buffers rows for one table of one shard and writes them as numbered parts."""

    def __init__(self, folder: Path, schema: pa.Schema, *, shard_index: int, fingerprint: str,
                 rows_per_part: int = 1000, auto_flush: bool = True) -> None:
        self.folder = folder
        self.schema = schema.with_metadata({FINGERPRINT_KEY: fingerprint.encode()})
        self.shard_index = shard_index
        self.rows_per_part = max(1, rows_per_part)
        self.auto_flush = auto_flush  # False: parts are written only by flush(), when the caller commits
        self._rows: list[dict[str, Any]] = []
        self._seq = self._next_seq()
        self.written: list[Path] = []

    def _next_seq(self) -> int:
        seqs = [int(m.group(2)) for p in part_files(self.folder)
                if (m := _PART_RE.match(p.name)) and int(m.group(1)) == self.shard_index]
        return max(seqs, default=-1) + 1

    def add(self, rows: Iterable[Any]) -> None:
        self._rows.extend(rows)
        while self.auto_flush and len(self._rows) >= self.rows_per_part:
            self._write(self._rows[: self.rows_per_part])
            del self._rows[: self.rows_per_part]

    def flush(self) -> None:
        while self._rows:
            self._write(self._rows[: self.rows_per_part])
            del self._rows[: self.rows_per_part]

    def __len__(self) -> int:
        return len(self._rows)

    def _write(self, rows: list[Any]) -> None:
        # Typed rows (omnibatch.output.tables) or plain dicts with the schema's columns.
        table = pa.Table.from_pylist([asdict(r) if is_dataclass(r) else r for r in rows], schema=self.schema)
        path = self.folder / f"part-{self.shard_index:05d}-{self._seq:05d}.parquet"
        write_table_atomic(table, path)
        self.written.append(path)
        self._seq += 1


def parts_of_run(parts: Iterable[Path], fingerprint: str) -> Iterator[Path]:
    """The parts written by a run with this fingerprint (only their footers are read)."""
    for part in parts:
        if (pq.read_schema(part).metadata or {}).get(FINGERPRINT_KEY, b"").decode() == fingerprint:
            yield part


@dataclass(frozen=True)
class WrittenRow:
    id: str
    status: str
    part: Path


def read_written(folder: Path, fingerprint: str) -> dict[str, WrittenRow]:
    """Ids already written by runs with this fingerprint, with their status.

    Parts from another configuration are ignored (their rows will be redone);
    when an id appears twice (a retried error), the later part wins.
    """
    found: dict[str, WrittenRow] = {}
    for part in parts_of_run(part_files(folder), fingerprint):
        table = pq.read_table(part, columns=["id", "status"])
        for rid, status in zip(table.column("id").to_pylist(), table.column("status").to_pylist()):
            found[rid] = WrittenRow(rid, status, part)
    return found


def drop_rows(folder: Path, ids: set[str]) -> int:
    """Rewrite the parts holding any of `ids` without those rows; return how many rows went.

    Used before redoing items (retried errors), so each id appears once in the end.
    A part left empty is removed.
    """
    import pyarrow.compute as pc

    dropped = 0
    wanted = pa.array(sorted(ids), pa.string())
    for part in part_files(folder):
        # The id column alone says whether the part must be rewritten (most parts are not).
        hit = pc.is_in(pq.read_table(part, columns=["id"]).column("id"), value_set=wanted)
        count = pc.sum(hit).as_py() or 0
        if not count:
            continue
        table = pq.read_table(part)
        kept = table.filter(pc.invert(hit))
        if kept.num_rows:
            write_table_atomic(kept, part)
        else:
            part.unlink()
        dropped += count
    return dropped


def remove_shard_parts(folder: Path, shard_index: int) -> None:
    for part in part_files(folder):
        m = _PART_RE.match(part.name)
        if m and int(m.group(1)) == shard_index:
            part.unlink()
