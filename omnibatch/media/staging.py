"""Give an item that is not a local file (a remote object, a dataset cell) a private local copy.

ffmpeg only ever reads a plain local file, confined as omnibatch/media/ffmpeg.py says, so
bytes from elsewhere are staged first: into a file of mode 0600, in a folder of mode 0700
that this process made (under $TMPDIR), removed the moment the item's decode is over. A
remote object is copied with the --max-download-bytes cap. The staged file has the
object's own name, so messages about it read as they would for a local file.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from omnibatch.records import MediaItem

_root: str | None = None
_count = 0


def _stage_root() -> str:
    """This process's staging folder (mode 0700), made on first use and removed at exit."""
    global _root
    if _root is None or not os.path.isdir(_root):
        _root = tempfile.mkdtemp(prefix="omnibatch-stage-")
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned[:120] or "media"


@contextmanager
def staged(item: MediaItem) -> Iterator[MediaItem]:
    """The item itself when it is a local file; else a copy whose `path` is its staged file.

    Raises MediaError when the bytes cannot be had (a missing object, a cell without bytes,
    an object over the cap, storage that keeps failing).
    """
    if item.origin is None:
        yield item
        return
    global _count
    _count += 1
    folder = os.path.join(_stage_root(), str(_count))
    os.mkdir(folder, 0o700)
    try:
        path = os.path.join(folder, _safe_name(item.origin.name))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if item.origin.kind == "remote":
                from omnibatch.media.remote import download

                download(item.origin.location, out)
            else:
                from omnibatch.media.cells import cell_bytes

                out.write(cell_bytes(item.origin))
        yield replace(item, path=Path(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
