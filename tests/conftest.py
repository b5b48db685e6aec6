"""Shared test set-up: Hypothesis profiles, and the tiny model every engine test reads.

Hypothesis: every run tries the same examples unless asked to explore.

The property tests hunt for inputs that crash the reader; a hunt that finds something on one CI run and
not the next is no use to anyone. By default the examples are derived from each test's name
(`derandomize`), so a failure repeats on every machine. `HYPOTHESIS_PROFILE=explore` draws fresh ones,
for a person hunting on purpose; what it finds becomes a plain regression test.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from omnibatch.models.tiny import build_tiny_model

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3-Omni (Instruct), built once for the whole session (about 6 s); tests only read it
    or copy it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
