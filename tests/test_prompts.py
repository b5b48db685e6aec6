"""Task prompts and chat messages: pure data, shared by the transformers and vLLM engines."""

from __future__ import annotations

import numpy as np
import pytest

from omnibatch.errors import InputError
from omnibatch.prompts import (
    ASR_PROMPT,
    ASR_PROMPT_CHINESE,
    asr_prompt,
    build_conversation,
    caption_prompt,
    language_name,
    strip_thinking,
    summary_prompt,
    uses_audio_in_video,
)
from omnibatch.records import Request

AUDIO = np.zeros(16000, dtype=np.float32)
FRAMES = np.zeros((2, 32, 32, 3), dtype=np.uint8)


def test_asr_prompt_names_the_language():
    assert asr_prompt(None) == ASR_PROMPT == "Transcribe the audio into text."
    assert asr_prompt("en") == "Transcribe the English audio into text."
    assert asr_prompt("en-US") == asr_prompt("EN") == asr_prompt("english") == asr_prompt("en")
    assert asr_prompt("de") == "Transcribe the German audio into text."
    assert asr_prompt("zh") == asr_prompt("zh-CN") == ASR_PROMPT_CHINESE
    assert ASR_PROMPT_CHINESE == "请将这段中文语音转换为纯文本。"
    # One language table for every engine (omnibatch.languages): a name it lacks is refused too.
    for unknown in ("xx", "Klingon"):
        with pytest.raises(InputError, match="unknown language"):
            language_name(unknown)


def test_caption_prompts():
    assert "audio" in caption_prompt("audio") and "video" in caption_prompt("video")
    assert caption_prompt("audio", "captioner") is None
    assert "Transcript:\nhello there" in summary_prompt("  hello there \n")


def test_conversation_parts_in_order():
    messages = build_conversation(Request("r", "Transcribe.", audio=AUDIO, system="Be brief."))
    assert messages == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Transcribe."}]},
    ]
    text_only = build_conversation(Request("t", "Hello"))
    assert text_only == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


def test_video_with_audio_names_only_the_video():
    request = Request("v", "Describe.", audio=AUDIO, video=FRAMES, video_fps=2.0)
    assert uses_audio_in_video(request)
    parts = build_conversation(request)[0]["content"]
    assert parts == [{"type": "video"}, {"type": "text", "text": "Describe."}]
    assert not uses_audio_in_video(Request("v", "Describe.", video=FRAMES, video_fps=2.0))


def test_captioner_takes_audio_and_no_text():
    assert build_conversation(Request("c", None, audio=AUDIO), "captioner") == [
        {"role": "user", "content": [{"type": "audio"}]}
    ]
    with pytest.raises(InputError, match="no text prompt"):
        build_conversation(Request("c", "Describe.", audio=AUDIO), "captioner")
    with pytest.raises(InputError, match="audio only"):
        build_conversation(Request("c", None, audio=AUDIO, video=FRAMES, video_fps=1.0), "captioner")


def test_empty_request_is_refused():
    with pytest.raises(InputError, match="nothing to ask"):
        build_conversation(Request("e", None))


def test_strip_thinking():
    assert strip_thinking("<think>\nhmm\n</think>\n\nThe answer.") == "The answer."
    assert strip_thinking(" plain ") == "plain"
