"""Typed records that cross stage boundaries (README, "How the engine is kept full").

Three ideas are kept apart, as in lhotse: what media exists (`MediaItem`,
`MediaInfo`), which region of it is processed (`Chunk`), and what the engine
said about a region (`Generation`). Engines take `Request`s and return
`Generation`s; nothing crosses a boundary as a bare dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omnibatch.text_safety import display_path

MediaKind = Literal["audio", "video"]
# The `path` of an item with an origin until a decode worker stages it: nothing ffmpeg would read.
UNSTAGED_PATH = Path("/dev/null")


@dataclass(frozen=True)
class Origin:
    """Where the bytes of an item that is not a local file are: a remote object or a dataset cell.

    Only the address travels (items are pickled to every decode worker); the bytes are
    fetched by the worker that decodes the item (omnibatch/media/staging.py).
    `kind` "remote": `location` is the URL (s3://, gs://, https://). `kind` "dataset": `location`
    is the Arrow or Parquet file that holds the row, `row` its index in that file and `column`
    the Audio/Video column (a {bytes, path} struct, or a string path).
    `name` is a file name for the staged copy (it appears in error messages).
    """

    kind: Literal["remote", "dataset"]
    location: str
    name: str
    row: int | None = None
    column: str | None = None

    @property
    def display(self) -> str:
        if self.kind == "remote":
            return self.location
        return f"{self.location}[{self.row}].{self.column}"


@dataclass(frozen=True)
class MediaItem:
    """One input file, as named by a manifest line, a folder scan or the command line."""

    id: str
    path: Path  # resolved, absolute; for an item with an `origin`, the staged copy once staged
    source: str  # where it was named, e.g. "manifest.jsonl:12", for error messages
    language: str | None = None
    duration_s: float | None = None  # from the manifest, when it says; probing fills it otherwise
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, carried to the output
    origin: Origin | None = None  # set: not a local file (path is not opened until staged)

    @property
    def display_path(self) -> str:
        """`path` as valid UTF-8 (undecodable bytes as `\\xNN`): what tables and messages hold.

        `path` itself stays the real name, for opening the file. An item with an origin shows
        its URL or dataset cell.
        """
        if self.origin is not None:
            return display_path(self.origin.display)
        return display_path(self.path)


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: Literal["audio", "video", "subtitle", "data", "attachment", "unknown"]
    codec: str
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    attached_pic: bool = False  # cover art in an audio file is a "video" stream that is not a video


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe found in a file."""

    path: Path
    format_name: str
    duration_s: float
    streams: tuple[StreamInfo, ...]

    @property
    def audio_streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.kind == "audio")

    @property
    def video_streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.kind == "video" and not s.attached_pic)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_streams)

    @property
    def has_video(self) -> bool:
        return bool(self.video_streams)

    @property
    def kind(self) -> MediaKind:
        return "video" if self.has_video else "audio"


@dataclass(frozen=True)
class Chunk:
    """A region [start_s, end_s) of one item, in the file's timeline.

    `pieces` empty: the chunk's audio is all of [start_s, end_s). Otherwise the chunk is
    packed speech: its audio is the concatenation of the pieces' samples, in order (each
    piece a (start, end) span in file time, the first starting at start_s and the last
    ending at end_s), and the silence between pieces is left out. `packing.TimeMap`
    maps a time in the chunk's audio back to the file.
    """

    item_id: str
    index: int
    start_s: float
    end_s: float
    pieces: tuple[tuple[float, float], ...] = ()

    @property
    def id(self) -> str:
        # Stable: derives from the parent id and the index only.
        return f"{self.item_id}#{self.index:05d}"

    @property
    def spans(self) -> tuple[tuple[float, float], ...]:
        """The file-time spans whose audio the chunk holds, in order."""
        return self.pieces or ((self.start_s, self.end_s),)

    @property
    def duration_s(self) -> float:
        """Seconds of audio the chunk holds (for packed speech, the pieces' total)."""
        if not self.pieces:
            return self.end_s - self.start_s
        return sum(b - a for a, b in self.pieces)


@dataclass
class Request:
    """One unit of Thinker work: a prompt over optional audio and video.

    `audio` is 16 kHz mono float32. `video` is uint8 frames (T, H, W, 3) sampled
    at `video_fps`; when both are given the audio is the video's own track.
    `prompt` None means "no text turn" (the Captioner takes audio only).

    `id` is unique within a run and is what engines key on; the scheduler also
    gives each request its file (`item_id`), pass (`step`) and place in that pass
    (`index`) as fields, so nothing is ever parsed back out of the id.
    """

    id: str
    prompt: str | None
    audio: np.ndarray | None = None
    video: np.ndarray | None = None
    video_fps: float | None = None
    system: str | None = None
    language: str | None = None  # a code of omnibatch.languages: a hint for recognizers (whisper)
    max_new_tokens: int = 256
    word_times: bool = False  # give words with times (whisper: its own; Qwen engines: the aligner's)
    item_id: str = ""
    step: str = ""
    index: int = 0


@dataclass
class Word:
    """One word with its times: relative to the request's audio in a Generation, in the file's
    timeline once stitched. `text` is the word as written (punctuation attached);
    `probability` is the engine's or aligner's confidence in it, None where it gives none."""

    start_s: float
    end_s: float
    text: str
    probability: float | None = None


@dataclass
class Segment:
    """Time-stamped text in the file's timeline (request-relative inside a Generation).

    `words` are the segment's words with times, where the engine or an aligner gives them;
    `avg_logprob` is the mean log-probability per token of the decode that wrote it and
    `no_speech_prob` Whisper's probability that its audio holds no speech (None: not given).
    """

    start_s: float
    end_s: float
    text: str
    words: list[Word] | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


@dataclass
class Generation:
    """What the engine returned for one request. `error` set means it failed alone."""

    request_id: str
    text: str
    error: str | None = None
    segments: list[Segment] | None = None  # request-relative times, from engines that give them
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None  # "stop" (ended by itself) | "length" (hit its token limit)
    reasoning: str | None = None  # a Thinking model's reasoning (before </think>), kept apart from `text`

    @property
    def truncated(self) -> bool:
        """The generation stopped at its token limit, not by itself."""
        return self.finish_reason == "length"
    # The language of the speech (a code of omnibatch.languages) where the engine detected it,
    # with its probability; None where it was given or is not known.
    language: str | None = None
    language_probability: float | None = None
    avg_logprob: float | None = None  # mean log-probability of the generated tokens, where known
