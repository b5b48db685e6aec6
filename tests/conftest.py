"""Hypothesis profiles: every run tries the same examples unless asked to explore.

The property tests hunt for inputs that crash the reader; a hunt that finds something on one CI run and
not the next is no use to anyone. By default the examples are derived from each test's name
(`derandomize`), so a failure repeats on every machine. `HYPOTHESIS_PROFILE=explore` draws fresh ones,
for a person hunting on purpose; what it finds becomes a plain regression test.
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
