"""Stitching chunk transcripts into one: spacing, seams of overlapped cuts, segment times."""

from __future__ import annotations

import random

import pytest

from omnibatch.chunking import plan_fixed_chunks
from omnibatch.records import Chunk, Generation, Segment, Word
from omnibatch.stitching import join_texts, mean_logprob, split_words, stitch, vote_language


def gen(text: str, segments: list[Segment] | None = None, error: str | None = None) -> Generation:
    return Generation(request_id="r", text=text, segments=segments, error=error)


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


# --- joining -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces, expected",
    [
        (["Hello world.", "How are you?"], "Hello world. How are you?"),
        (["  spaced   out ", "", "  text"], "spaced out text"),
        (["我们今天", "讨论转录。"], "我们今天讨论转录。"),
        (["こんにちは", "世界"], "こんにちは世界"),
        (["안녕하세요", "세계"], "안녕하세요 세계"),  # Korean is written with spaces
        (["and then", ", finally", "."], "and then, finally."),
        ([], ""),
    ],
)
def test_join_texts(pieces, expected):
    assert join_texts(pieces) == expected


def test_split_words():
    assert split_words("Hello, 世界! ok") == ["Hello,", "世", "界", "!", "ok"]


# --- chunks without overlap ----------------------------------------------------------------------


def test_chunks_without_overlap_join_in_order_one_segment_each():
    chunks = [Chunk("f", 0, 0.5, 10.0), Chunk("f", 1, 12.0, 20.0), Chunk("f", 2, 25.0, 30.0)]
    out = stitch(chunks, [gen(" First part."), gen("second part"), gen("third.")])
    assert out.text == "First part. second part third."
    assert [(s.start_s, s.end_s, s.text) for s in out.segments] == [
        (0.5, 10.0, "First part."),
        (12.0, 20.0, "second part"),
        (25.0, 30.0, "third."),
    ]
    assert out.errors == []


def test_empty_generations_give_no_segments():
    chunks = [Chunk("f", 0, 0.0, 10.0), Chunk("f", 1, 10.0, 20.0)]
    out = stitch(chunks, [gen(""), gen("  words  ")])
    assert out.text == "words"
    assert len(out.segments) == 1


def test_chunks_given_out_of_order_are_sorted():
    chunks = [Chunk("f", 1, 10.0, 20.0), Chunk("f", 0, 0.0, 10.0)]
    out = stitch(chunks, [gen("second"), gen("first")])
    assert out.text == "first second"


def test_failed_chunk_is_reported_and_skipped():
    chunks = [Chunk("f", 0, 0.0, 10.0), Chunk("f", 1, 9.0, 20.0), Chunk("f", 2, 19.0, 30.0)]
    out = stitch(chunks, [gen("a b c"), gen("", error="out of memory"), gen("d e f")])
    assert out.text == "a b c d e f"
    assert out.errors == ["f#00001: out of memory"]


def test_one_generation_per_chunk_required():
    with pytest.raises(ValueError):
        stitch([Chunk("f", 0, 0.0, 1.0)], [])


def test_segments_clipped_to_duration():
    out = stitch([Chunk("f", 0, 0.0, 12.0)], [gen("x")], duration_s=10.0)
    assert out.segments[0].end_s == 10.0


# --- seams of forced cuts ------------------------------------------------------------------------


def two_overlapping(left: str, right: str, overlap: float = 1.5) -> str:
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 30.0 - overlap, 60.0 - overlap)]
    return stitch(chunks, [gen(left), gen(right)]).text


def test_seam_duplicate_words_removed():
    left = words(70) + " the lazy dog"
    right = "the lazy dog jumps " + words(60, 100)
    assert two_overlapping(left, right) == words(70) + " the lazy dog jumps " + words(60, 100)


def test_seam_with_truncated_words_on_both_sides():
    # Chunk k heard "jum" of "jumps" at its edge; chunk k+1 heard "zy" of "lazy" at its start.
    left = words(70) + " over the lazy dog jum"
    right = "zy dog jumps over the fence " + words(60, 100)
    assert two_overlapping(left, right) == words(70) + " over the lazy dog jumps over the fence " + words(
        60, 100
    )


def test_seam_match_ignores_case_and_punctuation():
    left = words(70) + " and the Lazy Dog."
    right = "lazy dog, jumps " + words(60, 100)
    text = two_overlapping(left, right)
    assert text.count("azy") == 1 and text.count("og") == 1
    assert text.startswith(words(70) + " and the Lazy") and text.endswith("jumps " + words(60, 100))


def test_seam_without_a_match_keeps_everything():
    left = words(70)
    right = words(60, 100)
    assert two_overlapping(left, right) == words(70) + " " + words(60, 100)


def test_seam_single_common_word_is_not_taken_as_overlap():
    # One shared "the" may be chance; a doubled word is a smaller loss than a dropped one.
    left = words(70) + " went to the"
    right = "the store " + words(60, 100)
    assert two_overlapping(left, right) == words(70) + " went to the the store " + words(60, 100)


def test_seam_right_chunk_entirely_in_overlap():
    # The last chunk heard only what the previous one already had.
    left = words(70) + " thank you all"
    assert two_overlapping(left, "thank you all") == words(70) + " thank you all"


def test_seam_left_chunk_entirely_in_overlap():
    assert two_overlapping("thank you", "thank you and goodbye " + words(60, 100)) == (
        "thank you and goodbye " + words(60, 100)
    )


def test_seam_one_word_chunk_fully_overlapped():
    assert two_overlapping(words(70) + " goodbye", "goodbye") == words(70) + " goodbye"


def test_seam_cjk_characters_align():
    left = "今天我们讨论的是长篇转录"
    right = "长篇转录的问题非常重要"
    chunks = [Chunk("f", 0, 0.0, 10.0), Chunk("f", 1, 8.0, 18.0)]
    assert stitch(chunks, [gen(left), gen(right)]).text == "今天我们讨论的是长篇转录的问题非常重要"


def test_seam_segments_split_at_middle_of_overlap():
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 28.0, 58.0)]
    out = stitch(chunks, [gen(words(80) + " a b c"), gen("a b c " + words(70, 100))])
    assert [(s.start_s, s.end_s) for s in out.segments] == [(0.0, 29.0), (29.0, 58.0)]


def test_three_chunks_middle_one_swallowed_by_both_seams():
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 28.0, 32.0), Chunk("f", 2, 30.0, 60.0)]
    out = stitch(chunks, [gen(words(80) + " x y"), gen("x y z"), gen("y z " + words(70, 100))])
    assert out.text == words(80) + " x y z " + words(70, 100)


def heard(timed: list[tuple[float, float, str]], chunk: Chunk, fragments: bool) -> str:
    """What an ideal recognizer hears in a chunk: every word it touches, and with
    `fragments`, only the part of an edge word inside the chunk."""
    out = []
    for a, b, w in timed:
        if b <= chunk.start_s or a >= chunk.end_s:
            continue
        if fragments:
            inside = (min(b, chunk.end_s) - max(a, chunk.start_s)) / (b - a)
            keep = max(1, round(len(w) * inside))
            w = w[:keep] if b > chunk.end_s else w[len(w) - keep :] if a < chunk.start_s else w
        out.append(w)
    return " ".join(out)


@pytest.mark.parametrize("fragments", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_ideal_transcripts_of_fixed_chunks_stitch_back_to_the_whole(seed, fragments):
    """Words with times, fixed chunks that overlap, each chunk transcribed perfectly:
    stitching gives back each word exactly once, edge fragments resolved."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(300)
    ]
    vocab += ["the", "of", "and", "to", "a"] * 20  # common words repeat, as in speech
    t, timed = 0.0, []
    while t < rng.uniform(40, 400):
        length = rng.uniform(0.15, 0.5)
        timed.append((t, t + length, rng.choice(vocab)))
        t += length + rng.uniform(0.02, 0.15)
    chunks = plan_fixed_chunks(t, rng.choice([10.0, 20.0, 30.0]), rng.choice([1.0, 1.5, 2.0]), item_id="p")
    gens = [gen(heard(timed, c, fragments)) for c in chunks]
    assert stitch(chunks, gens).text == " ".join(w for _, _, w in timed)


def test_chance_repeat_away_from_the_seam_is_not_an_overlap():
    left = words(70) + " of the w500 w501"
    right = "w600 w601 of the " + words(60, 100)
    assert two_overlapping(left, right) == left + " " + right


# --- engines with timestamps (whisper) -----------------------------------------------------------


def test_engine_segments_shifted_by_chunk_start_and_clipped_to_chunk():
    chunks = [Chunk("f", 0, 100.0, 110.0), Chunk("f", 1, 120.0, 130.0)]
    gens = [
        gen(
            " Hello there. General Kenobi.",
            [Segment(0.0, 2.5, " Hello there."), Segment(3.0, 12.0, " General Kenobi.")],
        ),
        gen(" Next.", [Segment(0.5, 1.0, " Next."), Segment(1.0, 1.0, "  ")]),
    ]
    out = stitch(chunks, gens)
    assert [(s.start_s, s.end_s, s.text) for s in out.segments] == [
        (100.0, 102.5, "Hello there."),
        (103.0, 110.0, "General Kenobi."),  # clipped to the chunk's end
        (120.5, 121.0, "Next."),
    ]
    assert out.text == "Hello there. General Kenobi. Next."


def test_engine_segments_at_an_overlapped_seam_lose_the_doubled_words():
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 28.0, 58.0)]
    left = [Segment(0.0, 20.0, words(50)), Segment(20.0, 26.0, "the lazy"), Segment(26.0, 30.0, "dog jum")]
    right = [Segment(0.0, 3.0, "lazy dog jumps"), Segment(3.0, 10.0, "over the fence")]
    out = stitch(chunks, [gen("", left), gen("", right)])
    assert out.text == words(50) + " the lazy dog jumps over the fence"
    times = [(s.start_s, s.end_s) for s in out.segments]
    assert times == sorted(times)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(times, times[1:]))
    assert all(s.text for s in out.segments)


# --- words with times (whisper's, or the aligner's) ----------------------------------------------


def timed_segment(start: float, text: str, step: float = 0.4, probability: float | None = 0.9) -> Segment:
    """A segment whose words are evenly timed from `start` (chunk-relative)."""
    ws = [Word(round(start + k * step, 3), round(start + k * step + step * 0.8, 3), w, probability)
          for k, w in enumerate(text.split())]
    return Segment(ws[0].start_s, ws[-1].end_s, text, words=ws)


def test_words_move_with_their_segments_onto_the_file_timeline():
    chunks = [Chunk("f", 0, 100.0, 110.0), Chunk("f", 1, 120.0, 130.0)]
    out = stitch(chunks, [gen("one two", [timed_segment(1.0, "one two")]),
                          gen("three", [timed_segment(9.9, "three")])])
    words_out = [w for s in out.segments for w in s.words]
    assert [(w.text, w.start_s, w.end_s) for w in words_out] == [
        ("one", 101.0, 101.32), ("two", 101.4, 101.72), ("three", 129.9, 130.0)]  # clipped to its chunk
    assert all(w.probability == 0.9 for w in words_out)


def test_packed_speech_maps_segments_and_words_back_through_its_pieces():
    # Chunk 0's audio: [0, 4) is file 10-14, [4, 10) is file 30-36 (the 16 s between left out).
    chunks = [Chunk("f", 0, 10.0, 36.0, ((10.0, 14.0), (30.0, 36.0))), Chunk("f", 1, 40.0, 45.0)]
    first = Segment(0.5, 3.9, "one two", words=[Word(0.5, 1.0, "one", 0.9), Word(3.0, 4.0, "two", 0.8)])
    second = Segment(4.0, 9.5, "three four", words=[Word(4.0, 4.6, "three"), Word(8.2, 9.5, "four")])
    out = stitch(chunks, [gen("one two three four", [first, second]),
                          gen("five", [Segment(1.0, 2.0, "five", words=[Word(1.0, 2.0, "five")])])],
                 duration_s=50.0)
    assert [(s.start_s, s.end_s, s.text) for s in out.segments] == [
        (10.5, 13.9, "one two"), (30.0, 35.5, "three four"), (41.0, 42.0, "five")]
    got = [(w.text, w.start_s, w.end_s) for s in out.segments for w in s.words]
    # "two" ends where piece 0 ends (14 s), not at the start of piece 1; "three" starts piece 1.
    assert got == [("one", 10.5, 11.0), ("two", 13.0, 14.0), ("three", 30.0, 30.6), ("four", 34.2, 35.5),
                   ("five", 41.0, 42.0)]
    assert out.text == "one two three four five"


@pytest.mark.parametrize("seed", range(20))
def test_words_said_twice_in_an_overlap_are_kept_once(seed):
    """Fixed overlapping chunks of timed words, each chunk's words timed in its own audio: after
    stitching, the words are the stitched text's words, each once, in time order, near its time."""
    rng = random.Random(seed)
    t, timed = 0.0, []
    while t < 95.0:
        length = rng.uniform(0.15, 0.5)
        timed.append((t, t + length, f"w{len(timed)}"))
        t += length + rng.uniform(0.02, 0.15)
    chunks = plan_fixed_chunks(t, 20.0, 2.0, item_id="p")
    gens = []
    for c in chunks:
        inside = [(a, b, w) for a, b, w in timed if b > c.start_s and a < c.end_s]
        ws = [Word(max(a - c.start_s, 0.0), min(b, c.end_s) - c.start_s, w, 0.5) for a, b, w in inside]
        text = " ".join(w for _, _, w in inside)
        gens.append(gen(text, [Segment(ws[0].start_s, ws[-1].end_s, text, words=ws)]))
    out = stitch(chunks, gens, duration_s=t)
    kept = [w for s in out.segments for w in s.words]
    assert [w.text for w in kept] == out.text.split() == [w for _, _, w in timed]
    true_start = {w: a for a, _, w in timed}
    assert all(abs(w.start_s - true_start[w.text]) < 1.5 for w in kept)  # the seam may clamp a word to it
    starts = [w.start_s for w in kept]
    assert starts == sorted(starts)


def test_words_of_a_segment_trimmed_at_a_seam_go_with_its_text():
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 28.0, 58.0)]
    left = [Segment(0.0, 20.0, words(50)), timed_segment(26.0, "the lazy dog jum")]
    right = [timed_segment(0.2, "lazy dog jumps over"), Segment(3.0, 10.0, "the fence")]
    out = stitch(chunks, [gen("", left), gen("", right)])
    assert out.text == words(50) + " the lazy dog jumps over the fence"
    kept = [w.text for s in out.segments for w in s.words or []]
    assert kept == ["the", "lazy", "dog", "jumps", "over"]


def test_words_that_do_not_match_the_text_s_count_are_kept_by_share():
    # An aligner that split "well-known" in two: 4 words for 3 text tokens; the seam keeps the first 2
    # tokens ("a well-known"), and the words at the same share of the segment.
    chunks = [Chunk("f", 0, 0.0, 30.0), Chunk("f", 1, 28.0, 58.0)]
    ws = [Word(27.0, 27.2, "a"), Word(27.3, 27.5, "well"), Word(27.5, 27.7, "-known"), Word(28.0, 29.0, "b")]
    left = [Segment(0.0, 20.0, words(50)), Segment(27.0, 29.0, "a well-known b", words=ws)]
    right = [Segment(0.5, 1.0, "well-known b c d e")]
    out = stitch(chunks, [gen("", left), gen("", right)])
    assert out.text == words(50) + " a well-known b c d e"
    assert [w.text for s in out.segments for w in s.words or []] == ["a", "well", "-known"]


def test_the_file_language_is_voted_by_speech_duration():
    chunks = [Chunk("f", 0, 0.0, 20.0), Chunk("f", 1, 20.0, 25.0), Chunk("f", 2, 25.0, 30.0),
              Chunk("f", 3, 30.0, 40.0)]
    gens = [Generation("r", "a", language="de", language_probability=0.9),
            Generation("r", "b", language="en", language_probability=0.6),
            Generation("r", "c", language="en", language_probability=0.8),
            Generation("r", "", error="boom", language="en", language_probability=1.0)]
    out = stitch(chunks, gens)
    assert (out.language, out.language_probability) == ("de", 0.9)
    assert vote_language(chunks[1:3], gens[1:3]) == ("en", 0.7)
    # Languages given rather than detected (no probability) do not vote.
    assert vote_language(chunks[:1], [Generation("r", "a", language="en")]) == (None, None)


def test_the_file_confidence_is_the_token_weighted_mean():
    gens = [Generation("r", "a", output_tokens=30, avg_logprob=-0.2),
            Generation("r", "b", output_tokens=10, avg_logprob=-1.0),
            Generation("r", "c", output_tokens=5)]
    assert mean_logprob(gens) == pytest.approx(-0.4)
    assert mean_logprob([Generation("r", "c")]) is None
    out = stitch([Chunk("f", k, 10.0 * k, 10.0 * k + 9) for k in range(3)], gens)
    assert out.avg_logprob == pytest.approx(-0.4)
    # Segments without timestamps (one per chunk) have their chunk's.
    assert [s.avg_logprob for s in out.segments] == [-0.2, -1.0, None]
