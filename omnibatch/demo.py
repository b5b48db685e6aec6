"""`omnibatch demo`: the three jobs on the example media with the embedded model, then real words from the
bundled Whisper model, shown beside what was said.

The example media is examples/ in a checkout (committed, written by `make_example_media`:
`python examples/make_media.py` writes it again); an installed package generates it."""

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
    """Speech in three audio containers and two videos with a spoken track (ffmpeg lavfi + espeak-ng).

    Small (about 300 KB in all) and the same bytes on every run with the same ffmpeg and espeak-ng:
    16 kHz mono speech, a 160x120 test pattern at 5 frames a second, no encoder tags.
    """
    require_tools("ffmpeg", "espeak-ng")
    folder.mkdir(parents=True, exist_ok=True)
    ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    exact = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
    files: list[ExampleFile] = []
    for key, text in SENTENCES.items():
        speak(text, folder / f"{key}-22k.wav")
        _run([*ff, "-i", str(folder / f"{key}-22k.wav"), "-ar", "16000", *exact, str(folder / f"{key}.wav")])
        (folder / f"{key}-22k.wav").unlink()
    _run([*ff, "-i", str(folder / "weather.wav"), "-c:a", "libmp3lame", "-b:a", "32k", *exact,
          str(folder / "weather.mp3")])
    _run([*ff, "-i", str(folder / "recipe.wav"), "-c:a", "aac", "-b:a", "32k", *exact,
          str(folder / "recipe.m4a")])
    files += [ExampleFile("welcome.wav", SENTENCES["welcome"]),
              ExampleFile("weather.mp3", SENTENCES["weather"]),
              ExampleFile("recipe.m4a", SENTENCES["recipe"])]
    videos = (("welcome-video.mp4", "libx264", "aac"), ("recipe-video.webm", "libvpx", "libopus"))
    for name, vcodec, acodec in videos:
        speech = folder / ("welcome.wav" if name.startswith("welcome") else "recipe.wav")
        _run([*ff, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-i", str(speech), "-shortest",
              "-c:v", vcodec, "-pix_fmt", "yuv420p", "-b:v", "40k", "-maxrate", "40k", "-bufsize", "80k",
              "-c:a", acodec, "-b:a", "32k", *exact, str(folder / name)])
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


BUNDLED = Path(__file__).resolve().parents[1] / "examples"  # in a checkout: examples/ beside the package


def bundled_examples() -> Path | None:
    """examples/manifest.jsonl of a checkout when every example file is there, else None (an installed
    package has no examples/: the demo then generates them)."""
    manifest = BUNDLED / "manifest.jsonl"
    if manifest.is_file() and all((BUNDLED / name).is_file() for name in EXAMPLE_NAMES):
        return manifest
    return None


def example_files() -> list[ExampleFile]:
    return [ExampleFile(name, SENTENCES[name.split("-")[0].split(".")[0]]) for name in EXAMPLE_NAMES]


def run_demo(out: Path, media: Path | None = None) -> int:
    """The three jobs on the embedded tiny model, then transcribe with the bundled Whisper model, and
    what was said beside what each wrote. `media` None: the bundled examples/ (generated into
    OUT/media when this is no checkout)."""
    from omnibatch.run.report import run_local

    out = out.resolve()
    manifest = bundled_examples() if media is None else None
    if manifest is None:
        media = (media or out / "media").resolve()
        print(f"generating example media in {media} ...", file=sys.stderr)
        manifest = write_manifest(media, make_example_media(media))
    else:
        print(f"example media: {manifest.parent}", file=sys.stderr)
    code = 0
    for task in ("transcribe", "caption", "summarize"):
        print(f"\n== omnibatch {task} (embedded tiny model: random weights) ==", file=sys.stderr)
        config = RunConfig(task=task, inputs=[str(manifest)], out=str(out), workers=0, max_new_tokens=16,
                           formats=["parquet", "srt", "vtt", "txt"], max_words=24)
        code = max(code, run_local(config))
    print("\n== omnibatch transcribe --engine whisper (the bundled Whisper base: real words) ==",
          file=sys.stderr)
    whisper_out = out / "whisper"
    config = RunConfig(task="transcribe", engine="whisper", language="en", inputs=[str(manifest)],
                       out=str(whisper_out), workers=0, formats=["parquet", "srt", "vtt", "txt"])
    code = max(code, run_local(config))
    print(compare_transcripts(example_files(), out, whisper_out))
    print(f"\ndemo outputs are in {out}:", file=sys.stderr)
    for folder in (out, whisper_out):
        subs = sorted(p for p in folder.iterdir()
                      if p.is_dir() and p.name not in ("_run", "whisper", "media"))
        for sub in subs:
            count = sum(1 for p in sub.iterdir() if p.is_file())
            print(f"  {sub.relative_to(out)}/  ({count} file{'s' if count != 1 else ''})", file=sys.stderr)
    print("read them with: python -c \"import pyarrow.parquet as pq; "
          f"print(pq.read_table('{whisper_out}/transcribe').to_pandas())\"", file=sys.stderr)
    return code


def compare_transcripts(files: list[ExampleFile], tiny_out: Path, whisper_out: Path) -> str:
    """For each example: what was said, what Whisper heard, and what the random tiny model wrote."""
    import pyarrow.parquet as pq

    from omnibatch.text_safety import printable

    def texts(folder: Path) -> dict[str, str]:
        if not (folder / "transcribe").is_dir():
            return {}
        return {r["id"]: (r["text"] if r["status"] == "ok" else f"(failed: {r['error']})") or ""
                for r in pq.read_table(folder / "transcribe", columns=["id", "status", "error", "text"]
                                       ).to_pylist()}

    heard, tiny = texts(whisper_out), texts(tiny_out)
    lines = ["", "what was said, what Whisper heard, and what the tiny random-weight model wrote "
             "(meaningless):"]
    for f in files:
        key = Path(f.name).stem
        lines += [f"  {f.name}",
                  f"    said:    {f.text}",
                  f"    whisper: {printable(heard.get(key, '(no row)'))}",
                  f"    tiny:    {printable(tiny.get(key, '(no row)'))[:100]}"]
    lines.append("Real Qwen3-Omni output needs real weights: --model /path/to/Qwen3-Omni (or a hub id).")
    return "\n".join(lines)
