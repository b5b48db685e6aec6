"""What the hostile-input tests check of every item and refusal: shared by the example tests
(test_hostile_inputs.py) and the property tests (test_hostile_properties.py)."""

from __future__ import annotations

import json
import re

from omnibatch.output.names import safe_filename
from omnibatch.output.tables import FileRow, to_table
from omnibatch.records import MediaItem

RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # all but "\n"


def storable(item: MediaItem) -> None:
    """What the executor does with an item's strings must work: a Parquet row, an output file name."""
    extra = json.dumps(item.extra, sort_keys=True, default=str) if item.extra else None
    row = FileRow(id=item.id, path=item.display_path, language=item.language, extra=extra,
                  duration_s=item.duration_s)
    to_table([row], FileRow.SCHEMA)
    for text in (item.id, item.display_path, item.language or "", extra or ""):
        text.encode("utf-8")  # strict: no lone surrogate anywhere
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", safe_filename(item.id))
