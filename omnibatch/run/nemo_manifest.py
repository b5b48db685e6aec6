"""A NeMo-style manifest of a transcribe run: each input's keys, with `pred_text` beside them.

    {"audio_filepath": "media/a.wav", "duration": 12.3, "text": "the reference", "id": "a",
     "pred_text": "the transcript", "wer": 0.05}

One line per `ok` row the run wrote (every shard in the folder, in part order),
written to a temporary name and renamed. The input keys come back from the row:
`path` as `audio_filepath`, `duration_s` as `duration`, and the manifest's other
keys from `extra`, so NeMo's scripts (speech_to_text_eval.py and the like) read it
as they read their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omnibatch.output.parquet import part_files, parts_of_run, read_part

_COLUMNS = ["id", "path", "status", "duration_s", "extra", "text", "language", "wer", "cer"]


def write_nemo_manifest(out_dir: Path, fingerprint: str, dest: Path) -> int:
    """Write the manifest for the transcribe rows of `fingerprint` in `out_dir`; return its line count."""
    rows: dict[str, dict] = {}
    for part in parts_of_run(part_files(out_dir / "transcribe"), fingerprint):
        for row in read_part(part, columns=_COLUMNS).to_pylist():
            rows[row["id"]] = row  # a later part supersedes an earlier row of the same id
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows.values():
                if row["status"] != "ok":
                    continue
                line = {"audio_filepath": row["path"], "duration": row["duration_s"],
                        **json.loads(row["extra"] or "{}"), "id": row["id"], "pred_text": row["text"] or ""}
                if row["language"]:
                    line.setdefault("lang", row["language"])
                if row["wer"] is not None:
                    line["wer"], line["cer"] = row["wer"], row["cer"]
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return count
