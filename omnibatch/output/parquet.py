"""Parquet parts: bounded in rows, written to a temporary name and renamed.

A shard appends parts `part-<shard>-<seq>.parquet` (five digits at least, more
when a count outgrows them); a killed shard loses at most the part it was filling.
A new part never replaces an existing file: it is linked into place, and a name
already taken moves on to the next number, so two writers can never overwrite
each other's rows. Each part records the run fingerprint in its metadata, so a
rerun knows which rows it may keep (`read_written`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omnibatch.errors import InputError

FINGERPRINT_KEY = b"omnibatch.fingerprint"
_PART_RE = re.compile(r"^part-(\d{5,})-(\d{5,})\.parquet$")


class UnreadablePart(InputError):
    """A Parquet file in the output folder that cannot be read: named, never a traceback."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"{path} is not a readable Parquet part ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}). omnibatch did not write it "
                         "this way (its parts appear whole or not at all): move it out of the folder, or "
                         "delete it, and rerun; the items it held are redone.")
        self.path = path


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise UnreadablePart(path, exc) from None


def part_fingerprint(path: Path) -> str:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise UnreadablePart(path, exc) from None
    return metadata.get(FINGERPRINT_KEY, b"").decode(errors="replace")


def write_table_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table_new(table: pa.Table, path: Path) -> Path:
    """Write `table` as a part that did not exist: at `path`, or the first later sequence number free.

    The part is complete on disk before its name appears (write, then link), and an existing
    file is never replaced. Returns the path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        while True:
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                path = _next_name(path)
            except OSError as exc:  # a filesystem without hard links: check, then rename
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                while path.exists():
                    path = _next_name(path)
                os.rename(tmp, path)
                return path
    finally:
        tmp.unlink(missing_ok=True)


def _next_name(path: Path) -> Path:
    m = _PART_RE.match(path.name)
    assert m, path
    return path.with_name(part_name(int(m.group(1)), int(m.group(2)) + 1))


def part_name(shard_index: int, seq: int) -> str:
    return f"part-{shard_index:05d}-{seq:05d}.parquet"


def _part_key(path: Path) -> tuple[int, int]:
    m = _PART_RE.match(path.name)
    assert m, path
    return int(m.group(1)), int(m.group(2))


def part_files(folder: Path) -> list[Path]:
    """The parts in `folder`, in the order they were written within each shard (by number, not name)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _PART_RE.match(p.name)), key=_part_key)


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
        path = write_table_new(table, self.folder / part_name(self.shard_index, self._seq))
        self.written.append(path)
        self._seq = _part_key(path)[1] + 1


def parts_of_run(parts: Iterable[Path], fingerprint: str) -> Iterator[Path]:
    """The parts written by a run with this fingerprint (only their footers are read)."""
    for part in parts:
        if part_fingerprint(part) == fingerprint:
            yield part


def set_aside_other_runs(folder: Path, fingerprint: str, dest: Path) -> int:
    """Move every part in `folder` not written with `fingerprint` into `dest`; return how many moved.

    A folder then holds the rows of one configuration only, whatever reads it (DuckDB's
    `read_parquet('DIR/transcribe/*.parquet')` does not look at fingerprints). Renames within
    one filesystem: each part is either here or there, never half moved.
    """
    moved = 0
    for part in part_files(folder):
        if part_fingerprint(part) != fingerprint:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(part, dest / part.name)
            moved += 1
    return moved


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
        table = read_part(part, columns=["id", "status"])
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
        hit = pc.is_in(read_part(part, columns=["id"]).column("id"), value_set=wanted)
        count = pc.sum(hit).as_py() or 0
        if not count:
            continue
        table = read_part(part)
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
