"""Datasets as inputs: `save_to_disk` folders, hub-style Parquet/JSONL, and `--dataset NAME`.

A dataset holds its media in an Audio or Video column: a {bytes, path} struct (or, in
JSONL and some tables, a plain path string). Each row becomes one MediaItem:

- a cell with bytes -> an item whose `origin` names (Arrow or Parquet file, row, column);
  the decode worker reads the bytes from there (omnibatch/media/cells.py), so no item
  holds media bytes;
- a cell with only a path -> a local file (relative to the dataset's folder) or, for a
  URL, a remote object.

The other columns go to `extra`; an `id` column names the item, else the id is
`<dataset>-<split>-<row>`, the same on every rerun. `datasets` is imported only here
and only when a dataset is read (it is heavy); worker processes never import it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omnibatch.manifests.entries import PATH_KEYS, EntryError, parse_entry, poison_problems
from omnibatch.manifests.formats import read_entries
from omnibatch.manifests.problems import ManifestUnreadable
from omnibatch.media.remote import is_remote, missing_support, object_name
from omnibatch.records import UNSTAGED_PATH, MediaItem, Origin

DATASET_PREFIX = "dataset:"  # an INPUT naming a dataset for datasets.load_dataset (what --dataset makes)
MEDIA_TYPES = ("Audio", "Video")
_SLUG_UNSAFE = re.compile(r"[^\w-]+")


@dataclass
class DatasetRead:
    items: list[MediaItem] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, message)


@dataclass(frozen=True)
class DatasetSpec:
    """`--dataset NAME_OR_PATH --split S --audio-column C`, carried as one INPUT string."""

    name: str
    split: str | None = None
    column: str | None = None

    def as_input(self) -> str:
        query = "&".join(f"{key}={value}" for key, value in (("split", self.split), ("column", self.column))
                         if value)
        return f"{DATASET_PREFIX}{self.name}" + (f"?{query}" if query else "")

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        body = text[len(DATASET_PREFIX):]
        name, _, query = body.partition("?")
        fields = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        return cls(name=name, split=fields.get("split") or None, column=fields.get("column") or None)


def is_dataset_folder(path: Path) -> bool:
    """A folder `datasets` wrote with save_to_disk (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def read_dataset_folder(path: Path, *, split: str | None = None, column: str | None = None) -> DatasetRead:
    import datasets

    result = DatasetRead()
    try:
        loaded = datasets.load_from_disk(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - any failure to open it is one problem
        result.problems.append(("", f"cannot open it as a datasets folder: {type(exc).__name__}: {exc}"))
        return result
    _read_loaded(loaded, path.name, os.fspath(path), split, column, result)
    return result


def read_named_dataset(spec: DatasetSpec) -> DatasetRead:
    """A dataset by the `datasets` conventions (a local folder or script; no hub is needed)."""
    import datasets

    result = DatasetRead()
    where = Path(spec.name).expanduser()
    if where.is_dir() and is_dataset_folder(where):
        return read_dataset_folder(where, split=spec.split, column=spec.column)
    try:
        loaded = datasets.load_dataset(os.fspath(where) if where.exists() else spec.name, split=spec.split)
    except Exception as exc:  # noqa: BLE001
        result.problems.append(("", f"datasets.load_dataset could not load it: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}"))
        return result
    base = os.fspath(where) if where.exists() else os.getcwd()
    _read_loaded(loaded, Path(spec.name).name or spec.name, base, spec.split, spec.column, result)
    return result


def read_jsonl_dataset(path: Path, column: str | None = None) -> DatasetRead:
    """A hub-style JSONL: each line an object whose media is named in `column` ("audio" or "video")
    instead of a `path` key, as a path string or a {"path": ...} object.

    Read line by line as a manifest is (formats.read_entries), not through datasets' json builder:
    that builder holds less than a manifest may (integers past 64 bits, NaN, a key whose type
    changes from line to line), names no line when it fails, and writes a cache for every read.
    So each bad line is refused with its number; ids default to `<file>-<record>`, records
    counted from 0 as the builder counted its rows."""
    result = DatasetRead()
    media_key = column or "audio"
    base_dir = os.path.dirname(os.path.abspath(path))
    slug = _SLUG_UNSAFE.sub("-", path.stem.lower()).strip("-_")[:40] or "dataset"
    record = 0
    try:
        for entry in read_entries(path):
            number, record = record, record + 1
            if entry.fields is None:
                result.problems.append((entry.where, entry.problem or "unreadable"))
                continue
            try:
                item = _jsonl_item(entry.fields, media_key, base_dir, f"{slug}-{number:06d}",
                                   f"{path}{entry.where}")
            except EntryError as exc:
                result.problems.append((entry.where, "; ".join(exc.messages)))
                continue
            result.items.append(item)
    except ManifestUnreadable as exc:
        result.problems.append((exc.where, exc.message))
    return result


def _jsonl_item(fields: dict[str, Any], media_key: str, base_dir: str, default_id: str, source: str) -> MediaItem:
    cell = fields.get(media_key)
    # The media cell is checked under its own key (parse_entry checks the rest, and would call it "path").
    if poisoned := poison_problems({media_key: cell}):
        raise EntryError(poisoned)
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            raise EntryError([f'"{media_key}" holds media bytes inline, which JSONL has no standard form '
                              "for: save the dataset as Parquet or with save_to_disk"])
        cell = cell.get("path")
    if not isinstance(cell, str) or not cell.strip():
        raise EntryError([f'"{media_key}" names no media: give a path (a string, or {{"path": ...}})'])
    row = {key: value for key, value in fields.items() if key != media_key}
    item = _row_item(row, cell, False, "", 0, media_key, base_dir, default_id, source)
    assert item is not None  # a non-empty path always gives an item
    return item


def jsonl_media_column(path: Path) -> str | None:
    """The media key of a JSONL whose first object has no path key but an `audio`/`video` one."""
    try:
        with open(path, "rb") as f:
            first = next((line for line in f if line.strip()), b"")
        value = json.loads(first)
    except (OSError, ValueError, RecursionError):  # the manifest reader reports what is wrong with it
        return None
    if not isinstance(value, dict) or set(value) & set(PATH_KEYS):
        return None
    return next((key for key in ("audio", "video") if isinstance(value.get(key), (str, dict))), None)


def parquet_media_column(path: Path) -> str | None:
    """The media column of a hub-style Parquet: an Audio/Video feature, or a {bytes, path} struct."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - the manifest reader reports an unreadable file
        return None
    features = _hf_features(schema.metadata)
    if set(schema.names) & set(PATH_KEYS) and not any(_is_media_struct(t) for t in schema.types):
        return None  # a manifest: its path column names the files
    return _pick_column(schema, features, None)


def read_parquet_dataset(path: Path, column: str) -> DatasetRead:
    import pyarrow.parquet as pq

    result = DatasetRead()
    location, base_dir = os.path.abspath(path), os.path.dirname(os.path.abspath(path))
    table_file = pq.ParquetFile(path)
    others = [name for name in table_file.schema_arrow.names if name != column]
    first = 0
    for group in range(table_file.num_row_groups):  # one row group's bytes in memory at a time
        media = table_file.read_row_group(group, columns=[column]).column(column)
        _rows(location, media, table_file.read_row_group(group, columns=others), path.stem, "", base_dir,
              column, first, result, str(path), row_offset=first)
        first += len(media)
    return result


# -- the shared part -------------------------------------------------------------------------------


def _read_loaded(loaded: Any, name: str, base_dir: str, split: str | None, column: str | None,
                 result: DatasetRead) -> None:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        splits = [split] if split else list(loaded)
        missing = [s for s in splits if s not in loaded]
        if missing:
            result.problems.append(("", f"no split {missing[0]!r}: it has {', '.join(loaded)}"))
            return
        for s in splits:
            _read_split(loaded[s], name, s, base_dir, column, result)
        return
    _read_split(loaded, name, split or str(loaded.split or ""), base_dir, column, result)


def _read_split(ds: Any, name: str, split: str, base_dir: str, column: str | None, result: DatasetRead) -> None:
    import pyarrow as pa

    features = {key: type(value).__name__ for key, value in ds.features.items()}
    picked = _pick_column(ds.data.table.schema, features, column)
    if picked is None:
        have = ", ".join(f"{k} ({v})" for k, v in features.items())
        why = f"no column {column!r}" if column else "no Audio or Video column (name one with --audio-column)"
        result.problems.append(("", f"{why}; it has {have}"))
        return
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    first = 0
    for cache in ds.cache_files:
        location = os.path.abspath(cache["filename"])
        source = pa.memory_map(location, "r")
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
        _rows(location, table.column(picked), table.drop_columns([picked]), name, split, base_dir, picked,
              first, result, f"{name}{'/' + split if split else ''}")
        first += table.num_rows
    if not ds.cache_files:
        result.problems.append(("", "the dataset is held in memory only; save it with save_to_disk first"))


def _rows(location: str, media: Any, others: Any, name: str, split: str, base_dir: str, column: str,
          first: int, result: DatasetRead, label: str, row_offset: int = 0) -> None:
    """`first`: the dataset row of the table's first; `row_offset`: that row's place in `location`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_struct(media.type):
        paths = pc.struct_field(media, "path").to_pylist() if media.type.get_field_index("path") >= 0 else None
        has_bytes = pc.invert(pc.is_null(pc.struct_field(media, "bytes"))).to_pylist()
    else:
        paths, has_bytes = media.to_pylist(), [False] * len(media)
    if paths is None:
        paths = [None] * len(media)
    keep = [n for n, t in zip(others.schema.names, others.schema.types) if _plain_type(t)]
    rows = others.select(keep).to_pylist()
    slug = _SLUG_UNSAFE.sub("-", name.lower()).strip("-_")[:40] or "dataset"
    for local, (row, cell_path, with_bytes) in enumerate(zip(rows, paths, has_bytes)):
        number = first + local
        where = f" row {number}"
        default_id = f"{slug}-{split}-{number:06d}" if split else f"{slug}-{number:06d}"
        try:
            item = _row_item(row, cell_path, with_bytes, location, row_offset + local, column, base_dir, default_id,
                             f"{label} row {number}")
        except EntryError as exc:
            result.problems.append((where, "; ".join(exc.messages)))
            continue
        if item is None:
            result.problems.append((where, f'the "{column}" cell holds neither media bytes nor a path'))
            continue
        result.items.append(item)


def _row_item(row: dict[str, Any], cell_path: Any, with_bytes: bool, location: str, local: int, column: str,
              base_dir: str, default_id: str, source: str) -> MediaItem | None:
    fields = {key: value for key, value in row.items() if key not in PATH_KEYS}
    fields.setdefault("id", default_id)
    if fields["id"] is None:
        fields["id"] = default_id
    carried = {key: row[key] for key in PATH_KEYS if row.get(key) is not None}
    if with_bytes:
        name = os.path.basename(cell_path) if isinstance(cell_path, str) and cell_path else f"row-{local}"
        origin = Origin("dataset", location, name, row=local, column=column)
        item = parse_entry({**fields, "path": os.devnull}, base_dir=base_dir, source=source)
        return replace(item, path=UNSTAGED_PATH, origin=origin, extra={**item.extra, **carried})
    if not isinstance(cell_path, str) or not cell_path.strip():
        return None
    if is_remote(cell_path) and (why := missing_support(cell_path)):
        raise EntryError([why])
    item = parse_entry({**fields, "path": cell_path}, base_dir=base_dir, source=source)
    if is_remote(cell_path):
        item = replace(item, origin=Origin("remote", cell_path, object_name(cell_path)))
    return replace(item, extra={**item.extra, **carried})


def _plain_type(arrow_type: Any) -> bool:
    """Columns carried to `extra`: not bytes, and not another media struct."""
    import pyarrow as pa

    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return False
    return not _is_media_struct(arrow_type)


def _is_media_struct(arrow_type: Any) -> bool:
    import pyarrow as pa

    if not pa.types.is_struct(arrow_type):
        return False
    names = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
    return "bytes" in names and names <= {"bytes", "path"}


def _hf_features(metadata: dict[bytes, bytes] | None) -> dict[str, str]:
    """Column -> feature type name from the `huggingface` schema metadata datasets writes."""
    try:
        info = json.loads((metadata or {}).get(b"huggingface", b"{}"))
        features = info.get("info", {}).get("features", {})
        return {key: str(value.get("_type", "")) for key, value in features.items() if isinstance(value, dict)}
    except (ValueError, AttributeError, RecursionError):
        return {}


def _pick_column(schema: Any, features: dict[str, str], wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in schema.names else None
    for kind in MEDIA_TYPES:
        for name, type_name in features.items():
            if type_name == kind and name in schema.names:
                return name
    for name in ("audio", "video"):
        if name in schema.names and _is_media_struct(schema.field(name).type):
            return name
    return next((n for n, t in zip(schema.names, schema.types) if _is_media_struct(t)), None)
