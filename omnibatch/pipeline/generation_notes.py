"""What a file row says about the generations behind it, whatever the task: how many were cut at
their token limit (`truncated`), and a Thinking model's reasoning (`reasoning`), kept apart from
the answer columns."""

from __future__ import annotations

from collections.abc import Iterable

from omnibatch.output.tables import FileRow
from omnibatch.pipeline.tasks import FileWork
from omnibatch.records import Generation

REASONING_SEPARATOR = "\n\n"


def file_generations(file: FileWork) -> list[Generation]:
    """Every generation the file got back so far: its regions in order, then each text round's."""
    first = [file.generations[k] for k in sorted(file.generations)]
    rounds = [g for answers in file.rounds for g in answers]
    open_round = [file.round_answers[k] for k in sorted(file.round_answers)]
    return first + rounds + open_round


def note_generations(row: FileRow, generations: Iterable[Generation]) -> FileRow:
    """Set `row.truncated` (generations that stopped at their token limit) and `row.reasoning`."""
    done = list(generations)
    row.truncated = sum(1 for g in done if g.truncated)
    reasoning = [g.reasoning.strip() for g in done if g.reasoning and g.reasoning.strip()]
    row.reasoning = REASONING_SEPARATOR.join(reasoning) if reasoning else None
    return row
