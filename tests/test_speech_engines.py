"""The speech engines of `omnibatch summarize` and the WAV they write: the transformers Talker +
Code2Wav on the real tiny Qwen3-Omni, and the vLLM-Omni engine.

vLLM-Omni has no CPU platform: its engine is tested up to the call into `Omni`, against a stand-in
that answers the way vLLM-Omni 0.30 does (completion order, "<i>_<uuid>" ids, text and audio
outputs, chunked audio) or hangs, as a failed stage can.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf

from omnibatch.engine.base import SAMPLE_RATE, SpeechRequest, codes_for
from omnibatch.output.wav import write_wav
from tests._summarize_media import ffprobe_audio

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


# -- WAV output --------------------------------------------------------------------------------


def test_wav_is_mono_pcm16_24khz_and_reads_back(tmp_path):
    t = np.arange(24000 * 2) / 24000
    audio = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio[100] = 3.0  # clipped
    audio[200] = np.nan  # silence
    path = tmp_path / "audio" / "x.wav"
    duration = write_wav(path, audio, 24000)
    assert duration == 2.0 and [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temporary left
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (24000, 1, "PCM_16", 48000)
    back, rate = sf.read(path, dtype="float32")
    assert rate == 24000 and back[100] == pytest.approx(1.0, abs=1e-4) and back[200] == 0.0
    assert np.abs(back[1000:2000] - audio[1000:2000]).max() < 1e-4
    probed = ffprobe_audio(path)
    assert probed == {"codec": "pcm_s16le", "sample_rate": 24000, "channels": 1, "bits": 16,
                      "duration_s": 2.0}


# -- the transformers speech engine on the tiny model ---------------------------------------------


@pytest.fixture(scope="module")
def speech_engine(tiny_dir):
    from omnibatch.engine.speech_transformers import TransformersSpeechEngine

    engine = TransformersSpeechEngine(str(tiny_dir), batch_size=4)
    yield engine
    engine.close()


def test_transformers_speech_speaks_a_batch_within_each_cap(speech_engine):
    requests = [
        SpeechRequest("long", "The river valley was farmed for centuries, and then the railway came.",
                      "Ethan", max_seconds=4.0),
        SpeechRequest("short", "Quiet today.", "Ethan", max_seconds=1.5),
        SpeechRequest("empty", "   ", "Ethan"),
        SpeechRequest("voice", "Hello there.", "Chelsie", max_seconds=1.0),
        SpeechRequest("unknown", "Hello there.", "Bob", max_seconds=1.0),
    ]
    out = speech_engine.speak(requests)
    assert [s.request_id for s in out] == [r.id for r in requests]
    by_id = {s.request_id: s for s in out}
    assert "nothing to speak" in by_id["empty"].error and "no speaker 'Bob'" in by_id["unknown"].error
    for request in (requests[0], requests[1], requests[3]):
        speech = by_id[request.id]
        assert speech.error is None and speech.sample_rate == SAMPLE_RATE
        assert speech.audio.dtype == np.float32 and speech.audio.ndim == 1
        assert 0 < speech.audio.size <= request.max_seconds * SAMPLE_RATE
        assert np.isfinite(speech.audio).all()
        assert speech.spoken_text == request.text.strip()
    # The random Talker never stops by itself: the short request is cut at its own cap.
    assert by_id["short"].audio.size == 1.5 * SAMPLE_RATE and by_id["short"].capped
    again = speech_engine.speak(requests[:2])  # seeded: a rerun gives the same audio
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(out[:2], again))


def test_a_failing_item_fails_alone_and_the_batch_is_retried_one_by_one(speech_engine, monkeypatch):
    tokenizer = speech_engine.processor.tokenizer
    poison = tokenizer.encode("This one breaks.", add_special_tokens=False)
    real_generate = speech_engine.omni.generate
    batches = []

    def generate(**kwargs):
        replies = kwargs["thinker_logits_processor"][0].replies
        batches.append(len(replies))
        if any(r[:-1] == poison for r in replies):
            raise RuntimeError("the Talker failed on this text")
        return real_generate(**kwargs)

    monkeypatch.setattr(speech_engine.omni, "generate", generate)
    requests = [SpeechRequest(f"r{i}", text, "Ethan", 1.0) for i, text in
                enumerate(["First summary.", "This one breaks.", "Third summary here."])]
    out = speech_engine.speak(requests)
    assert batches == [3, 1, 1, 1]
    assert [s.error is None for s in out] == [True, False, True]
    assert "the Talker failed on this text" in out[1].error


# -- the vLLM-Omni engine, up to the call into Omni ------------------------------------------------


@dataclass
class Completion:
    text: str


@dataclass
class StageOutput:
    """Shaped like vllm_omni.outputs.OmniRequestOutput: what the engine reads of it."""

    request_id: str
    final_output_type: str
    outputs: list = field(default_factory=list)
    multimodal_output: dict = field(default_factory=dict)
    error: str | None = None


class FakeOmni:
    """Answers like vLLM-Omni 0.30's Omni.generate(py_generator=True): text then audio per request,
    in completion order (here: last request first), audio in chunks; or it hangs, or fails one request."""

    def __init__(self, mode: str = "ok", fail_text: str = "") -> None:
        self.mode = mode
        self.fail_text = fail_text
        self.default_sampling_params_list = [
            {"temperature": 0.4, "max_tokens": 2048},
            {"temperature": 0.9, "top_k": 50, "max_tokens": 4096, "seed": 42, "stop_token_ids": [7]},
            {"temperature": 0.0, "max_tokens": 65536},
        ]
        self.calls: list[tuple[list, list]] = []
        self.closed = False
        self.errored = False
        self.release = threading.Event()

    def generate(self, prompts, params, *, py_generator=False, use_tqdm=True):
        assert py_generator and not use_tqdm
        self.calls.append((prompts, params))
        return self._run(prompts)

    def _run(self, prompts):
        for i in reversed(range(len(prompts))):
            rid = f"{i}_abcd-{i}"
            text = prompts[i]["prompt"]
            if self.mode == "hang" and i == 0:
                self.release.wait(30)  # a stage died: nothing more comes back
                return
            if self.fail_text and self.fail_text in text:
                raise RuntimeError(f"stage 1 failed on request {rid}")
            yield StageOutput(rid, "text", outputs=[Completion(said(text))])
            n = 2400 * (i + 1)
            level = 0.1 * (i + 1)
            chunks = [np.full(n // 2, level, np.float32), np.full((1, n - n // 2), level, np.float32)]
            yield StageOutput(rid, "audio", multimodal_output={"audio": chunks, "sr": 24000})

    def close(self):
        self.closed = True


def said(prompt: str) -> str:
    return prompt.split("say nothing else.\n\n", 1)[1].split("<|im_end|>", 1)[0]


def omni_engine(tiny_dir, fake: FakeOmni, **kw):
    from omnibatch.engine.vllm_omni_engine import VllmOmniSpeechEngine

    built = []

    def factory(model, *, deploy_config, init_timeout):
        built.append((model, deploy_config, init_timeout))
        return fake

    engine = VllmOmniSpeechEngine(str(tiny_dir), omni_factory=factory, deploy_config="/etc/deploy.yaml", **kw)
    return engine, built


def test_vllm_omni_requests_and_outputs_mapped_back_by_id(tiny_dir):
    fake = FakeOmni()
    engine, built = omni_engine(tiny_dir, fake)
    requests = [SpeechRequest("a", "First summary.", "Chelsie", 10.0), SpeechRequest("b", "", "Ethan"),
                SpeechRequest("c", "Second summary here.", "Aiden", 0.15)]
    out = engine.speak(requests)
    assert built == [(str(tiny_dir), "/etc/deploy.yaml", 1200)]
    prompts, params = fake.calls[0]
    speakers = [p["additional_information"] for p in prompts]
    assert speakers == [{"speaker": ["chelsie"]}, {"speaker": ["aiden"]}]
    assert all(p["modalities"] == ["audio"] for p in prompts)
    assert prompts[0]["prompt"].startswith("<|im_start|>user\n") and prompts[0]["prompt"].endswith(
        "<|im_start|>assistant\n")
    assert said(prompts[1]["prompt"]) == "Second summary here."
    thinker, talker, code2wav = params
    assert thinker["temperature"] == 0.0 and thinker["max_tokens"] >= 16
    assert talker["max_tokens"] == codes_for(10.0) and talker["seed"] == 42
    assert engine.talker_eos == 66  # the tiny model's codec end id, read from its config
    assert set(talker["stop_token_ids"]) == {7, 66}
    assert code2wav == fake.default_sampling_params_list[2]
    # Outputs came back last-first and in chunks; each lands on its own request, capped to its length.
    assert out[0].error is None and out[0].audio.size == 2400 and np.allclose(out[0].audio, 0.1)
    assert out[0].spoken_text == "First summary." and out[0].sample_rate == 24000 and not out[0].capped
    assert "nothing to speak" in out[1].error
    assert out[2].audio.size == 0.15 * 24000 and np.allclose(out[2].audio, 0.2) and out[2].capped
    engine.close()
    assert fake.closed


def test_vllm_omni_timeout_fails_open_requests_and_never_hangs(tiny_dir):
    fake = FakeOmni(mode="hang")
    engine, _ = omni_engine(tiny_dir, fake, timeout_s=1.0)
    requests = [SpeechRequest(f"r{i}", f"Summary number {i}.", "Ethan", 5.0) for i in range(3)]
    started = time.perf_counter()
    out = engine.speak(requests)
    assert time.perf_counter() - started < 5
    # The last two came back before the stage hung; the first never did.
    assert [s.error is None for s in out] == [False, True, True]
    assert "issue 322" in out[0].error and "--retry-errors" in out[0].error
    later = engine.speak([SpeechRequest("x", "More.", "Ethan")])  # given up: no second wait
    assert "issue 322" in later[0].error and len(fake.calls) == 1
    fake.release.set()


def test_vllm_omni_failed_request_is_retried_alone(tiny_dir):
    fake = FakeOmni(fail_text="Bad one")
    engine, _ = omni_engine(tiny_dir, fake)
    requests = [SpeechRequest("a", "Good one.", "Ethan", 5.0), SpeechRequest("b", "Bad one.", "Ethan", 5.0),
                SpeechRequest("c", "Another good one.", "Ethan", 5.0)]
    out = engine.speak(requests)
    # c came back before b failed (completion order); a was aborted with it and asked again alone.
    assert [len(prompts) for prompts, _ in fake.calls] == [3, 1, 1]
    assert [s.error is None for s in out] == [True, False, True]
    assert "stage 1 failed" in out[1].error


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_omni_sampling_params_are_real_vllm_params():
    vllm = pytest.importorskip("vllm")
    from omnibatch.engine.vllm_omni_engine import sampling_params

    defaults = [vllm.SamplingParams(temperature=0.4, max_tokens=2048),
                vllm.SamplingParams(temperature=0.9, top_k=50, max_tokens=4096, seed=1, stop_token_ids=[5]),
                vllm.SamplingParams(temperature=0.0, max_tokens=65536)]
    thinker, talker, code2wav = sampling_params(defaults, [SpeechRequest("a", "one two three", "Ethan", 8.0)],
                                                seed=42, talker_eos=2150, count_tokens=lambda t: 3)
    assert isinstance(talker, vllm.SamplingParams) and talker is not defaults[1]
    assert (thinker.temperature, thinker.max_tokens) == (0.0, 19)
    assert (talker.max_tokens, talker.seed, talker.top_k) == (100, 42, 50)
    assert talker._all_stop_token_ids == {5, 2150}  # derived again by the constructor
    assert defaults[1].max_tokens == 4096 and code2wav.max_tokens == 65536
