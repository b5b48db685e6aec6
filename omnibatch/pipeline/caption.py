"""The caption task: clips covering the whole file -> one caption per clip -> one caption per file.

A clip of a video goes to the Thinker as sampled frames with the clip's own
sound (`use_audio_in_video`), so its caption describes what is seen and heard;
a silent video goes as frames only, an audio file as audio only. The
Qwen3-Omni Captioner takes audio and no text prompt, so with it every clip is
its sound alone. A file of several clips then gets a whole-file caption written
by the Thinker from the clip captions (text only, follow-up rounds); with many
clips that is done in groups, level by level, so no prompt grows with the
file's length. A file of one clip keeps that clip's caption.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeVar

from omnibatch.config import RunConfig
from omnibatch.errors import InputError, MediaError
from omnibatch.models.resolve import Variant
from omnibatch.output.tables import CaptionRow, ClipCaption, FileRow
from omnibatch.pipeline.tasks import FileResult, NoSpeech, RegionRequest
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request

log = logging.getLogger(__name__)

# Clip captions per whole-file request: at ~256 tokens a caption, about 4 k tokens of prompt.
MERGE_GROUP = 16
# A clip that starts this close to a stream's end has nothing of that stream in it.
_END_SLACK_S = 0.05
MIN_FRAME_PIXELS = 32 * 32  # one merged patch of the vision encoder

WHOLE_FILE_PROMPT = (
    "Here are captions of consecutive parts of one {what}, in order, each with its time span:\n\n"
    "{parts}\n\n"
    "Write one caption for all of it together: describe what is {senses} from start to end, "
    "in a few sentences, as one account rather than part by part."
)

T = TypeVar("T")


@dataclass(frozen=True)
class Inputs:
    """Which streams of a file a clip request carries."""

    video: bool
    audio: bool


@dataclass(frozen=True)
class Caption:
    """A caption of the span [start_s, end_s): a clip's, or one merged from several."""

    start_s: float
    end_s: float
    text: str


@dataclass
class CaptionTask(NoSpeech):
    """Caption each clip of a file, then the whole file. `variant` None: from `config.model`."""

    config: RunConfig
    variant: Variant | None = None
    # ffmpeg streams just the clip's span and keeps only the sampled frames, so a worker's peak
    # memory stays flat over a 30-minute video; decord's peak per clip varied with the clip's place
    # in the file, several times higher (benchmarks/caption_memory.py, benchmarks/README.md).
    frame_backend: Literal["auto", "decord", "ffmpeg"] = "ffmpeg"
    name: str = "caption"
    row_type: ClassVar[type[FileRow]] = CaptionRow
    # Decoded video is ~0.7 MB per second at the default budget, so the scheduler holds 5 minutes
    # of decoded clips ahead of the engine (~210 MB), not transcribe's 30 minutes.
    hold_seconds: ClassVar[float] = 300.0

    def __post_init__(self) -> None:
        check_caption_config(self.config)
        if self.frame_backend not in ("ffmpeg", "decord", "auto"):
            raise InputError(f"--frame-backend must be ffmpeg or decord, got {self.frame_backend!r}")
        if self.variant is None:
            from omnibatch.models.resolve import resolve_model

            self.variant = resolve_model(self.config.model).variant

    # -- in decode workers -----------------------------------------------------------------

    def decode(self, item: MediaItem, info: MediaInfo) -> Iterator[RegionRequest]:
        """Every clip of the file as a request: the clip's audio comes from one streamed pass over
        the file's sound (which also finds the pauses the cuts move into); its frames from an
        ffmpeg run over the clip's span alone."""
        yield from self.clip_requests(item, info, vad=self.config.vad)

    def clip_requests(self, item: MediaItem, info: MediaInfo, *, vad: bool,
                      clip_type: type[Chunk] = Chunk) -> Iterator[RegionRequest]:
        from omnibatch.clipping import ClipOptions
        from omnibatch.pipeline.stream import stream_clips

        wanted = self.inputs_for(item, info)  # refuse a file this model cannot caption before decoding it
        if not info.duration_s > 0:
            raise MediaError(f"{item.path.name}: the file reports no duration: there is nothing to caption")
        clips = stream_clips(item.path, info.duration_s, ClipOptions(clip_s=self.config.clip_seconds),
                             vad=vad and info.has_audio, with_audio=wanted.audio, item_id=item.id)
        probed = None
        if wanted.video:  # the video stream's own length and size, once for all the clips
            from omnibatch.media.probe import probe_detailed

            probed = probe_detailed(item.path)
        for clip, audio in clips:
            chunk = clip if clip_type is Chunk else clip_type(clip.item_id, clip.index, clip.start_s, clip.end_s)
            yield RegionRequest(chunk, self.clip_request(item, chunk, wanted, audio, probed))

    def clip_request(self, item: MediaItem, chunk: Chunk, wanted: Inputs, audio, probed=None) -> Request:
        from omnibatch.media import sample_frames
        from omnibatch.prompts import caption_prompt

        frames = None
        if wanted.video:
            frames = unless_past_end(
                lambda: sample_frames(item.path, fps=self.config.fps, max_frames=self.config.max_frames,
                                      max_pixels=self.config.max_pixels, start_s=chunk.start_s,
                                      end_s=chunk.end_s, backend=self.frame_backend, probed=probed),
                item, chunk, "video", probed)
        if audio is not None and audio.size == 0:
            audio = None  # the clip starts after the sound has ended
        if frames is None and audio is None:
            raise MediaError(
                f"{item.path.name}: neither picture nor sound in {chunk.start_s:.1f}-{chunk.end_s:.1f} s"
            )
        kind = "video" if frames is not None else "audio"
        return Request(
            id=chunk.id,
            prompt=caption_prompt(kind, self.variant),
            audio=audio,
            video=frames.frames if frames is not None else None,
            video_fps=frames.fps if frames is not None else None,
            max_new_tokens=self.config.max_new_tokens,
        )

    def inputs_for(self, item: MediaItem, info: MediaInfo) -> Inputs:
        if self.variant == "captioner":
            if not info.has_audio:
                raise MediaError(
                    f"{item.path.name} has no audio, and the Captioner model captions audio only: caption "
                    "silent videos with an Instruct model (--model pointing at Qwen3-Omni-30B-A3B-Instruct)"
                )
            if info.has_video:
                _warn_once("the Captioner model takes audio only: video files are captioned from their sound")
            return Inputs(video=False, audio=True)
        if not info.has_audio and not info.has_video:
            raise MediaError(f"{item.path.name} has neither an audio nor a video stream")
        return Inputs(video=info.has_video, audio=info.has_audio)

    # -- in the main process ---------------------------------------------------------------

    def followup(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
                 rounds: list[list[Generation]]) -> list[Request]:
        if self.variant == "captioner":
            return []  # it takes no text prompt: the clip captions are joined instead
        level = current_level(chunks, generations, rounds)
        if len(level) <= 1:
            return []
        what, senses = ("video", "seen and heard") if info.has_video else ("recording", "heard")
        return [
            Request(id=f"{item.id}#whole{len(rounds)}.{k}",
                    prompt=whole_file_prompt([level[i] for i in group], what, senses),
                    max_new_tokens=self.config.max_new_tokens)
            for k, group in enumerate(_groups(len(level)))
        ]

    def finish(self, base: FileRow, item: MediaItem, info: MediaInfo, chunks: list[Chunk],
               generations: list[Generation], rounds: list[list[Generation]]) -> FileResult:
        level = current_level(chunks, generations, rounds)
        clips = [ClipCaption(start_s=c.start_s, end_s=c.end_s, caption=g.text)
                 for c, g in zip(chunks, generations, strict=True)]
        return FileResult(row=CaptionRow.extend(base, caption=join_captions(level), clips=clips))


# -- pure helpers ---------------------------------------------------------------------------


def check_caption_config(config: RunConfig) -> None:
    if config.engine.strip().lower() == "whisper":
        raise InputError(
            "the whisper engine only transcribes speech; caption with --engine transformers or vllm"
        )
    problems = []
    if not config.clip_seconds > 0:
        problems.append(f"--clip-seconds must be positive, got {config.clip_seconds}")
    if not config.fps > 0:
        problems.append(f"--fps must be positive, got {config.fps}")
    if config.max_frames < 1:
        problems.append(f"--max-frames must be at least 1, got {config.max_frames}")
    if config.max_pixels < MIN_FRAME_PIXELS:
        problems.append(f"--max-pixels must be at least {MIN_FRAME_PIXELS}, got {config.max_pixels}")
    if problems:
        raise InputError("; ".join(problems))


def current_level(chunks: list[Chunk], generations: list[Generation],
                  rounds: list[list[Generation]]) -> list[Caption]:
    """The captions the next round starts from: the clips', merged once per round done so far."""
    level = [Caption(c.start_s, c.end_s, g.text) for c, g in zip(chunks, generations, strict=True)]
    for answers in rounds:
        groups = _groups(len(level))
        if len(answers) != len(groups):
            raise ValueError(f"a whole-file round returned {len(answers)} captions for {len(groups)} groups")
        level = [Caption(level[g[0]].start_s, level[g[-1]].end_s, a.text) for g, a in zip(groups, answers)]
    return level


def whole_file_prompt(parts: list[Caption], what: str, senses: str) -> str:
    listed = "\n".join(
        f"[{clock(p.start_s)}-{clock(p.end_s)}] {p.text.strip() or '(no caption)'}" for p in parts
    )
    return WHOLE_FILE_PROMPT.format(what=what, senses=senses, parts=listed)


def join_captions(level: list[Caption]) -> str:
    """One caption for the file: the only one there is, else the parts with their time spans."""
    if len(level) == 1:
        return level[0].text
    return "\n".join(f"[{clock(c.start_s)}-{clock(c.end_s)}] {c.text}" for c in level)


def clock(seconds: float) -> str:
    """0:05, 12:30, 1:02:03."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _groups(count: int) -> list[range]:
    from omnibatch.clipping import merge_groups

    return merge_groups(count, MERGE_GROUP)


# -- media edges ----------------------------------------------------------------------------


def unless_past_end(decode: Callable[[], T], item: MediaItem, chunk: Chunk, stream: str,
                    probed=None) -> T | None:
    """decode(), or None when the clip starts after that stream has ended (a picture that stops
    before the sound, or the reverse); any other failure is the file's error."""
    try:
        return decode()
    except MediaError:
        end = stream_end(item, stream, probed)
        if end is not None and chunk.start_s >= end - _END_SLACK_S:
            return None
        raise


def stream_end(item: MediaItem, stream: str, probed=None) -> float | None:
    """Where the first video (or audio) stream of the file ends, when the container says."""
    from omnibatch.media.probe import probe_detailed

    info, extras = probed or probe_detailed(item.path)
    streams = info.video_streams if stream == "video" else info.audio_streams
    if not streams:
        return None
    extra = extras.get(streams[0].index)
    return extra.duration_s if extra is not None else None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
