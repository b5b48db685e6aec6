"""Read the entries of one manifest file: JSON Lines, CSV or Parquet, optionally gzipped.

A reader yields `Entry`s in file order. An entry that cannot be parsed carries a
problem instead of fields, so the caller can list every bad line at once; a
file that cannot be read any further raises ManifestUnreadable.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnibatch.manifests.entries import MAX_INT_DIGITS, PATH_KEYS
from omnibatch.manifests.problems import ManifestUnreadable

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MANIFEST_SUFFIXES = (*_FORMATS, ".jsonl.gz", ".ndjson.gz", ".json.gz", ".csv.gz")
_PATH_COLUMNS = ", ".join(f'"{key}"' for key in PATH_KEYS)


@dataclass(frozen=True)
class Entry:
    where: str  # ":12" for line 12, " row 3" for Parquet row 3
    fields: dict[str, Any] | None = None
    problem: str | None = None


def manifest_format(path: Path) -> str | None:
    """'jsonl', 'csv' or 'parquet' when the name says this is a manifest, else None."""
    name = path.name.lower()
    if name.endswith(".gz"):
        inner = Path(name[: -len(".gz")]).suffix
        return _FORMATS[inner] if inner in _FORMATS and inner != ".parquet" else None
    return _FORMATS.get(Path(name).suffix)


def read_entries(path: Path) -> Iterator[Entry]:
    fmt = manifest_format(path)
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        return _read_parquet(path)
    raise ValueError(f"not a manifest: {path}")


def _open_binary(path: Path) -> io.BufferedIOBase:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        return opener(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise ManifestUnreadable(f"cannot open it: {exc.strerror or exc}") from exc


def _unreadable(exc: BaseException, last_line: int) -> ManifestUnreadable:
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
        why = f"the gzip data is corrupt or truncated ({exc})"
    else:
        why = f"read failed ({exc})"
    after = f" after line {last_line}" if last_line else ""
    return ManifestUnreadable(f"cannot read it{after}: {why}")


def _read_jsonl(path: Path) -> Iterator[Entry]:
    number = 0
    first_content = True
    with _open_binary(path) as stream:
        lines = iter(stream)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:
                raise _unreadable(exc, number) from exc
            number += 1
            where = f":{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Entry(where, problem="not UTF-8 text")
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            if first_content and text.startswith("["):
                raise ManifestUnreadable(
                    "this is a JSON array; write JSON Lines instead: one object per line", where
                )
            first_content = False
            yield _parse_json_line(text, where)


def _parse_json_line(text: str, where: str) -> Entry:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Entry(where, problem=f"malformed JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return Entry(where, problem="malformed JSON: nested too deeply")
    except ValueError as exc:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        if "digits" in str(exc):
            return Entry(where, problem=f"a number with more than {MAX_INT_DIGITS} digits: write it as a "
                                        "string")
        return Entry(where, problem=f"malformed JSON: {exc}")
    if not isinstance(value, dict):
        return Entry(where, problem=f"expected a JSON object {{...}}, found {type(value).__name__}")
    return Entry(where, fields=value)


def _read_csv(path: Path) -> Iterator[Entry]:
    with _open_binary(path) as stream:
        try:
            data = stream.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise _unreadable(exc, 0) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestUnreadable("not UTF-8 text; save the CSV as UTF-8", f":{line}") from exc

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ManifestUnreadable(f"bad CSV header: {exc}", ":1") from exc
    if header is None:
        return  # an empty file; the caller reports a manifest without entries
    columns = [name.strip() for name in header]
    _check_header(columns)

    end_of_previous = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ManifestUnreadable(f"bad CSV: {exc}", f":{end_of_previous + 1}") from exc
        # A quoted cell may span lines: a record is named by the line it starts on.
        where = f":{end_of_previous + 1}"
        end_of_previous = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(columns):
            yield Entry(where, problem=f"{len(row)} cells, but the header has {len(columns)} columns")
            continue
        # Empty cells mean "absent", so they neither set a field nor reach the output.
        yield Entry(where, fields={name: cell for name, cell in zip(columns, row) if cell.strip() != ""})


def _check_header(columns: list[str]) -> None:
    if any(not name for name in columns):
        raise ManifestUnreadable("the header row has a column without a name", ":1")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ManifestUnreadable(f"the header row repeats {', '.join(repeated)}", ":1")
    if not set(columns) & set(PATH_KEYS):
        raise ManifestUnreadable(
            f"no path column: the header row needs one of {_PATH_COLUMNS} (found {', '.join(columns)})",
            ":1",
        )


def _read_parquet(path: Path) -> Iterator[Entry]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table_file = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ManifestUnreadable(f"cannot read it as Parquet: {exc}") from exc
    columns = table_file.schema_arrow.names
    if not set(columns) & set(PATH_KEYS):
        raise ManifestUnreadable(
            f"no path column: the table needs one of {_PATH_COLUMNS} (found {', '.join(columns)})"
        )
    number = 0
    with table_file:
        batches = table_file.iter_batches(batch_size=8192)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise ManifestUnreadable(f"cannot read it after row {number}: {exc}") from exc
            for row in _batch_rows(batch, pa):
                number += 1
                if isinstance(row, str):
                    yield Entry(f" row {number}", problem=row)
                else:
                    yield Entry(f" row {number}", fields=row)


def _batch_rows(batch: Any, pa: Any) -> list[dict[str, Any] | str]:
    """The batch's rows as dicts; a row whose values Python cannot hold (a date past year 9999,
    bytes in a string column) as the text of its problem instead, so the rest still count."""
    try:
        return batch.to_pylist()
    except (pa.ArrowException, ValueError, OverflowError, UnicodeDecodeError):
        pass
    rows: list[dict[str, Any] | str] = []
    for index in range(batch.num_rows):
        try:
            rows.append(batch.slice(index, 1).to_pylist()[0])
        except (pa.ArrowException, ValueError, OverflowError, UnicodeDecodeError) as exc:
            first_line = (str(exc).splitlines() or [""])[0][:200]
            rows.append(f"a value cannot be read: {type(exc).__name__}: {first_line}")
    return rows
