"""What a task is to the scheduler: its passes over a file, declared as typed steps.

Every task has the same shape (README, "How the engine is kept full"):

1. **first pass** (`decode`, in a decode worker): one streaming pass over the
   file yields its regions (transcribe: speech chunks; caption: clips) as
   requests, each the moment its samples are decoded.
2. **text rounds** (`followup`, in the main process): once every region of the
   file is back, the task may ask for another round of Thinker requests over
   text (caption: the whole-file caption; summarize: map-reduce rounds). They
   enter the engine queue at once, ahead of other files' regions, and the task
   is asked again after each round until it asks for nothing.
3. **finish**: the file's typed row (and segments).
4. **speech** (optional, summarize): after the Thinker work, a speech engine
   renders `speech_request(row)`; `apply_speech` completes the row.

A task must be picklable: `decode` runs in worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from omnibatch.output.tables import FileRow, SegmentRow, WordRow
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request

FIRST_PASS = "regions"


def round_step(number: int) -> str:
    """The step name of text round `number` (0-based)."""
    return f"round{number}"


@dataclass
class FileResult:
    """One finished file: its typed row and the segments and words that belong to it."""

    row: FileRow
    segments: list[SegmentRow] = field(default_factory=list)
    words: list[WordRow] = field(default_factory=list)  # DIR/words/, written with the segments
    error: str | None = None  # set: the row is an error row, failed in stage "finish" (or "speech")


@dataclass
class FileWork:
    """A file in flight: its regions so far and what the engine has said about them."""

    item: MediaItem
    info: MediaInfo | None = None
    chunks: list[Chunk] = field(default_factory=list)
    generations: dict[int, Generation] = field(default_factory=dict)
    rounds: list[list[Generation]] = field(default_factory=list)
    round_answers: dict[int, Generation] = field(default_factory=dict)  # the open round, by index
    round_size: int = 0
    decoded_all: bool = False  # the decode pass has ended: `chunks` is the whole first pass
    error: str | None = None
    error_stage: str | None = None
    closed: bool = False  # its row has been handed on; late generations are dropped
    started: float | None = None  # time.monotonic() at its first decode event (Probed or Failed)

    def fail(self, stage: str, error: str) -> None:
        if self.error is None:
            self.error, self.error_stage = error, stage

    @property
    def first_pass_done(self) -> bool:
        return self.decoded_all and len(self.generations) == len(self.chunks)

    def ordered(self) -> list[Generation]:
        return [self.generations[c.index] for c in self.chunks]


@dataclass(frozen=True)
class RegionRequest:
    """A first-pass request with its chunk, as a decode worker hands it on."""

    chunk: Chunk
    request: Request


class Task(Protocol):
    name: str
    row_type: type[FileRow]
    # Media seconds of decoded first-pass requests the scheduler may hold beyond what the
    # engine has in flight (video requests are heavy: caption holds less than transcribe).
    hold_seconds: float

    def decode(self, item: MediaItem, info: MediaInfo) -> Iterator[RegionRequest]:
        """The first pass, in a decode worker: one request per region, in order, each the
        moment its samples are decoded (`step=FIRST_PASS`, `index` = its chunk's index)."""
        ...

    def followup(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
                 rounds: list[list[Generation]]) -> list[Request]:
        """The next text round (empty: none); called after the first pass and after each round."""
        ...

    def finish(self, base: FileRow, item: MediaItem, info: MediaInfo, chunks: list[Chunk],
               generations: list[Generation], rounds: list[list[Generation]]) -> FileResult: ...

    def speech_request(self, row: FileRow) -> Any | None:
        """What to speak for a finished row (a SpeechRequest), or None: this row needs no speech."""
        ...

    def build_speech(self) -> Any:
        """The speech engine, built only when some row needs speech."""
        ...

    def speak(self, engine: Any, requests: list[Any]) -> list[Any]:
        """Render one batch of speech requests; one pipeline.speech_stage.SpokenFile per request, in order."""
        ...

    def apply_speech(self, row: FileRow, spoken: Any) -> None:
        """Complete `row` with what the speech pass made of it (a pipeline.speech_stage.SpokenFile)."""
        ...


class NoSpeech:
    """For tasks whose rows are never spoken."""

    def speech_request(self, row: FileRow) -> None:
        return None

    def build_speech(self) -> Any:
        raise NotImplementedError("this task has no speech pass")

    def speak(self, engine: Any, requests: list[Any]) -> list[Any]:
        raise NotImplementedError("this task has no speech pass")

    def apply_speech(self, row: FileRow, spoken: Any) -> None:
        raise NotImplementedError("this task has no speech pass")
