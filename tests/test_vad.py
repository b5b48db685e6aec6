"""Silero VAD over streams of blocks, on real (espeak-ng) speech with known silences."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _longform_media import SAMPLE_RATE, blocks_of, have_espeak, lay_out, silence, speak

from omnibatch.vad import (
    SpeechDetector,
    VadOptions,
    detect_speech,
    regions_from_probabilities,
    speech_probabilities,
)

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg")

TOLERANCE_S = 0.3


def merge_close(regions, gap):
    out = []
    for a, b in regions:
        if out and a - out[-1][1] < gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


@pytest.fixture(scope="module")
def conversation():
    """Three utterances separated by 3 s and 1.5 s of silence, 2 s of silence at each end."""
    a = speak("The quick brown fox jumps over the lazy dog. Then it runs into the forest.")
    b = speak("Hello world, this is a second sentence spoken after a pause.")
    c = speak("And here is the last thing anybody says today.")
    return lay_out(2.0, a, 3.0, b, 1.5, c, 2.0)


def test_regions_match_where_the_speech_is(conversation):
    audio, truth = conversation
    found = detect_speech(blocks_of(audio, 30 * SAMPLE_RATE))
    # A sentence pause inside one utterance may split it; the utterances must not merge.
    merged = merge_close(found, 1.0)
    assert len(merged) == len(truth), (found, truth)
    for (a, b), (ta, tb) in zip(merged, truth):
        assert abs(a - ta) <= TOLERANCE_S and abs(b - tb) <= TOLERANCE_S, (merged, truth)


def test_low_noise_is_not_speech(conversation):
    audio, truth = conversation
    rng = np.random.default_rng(0)
    noisy = audio + rng.normal(0, 0.002, audio.size).astype(np.float32)  # a quiet room
    merged = merge_close(detect_speech(blocks_of(noisy, 20 * SAMPLE_RATE)), 1.0)
    assert len(merged) == len(truth)
    for (a, b), (ta, tb) in zip(merged, truth):
        assert abs(a - ta) <= TOLERANCE_S and abs(b - tb) <= TOLERANCE_S


@pytest.mark.parametrize("block", [512, 7777, SAMPLE_RATE, 30 * SAMPLE_RATE, None])
def test_result_does_not_depend_on_block_size(conversation, block):
    audio, _ = conversation
    reference = detect_speech([audio])
    found = detect_speech(blocks_of(audio, block) if block else [audio])
    assert len(found) == len(reference)
    for (a, b), (ra, rb) in zip(found, reference):
        assert abs(a - ra) <= 0.033 and abs(b - rb) <= 0.033  # within one 32 ms window


def test_probability_count_and_state_carry(conversation):
    audio, _ = conversation
    whole = np.concatenate(list(speech_probabilities([audio])))
    pieces = np.concatenate(list(speech_probabilities(blocks_of(audio, 1000))))
    assert len(whole) == len(pieces) == -(-audio.size // 512)
    np.testing.assert_allclose(whole, pieces, atol=1e-4)
    # Not a constant: the network does tell speech from silence.
    assert whole.max() > 0.9 and whole[: 2 * SAMPLE_RATE // 512 - 4].max() < 0.2


def test_silence_and_empty_streams():
    assert detect_speech([]) == []
    assert detect_speech([silence(5.0)]) == []
    assert detect_speech([np.zeros(100, dtype=np.float32)]) == []


def test_speech_to_the_very_end_closes_at_the_end():
    clip = speak("This sentence runs right to the end of the file")
    audio, _ = lay_out(1.0, clip[: int(0.8 * clip.size)])
    ((_, b),) = merge_close(detect_speech([audio]), 1.0)
    assert b == pytest.approx(audio.size / SAMPLE_RATE, abs=0.05)


def test_flat_memory_over_a_long_stream():
    """Ten minutes streamed in 30 s blocks: Python-side memory stays near one block."""
    speech = speak("This is a long recording of somebody talking for a while with pauses.")
    minute, _ = lay_out(speech, 2.0, speech, 1.0, speech, 4.0)

    def stream():
        total = 0
        while total < 600 * SAMPLE_RATE:
            block = np.resize(minute, 30 * SAMPLE_RATE)  # a fresh array each time, as a decoder would
            total += block.size
            yield block

    tracemalloc.start()
    try:
        regions = detect_speech(stream())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(regions) > 40
    assert peak < 8 * 30 * SAMPLE_RATE * 4  # a few blocks' worth; the whole file would be 38 MB


def test_rejects_other_sample_rates_and_stereo():
    with pytest.raises(ValueError, match="16 kHz"):
        detect_speech([silence(1.0)], sample_rate=8000)
    with pytest.raises(ValueError, match="mono"):
        detect_speech([np.zeros((2, 1600), dtype=np.float32)])


# --- the region logic alone, on made-up probabilities ----------------------------------------------

W = 0.032


def probs(*runs: tuple[float, float]) -> list[float]:
    """(probability, seconds) runs -> per-window probabilities."""
    out = []
    for p, seconds in runs:
        out += [p] * round(seconds / W)
    return out


def test_hysteresis_holds_speech_between_thresholds():
    opt = VadOptions(threshold=0.5, neg_threshold=0.35, min_silence_s=0.3, min_speech_s=0.0)
    regions = regions_from_probabilities(probs((0.0, 1.0), (0.9, 1.0), (0.4, 2.0), (0.1, 1.0)), opt)
    ((a, b),) = regions
    assert a == pytest.approx(1.0, abs=2 * W) and b == pytest.approx(4.0, abs=2 * W)


def test_short_pause_kept_inside_long_pause_splits():
    opt = VadOptions(min_silence_s=0.3, min_speech_s=0.0)
    short = regions_from_probabilities(probs((0.9, 1.0), (0.0, 0.2), (0.9, 1.0)), opt)
    long = regions_from_probabilities(probs((0.9, 1.0), (0.0, 0.5), (0.9, 1.0)), opt)
    assert len(short) == 1 and len(long) == 2
    assert long[0][1] == pytest.approx(1.0, abs=W) and long[1][0] == pytest.approx(1.5, abs=W)


def test_blips_shorter_than_min_speech_dropped():
    opt = VadOptions(min_speech_s=0.25)
    assert regions_from_probabilities(probs((0.0, 1.0), (0.9, 0.1), (0.0, 1.0)), opt) == []
    assert len(regions_from_probabilities(probs((0.0, 1.0), (0.9, 0.5), (0.0, 1.0)), opt)) == 1


def test_open_region_ends_at_duration_or_trailing_silence():
    opt = VadOptions(min_silence_s=0.5, min_speech_s=0.0)
    assert regions_from_probabilities(probs((0.9, 1.0)), opt, duration_s=0.99) == [(0.0, 0.99)]
    ((_, b),) = regions_from_probabilities(probs((0.9, 1.0), (0.0, 0.2)), opt)
    assert b == pytest.approx(1.0, abs=W)


# --- the incremental detector ----------------------------------------------------------------------


def feed_all(detector: SpeechDetector, blocks) -> tuple[list, list]:
    """Regions as `feed` returns them, and (settled_s, open_start_s, regions so far) after each block."""
    regions, states = [], []
    for block in blocks:
        regions += detector.feed(block)
        states.append((detector.settled_s, detector.open_start_s, len(regions), detector.frontier_s))
    regions += detector.finish()
    return regions, states


@pytest.mark.parametrize("block", [512, 1000, 7777, SAMPLE_RATE, 30 * SAMPLE_RATE])
def test_detector_gives_detect_speech_regions_and_keeps_its_promises(conversation, block):
    audio, _ = conversation
    blocks = blocks_of(audio, block)
    regions, states = feed_all(SpeechDetector(), blocks)
    assert regions == detect_speech(blocks)  # detect_speech runs on it: the same, block for block
    assert all(a < b for a, b in regions) and regions == sorted(regions)
    frontiers = [f for *_, f in states]
    assert frontiers == sorted(frontiers) and frontiers[-1] <= audio.size / SAMPLE_RATE
    for settled, open_start, returned, frontier in states:
        assert settled <= round(frontier, 3) + 1e-9
        # Every region starting before the settled point was returned, except the open one...
        early = [r for r in regions if r[0] < settled]
        assert early[:returned] == regions[:returned]
        assert len(early) in (returned, returned + 1)
        if len(early) == returned + 1:
            # ...which is kept, starts where the detector said and lasts at least to the settled point.
            a, b = early[-1]
            assert a == open_start and b >= settled


def test_detector_settled_waits_at_a_region_start_until_the_region_is_sure_to_stay():
    audio, _ = lay_out(1.0, speak("yes, the whole sentence goes on for a while"), 1.0)
    detector = SpeechDetector(VadOptions(min_speech_s=0.25))
    unsure = sure = 0
    for block in blocks_of(audio, 512):
        detector.feed(block)
        start = detector.open_start_s
        if start is None:
            assert detector.settled_s == pytest.approx(detector.frontier_s, abs=1e-3)
        elif detector.settled_s == start:
            unsure += 1  # the region may still be dropped as a blip: nothing after its start is settled
            assert detector.frontier_s - start < 0.25 + 0.3 + 0.033
        else:
            sure += 1
            assert start < detector.settled_s <= detector.frontier_s + 1e-3
    assert unsure >= 5 and sure > unsure
    assert detector.finish() == [] and detector.settled_s == float("inf")  # closed in the silence


def test_detector_refuses_wrong_input():
    with pytest.raises(ValueError, match="16 kHz"):
        SpeechDetector(sample_rate=44100)
    detector = SpeechDetector()
    with pytest.raises(ValueError, match="mono"):
        detector.feed(np.zeros((2, 100), dtype=np.float32))
    detector.finish()
    with pytest.raises(RuntimeError):
        detector.feed(silence(0.1))
