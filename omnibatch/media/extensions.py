"""File name extensions that count as media when a folder is scanned or a file is named directly.

Lowercase, with the leading dot, so `path.suffix.lower() in MEDIA_EXTENSIONS` is the test.
Manifests may name files with any extension: only scans and direct paths use these sets.
"""

from __future__ import annotations

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma",
        ".aif", ".aiff", ".caf", ".amr", ".w64",
    }
)  # fmt: skip

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
        ".mpg", ".mpeg", ".3gp", ".ogv",
    }
)  # fmt: skip

MEDIA_EXTENSIONS: frozenset[str] = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
