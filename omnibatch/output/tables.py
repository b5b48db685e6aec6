"""Column schemas of the output tables (DESIGN.md, "User-facing contract")."""

from __future__ import annotations

import pyarrow as pa

# Columns every file row has, whatever the task.
FILE_COLUMNS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
    pa.field("error", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("model", pa.string()),
    pa.field("engine", pa.string()),
    pa.field("language", pa.string()),
    pa.field("kind", pa.string()),  # "audio" | "video"
    pa.field("extra", pa.string()),  # the manifest's unknown keys, as a JSON object
]

SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("text", pa.string()),
    ]
)

CLIP_TYPE = pa.struct(
    [pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()), pa.field("caption", pa.string())]
)

TASK_COLUMNS: dict[str, list[pa.Field]] = {
    "transcribe": [pa.field("text", pa.string()), pa.field("num_chunks", pa.int32())],
    "caption": [pa.field("caption", pa.string()), pa.field("clips", pa.list_(CLIP_TYPE))],
    "summarize": [
        pa.field("transcript", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("audio_path", pa.string()),
        pa.field("audio_duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
    ],
}


def file_schema(task: str) -> pa.Schema:
    return pa.schema(FILE_COLUMNS + TASK_COLUMNS[task])
