"""Locks in the run folder that die with their process.

    with shard_lock(rundir, "transcribe", 3):   # this process alone writes shard 3 of transcribe here
        with folder_lock(rundir):               # held briefly: config, setting parts aside, rewriting parts
            ...

Both are `flock`s on files under `_run/locks/`: the kernel drops them when the
process ends however it ends (SIGKILL, OOM, a node reboot), so a killed run never
blocks the next one, and no stale-lock cleanup exists to get wrong. The lock file
names its holder (host, pid, start time) for the refusal a second run gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omnibatch.errors import InputError


def _locks_dir(root: Path) -> Path:
    return root / "_run" / "locks"


def _holder(path: Path) -> str:
    try:
        held = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held["since"]))
        return f"pid {held['pid']} on {held['host']}, since {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def _flock(path: Path, *, wait: bool, busy: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(busy.format(holder=_holder(path))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def shard_lock(root: Path, task: str, shard_index: int) -> Iterator[None]:
    """Exclusive ownership of one (task, shard) in the folder `root` while the block runs.

    A second run of the same shard into the same folder is refused at once (InputError: exit 2),
    naming the process that holds it, instead of both writing parts that overwrite each other.
    """
    busy = (f"{root} is being written by another run of {task} shard {shard_index} ({{holder}}). "
            "Wait for it to end (omnibatch status), or use another --out folder.")
    with _flock(_locks_dir(root) / f"{task}-{shard_index:05d}.lock", wait=False, busy=busy):
        yield


@contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    """Serialize the short steps that change files other shards also read: recording the config,
    setting aside parts of other settings, rewriting parts to drop rows. Waits for the holder."""
    with _flock(_locks_dir(root) / "folder.lock", wait=True, busy=""):
        yield
