"""What a rerun still owes: `ok` rows whose outputs beside them are not all there.

A row is the commit point of its file (its segments and words are written
before it), but files outside the row's part can still go missing: a part
removed by hand, a subtitle format added on the rerun, a WAV deleted. Before a
resume trusts an `ok` row, it checks what the task writes beside it:

    transcribe  as many segment and word rows as the row counts; a subtitle file per requested format
    summarize   the WAV the row names
    caption     nothing beside the row

and redoes what is missing: the whole file when its segments or words are short
(they come from the engine), only the speech when a WAV is gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omnibatch.config import SUBTITLE_FORMATS, RunConfig
from omnibatch.output.names import safe_filename
from omnibatch.output.parquet import part_files, parts_of_run, read_part


@dataclass
class Owed:
    redo: set[str] = field(default_factory=set)  # ok rows to run again from the start, with why
    respeak: set[str] = field(default_factory=set)  # ok summarize rows whose WAV is missing
    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, kind: set[str], item_id: str, why: str) -> None:
        kind.add(item_id)
        self.reasons[item_id] = why


def id_counts(folder: Path, fingerprint: str, wanted: set[str], shard_index: int | None = None) -> Counter[str]:
    """How many rows each id in `wanted` has in the parts of `folder` written with `fingerprint`
    (by shard `shard_index` only, when given: a shard's files are written by that shard)."""
    counts: Counter[str] = Counter()
    parts = part_files(folder)
    if shard_index is not None:
        parts = [p for p in parts if p.name.startswith(f"part-{shard_index:05d}-")]
    for part in parts_of_run(parts, fingerprint):
        counts.update(i for i in read_part(part, columns=["id"]).column("id").to_pylist() if i in wanted)
    return counts


def ok_rows(folder: Path, fingerprint: str, ids: set[str], columns: list[str]) -> dict[str, dict]:
    """The last written `ok` row of each id in `ids`, with `columns` (those the parts have)."""
    found: dict[str, dict] = {}
    for part in parts_of_run(part_files(folder), fingerprint):
        import pyarrow.parquet as pq

        present = [c for c in ["id", "status", *columns] if c in pq.read_schema(part).names]
        for row in read_part(part, columns=present).to_pylist():
            if row["id"] in ids:
                found[row["id"]] = row
    return {i: r for i, r in found.items() if r["status"] == "ok"}


def owed_outputs(root: Path, config: RunConfig, fingerprint: str, done_ok: Iterable[str], *,
                 shard_index: int | None = None) -> Owed:
    """The `ok` rows among `done_ok` (ids this shard will skip) whose side outputs are incomplete.

    Segment and word rows are counted in the parts of `shard_index` only: the shard that wrote
    a file's row wrote its segments and words, so a shard's check reads its own parts, not the
    whole folder's (words are the biggest table). An item that moved shard (a different
    --array N) is then found short and redone: correct, if wasteful, and --array is fixed per
    folder."""
    owed = Owed()
    ids = set(done_ok)
    if not ids:
        return owed
    if config.task == "transcribe":
        rows = ok_rows(root / "transcribe", fingerprint, ids, ["num_segments", "num_words"])
        segments = id_counts(root / "segments", fingerprint, ids, shard_index)
        words = id_counts(root / "words", fingerprint, ids, shard_index)
        formats = [f for f in config.formats if f in SUBTITLE_FORMATS]
        for item_id, row in rows.items():
            want_segments, want_words = row.get("num_segments"), row.get("num_words")
            if want_segments is not None and segments[item_id] < want_segments:
                owed.add(owed.redo, item_id, f"{segments[item_id]} of its {want_segments} segments on disk")
            elif want_words is not None and words[item_id] < want_words:
                owed.add(owed.redo, item_id, f"{words[item_id]} of its {want_words} words on disk")
            elif missing := [f for f in formats if not subtitle_path(root, item_id, f).exists()]:
                owed.add(owed.redo, item_id, f"no {', '.join(missing)} subtitles")
    elif config.task == "summarize":
        rows = ok_rows(root / "summarize", fingerprint, ids, ["audio_path"])
        for item_id, row in rows.items():
            wav = row.get("audio_path")
            if wav and not (root / wav if not Path(wav).is_absolute() else Path(wav)).exists():
                owed.add(owed.respeak, item_id, f"its spoken summary {wav} is missing")
    return owed


def subtitle_path(root: Path, item_id: str, fmt: str) -> Path:
    return root / "subtitles" / f"{safe_filename(item_id)}.{fmt}"
