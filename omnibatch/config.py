"""The run configuration: one plain, JSON-serialisable record of what a run does.

It is written to `DIR/_run/config.json` and shipped to Slurm tasks as a file
(never a pickle), and its fingerprint decides which earlier outputs a rerun may
reuse. `RunConfig` stays flat (the CLI, config files and tests build it by
field name); each task's view of it is a typed, frozen options record, and only
the fields that change what that task's rows contain go into its fingerprint:
a summarize default never changes a transcribe run's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

TaskName = Literal["transcribe", "caption", "summarize"]
TASKS: tuple[TaskName, ...] = ("transcribe", "caption", "summarize")
SUBTITLE_FORMATS = ("srt", "vtt", "txt", "json")
ALL_FORMATS = ("parquet", *SUBTITLE_FORMATS)

# `RunConfig.workers`: sized to the node once the engine is known (`RunConfig.resolved_workers`).
AUTO_WORKERS = None


# Each record holds the fields its task's pipeline reads (omnibatch/pipeline/<task>.py and the
# helpers it calls), named as in RunConfig. Output-only fields (formats) are not among them.


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None  # the manifest's `language` wins per file
    chunk_seconds: float
    vad: bool
    max_new_tokens: int
    word_timestamps: bool  # words with times (DIR/words/)
    reference_key: str | None  # the manifest key holding a reference transcript (None: "text", NeMo's)
    normalizer: str  # how references and transcripts are normalized before WER/CER (omnibatch.scoring)
    pack_speech: bool | None  # chunks of packed speech, pauses left out (None: for the whisper engine)


@dataclass(frozen=True)
class CaptionOptions:
    fps: float
    max_frames: int
    clip_seconds: float
    max_pixels: int
    vad: bool  # clips are cut in pauses of speech
    max_new_tokens: int
    frame_backend: str  # ffmpeg | decord: who samples a clip's frames (benchmarks/frame_backends.py)


@dataclass(frozen=True)
class SummarizeOptions:
    language: str | None  # of the summary; the ASR prompt takes the manifest's
    chunk_seconds: float  # speech is transcribed as transcribe does...
    vad: bool
    max_new_tokens: int
    clip_seconds: float  # ...and files without speech are captioned in clips, as caption does
    fps: float
    max_frames: int
    max_pixels: int
    max_words: int
    summary_piece_chars: int
    speak: bool
    speaker: str
    pack_speech: bool | None  # as transcribe's


TaskOptions = Union[TranscribeOptions, CaptionOptions, SummarizeOptions]
TASK_OPTIONS: dict[str, type[TaskOptions]] = {
    "transcribe": TranscribeOptions,
    "caption": CaptionOptions,
    "summarize": SummarizeOptions,
}


DEFAULT_MAX_DURATION_S = 6 * 3600.0


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
    word_timestamps: bool = True  # transcribe: words with times (whisper's own; the aligner's for Qwen)
    chunk_seconds: float = 30.0
    vad: bool = True
    # Speech chunks packed from pieces of speech, the pauses between them left out (as
    # faster-whisper's batched pipeline does), instead of contiguous audio cut in pauses.
    # None: packed for the whisper engine (measured better there), contiguous for the others.
    pack_speech: bool | None = None
    # Task options: each task reads its own (TASK_OPTIONS), the others ignore them.
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
    # workers: decode processes; 0 decodes in the main process; AUTO_WORKERS (None) sizes them to the node.
    workers: int | None = 1
    rows_per_part: int = 1000
    # Media longer than this (probed) is refused before it is decoded: an error row, not hours of CPU.
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    frame_backend: str = "ffmpeg"  # caption: "decord" is faster on some inputs, heavier on long video
    reference_key: str | None = None
    normalizer: str = "basic"
    nemo_manifest: str | None = None  # write a NeMo-style manifest (pred_text beside the input keys) here
    # Subtitle cues (output only): at most this many lines of at most this many characters.
    max_line_width: int = 42
    max_line_count: int = 2

    # What never changes a row's content.
    _NOT_FINGERPRINTED = frozenset(
        {"inputs", "out", "shard_index", "num_shards", "resume", "retry_errors", "workers",
         "rows_per_part", "formats", "speech_timeout_s", "max_line_width",
         "max_line_count", "max_duration_s", "nemo_manifest"}
    )
    # What changes every task's rows; the rest of the fingerprint is the task's own options record.
    _COMMON_FINGERPRINTED = ("task", "model", "engine", "engine_options")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def shard_label(self) -> str:
        return f"{self.shard_index:05d}-of-{self.num_shards:05d}"

    def task_options(self) -> TaskOptions:
        """The options record of `self.task`, read from the flat fields of the same names."""
        try:
            record = TASK_OPTIONS[self.task]
        except KeyError:
            raise ValueError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}") from None
        return record(**{f.name: getattr(self, f.name) for f in fields(record)})

    def fingerprinted_fields(self) -> dict[str, Any]:
        """The flat field names and values that go into the fingerprint: the common ones, then the task's."""
        common = {name: getattr(self, name) for name in self._COMMON_FINGERPRINTED}
        return {**common, **asdict(self.task_options())}

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprinted_fields(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def packs_speech(self) -> bool:
        """Whether speech chunks are packed speech (`pack_speech`, resolved for the engine)."""
        if self.pack_speech is not None:
            return bool(self.pack_speech)
        return self.engine.strip().lower() == "whisper"

    def resolved_workers(self, engine_name: str | None = None) -> int:
        """Decode worker processes for this run: `workers` as given, or, when it is AUTO_WORKERS, the
        CPUs this process may use less what engine `engine_name` (default: `self.engine`, "auto"
        allowed) needs for itself. 0 means decode in the main process."""
        if self.workers is not AUTO_WORKERS:
            return self.workers
        from omnibatch.resources import default_workers, placed_engine_name, usable_cpus

        placed = placed_engine_name(engine_name or self.engine, self.engine_options)
        return default_workers(placed, usable_cpus())

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
