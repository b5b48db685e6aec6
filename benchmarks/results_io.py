"""Where a benchmark's figures go: JSON for machines, the same as a markdown table for people."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: Path, result: dict, table: str) -> None:
    """`result` as JSON at `out` and `table` beside it (`.md`); print the table and where they are."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"results: {out}")
