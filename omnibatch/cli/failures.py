"""The one way a command ends on an error it did not expect: one line, the contract's exit code.

Expected errors (omnibatch's own: a refused input, a failed engine) are printed by
the commands themselves. Everything else reaching `main` lands here: the person
gets one line saying what happened and what to do, the traceback goes to a file
the line names (for a bug report), and the exit code follows the contract:
2 when the input or the output folder cannot be used, 3 when the run failed.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback

from omnibatch.errors import InputError, OmnibatchError, describe_error, disk_full
from omnibatch.text_safety import printable

EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 3


def failure(exc: BaseException) -> tuple[int, str]:
    """The exit code and the line to print for `exc`."""
    if isinstance(exc, OmnibatchError):
        return (EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_RUN_FAILED), f"error: {exc}"
    if disk_full(exc):
        where = f" writing {exc.filename}" if exc.filename else ""
        return EXIT_RUN_FAILED, (f"error: no space left on the disk{where}. Free some space, then run the same "
                                 "command again: every file finished before this is kept and not redone.")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = f" {exc.filename}" if exc.filename else ""
        return EXIT_BAD_INPUT, (f"error: cannot write{where} ({exc.strerror}). Choose an --out folder you can "
                                "write to.")
    report = _save_traceback(exc)
    return EXIT_RUN_FAILED, (f"error: omnibatch stopped on an unexpected error ({describe_error(exc)}). Run "
                             "the same command again to resume; if it happens again, please report it with "
                             f"{report}.")


def _save_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix=f"omnibatch-error-{time.strftime('%Y%m%dT%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        return path
    except OSError:
        return "the output of `omnibatch --verbose`"


def exit_on_failure(exc: BaseException) -> None:
    code, line = failure(exc)
    print(printable(line, keep_newlines=True), file=sys.stderr)
    sys.exit(code)
