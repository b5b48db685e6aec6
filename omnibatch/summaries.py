"""Map-reduce planning for summaries of long text, and making a summary fit to be spoken: pure functions.

A 40-minute transcript does not fit a prompt comfortably, so the Thinker
summarizes it in rounds: first each piece of at most `max_chars` characters
(map), then groups of those partial summaries (reduce), until everything left
fits one prompt, which gives the final summary. Each round is a function of the
source text and the answers to the rounds before it, so the scheduler can ask for
one round at a time, batched across files (`plan_round`).

A round has exactly one request if and only if it is the final round; that is
what tells a finished plan from an unfinished one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from omnibatch.stitching import join_texts, split_words, word_spans

StepKind = Literal["map", "reduce", "final"]
PART_SEPARATOR = "\n\n"  # between partial summaries in a reduce or final prompt
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


@dataclass(frozen=True)
class SummaryStep:
    """One round of Thinker requests for a file: `inputs[i]` is the text of request i."""

    kind: StepKind
    inputs: tuple[str, ...]
    combines: bool = False  # the inputs are summaries of parts (joined), not pieces of the source


def plan_round(source: str, answers: Sequence[Sequence[str]], max_chars: int) -> SummaryStep | None:
    """The next round of summarizing `source`, given the answers to each round so far; None when done.

    Round 0 maps over pieces of `source` (or is final, if it fits in one piece).
    Each later round reduces the previous answers in groups of at least two, so
    the number of texts at least halves each round and the plan always ends.
    Empty answers are dropped: they carry nothing to combine.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if not answers:
        pieces = split_text(source, max_chars)
        if not pieces:
            return None
        if len(pieces) == 1:
            return SummaryStep("final", (pieces[0],))
        return SummaryStep("map", tuple(pieces))
    if len(answers[-1]) <= 1:
        return None  # the final round has run
    texts = [t.strip() for t in answers[-1] if t.strip()]
    if not texts:
        return None
    groups = group_texts(texts, max_chars)
    if len(groups) == 1:
        return SummaryStep("final", (PART_SEPARATOR.join(groups[0]),), combines=True)
    return SummaryStep("reduce", tuple(PART_SEPARATOR.join(g) for g in groups), combines=True)


def count_rounds(source: str, max_chars: int, answer_chars: int) -> int:
    """How many rounds `plan_round` takes when each answer is `answer_chars` long (for planning, tests)."""
    answers: list[list[str]] = []
    while (step := plan_round(source, answers, max_chars)) is not None:
        answers.append(["x" * max(1, answer_chars)] * len(step.inputs))
    return len(answers)


def split_text(text: str, max_chars: int) -> list[str]:
    """`text` cut into pieces of at most `max_chars` characters, at sentence ends where it can be.

    A sentence longer than `max_chars` is cut between words; a word longer than
    that (a run of CJK, a URL) is cut between characters. Pieces are whitespace-
    normalized and never empty.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    units: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= max_chars:
            units.append(sentence)
        else:
            units.extend(_split_long(sentence, max_chars))
    return _pack(units, max_chars, join_texts)


def group_texts(texts: Sequence[str], max_chars: int) -> list[list[str]]:
    """Consecutive `texts` in groups whose joined length stays within `max_chars`, at least two to a group.

    Two texts always share a group even when together they are longer, so that a
    reduce round always makes progress; a lone last text joins the group before it.
    """
    groups: list[list[str]] = []
    size = 0
    for text in texts:
        extra = len(text) + (len(PART_SEPARATOR) if groups and groups[-1] else 0)
        if groups and (len(groups[-1]) < 2 or size + extra <= max_chars):
            groups[-1].append(text)
            size += extra
        else:
            groups.append([text])
            size = len(text)
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2].extend(groups.pop())
    return groups


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (after . ! ? and their CJK forms), whitespace-normalized, none empty."""
    flat = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(flat) if s.strip()]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    for word in split_words(sentence):
        while len(word) > max_chars:
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if word:
            pieces.append(word)
    return _pack(pieces, max_chars, join_texts)


def _pack(units: list[str], max_chars: int, join) -> list[str]:
    """Greedily join consecutive units while the result stays within `max_chars`."""
    out: list[str] = []
    for unit in units:
        if out:
            merged = join([out[-1], unit])
            if len(merged) <= max_chars:
                out[-1] = merged
                continue
        out.append(unit)
    return out


# -- speakable text --------------------------------------------------------------------------

_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•]\s+|\d{1,3}[.)]\s+)")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1")
_LEFTOVER = re.compile(r"[*#`|<>~^=]+|(?<!\w)_+|_+(?!\w)")
_ENDS_CLAUSE = tuple(".!?;:。！？；：")


def speakable_text(text: str, max_words: int | None = None) -> str:
    """Plain sentences a speech synthesizer can read: markdown removed, at most `max_words` words.

    Headings, list markers, emphasis, code fences, tables and link targets go;
    a list item or heading that ends without punctuation gets a period so it is
    read as its own sentence. Long text is cut at the last sentence end within
    the limit when that keeps at least half of it, else at the word limit.
    """
    text = _FENCE.sub(" ", _unprintable_to_space(text))
    text = _LINK.sub(r"\1", text)
    blocks: list[list[str]] = []  # paragraphs and list items, each read as its own sentence(s)
    open_paragraph = False
    for raw in text.splitlines():
        item = bool(_LINE_MARK.match(raw)) or raw.lstrip().startswith("|")  # list items, headings, table rows
        line = _LEFTOVER.sub(" ", _EMPHASIS.sub(r"\2", _LINE_MARK.sub("", raw)))
        line = " ".join(line.split())
        if not line or set(line) <= set("-:. "):
            open_paragraph = False  # a blank line or a table rule ends the paragraph
            continue
        if item or not open_paragraph:
            blocks.append([line])
        else:
            blocks[-1].append(line)  # a wrapped line of the same paragraph
        open_paragraph = not item
    sentences = []
    for block in blocks:
        joined = join_texts(block)
        sentences.append(joined if joined.endswith(_ENDS_CLAUSE) else joined + ".")
    spoken = join_texts(sentences)
    spoken = re.sub(r"\s+([.,;:!?])", r"\1", spoken)
    if max_words is not None:
        spoken = limit_words(spoken, max_words)
    return spoken


def _unprintable_to_space(text: str) -> str:
    # Control characters and U+FFFD (bytes that were not text) cannot be read aloud; line breaks stay.
    return "".join(" " if (unicodedata.category(ch) in ("Cc", "Cf") and ch != "\n") or ch == "\ufffd" else ch
                   for ch in text)


def limit_words(text: str, max_words: int) -> str:
    """`text` cut to at most `max_words` words, preferably at a sentence end; a cut sentence ends with '.'."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    spans = word_spans(text)
    if len(spans) <= max_words:
        return text
    limit = spans[max_words - 1][1]
    head = text[:limit]
    ends = [m.end() for m in re.finditer(r"[.!?。！？]", head)]
    if ends and len(split_words(head[: ends[-1]])) >= max_words / 2:
        return head[: ends[-1]].strip()
    return head.rstrip(" ,;:-") + "."


def count_words(text: str) -> int:
    return len(split_words(text))
