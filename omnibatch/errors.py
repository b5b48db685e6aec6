"""Errors a person can act on. Each says what went wrong and what to do."""


class OmnibatchError(Exception):
    """Base class: the CLI prints these without a traceback."""


class InputError(OmnibatchError):
    """A manifest, folder or path that cannot be used; raised before any work starts."""


class MediaError(OmnibatchError):
    """One media file cannot be probed or decoded; it becomes an error row."""


class EngineError(OmnibatchError):
    """The engine cannot be built or has crashed; the run stops and can be resumed."""


class MissingDependencyError(OmnibatchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class Interrupted(OmnibatchError):
    """The run stopped on a signal after flushing its finished rows; rerunning resumes it."""


def describe_error(error: BaseException) -> str:
    """One line a person can act on: the innermost cause's type and first line.

    Libraries wrap the real problem ("Failed to apply ... on data=<the arrays>");
    the innermost cause says what was wrong.
    """
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]


def disk_full(error: BaseException) -> bool:
    """Whether `error` is the disk (or quota) being full: the run must stop, not fail an item."""
    import errno

    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
