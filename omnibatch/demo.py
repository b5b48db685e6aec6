"""`omnibatch demo`: generate example media, run the three jobs on the embedded model, show the outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.errors import MissingDependencyError

SENTENCES = {
    "welcome": "Welcome to omnibatch. It turns archives of long audio and video into searchable data.",
    "weather": "Tomorrow will be sunny in the morning, with light rain expected in the evening.",
    "recipe": "Mix two cups of flour with one cup of water, then knead the dough for ten minutes.",
}
# What make_example_media writes; manifests/example.* point at these.
EXAMPLE_NAMES = ("welcome.wav", "weather.mp3", "recipe.m4a", "welcome-video.mp4", "recipe-video.webm")


@dataclass(frozen=True)
class ExampleFile:
    name: str
    text: str  # what is said in it


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise MissingDependencyError(
            f"{', '.join(missing)} not found on PATH: install it (Debian/Ubuntu: apt-get install "
            f"{' '.join('ffmpeg' if n == 'ffprobe' else n for n in missing)}), or run scripts/bootstrap.sh"
        )


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def speak(text: str, wav: Path) -> None:
    _run(["espeak-ng", "-s", "150", "-w", str(wav), text])


def make_example_media(folder: Path) -> list[ExampleFile]:
    """Speech in three audio containers and two videos with a spoken track (ffmpeg lavfi + espeak-ng)."""
    require_tools("ffmpeg", "espeak-ng")
    folder.mkdir(parents=True, exist_ok=True)
    ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    files: list[ExampleFile] = []
    for key, text in SENTENCES.items():
        speak(text, folder / f"{key}.wav")
    _run([*ff, "-i", str(folder / "weather.wav"), "-c:a", "libmp3lame", "-b:a", "64k", str(folder / "weather.mp3")])
    _run([*ff, "-i", str(folder / "recipe.wav"), "-c:a", "aac", "-b:a", "64k", str(folder / "recipe.m4a")])
    files += [ExampleFile("welcome.wav", SENTENCES["welcome"]), ExampleFile("weather.mp3", SENTENCES["weather"]),
              ExampleFile("recipe.m4a", SENTENCES["recipe"])]
    for name, vcodec, acodec in (("welcome-video.mp4", "libx264", "aac"), ("recipe-video.webm", "libvpx", "libopus")):
        speech = folder / ("welcome.wav" if name.startswith("welcome") else "recipe.wav")
        _run([*ff, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-i", str(speech), "-shortest",
              "-c:v", vcodec, "-pix_fmt", "yuv420p", "-c:a", acodec, str(folder / name)])
        files.append(ExampleFile(name, SENTENCES["welcome" if name.startswith("welcome") else "recipe"]))
    (folder / "weather.wav").unlink()
    (folder / "recipe.wav").unlink()
    return files


def write_manifest(folder: Path, files: list[ExampleFile]) -> Path:
    manifest = folder / "manifest.jsonl"
    with manifest.open("w") as fh:
        for f in files:
            fh.write(json.dumps({"id": Path(f.name).stem, "path": f.name, "language": "en",
                                 "meta": {"spoken_text": f.text}}) + "\n")
    return manifest


def run_demo(out: Path, media: Path) -> int:
    from omnibatch.run.report import run_local

    out, media = out.resolve(), media.resolve()
    print(f"generating example media in {media} ...", file=sys.stderr)
    manifest = write_manifest(media, make_example_media(media))
    code = 0
    for task in ("transcribe", "caption", "summarize"):
        print(f"\n== omnibatch {task} ==", file=sys.stderr)
        config = RunConfig(task=task, inputs=[str(manifest)], out=str(out), workers=0, max_new_tokens=16,
                           formats=["parquet", "srt", "vtt", "txt"], max_words=24)
        code = max(code, run_local(config))
    print(f"\ndemo outputs are in {out}:", file=sys.stderr)
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(out)}", file=sys.stderr)
    print("read them with: python -c \"import pyarrow.parquet as pq; "
          f"print(pq.read_table('{out}/transcribe').to_pandas())\"", file=sys.stderr)
    return code
