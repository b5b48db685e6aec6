"""The whisper engine keeps the words Whisper leaves for a second pass at the end of a chunk.

Found by benchmarks/longform.py: on this paragraph Whisper base closes a segment
at "modify it," opens the next one and stops. Its sequential decoder would seek
back and decode the rest; faster-whisper's batched pipeline has no second pass,
so "responsibilities to respect the freedom of others" was lost.
"""

from __future__ import annotations

import pytest

from tests._longform_media import have_espeak, normalize_words, speak

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg"),
]

PARAGRAPH = (
    "To protect your rights, we need to prevent others from denying you these rights or asking you to "
    "surrender the rights. Therefore, you have certain responsibilities if you distribute copies of the "
    "software, or if you modify it: responsibilities to respect the freedom of others."
)


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("faster_whisper")
    from omnibatch.engine.whisper_engine import WhisperEngine

    return WhisperEngine()


@pytest.mark.parametrize("speed", [160, 175])
def test_the_end_of_a_chunk_is_transcribed(engine, speed):
    from omnibatch.records import Request

    audio = speak(PARAGRAPH, speed=speed)
    duration = audio.size / 16000
    (gen,) = engine.generate([Request(id="p#00000", prompt=None, audio=audio, language="en")])
    assert gen.error is None
    words = normalize_words(gen.text)
    assert words.endswith("respect the freedom of others"), gen.text
    assert words.count("freedom of others") == 1  # decoded once, not twice
    starts = [s.start_s for s in gen.segments]
    assert starts == sorted(starts)
    assert all(0 <= s.start_s <= s.end_s <= duration + 1e-6 for s in gen.segments)
    assert normalize_words(gen.segments[-1].text).endswith("freedom of others")


def test_the_rest_of_one_chunk_does_not_disturb_its_batch(engine):
    """Three chunks in one model call, one of which needs a second pass: each keeps its own words."""
    from omnibatch.records import Request

    first = speak("The river rose over the low fields every spring.")
    middle = speak(PARAGRAPH, speed=175)
    last = speak("Traders carried grain, cloth and salt from one market to the next.")
    gens = engine.generate([Request(id=f"b#{k:05d}", prompt=None, audio=a, language="en")
                            for k, a in enumerate((first, middle, last))])
    texts = [normalize_words(g.text) for g in gens]
    assert "every spring" in texts[0] and "freedom" not in texts[0]
    assert texts[1].endswith("respect the freedom of others")
    assert "market" in texts[2] and "freedom" not in texts[2]
