"""The output tables: one typed row per table, with its Arrow schema beside it (README, "Outputs").

Every stage after the engine hands rows around as these dataclasses, never as
free dicts; `to_table` is the one place they become Arrow. A task's row extends
`FileRow` (the columns every file row has) with its own columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from omnibatch.text_safety import display_text

# Columns every file row has, whatever the task.
FILE_COLUMNS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
    pa.field("error", pa.string()),
    pa.field("error_stage", pa.string()),  # where it failed: probe | decode | engine | finish | speech
    pa.field("duration_s", pa.float64()),
    pa.field("model", pa.string()),
    pa.field("engine", pa.string()),
    pa.field("language", pa.string()),
    pa.field("kind", pa.string()),  # "audio" | "video"
    pa.field("extra", pa.string()),  # the manifest's unknown keys, as a JSON object
    pa.field("truncated", pa.int32()),  # the file's generations cut at their token limit (0: none)
    pa.field("reasoning", pa.string()),  # a Thinking model's reasoning, apart from the answer (else null)
    pa.field("processing_s", pa.float64()),  # wall seconds from the file's probe to its row being finished
]

R = TypeVar("R", bound="FileRow")


@dataclass(kw_only=True)
class FileRow:
    """What every file row holds; `status` follows from `error`."""

    id: str
    path: str | None = None
    status: str = "ok"
    error: str | None = None
    error_stage: str | None = None
    duration_s: float | None = None
    model: str | None = None
    engine: str | None = None
    language: str | None = None
    kind: str | None = None
    extra: str | None = None
    truncated: int | None = None
    reasoning: str | None = None
    processing_s: float | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(FILE_COLUMNS)

    @classmethod
    def extend(cls: type[R], base: FileRow, **columns: Any) -> R:
        """This task's row: the common columns of `base`, plus `columns`."""
        common = {f.name: getattr(base, f.name) for f in fields(FileRow)}
        return cls(**common, **columns)

    def fail(self, stage: str, error: str) -> None:
        # Messages quote file names, which may hold undecodable bytes: the table takes UTF-8 only.
        self.status, self.error, self.error_stage = "error", display_text(error), stage


@dataclass(kw_only=True)
class TranscribeRow(FileRow):
    """`language` is the one given, else the one detected (with `language_probability`);
    `avg_logprob` is the file's mean token log-probability (null where the engine gives none)."""

    text: str | None = None
    num_chunks: int | None = None
    language_probability: float | None = None
    avg_logprob: float | None = None
    # How many segment and word rows the file has beside it: a rerun checks them and redoes the
    # file if a part that held them is gone.
    num_segments: int | None = None
    num_words: int | None = None
    # Against the manifest's reference transcript, where it has one (omnibatch.scoring).
    wer: float | None = None
    cer: float | None = None
    reference_words: int | None = None
    reference_chars: int | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        FILE_COLUMNS + [pa.field("text", pa.string()), pa.field("num_chunks", pa.int32()),
                        pa.field("language_probability", pa.float64()), pa.field("avg_logprob", pa.float64()),
                        pa.field("num_segments", pa.int32()), pa.field("num_words", pa.int32()),
                        pa.field("wer", pa.float64()), pa.field("cer", pa.float64()),
                        pa.field("reference_words", pa.int32()), pa.field("reference_chars", pa.int32())]
    )


@dataclass(frozen=True)
class ClipCaption:
    start_s: float
    end_s: float
    caption: str


CLIP_TYPE = pa.struct(
    [pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()), pa.field("caption", pa.string())]
)


@dataclass(kw_only=True)
class CaptionRow(FileRow):
    caption: str | None = None
    clips: list[ClipCaption] | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        FILE_COLUMNS + [pa.field("caption", pa.string()), pa.field("clips", pa.list_(CLIP_TYPE))]
    )


@dataclass(kw_only=True)
class SummarizeRow(FileRow):
    transcript: str | None = None
    summary: str | None = None
    audio_path: str | None = None
    audio_duration_s: float | None = None
    sample_rate: int | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        FILE_COLUMNS
        + [
            pa.field("transcript", pa.string()),
            pa.field("summary", pa.string()),
            pa.field("audio_path", pa.string()),
            pa.field("audio_duration_s", pa.float64()),
            pa.field("sample_rate", pa.int32()),
        ]
    )


@dataclass(frozen=True)
class SegmentRow:
    """One time-stamped piece of a transcript, in the file's timeline; joins file rows on `id`."""

    id: str
    index: int
    start_s: float
    end_s: float
    text: str | None
    avg_logprob: float | None = None  # of the decode that wrote it (whisper: its chunk's)
    no_speech_prob: float | None = None  # whisper's; null for other engines

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("index", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("text", pa.string()),
            pa.field("avg_logprob", pa.float64()),
            pa.field("no_speech_prob", pa.float64()),
        ]
    )


@dataclass(frozen=True)
class WordRow:
    """One word with its times in the file's timeline; joins file rows on `id` and segment rows on
    (`id`, `segment` = the segment's `index`). `index` counts the file's words from 0."""

    id: str
    segment: int
    index: int
    start_s: float
    end_s: float
    word: str
    probability: float | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("segment", pa.int32(), nullable=False),
            pa.field("index", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("word", pa.string(), nullable=False),
            pa.field("probability", pa.float64()),
        ]
    )


ROW_TYPES: dict[str, type[FileRow]] = {
    "transcribe": TranscribeRow,
    "caption": CaptionRow,
    "summarize": SummarizeRow,
}
SEGMENT_SCHEMA = SegmentRow.SCHEMA
WORD_SCHEMA = WordRow.SCHEMA


def file_schema(task: str) -> pa.Schema:
    return ROW_TYPES[task].SCHEMA


def to_table(rows: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Arrow table of typed rows (dataclasses; nested ones become structs)."""
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=schema)


def from_table(table: pa.Table, row_type: type[R]) -> list[R]:
    """Typed rows back from a table written by `to_table` (columns it lacks keep their defaults)."""
    names = {f.name for f in fields(row_type)} & set(table.column_names)
    rows = []
    for record in table.select(sorted(names)).to_pylist():
        if row_type is CaptionRow and record.get("clips") is not None:
            record["clips"] = [ClipCaption(**c) for c in record["clips"]]
        rows.append(row_type(**record))
    return rows
