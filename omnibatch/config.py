"""The run configuration: one plain, JSON-serialisable record of what a run does.

It is written to `DIR/_run/config.json` and shipped to Slurm tasks as a file
(never a pickle), and its fingerprint decides which earlier outputs a rerun may
reuse: only the fields that change what a row contains go into it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

TaskName = Literal["transcribe", "caption", "summarize"]
TASKS: tuple[TaskName, ...] = ("transcribe", "caption", "summarize")
SUBTITLE_FORMATS = ("srt", "vtt", "txt")
ALL_FORMATS = ("parquet", *SUBTITLE_FORMATS)


@dataclass
class RunConfig:
    task: TaskName
    inputs: list[str]
    out: str
    model: str | None = None
    engine: str = "auto"
    language: str | None = None
    formats: list[str] = field(default_factory=lambda: ["parquet"])
    shard_index: int = 0
    num_shards: int = 1
    resume: bool = True
    retry_errors: bool = False
    max_new_tokens: int = 256
    chunk_seconds: float = 30.0
    vad: bool = True
    # Task options: caption and summarize read theirs, the others ignore them.
    fps: float = 1.0
    max_frames: int = 32
    clip_seconds: float = 30.0
    max_pixels: int = 256 * 32 * 32  # per sampled frame: 256 merged vision tokens (media.video)
    speaker: str = "Ethan"
    speak: bool = True
    max_words: int = 120
    summary_piece_chars: int = 12000  # map-reduce: the most transcript characters in one summary prompt
    speech_timeout_s: float = 900.0  # one batch of speech; a stuck stage fails its items instead of hanging
    # Engine options (tensor_parallel_size, max_model_len, batch_size, ...), by name.
    engine_options: dict[str, Any] = field(default_factory=dict)
    # Throughput knobs: they never change a row, so they stay out of the fingerprint.
    workers: int = 1
    wave_seconds: float = 1800.0
    rows_per_part: int = 1000

    # What never changes a row's content.
    _NOT_FINGERPRINTED = frozenset(
        {"inputs", "out", "shard_index", "num_shards", "resume", "retry_errors", "workers",
         "wave_seconds", "rows_per_part", "formats", "speech_timeout_s"}
    )

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def shard_label(self) -> str:
        return f"{self.shard_index:05d}-of-{self.num_shards:05d}"

    def fingerprint(self) -> str:
        keep = {k: v for k, v in asdict(self).items() if k not in self._NOT_FINGERPRINTED}
        blob = json.dumps(keep, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_shard(self, index: int, count: int) -> RunConfig:
        data = asdict(self)
        data.update(shard_index=index, num_shards=count)
        return RunConfig(**data)
