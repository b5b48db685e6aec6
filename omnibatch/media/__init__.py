"""The media stage: probe files and decode audio and video frames with ffmpeg (decord for frames).

Everything here reads local files only; see `omnibatch.media.ffmpeg` for how untrusted
media is kept from opening other files, URLs or devices.
"""

from omnibatch.media.audio import SAMPLE_RATE, decode_audio, stream_audio
from omnibatch.media.extensions import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS
from omnibatch.media.probe import probe
from omnibatch.media.video import Frames, sample_frames

__all__ = [
    "AUDIO_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "SAMPLE_RATE",
    "VIDEO_EXTENSIONS",
    "Frames",
    "decode_audio",
    "probe",
    "sample_frames",
    "stream_audio",
]
