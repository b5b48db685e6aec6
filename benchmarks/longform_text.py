"""Reference texts and word error rate for the long-form benchmark.

The long recording reads licence texts that every Debian system carries in
/usr/share/common-licenses (base-files): thousands of words of varied English
prose in which no sentence repeats, so a stitcher that wrongly dropped a
"duplicate" would show up as deletions. The text is cleaned once here, and the
same cleaned text is both what the voice reads and the WER reference.

Two normalizers are applied to reference and hypothesis alike before WER:
- "whisper": Whisper's English normalizer (shipped in transformers), the one ASR
  papers report with: lowercase, no punctuation, spelled numbers -> digits,
  "mister" -> "mr", contractions expanded. No spelling map (British/American)
  is loaded, as that ships with a hub model. Bracket marks are removed first
  (the normalizer would delete the words inside them, and the texts read here
  have spoken asides in parentheses).
- "simple": lowercase, digits spelled out as words, "mr"/"mrs"/"dr" spelled
  out, hyphens split words, every other punctuation mark removed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

LICENSES = Path("/usr/share/common-licenses")
# (file, first line kept, text that ends the part read): the terms only, without
# the "how to apply" appendices full of <placeholders> and URLs.
DOCUMENTS: tuple[tuple[str, str, str], ...] = (
    ("GPL-3", "Preamble", "END OF TERMS AND CONDITIONS"),
    ("GFDL-1.3", "0. PREAMBLE", "ADDENDUM: How to use this License"),
    ("Apache-2.0", "TERMS AND CONDITIONS FOR USE", "END OF TERMS AND CONDITIONS"),
    ("CC0-1.0", "Statement of Purpose", "\0"),
)
_KEEP_UPPER = {"GNU", "GPL", "LGPL", "AGPL", "FSF", "USA", "PDF", "HTML", "XML", "SGML", "TEX", "JPG"}


def document_paragraphs(name: str, first: str, end: str) -> list[str]:
    """The paragraphs of one licence, cleaned for reading aloud."""
    text = (LICENSES / name).read_text(encoding="utf-8")
    start = text.index(first)
    stop = text.find(end, start)
    body = text[start : stop if stop >= 0 else len(text)]
    paragraphs = []
    for block in re.split(r"\n\s*\n", body):
        lines = [ln.strip() for ln in block.splitlines()]
        # URLs, addresses and copyright lines are not speech anyone reads out.
        lines = [ln for ln in lines if ln and not re.search(r"https?:|<|>|Copyright \(C\)", ln)]
        paragraph = clean_for_speech(" ".join(lines))
        if len(paragraph.split()) >= 2:
            paragraphs.append(paragraph)
    return paragraphs


def clean_for_speech(text: str) -> str:
    """Plain sentences: shouted (all-caps) passages lowercased, so a voice reads words, not letters."""
    # Brackets go: Whisper's normalizer deletes whatever stands inside them.
    text = text.replace("``", '"').replace("''", '"').replace("_", " ")
    text = re.sub(r"[()\[\]{}]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) > 0.6 * len(letters):
        words = [w if w.strip('.,;:()"') in _KEEP_UPPER else w.lower() for w in text.split()]
        text = " ".join(words)
        text = text[:1].upper() + text[1:]
    return text


def long_reference(max_words: int | None = None) -> list[tuple[str, list[str]]]:
    """(document name, paragraphs) in reading order; `max_words` cuts the text short (for --quick)."""
    out = []
    left = max_words
    for name, first, end in DOCUMENTS:
        paragraphs = document_paragraphs(name, first, end)
        if left is not None:
            kept = []
            for p in paragraphs:
                if left <= 0:
                    break
                kept.append(p)
                left -= len(p.split())
            paragraphs = kept
        if paragraphs:
            out.append((name, paragraphs))
        if left is not None and left <= 0:
            break
    return out


# --- normalizers ---------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "&": "and", "%": "percent"}


def spell_number(n: int) -> str:
    """An integer in English words: 2007 -> "two thousand seven"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return spell_number(head) + " " + word + ("" if rest == 0 else " " + spell_number(rest))
    raise AssertionError(n)


def normalize_simple(text: str) -> str:
    text = text.lower().replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"[-‐‑–—/]", " ", text)
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    words = []
    for w in text.split():
        w = _ABBREVIATIONS.get(w, w)
        if w.isdigit() and len(w) <= 12:
            words.append(spell_number(int(w)))
        elif re.fullmatch(r"\d+(st|nd|rd|th)", w):
            words.append(w)  # ordinals are rare here; keep them as written
        else:
            words.append(re.sub(r"(?<=\D)(?=\d)|(?<=\d)(?=\D)", " ", w))
    return " ".join(" ".join(words).split())


@functools.lru_cache(maxsize=1)
def _whisper_normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def normalize_whisper(text: str) -> str:
    # Bracket marks only, not their words: the normalizer would drop a spoken aside.
    return " ".join(_whisper_normalizer()(re.sub(r"[()\[\]{}]", " ", text)).split())


NORMALIZERS = {"whisper": normalize_whisper, "simple": normalize_simple}


@dataclass
class WordErrors:
    wer: float  # in percent
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    def as_dict(self) -> dict:
        return {"wer": round(self.wer, 3), "S": self.substitutions, "D": self.deletions,
                "I": self.insertions, "N": self.reference_words}


def word_errors(references: list[str], hypotheses: list[str], normalizer: str) -> WordErrors:
    """Corpus WER over pairs (every reference word counts once), after `normalizer`."""
    import jiwer

    norm = NORMALIZERS[normalizer]
    refs = [norm(r) for r in references]
    hyps = [norm(h) for h in hypotheses]
    keep = [k for k, r in enumerate(refs) if r]  # jiwer refuses empty references
    out = jiwer.process_words([refs[k] for k in keep], [hyps[k] or "<empty>" for k in keep])
    n = out.hits + out.substitutions + out.deletions
    return WordErrors(100.0 * out.wer, out.substitutions, out.deletions, out.insertions, n)


# --- is a gap between two systems more than chance? ----------------------------------

BLOCK_WORDS = 100  # reference words per resampled block: a few sentences, longer than any error burst


def errors_by_block(reference: str, hypothesis: str, block_words: int = BLOCK_WORDS) -> list[tuple[int, int]]:
    """(reference words, errors) per block of `block_words` consecutive reference words.

    The texts are already normalized. Each error of the alignment is charged to the
    reference word where it happens (an insertion to the word it comes before), so the
    blocks' errors add up to the pair's S + D + I.
    """
    import jiwer

    ref = reference.split()
    count = max(1, -(-len(ref) // block_words))
    words = [min(block_words, len(ref) - k * block_words) for k in range(count)]
    errors = [0] * count
    alignment = jiwer.process_words(reference, hypothesis or "<empty>").alignments[0]
    for step in alignment:
        if step.type in ("substitute", "delete"):
            for i in range(step.ref_start_idx, step.ref_end_idx):
                errors[i // block_words] += 1
        elif step.type == "insert":
            errors[min(step.ref_start_idx, len(ref) - 1) // block_words] += step.hyp_end_idx - step.hyp_start_idx
    return list(zip(words, errors))


@dataclass
class PairedGap:
    """WER of system A minus system B on the same recordings, in points, with a 95% interval from a
    paired bootstrap over blocks of reference words (both systems' errors resampled together)."""

    points: float
    low: float
    high: float
    blocks: int
    resamples: int

    def as_dict(self) -> dict:
        return {"points": round(self.points, 3), "interval_95": [round(self.low, 3), round(self.high, 3)],
                "blocks": self.blocks, "resamples": self.resamples}


def paired_gap(references: list[str], hyps_a: list[str], hyps_b: list[str], normalizer: str,
               *, block_words: int = BLOCK_WORDS, resamples: int = 4000, seed: int = 0) -> PairedGap:
    """How far A's corpus WER is from B's, and how far chance alone could move that figure.

    The recordings are cut into blocks of `block_words` reference words; each resample draws
    as many blocks with replacement and computes both systems' corpus WER on the same draw.
    An interval that holds 0 says the data cannot tell the two systems apart.
    """
    import numpy as np

    norm = NORMALIZERS[normalizer]
    rows = []
    for ref, a, b in zip(references, hyps_a, hyps_b):
        r = norm(ref)
        if not r:
            continue
        for (n, ea), (_, eb) in zip(errors_by_block(r, norm(a), block_words),
                                    errors_by_block(r, norm(b), block_words)):
            rows.append((n, ea, eb))
    table = np.array(rows, dtype=np.float64)
    n, ea, eb = table[:, 0], table[:, 1], table[:, 2]
    points = 100.0 * (ea.sum() - eb.sum()) / n.sum()
    draws = np.random.default_rng(seed).integers(0, len(table), size=(resamples, len(table)))
    gaps = 100.0 * (ea[draws].sum(axis=1) - eb[draws].sum(axis=1)) / n[draws].sum(axis=1)
    low, high = np.percentile(gaps, [2.5, 97.5])
    return PairedGap(float(points), float(low), float(high), len(table), resamples)
