"""The command line's INPUT... -> the list of media items a run will process.

Everything that can be refused is refused here, before any work starts, and all
at once: a person fixing a manifest gets every bad line in one message. Media
files named inside manifests are not looked at; a missing one becomes an error
row later, so one bad path never stops a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omnibatch.errors import InputError
from omnibatch.manifests.datasets_input import (
    DATASET_PREFIX, DatasetRead, DatasetSpec, is_dataset_folder, jsonl_media_column, parquet_media_column,
    read_dataset_folder, read_jsonl_dataset, read_named_dataset, read_parquet_dataset,
)
from omnibatch.manifests.entries import EntryError, absolute_path, derive_id, parse_entry
from omnibatch.manifests.formats import MANIFEST_SUFFIXES, manifest_format, read_entries
from omnibatch.manifests.problems import ManifestUnreadable, Problem, format_problems
from omnibatch.manifests.scan import Skipped, scan_folder
from omnibatch.media.extensions import MEDIA_EXTENSIONS
from omnibatch.media.remote import is_remote, list_objects, missing_support, object_name
from omnibatch.records import UNSTAGED_PATH, MediaItem, Origin


@dataclass
class Inputs:
    items: list[MediaItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # passed over by folder scans


@dataclass(frozen=True)
class _Found:
    item: MediaItem
    file: str  # the input that named it, for grouping problems by file
    where: str


def read_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    media_extensions: Iterable[str] | None = None,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> Inputs:
    """Read manifests, folders and media paths, in order, into one list of items.

    `media_extensions` (default MEDIA_EXTENSIONS) decides what a folder scan or a
    directly named file counts as media; ".mp3" and "mp3" are both accepted.
    `exclude` names folders a scan never enters: pass the run's --out, so a rerun
    never takes its own outputs (summarize's WAVs) for inputs.
    Raises InputError listing every problem found in every input.
    """
    # One path given bare would otherwise be read letter by letter.
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not inputs:
        raise InputError("no inputs: name a manifest (.jsonl, .csv, .parquet), a folder or media files")
    extensions = _normalize_extensions(media_extensions)
    excluded = list(exclude)
    found: list[_Found] = []
    skipped: list[Skipped] = []
    problems: list[Problem] = []
    named: dict[Path, str] = {}
    for given in inputs:
        name = os.fspath(given)
        key = absolute_path(name)
        if key in named:
            problems.append(Problem(name, "", f"named twice on the command line (first as {named[key]})"))
            continue
        named[key] = name
        _read_one(name, extensions, excluded, found, skipped, problems)
    _check_unique_ids(found, problems)
    if problems:
        raise InputError(format_problems(problems))
    return Inputs(items=[f.item for f in found], skipped=skipped)


def _read_one(
    name: str,
    extensions: frozenset[str],
    exclude: list[str | os.PathLike[str]],
    found: list[_Found],
    skipped: list[Skipped],
    problems: list[Problem],
) -> None:
    if is_remote(name) or name.startswith(DATASET_PREFIX):
        _read_elsewhere(name, extensions, found, problems)
        return
    path = absolute_path(name)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        problems.append(Problem(name, "", f"cannot access it: {getattr(exc, 'strerror', None) or exc}"))
        return
    if not exists:
        problems.append(Problem(name, "", "does not exist"))
    elif is_dir and is_dataset_folder(path):
        _add_dataset(name, read_dataset_folder(path), found, problems)
    elif is_dir:
        _read_folder(name, path, extensions, exclude, found, skipped, problems)
    elif (column := _dataset_column(path)) is not None:
        is_parquet = manifest_format(path) == "parquet"
        read = read_parquet_dataset(path, column) if is_parquet else read_jsonl_dataset(path, column)
        _add_dataset(name, read, found, problems)
    elif manifest_format(path) is not None:
        _read_manifest(name, path, found, problems)
    elif path.suffix.lower() in extensions:
        found.append(_Found(MediaItem(id=derive_id(path), path=path, source=name), name, ""))
    else:
        problems.append(
            Problem(
                name,
                "",
                f"neither a manifest ({', '.join(MANIFEST_SUFFIXES)}) nor a media file "
                f"({', '.join(sorted(extensions))}); to use a file with another extension, "
                "name it in a manifest",
            )
        )


def _read_elsewhere(name: str, extensions: frozenset[str], found: list[_Found], problems: list[Problem]) -> None:
    """A URL (an object, or with a trailing '/' a prefix whose media objects are listed) or a
    `dataset:` input (--dataset)."""
    if name.startswith(DATASET_PREFIX):
        _add_dataset(name, read_named_dataset(DatasetSpec.parse(name)), found, problems)
        return
    if why := missing_support(name):
        problems.append(Problem(name, "", why))
        return
    urls = [name]
    if name.endswith("/"):
        try:
            urls = list_objects(name, extensions)
        except Exception as exc:  # noqa: BLE001 - any storage failure is one problem with this input
            problems.append(Problem(name, "", f"cannot list it: {type(exc).__name__}: {exc}"))
            return
        if not urls:
            problems.append(Problem(name, "", f"no media objects under it (media means "
                                              f"{', '.join(sorted(extensions))})"))
            return
    for url in urls:
        item = MediaItem(id=derive_id(url), path=UNSTAGED_PATH, source=name,
                         origin=Origin("remote", url, object_name(url)))
        found.append(_Found(item, name, ""))


def _add_dataset(name: str, read: DatasetRead, found: list[_Found], problems: list[Problem]) -> None:
    problems.extend(Problem(name, where, message) for where, message in read.problems)
    if not read.items and not read.problems:
        problems.append(Problem(name, "", "the dataset has no rows"))
    found.extend(_Found(item, name, _where(item.source)) for item in read.items)


def _where(source: str) -> str:
    """' row 12' of a dataset row's source ("data/train row 12"), ':12' of a JSONL line's ("m.jsonl:12")."""
    if " row " in source:
        return source[source.rindex(" row "):]
    head, colon, line = source.rpartition(":")
    return colon + line if head and line.isdigit() else ""


def _dataset_column(path: Path) -> str | None:
    """The media column of a hub-style Parquet or JSONL (one without a path column), else None."""
    fmt = manifest_format(path)
    if fmt == "parquet":
        return parquet_media_column(path)
    if fmt == "jsonl" and not path.name.lower().endswith(".gz"):
        return jsonl_media_column(path)
    return None


def _read_folder(
    name: str,
    folder: Path,
    extensions: frozenset[str],
    exclude: list[str | os.PathLike[str]],
    found: list[_Found],
    skipped: list[Skipped],
    problems: list[Problem],
) -> None:
    media, passed_over = scan_folder(folder, extensions, exclude=exclude)
    skipped.extend(passed_over)
    if len(passed_over) == 1 and passed_over[0].path == folder:  # the folder itself is not scanned
        problems.append(Problem(name, "", f"not scanned: {passed_over[0].reason}"))
        return
    if not media:
        problems.append(
            Problem(
                name,
                "",
                f"no media files in this folder ({len(passed_over)} other files or folders passed over; "
                f"media means {', '.join(sorted(extensions))})",
            )
        )
        return
    found.extend(_Found(MediaItem(id=derive_id(p), path=p, source=name), name, "") for p in media)


def _read_manifest(name: str, path: Path, found: list[_Found], problems: list[Problem]) -> None:
    base_dir = os.fspath(path.parent)
    count, problems_before = 0, len(problems)
    try:
        for entry in read_entries(path):
            if entry.fields is None:
                problems.append(Problem(name, entry.where, entry.problem or "unreadable"))
                continue
            count += 1
            try:
                item = parse_entry(entry.fields, base_dir=base_dir, source=f"{name}{entry.where}")
            except EntryError as exc:
                problems.append(Problem(name, entry.where, "; ".join(exc.messages)))
                continue
            found.append(_Found(item, name, entry.where))
    except ManifestUnreadable as exc:
        problems.append(Problem(name, exc.where, exc.message))
        return
    if count == 0 and len(problems) == problems_before:
        problems.append(Problem(name, "", "the manifest has no entries"))


def _check_unique_ids(found: list[_Found], problems: list[Problem]) -> None:
    """Ids name outputs, so they must be unique across every input of the command."""
    first: dict[str, _Found] = {}
    for this in found:
        earlier = first.setdefault(this.item.id, this)
        if earlier is this:
            continue
        if earlier.item.path == this.item.path and earlier.item.origin == this.item.origin and not this.where:
            message = f"{this.item.display_path} is named twice (first by {earlier.item.source})"
        else:
            message = f'duplicate id "{this.item.id}" (first at {earlier.item.source})'
        problems.append(Problem(this.file, this.where, message))


def _normalize_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return MEDIA_EXTENSIONS
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
