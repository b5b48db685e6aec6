"""Write the example media and manifests of this folder again (needs ffmpeg and espeak-ng on PATH).

    .venv/bin/python examples/make_media.py

The same ffmpeg and espeak-ng write the same bytes (no encoder tags, fixed rates).
"""

from __future__ import annotations

import csv
from pathlib import Path

from omnibatch.demo import make_example_media, write_manifest

HERE = Path(__file__).resolve().parent


def main() -> None:
    files = make_example_media(HERE)
    write_manifest(HERE, files)
    with (HERE / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "path", "language", "spoken_text"])
        for f in files:
            writer.writerow([Path(f.name).stem, f.name, "en", f.text])
    print(f"wrote {len(files)} media files, manifest.jsonl and manifest.csv in {HERE}")


if __name__ == "__main__":
    main()
