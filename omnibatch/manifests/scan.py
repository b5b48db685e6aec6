"""Find the media files in a folder, recursively, in a stable order, without leaving the folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omnibatch.text_safety import display_path

# Kernel views of the machine, not files: never scanned, even when the folder named is `/`.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
# ... except shared memory: ordinary files, where people stage data sets for speed (named directly).
_SHARED_MEMORY = "/dev/shm"


@dataclass(frozen=True)
class Skipped:
    """A file or folder an input scan passed over, and why; for the run summary."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{display_path(self.path)}: {self.reason}"


def scan_folder(
    folder: Path, extensions: frozenset[str], *, exclude: Iterable[str | os.PathLike[str]] = ()
) -> tuple[list[Path], list[Skipped]]:
    """Media files under `folder` sorted by path (code-point order, so every machine agrees).

    Hidden files and folders (a leading dot) are passed over, a hidden folder as one
    entry; so are files whose extension is not in `extensions`. A symlink is followed
    only when its target lies inside `folder` (folders once each, so a link loop
    cannot recurse forever); one that leads out is passed over with its target.
    /proc, /sys and /dev are never entered, and neither is a folder in `exclude`
    (a run's own output folder: compared by real path, so a relative or linked
    name excludes it too).
    """
    root = os.path.realpath(folder)
    excluded = {os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(p)))) for p in exclude}
    system_devices = _system_devices()
    found: list[Path] = []
    skipped: list[Skipped] = []
    visited: set[str] = set()

    def walk(directory: Path) -> None:
        real = os.path.realpath(directory)
        if real in visited:
            skipped.append(Skipped(directory, "folder already scanned through another link"))
            return
        if (why := _not_scanned(real, excluded, system_devices)) is not None:
            skipped.append(Skipped(directory, why))
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
            elif _is_link(entry) and not _inside(target := os.path.realpath(path), root):
                skipped.append(Skipped(path, f"a link to {display_path(target)}, outside the folder scanned: "
                                             "not followed"))
            elif _is_dir(entry):
                walk(path)
            elif not _is_file(entry):
                skipped.append(Skipped(path, "not a regular file (a broken link, a pipe or a device)"))
            elif path.suffix.lower() in extensions:
                found.append(path)
            else:
                suffix = display_path(path.suffix) or "no extension"
                skipped.append(Skipped(path, f"not a media file ({suffix})"))

    walk(Path(folder))
    return found, skipped


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _not_scanned(real: str, excluded: set[str], system_devices: set[int]) -> str | None:
    """Why the folder whose real path is `real` must not be scanned, or None."""
    if real in excluded:
        return "the run's output folder (--out): outputs are never read as inputs"
    for system in SYSTEM_FOLDERS:
        if _inside(real, system) and not _inside(real, _SHARED_MEMORY):
            return f"a system folder ({system}): not scanned"
    if system_devices:
        try:
            device = os.stat(real).st_dev
        except OSError:
            return None  # listing it reports the problem
        if device in system_devices:  # /proc or /sys mounted somewhere else
            return "a kernel file system (proc or sysfs): not scanned"
    return None


def _system_devices() -> set[int]:
    devices = set()
    for system in ("/proc", "/sys"):  # /dev is an ordinary tmpfs on some machines: by path only
        try:
            devices.add(os.stat(system).st_dev)
        except OSError:
            pass
    return devices


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


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
