"""Find the media files in a folder, recursively, in a stable order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Skipped:
    """A file or folder an input scan passed over, and why; for the run summary."""

    path: Path
    reason: str


def scan_folder(folder: Path, extensions: frozenset[str]) -> tuple[list[Path], list[Skipped]]:
    """Media files under `folder` sorted by path (code-point order, so every machine agrees).

    Hidden files and folders (a leading dot) are passed over, a hidden folder as one
    entry; so are files whose extension is not in `extensions`. Symlinked folders are
    followed once each, so a link loop cannot recurse forever.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    visited: set[str] = set()

    def walk(directory: Path) -> None:
        real = os.path.realpath(directory)
        if real in visited:
            skipped.append(Skipped(directory, "folder already scanned through another link"))
            return
        visited.add(real)
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(directory, f"cannot list folder: {exc.strerror or exc}"))
            return
        for entry in entries:
            path = directory / entry.name
            if entry.name.startswith("."):
                skipped.append(Skipped(path, "hidden"))
            elif _is_dir(entry):
                walk(path)
            elif not _is_file(entry):
                skipped.append(Skipped(path, "not a regular file (a broken link, a pipe or a device)"))
            elif path.suffix.lower() in extensions:
                found.append(path)
            else:
                skipped.append(Skipped(path, f"not a media file ({path.suffix or 'no extension'})"))

    walk(folder)
    return found, skipped


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
