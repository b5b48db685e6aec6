"""Manifest and folder fixtures for the input-stage tests (test_manifests.py, test_manifest_refusals.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from omnibatch.errors import InputError
from omnibatch.manifests import read_inputs


def write_jsonl(path: Path, rows: list[object | str]) -> Path:
    """Rows are JSON-encoded; a str row is written as the raw line (for malformed input)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def refusal(inputs: list, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        read_inputs(inputs, **kwargs)
    return str(caught.value)
