"""Read one media cell of a dataset table (Arrow or Parquet) in a decode worker.

Datasets hold audio and video as a {bytes, path} struct column (the `datasets` Audio and
Video features). Items name the file, row and column only; the bytes are read here, by the
worker that decodes the item, so a big dataset's media is never held in the items that
every worker is sent. Arrow files are memory-mapped (reading one row costs its bytes only);
a Parquet row group is read once for the rows that follow in it.
"""

from __future__ import annotations

import functools
from typing import Any

from omnibatch.errors import MediaError
from omnibatch.records import Origin


@functools.lru_cache(maxsize=4)
def _arrow_table(location: str) -> Any:
    import pyarrow as pa

    source = pa.memory_map(location, "r")
    try:
        return pa.ipc.open_stream(source).read_all()  # what datasets writes (save_to_disk, caches)
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


@functools.lru_cache(maxsize=1)
def _parquet_group(location: str, group: int, column: str) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetFile(location).read_row_group(group, columns=[column])


def _parquet_row(location: str, row: int, column: str) -> Any:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(location).metadata
    first = 0
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        if row < first + rows:
            return _parquet_group(location, group, column).column(column)[row - first].as_py()
        first += rows
    raise MediaError(f"{location}: has no row {row}")


def read_cell(origin: Origin) -> Any:
    """The value of the item's cell: a {bytes, path} dict, a string path, or raw bytes."""
    assert origin.kind == "dataset" and origin.row is not None and origin.column is not None
    try:
        if origin.location.endswith(".parquet"):
            return _parquet_row(origin.location, origin.row, origin.column)
        return _arrow_table(origin.location).column(origin.column)[origin.row].as_py()
    except MediaError:
        raise
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise MediaError(f"{origin.display}: the dataset cell cannot be read ({type(exc).__name__}: {exc})") from None


def cell_bytes(origin: Origin) -> bytes:
    """The media bytes a cell holds; MediaError when it holds none."""
    value = read_cell(origin)
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return bytes(value)
    raise MediaError(f"{origin.name}: the dataset cell holds no media bytes ({origin.display})")
