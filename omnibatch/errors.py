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
