"""SRT/VTT/TXT rendering, parsed back with a strict reader written here, and safe file names."""

from __future__ import annotations

import json
import random
import re

import pytest

from omnibatch.output.names import safe_filename
from omnibatch.output.subtitles import (
    MAX_LINE,
    format_timestamp,
    text_width,
    to_cues,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
    write_subtitles,
)
from omnibatch.records import Segment, Word

_TS = r"(\d{2,}):([0-5]\d):([0-5]\d)[,.](\d{3})"


def parse_ts(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """A strict SRT reader: numbered blocks from 1, a timing line, 1+ text lines, a blank line between."""
    assert text.endswith("\n") and not text.endswith("\n\n\n")
    cues = []
    for n, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(n), block
        m = re.fullmatch(_TS.replace("[,.]", ",") + " --> " + _TS.replace("[,.]", ","), lines[1])
        assert m, lines[1]
        g = m.groups()
        assert lines[2:] and all(line.strip() for line in lines[2:]), block
        cues.append((parse_ts(*g[:4]), parse_ts(*g[4:]), lines[2:]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    """A strict WebVTT reader for what we write: header, blank line, cues of timing + text lines."""
    assert text.startswith("WEBVTT\n\n") or text == "WEBVTT\n"
    cues = []
    for block in text[len("WEBVTT\n\n") :].rstrip("\n").split("\n\n") if text != "WEBVTT\n" else []:
        lines = block.split("\n")
        m = re.fullmatch(_TS.replace("[,.]", r"\.") + " --> " + _TS.replace("[,.]", r"\."), lines[0])
        assert m, lines[0]
        g = m.groups()
        for line in lines[1:]:
            assert "<" not in line and "-->" not in line and re.search(r"&(?!amp;|lt;|gt;)", line) is None
        text_lines = [ln.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for ln in lines[1:]]
        cues.append((parse_ts(*g[:4]), parse_ts(*g[4:]), text_lines))
    return cues


@pytest.mark.parametrize(
    "t, srt",
    [
        (0.0, "00:00:00,000"),
        (1.5, "00:00:01,500"),
        (59.9996, "00:01:00,000"),  # rounds up across the second and the minute
        (59.9994, "00:00:59,999"),
        (3599.9996, "01:00:00,000"),
        (3725.5, "01:02:05,500"),
        (36000.0, "10:00:00,000"),
        (360000.25, "100:00:00,250"),
        (-0.2, "00:00:00,000"),
    ],
)
def test_format_timestamp(t, srt):
    assert format_timestamp(t) == srt
    assert format_timestamp(t, ".") == srt.replace(",", ".")


def test_short_segments_one_cue_each():
    segs = [Segment(0.0, 2.0, "Hello there."), Segment(3725.5, 3727.0, "Later, an hour in.")]
    assert to_srt(segs) == (
        "1\n00:00:00,000 --> 00:00:02,000\nHello there.\n\n"
        "2\n01:02:05,500 --> 01:02:07,000\nLater, an hour in.\n"
    )
    assert to_vtt(segs) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.000\nHello there.\n\n"
        "01:02:05.500 --> 01:02:07.000\nLater, an hour in.\n"
    )


def test_long_segment_split_into_cues_of_two_lines():
    text = " ".join(f"word{i}" for i in range(60))
    cues = parse_srt(to_srt([Segment(10.0, 40.0, text)]))
    assert len(cues) > 1
    for start, end, lines in cues:
        assert len(lines) <= 2 and all(len(line) <= MAX_LINE for line in lines)
        assert 10.0 <= start <= end <= 40.0
    assert cues[0][0] == 10.0 and cues[-1][1] == 40.0
    assert all(a[1] == b[0] for a, b in zip(cues, cues[1:]))  # the segment's time shared out, no gaps
    assert " ".join(" ".join(lines) for _, _, lines in cues) == text


def test_two_lines_are_balanced():
    text = "This sentence is a little too long to fit on a single line."
    ((_, _, lines),) = parse_srt(to_srt([Segment(0, 3, text)]))
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 12


def test_no_lone_trailing_word_cue():
    text = " ".join(["alpha", "beta", "gamma", "delta"] * 6)  # just over two full cues
    cues = parse_srt(to_srt([Segment(0, 20, text)]))
    assert min(len(" ".join(lines)) for _, _, lines in cues) > 20


def test_word_longer_than_a_line_is_hard_split():
    url = "https://example.org/" + "x" * 100
    cues = parse_srt(to_srt([Segment(0, 5, f"see {url} now")]))
    lines = [line for _, _, ls in cues for line in ls]
    assert all(len(line) <= MAX_LINE for line in lines)
    assert "".join(lines).replace(" ", "") == f"see{url}now"


def test_cjk_lines_count_double_width():
    text = "我们今天讨论的是长篇转录的问题，这个问题非常重要，因为很多节目都很长，需要切分。"
    cues = parse_srt(to_srt([Segment(0, 8, text)]))
    for _, _, lines in cues:
        assert all(text_width(line) <= MAX_LINE for line in lines)
        assert all(" " not in line for line in lines)
    assert "".join("".join(lines) for _, _, lines in cues) == text


def test_vtt_escapes_markup():
    segs = [Segment(0, 1, "a <b> & c --> d")]
    ((_, _, lines),) = parse_vtt(to_vtt(segs))
    assert lines == ["a <b> & c --> d"]
    assert "&lt;b&gt; &amp; c --&gt; d" in to_vtt(segs)


def test_newlines_and_blank_text_cannot_break_a_cue():
    segs = [Segment(0, 1, "line one\n\nline two"), Segment(1, 2, "   "), Segment(2, 3, "")]
    cues = parse_srt(to_srt(segs))
    assert len(cues) == 1 and " ".join(cues[0][2]) == "line one line two"


def test_empty_inputs():
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert parse_vtt(to_vtt([])) == []
    assert to_txt("  ") == ""
    assert to_txt(" Hello\n world ") == "Hello world\n"


def test_overlapping_segments_do_not_give_overlapping_cues():
    cues = parse_srt(to_srt([Segment(0, 5, "first"), Segment(4, 8, "second")]))
    assert cues[0][1] <= cues[1][0]


@pytest.mark.parametrize("seed", range(50))
def test_random_transcripts_round_trip(seed):
    rng = random.Random(seed)
    t, segs = rng.uniform(0, 5000), []
    for _ in range(rng.randint(1, 15)):
        n = rng.randint(1, 120)
        words = ["".join(rng.choice("abcdefgh<>&,.") for _ in range(rng.randint(1, 14))) for _ in range(n)]
        length = rng.uniform(0.5, 30)
        segs.append(Segment(t, t + length, " ".join(words)))
        t += length + rng.uniform(0, 3)
    for cues in (parse_srt(to_srt(segs)), parse_vtt(to_vtt(segs))):
        for start, end, lines in cues:
            assert start <= end and 1 <= len(lines) <= 2
            assert all(0 < len(line) <= MAX_LINE for line in lines)
        starts = [c[0] for c in cues]
        assert starts == sorted(starts)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(cues, cues[1:]))
        assert cues[0][0] == pytest.approx(segs[0].start_s, abs=1e-3)
        assert cues[-1][1] == pytest.approx(segs[-1].end_s, abs=1e-3)
        spoken = " ".join(" ".join(lines) for _, _, lines in cues)
        assert spoken.split() == " ".join(s.text for s in segs).split()


def test_write_subtitles_atomic_and_safe_names(tmp_path):
    segs = [Segment(0, 2, "Hello there.")]
    written = write_subtitles(
        tmp_path / "subtitles", "../evil/ep 1?", segs, "Hello there.", ["srt", "vtt", "txt"]
    )
    assert set(written) == {"srt", "vtt", "txt"}
    for fmt, path in written.items():
        assert path.parent == tmp_path / "subtitles" and path.suffix == f".{fmt}"
    assert sorted(p.name for p in (tmp_path / "subtitles").iterdir()) == sorted(
        p.name for p in written.values()
    )
    assert parse_srt(written["srt"].read_text(encoding="utf-8"))[0][2] == ["Hello there."]
    assert written["txt"].read_text(encoding="utf-8") == "Hello there.\n"
    # Rewriting replaces in place.
    write_subtitles(tmp_path / "subtitles", "../evil/ep 1?", [], "", ["txt"])
    assert written["txt"].read_text() == ""


def test_write_subtitles_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="parquet"):
        write_subtitles(tmp_path, "x", [], "", ["srt", "parquet"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "item_id, expected",
    [("ep-001", "ep-001"), ("show_2024.s01e02", "show_2024.s01e02"), ("talk-1a2b3c4d", "talk-1a2b3c4d")],
)
def test_safe_filename_keeps_plain_ids(item_id, expected):
    assert safe_filename(item_id) == expected


def test_safe_filename_gives_capitals_a_hash_so_case_blind_disks_keep_both():
    # macOS and Windows disks take "Talk" and "talk" for one file; tests/test_names.py checks the rule.
    assert safe_filename("talk") == "talk"
    assert re.fullmatch(r"Show_2024\.S01E02-[0-9a-f]{16}", safe_filename("Show_2024.S01E02"))


@pytest.mark.parametrize(
    "item_id",
    [
        "a/b",
        "a\\b",
        "../../etc/passwd",
        "",
        ".",
        "..",
        ".hidden",
        "con",
        "NUL.txt",
        "日本語",
        "x" * 500,
        "a b",
        "tab\there",
        "nul\x00byte",
        "ep:01",
        "ünïcödé",
    ],
)
def test_safe_filename_odd_ids(item_id):
    name = safe_filename(item_id)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
    assert not name.startswith(".") and len(name) <= 120
    assert name.split(".")[0].lower() not in {"con", "nul"}
    assert safe_filename(item_id) == name  # stable


def test_safe_filename_distinct_ids_stay_distinct():
    ids = ["a/b", "a?b", "a b", "a_b", "a:b", "日本", "中文", "", "_"]
    assert len({safe_filename(i) for i in ids}) == len(ids)


# --- cues cut at word times ----------------------------------------------------------------------


def timed(text: str, start: float = 0.0, step: float = 0.35,
          pause_after: dict[int, float] | None = None) -> Segment:
    ws, t = [], start
    for k, w in enumerate(text.split()):
        ws.append(Word(round(t, 3), round(t + step * 0.8, 3), w, 0.9))
        t += step + (pause_after or {}).get(k, 0.0)
    return Segment(ws[0].start_s, ws[-1].end_s, text, words=ws)


SPEECH = ("the history of the river valley begins long before the first farms appeared on its banks and "
          "every spring the water rose over the low fields and left behind a layer of dark soil")


@pytest.mark.parametrize("max_line, max_lines", [(42, 2), (20, 1), (30, 3), (12, 2)])
def test_cues_hold_whole_words_timed_by_their_words(max_line, max_lines):
    seg = timed(SPEECH)
    cues = to_cues([seg], max_line, max_lines)
    assert len(cues) > 1
    said = iter(seg.words)
    for cue in cues:
        assert 1 <= len(cue.lines) <= max_lines
        assert all(text_width(line) <= max_line for line in cue.lines)
        cue_words = " ".join(cue.lines).split()
        first = next(said)
        for _ in cue_words[1:]:
            last = next(said)
        last = last if len(cue_words) > 1 else first
        assert cue.start_s == first.start_s and cue.end_s == last.end_s  # cut at word times
    assert " ".join(" ".join(c.lines) for c in cues) == SPEECH  # every word once, in order
    assert next(said, None) is None


def test_a_pause_between_words_starts_a_new_cue():
    seg = timed("one two three four five six", pause_after={2: 1.5})
    cues = to_cues([seg])
    assert [" ".join(c.lines) for c in cues] == ["one two three", "four five six"]
    assert cues[1].start_s == seg.words[3].start_s


def test_srt_and_vtt_take_the_line_limits():
    seg = timed(SPEECH)
    cues = parse_srt(to_srt([seg], 16, 1))
    assert all(len(lines) == 1 and len(lines[0]) <= 16 for _, _, lines in cues)
    assert [c[:2] for c in parse_vtt(to_vtt([seg], 16, 1))] == [c[:2] for c in cues]
    assert len(parse_srt(to_srt([seg], 60, 3))) < len(cues)


def test_segments_without_words_still_share_their_time_out():
    cues = to_cues([Segment(0.0, 10.0, SPEECH)], 20, 1)
    assert cues[0].start_s == 0.0 and cues[-1].end_s == 10.0
    assert all(len(c.lines) == 1 for c in cues)


def test_line_limits_below_one_are_refused():
    with pytest.raises(ValueError):
        to_cues([timed("a b")], 0, 2)
    with pytest.raises(ValueError):
        to_cues([timed("a b")], 42, 0)


def test_json_holds_segments_with_their_words(tmp_path):
    segs = [timed("Hello there.", 0.5),
            Segment(3.0, 4.0, "No words here.", avg_logprob=-0.3, no_speech_prob=0.01)]
    written = write_subtitles(tmp_path, "ep/1", segs, "Hello there. No words here.", ["json", "srt"],
                              language="en")
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    assert doc["id"] == "ep/1" and doc["language"] == "en" and doc["text"] == "Hello there. No words here."
    first, second = doc["segments"]
    assert (first["start"], first["end"], first["text"]) == (0.5, segs[0].end_s, "Hello there.")
    assert [(w["word"], w["start"], w["probability"]) for w in first["words"]] == [
        ("Hello", 0.5, 0.9), ("there.", 0.85, 0.9)]
    assert second["words"] is None and second["avg_logprob"] == -0.3 and second["no_speech_prob"] == 0.01
    assert to_json("x", [], "") == json.dumps({"id": "x", "language": None, "text": "", "segments": []},
                                              indent=1) + "\n"
