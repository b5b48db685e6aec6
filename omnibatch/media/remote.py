"""Objects in storage (s3://, gs://, https://): read through fsspec, with retries and a size cap.

Only the worker that decodes an item fetches it (omnibatch/media/staging.py): the bytes go
to a private file on local disk and ffmpeg reads that file as it reads any other, confined
as omnibatch/media/ffmpeg.py says. A missing object (404, NoSuchKey) or a refused one fails
at once; a transient error (a dropped connection, a timeout, a 5xx) is retried a few times
with backoff; either way the item gets an error row and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlsplit

from omnibatch.errors import MediaError

REMOTE_SCHEMES = ("s3", "gs", "gcs", "http", "https")
MAX_DOWNLOAD_ENV = "OMNIBATCH_MAX_DOWNLOAD_BYTES"
DEFAULT_MAX_DOWNLOAD_BYTES = 8 * 1024**3  # 8 GiB: a long video, not a runaway object
ATTEMPTS = 4
BACKOFF_S = 0.5  # 0.5, 1, 2 s between attempts
_BLOCK = 1 << 20


def is_remote(text: str) -> bool:
    """Whether an input names an object in storage (a URL of a scheme fsspec reads for us)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in REMOTE_SCHEMES


def missing_support(url: str) -> str | None:
    """Why this URL cannot be read on this install (its fsspec backend is missing), or None."""
    scheme = urlsplit(url).scheme.lower()
    module, extra = {"s3": ("s3fs", "s3fs"), "gs": ("gcsfs", "gcsfs"), "gcs": ("gcsfs", "gcsfs"),
                     "http": ("aiohttp", "aiohttp"), "https": ("aiohttp", "aiohttp")}[scheme]
    try:
        __import__(module)
    except ImportError:
        return f"{scheme}:// inputs need the {extra} package, which is not installed (pip install {extra})"
    return None


def max_download_bytes() -> int:
    """The cap on one staged object: OMNIBATCH_MAX_DOWNLOAD_BYTES (set by --max-download-bytes)."""
    value = os.environ.get(MAX_DOWNLOAD_ENV, "")
    try:
        return int(value) if value.strip() else DEFAULT_MAX_DOWNLOAD_BYTES
    except ValueError:
        return DEFAULT_MAX_DOWNLOAD_BYTES


def object_name(url: str) -> str:
    """The last part of an object's key: the staged file's name and what messages call it."""
    path = urlsplit(url).path.rstrip("/")
    return os.path.basename(path) or "object"


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec.core

    return fsspec.core.url_to_fs(url)


def list_objects(url: str, extensions: frozenset[str]) -> list[str]:
    """The media objects under a prefix (a URL ending in '/'), sorted, as full URLs."""
    fs, root = _filesystem(url)
    scheme = urlsplit(url).scheme
    found = []
    for key in sorted(fs.find(root)):
        if os.path.splitext(key)[1].lower() in extensions:
            found.append(key if "://" in key else f"{scheme}://{key}")
    return found


def download(url: str, out: IO[bytes], *, max_bytes: int | None = None, attempts: int = ATTEMPTS,
             backoff_s: float = BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> int:
    """Copy one object into `out` (rewound and truncated before each attempt); return its size.

    Raises MediaError: at once for a missing or refused object or one over `max_bytes`,
    after `attempts` tries for a transient failure.
    """
    cap = max_download_bytes() if max_bytes is None else max_bytes
    name = object_name(url)
    last: BaseException | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        out.seek(0)
        out.truncate()
        try:
            return _copy(url, out, cap, name)
        except MediaError:
            raise
        except FileNotFoundError as exc:
            if not _unreachable(exc):
                raise MediaError(f"{name}: not found in storage ({url})") from None
            last = exc.__cause__ or exc.__context__ or exc
        except PermissionError as exc:
            raise MediaError(f"{name}: access denied by the storage ({_short(exc)})") from None
        except Exception as exc:  # noqa: BLE001 - each backend raises its own kinds; all are retried
            if _permanent(exc):
                raise MediaError(f"{name}: the storage refused it ({_short(exc)})") from None
            last = exc
    raise MediaError(f"{name}: could not be fetched after {attempts} attempts ({_short(last)})")


def _copy(url: str, out: IO[bytes], cap: int, name: str) -> int:
    fs, path = _filesystem(url)
    size = _known_size(fs, path)
    if size is not None and size > cap:
        raise MediaError(_too_big(name, size, cap))
    total = 0
    with fs.open(path, "rb", block_size=_BLOCK) as src:
        while block := src.read(_BLOCK):
            total += len(block)
            if total > cap:
                raise MediaError(_too_big(name, total, cap, at_least=True))
            out.write(block)
    out.flush()
    return total


def _known_size(fs: Any, path: str) -> int | None:
    info = fs.info(path)  # FileNotFoundError for a 404 or a missing key
    size = info.get("size")
    return int(size) if isinstance(size, (int, float)) and size >= 0 else None


def _too_big(name: str, size: int, cap: int, *, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return (f"{name}: the object is {more}{size / 1e6:.1f} MB, over the --max-download-bytes cap of "
            f"{cap / 1e6:.1f} MB: not fetched")


def _unreachable(exc: BaseException) -> bool:
    """fsspec's HTTP backend reports a server it could not reach as FileNotFoundError; the
    connection error it came from says so (a real 404 has a response behind it, or nothing)."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if getattr(cause, "status", None) is not None:
            return False  # the server answered
        if isinstance(cause, (ConnectionError, TimeoutError)) or "Connect" in type(cause).__name__:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _permanent(exc: BaseException) -> bool:
    """A client error (4xx other than timeouts and throttling) will not change on a retry."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return True
    text = str(exc)
    return any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
                                         "AccessDenied"))


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:240]
