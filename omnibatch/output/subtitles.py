"""SRT, WebVTT, plain-text and JSON renderings of a transcript.

The renderers are pure. Cues hold at most `max_lines` lines (default two) of at
most `max_line` characters (default 42, the common broadcast limit; CJK
characters count double), as WhisperX's `--max_line_count`/`--max_line_width`.
Where a segment's words have times, its cues are cut between words and each cue
runs from its first word's start to its last word's end; a pause of
`PAUSE_S` or more between two words also starts a new cue. A segment without
word times is split the same way by its text, with the segment's time shared out
in proportion to the text in each cue. The JSON file holds the segments with
their words, times and confidences (whisper's JSON layout: `start`, `end`,
`text`, `words` of `word`, `start`, `end`, `probability`).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omnibatch.output.names import safe_filename
from omnibatch.records import Segment, Word
from omnibatch.stitching import join_texts, word_spans

MAX_LINE = 42
MAX_LINES = 2
PAUSE_S = 1.0  # a silence this long between two words ends a cue
FORMATS = ("srt", "vtt", "txt", "json")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    lines: tuple[str, ...]


def format_timestamp(t: float, decimal_marker: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT).

    Rounds to the millisecond first, so 59.9996 s is 00:01:00,000, never 00:00:59,1000.
    """
    ms = max(0, round(t * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_marker}{ms:03d}"


def text_width(text: str) -> int:
    """Display width: wide (CJK) characters count as two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def to_cues(segments: Sequence[Segment], max_line: int = MAX_LINE, max_lines: int = MAX_LINES) -> list[Cue]:
    """Cues for `segments` (in order), each at most `max_lines` lines of at most `max_line` wide."""
    if max_line < 1 or max_lines < 1:
        raise ValueError(f"cues need a line width and a line count of at least 1, got {max_line} and "
                         f"{max_lines}")
    cues: list[Cue] = []
    for seg in segments:
        timed = [w for w in seg.words or [] if w.text.strip()]
        if timed:
            cues.extend(_word_cues(timed, max_line, max_lines))
            continue
        text = " ".join(seg.text.split())
        words = _Words(text, max_line)
        if not words.spans:
            continue
        groups = _group_words(words, max_line, max_lines)
        weights = [max(1, text_width(words.text(a, b).replace(" ", ""))) for a, b in groups]
        total = sum(weights)
        start, end = seg.start_s, max(seg.end_s, seg.start_s)
        done = 0
        for (a, b), weight in zip(groups, weights):
            t0 = start + (end - start) * done / total
            done += weight
            t1 = start + (end - start) * done / total
            cues.append(Cue(t0, t1, tuple(_balance(words, a, b, max_line))))
    # Segments from different chunks may overlap a little; a cue ends where the next begins.
    for k in range(len(cues) - 1):
        nxt = cues[k + 1].start_s
        if cues[k].start_s <= nxt < cues[k].end_s:
            cues[k] = Cue(cues[k].start_s, nxt, cues[k].lines)
    return cues


def _word_cues(words: Sequence[Word], max_line: int, max_lines: int) -> list[Cue]:
    """Cues of whole words, each timed by its words: a cue ends when its next word would need one
    line too many, or after a pause of PAUSE_S or more."""
    cues: list[Cue] = []
    group: list[Word] = []

    def close() -> None:
        layout = _Words(join_texts([w.text for w in group]), max_line)
        lines = _balance(layout, 0, len(layout.spans), max_line)
        start = group[0].start_s
        cues.append(Cue(start, max(group[-1].end_s, start), tuple(lines)))

    for word in words:
        if group:
            paused = word.start_s - group[-1].end_s >= PAUSE_S
            text = join_texts([w.text for w in [*group, word]])
            wide = _Words(text, max_line)
            if paused or len(_wrap(wide, 0, len(wide.spans), max_line)) > max_lines:
                close()
                group = []
        group.append(word)
    if group:
        close()
    return cues


def to_srt(segments: Sequence[Segment], max_line: int = MAX_LINE, max_lines: int = MAX_LINES) -> str:
    blocks = []
    for n, cue in enumerate(to_cues(segments, max_line, max_lines), start=1):
        timing = f"{format_timestamp(cue.start_s)} --> {format_timestamp(cue.end_s)}"
        blocks.append(f"{n}\n{timing}\n" + "\n".join(cue.lines) + "\n")
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment], max_line: int = MAX_LINE, max_lines: int = MAX_LINES) -> str:
    blocks = ["WEBVTT\n"]
    for cue in to_cues(segments, max_line, max_lines):
        timing = f"{format_timestamp(cue.start_s, '.')} --> {format_timestamp(cue.end_s, '.')}"
        blocks.append(f"{timing}\n" + "\n".join(_escape_vtt(line) for line in cue.lines) + "\n")
    return "\n".join(blocks)


def to_txt(text: str) -> str:
    text = " ".join(text.split())
    return text + "\n" if text else ""


def to_json(item_id: str, segments: Sequence[Segment], text: str, language: str | None = None) -> str:
    """The transcript as JSON: the file's text and language, and its segments with their words."""
    doc = {
        "id": item_id,
        "language": language,
        "text": " ".join(text.split()),
        "segments": [
            {
                "index": i,
                "start": seg.start_s,
                "end": seg.end_s,
                "text": seg.text,
                "avg_logprob": seg.avg_logprob,
                "no_speech_prob": seg.no_speech_prob,
                "words": None if seg.words is None else [
                    {"word": w.text, "start": w.start_s, "end": w.end_s, "probability": w.probability}
                    for w in seg.words
                ],
            }
            for i, seg in enumerate(segments)
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def write_subtitles(
    out_dir: Path,
    item_id: str,
    segments: Sequence[Segment],
    text: str,
    formats: Iterable[str] = FORMATS,
    *,
    max_line: int = MAX_LINE,
    max_lines: int = MAX_LINES,
    language: str | None = None,
) -> dict[str, Path]:
    """Write `<out_dir>/<safe id>.<fmt>` for each format, each to a temporary name first, then renamed.

    Returns the path written for each format.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown subtitle format(s) {unknown}; choose from {', '.join(FORMATS)}")
    renderers = {
        "srt": lambda: to_srt(segments, max_line, max_lines),
        "vtt": lambda: to_vtt(segments, max_line, max_lines),
        "txt": lambda: to_txt(text),
        "json": lambda: to_json(item_id, segments, text, language),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_filename(item_id)
    written: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        tmp = out_dir / f".{stem}.{fmt}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(renderers[fmt]())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written[fmt] = path
    return written


class _Words:
    """The words of one text as character spans, so a line is a slice of the text as written."""

    def __init__(self, text: str, max_line: int) -> None:
        self._text = text
        self.spans: list[tuple[int, int]] = []
        for a, b in word_spans(text):
            # Hard-split a word wider than a line (a URL, a long number) so every word fits on one.
            while text_width(text[a:b]) > max_line:
                cut = a + 1
                while cut < b and text_width(text[a : cut + 1]) <= max_line:
                    cut += 1
                self.spans.append((a, cut))
                a = cut
            if a < b:
                self.spans.append((a, b))

    def text(self, first: int, last: int) -> str:
        """Words [first, last) as written, with the spaces between them."""
        return self._text[self.spans[first][0] : self.spans[last - 1][1]]

    def width(self, first: int, last: int) -> int:
        return text_width(self.text(first, last))


def _wrap(words: _Words, first: int, last: int, max_line: int) -> list[tuple[int, int]]:
    """Greedy wrap of words [first, last): as many words per line as fit."""
    lines: list[tuple[int, int]] = []
    for k in range(first, last):
        if lines and words.width(lines[-1][0], k + 1) <= max_line:
            lines[-1] = (lines[-1][0], k + 1)
        else:
            lines.append((k, k + 1))
    return lines


def _group_words(words: _Words, max_line: int, max_lines: int) -> list[tuple[int, int]]:
    """Split the words into cue-sized ranges: greedy lines, `max_lines` lines per cue."""
    lines = _wrap(words, 0, len(words.spans), max_line)
    groups = [
        (lines[i][0], lines[min(i + max_lines, len(lines)) - 1][1]) for i in range(0, len(lines), max_lines)
    ]
    if len(groups) >= 2:
        # Share the last two cues' words evenly, so no cue holds a lone trailing word.
        first, last = groups[-2][0], groups[-1][1]
        best = None
        for k in range(first + 1, last):
            if (
                len(_wrap(words, first, k, max_line)) > max_lines
                or len(_wrap(words, k, last, max_line)) > max_lines
            ):
                continue
            diff = abs(words.width(first, k) - words.width(k, last))
            if best is None or diff < best[0]:
                best = (diff, k)
        if best is not None:
            groups[-2:] = [(first, best[1]), (best[1], last)]
    return groups


def _balance(words: _Words, first: int, last: int, max_line: int) -> list[str]:
    """Lines for one cue: one line if it fits, else the two-line break with the most even lengths."""
    if words.width(first, last) <= max_line:
        return [words.text(first, last)]
    best: tuple[int, int] | None = None
    for k in range(first + 1, last):
        wt, wb = words.width(first, k), words.width(k, last)
        if wt <= max_line and wb <= max_line and (best is None or max(wt, wb) < best[0]):
            best = (max(wt, wb), k)
    if best is not None:
        return [words.text(first, best[1]), words.text(best[1], last)]
    return [words.text(a, b) for a, b in _wrap(words, first, last, max_line)]


def _escape_vtt(line: str) -> str:
    # WebVTT cue text is markup: '&' and '<' start entities and tags, and '-->' would end the cue timing.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
