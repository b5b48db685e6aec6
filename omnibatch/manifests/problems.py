"""Problems found in the inputs, collected so a person can fix them all in one pass."""

from __future__ import annotations

from dataclasses import dataclass

from omnibatch.text_safety import printable

# A user fixing a 100k-line manifest wants the list, but not 100k lines of it.
MAX_SHOWN_PER_FILE = 20


@dataclass(frozen=True)
class Problem:
    file: str  # the input as the user named it
    where: str  # "" (the whole file), ":12" (a line) or " row 3" (a Parquet row)
    message: str

    def __str__(self) -> str:
        # File names and messages quote the input: nothing in them may reach a terminal raw.
        return printable(f"{self.file}{self.where}: {self.message}")


class ManifestUnreadable(Exception):
    """A manifest cannot be read any further (I/O error, corrupt compression, no path column)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def format_problems(problems: list[Problem]) -> str:
    """One message for an InputError: every problem, grouped by file, at most 20 per file."""
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem)
    count = len(problems)
    lines = [f"the inputs have {count} problem{'s' if count != 1 else ''}; nothing was run:"]
    for file, found in by_file.items():
        found.sort(key=lambda p: int("".join(c for c in p.where if c.isdigit()) or 0))
        lines.extend(f"  {p}" for p in found[:MAX_SHOWN_PER_FILE])
        if len(found) > MAX_SHOWN_PER_FILE:
            lines.append(f"  ... and {len(found) - MAX_SHOWN_PER_FILE} more in {printable(file)}")
    lines.append("Fix these and run the command again.")
    return "\n".join(lines)
