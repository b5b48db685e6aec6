"""Task prompts and chat messages, shared by every Qwen3-Omni engine.

The transformers and vLLM engines both build their prompt text with
`render_prompt`, so the same request gives the same token ids in either.
Messages carry media as placeholders only (`{"type": "audio"}`); each engine
hands the arrays to its processor in the order the parts appear: per request,
video first, then audio.

A request with both video and audio means "the video with its own sound track":
the message names only the video, and engines pass `use_audio_in_video=True`
so the processor interleaves the two streams by time (Qwen3-Omni's convention).
"""

from __future__ import annotations

from typing import Any, Literal

from omnibatch.errors import InputError
from omnibatch.languages import LANGUAGES
from omnibatch.languages import language_name as _table_name
from omnibatch.models.resolve import Variant
from omnibatch.records import Request

# The one language table (omnibatch.languages): code -> English name.
LANGUAGE_NAMES = LANGUAGES

ASR_PROMPT = "Transcribe the audio into text."
ASR_PROMPT_WITH_LANGUAGE = "Transcribe the {language} audio into text."
# The Qwen3-Omni authors prompt Chinese ASR in Chinese.
ASR_PROMPT_CHINESE = "请将这段中文语音转换为纯文本。"

CAPTION_PROMPT_AUDIO = (
    "Describe this audio in detail: who is speaking and what they say, their tone, "
    "the other sounds and any music, and the setting they suggest."
)
CAPTION_PROMPT_VIDEO = (
    "Describe this video in detail: what is shown, what is heard (speech, sounds, music), "
    "and how the picture and the sound relate."
)
# Summaries are read aloud by the Talker: the prompts ask for plain spoken sentences, and
# `omnibatch.summaries.speakable_text` removes what markdown slips through.
SPEAKABLE_RULES = (
    "Write plain sentences meant to be read aloud: no markdown, no headings, no lists or bullet "
    "points, no emoji or symbols, and no preamble such as 'Here is a summary'."
)
SUMMARY_PROMPT = (
    "Summarize the following {what} in at most {max_words} words, as if telling someone what the "
    "recording is about. {rules} {language}\n\n{label}:\n{text}"
)
PARTIAL_SUMMARY_PROMPT = (
    "This is part {part} of {parts} of the {what} of one recording. Summarize this part in at most "
    "{max_words} words, keeping names, facts and the order of events. {rules} {language}"
    "\n\n{label}, part {part} of {parts}:\n{text}"
)
COMBINE_PROMPT = (
    "Here are summaries of consecutive parts of one recording, in order. Combine them into one "
    "summary of {scope} in at most {max_words} words{purpose}. {rules} {language}\n\nSummaries:\n{text}"
)
# The vLLM-Omni speech stage asks the Thinker to repeat the summary; its reply is what the Talker speaks.
READ_ALOUD_PROMPT = (
    "Read the following text aloud exactly as written, word for word, and say nothing else.\n\n{text}"
)
# The transformers speech stage forces the reply itself; this user turn only frames it.
SPEAK_SUMMARY_PROMPT = "Please read the summary of the recording aloud."
# source -> (what the prompt calls it, its label, the noun "the same language as the ...")
SUMMARY_SOURCES = {
    "transcript": ("transcript", "Transcript", "transcript"),
    "captions": ("descriptions of consecutive parts", "Descriptions", "descriptions"),
}


def language_name(language: str) -> str:
    """English name for a language code ("en", "en-US", "zh_CN") or a name ("english");
    InputError naming the accepted codes for anything else (omnibatch.languages)."""
    return _table_name(language)


def asr_prompt(language: str | None) -> str:
    if not language:
        return ASR_PROMPT
    name = language_name(language)
    if name == "Chinese":
        return ASR_PROMPT_CHINESE
    return ASR_PROMPT_WITH_LANGUAGE.format(language=name)


def caption_prompt(kind: Literal["audio", "video"], variant: Variant = "instruct") -> str | None:
    """The captioning prompt; None for the Captioner, which takes audio and no text."""
    if variant == "captioner":
        return None
    return CAPTION_PROMPT_VIDEO if kind == "video" else CAPTION_PROMPT_AUDIO


def summary_prompt(transcript: str, *, max_words: int = 120, language: str | None = None,
                   source: Literal["transcript", "captions"] = "transcript") -> str:
    """The final summary of a whole file's `transcript` (or clip descriptions), in speakable words."""
    what, label, noun = SUMMARY_SOURCES[source]
    return SUMMARY_PROMPT.format(what=what, max_words=max_words, rules=SPEAKABLE_RULES,
                                 language=summary_language_clause(language, noun), label=label,
                                 text=transcript.strip())


def partial_summary_prompt(text: str, part: int, parts: int, *, max_words: int,
                           language: str | None = None,
                           source: Literal["transcript", "captions"] = "transcript") -> str:
    """The map step: a summary of piece `part` (1-based) of `parts` of a long transcript."""
    what, label, noun = SUMMARY_SOURCES[source]
    return PARTIAL_SUMMARY_PROMPT.format(part=part, parts=parts, what=what, max_words=max_words,
                                         rules=SPEAKABLE_RULES, label=label, text=text.strip(),
                                         language=summary_language_clause(language, noun))


def combine_summaries_prompt(summaries: str, *, max_words: int, final: bool,
                             language: str | None = None) -> str:
    """The reduce step: one summary from summaries of consecutive parts; `final` for the whole recording."""
    scope = "the whole recording" if final else "these parts together"
    if final:
        purpose = ", as if telling someone what the recording is about"
    else:
        purpose = ", keeping names, facts and the order of events"
    return COMBINE_PROMPT.format(scope=scope, max_words=max_words, purpose=purpose, rules=SPEAKABLE_RULES,
                                 language=summary_language_clause(language, "summaries"),
                                 text=summaries.strip())


def summary_language_clause(language: str | None, source_noun: str) -> str:
    if not language:
        return f"Write it in the same language as the {source_noun}."
    return f"Write it in {language_name(language)}."


def read_aloud_prompt(text: str) -> str:
    return READ_ALOUD_PROMPT.format(text=text.strip())


def build_conversation(request: Request, variant: Variant = "instruct") -> list[dict[str, Any]]:
    """Chat messages for one request: an optional system turn, then one user turn."""
    if variant == "captioner":
        check_captioner_request(request)
    parts: list[dict[str, Any]] = []
    if request.video is not None:
        parts.append({"type": "video"})  # with audio too, the audio is this video's track
    elif request.audio is not None:
        parts.append({"type": "audio"})
    if request.prompt:
        parts.append({"type": "text", "text": request.prompt})
    if not parts:
        raise InputError(f"request {request.id} has no prompt, audio or video: nothing to ask the model")
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    messages.append({"role": "user", "content": parts})
    return messages


def render_prompt(processor: Any, request: Request, variant: Variant = "instruct") -> str:
    """The prompt text (media as single placeholders) for `request`, via the model's chat template."""
    text = processor.apply_chat_template(
        build_conversation(request, variant), add_generation_prompt=True, tokenize=False
    )
    if isinstance(text, list):  # some processor versions return one string per conversation
        (text,) = text
    return text


def check_captioner_request(request: Request) -> None:
    # Upstream: the Captioner is single-turn, audio in, text out, with no text prompt.
    if request.audio is None or request.video is not None:
        raise InputError(f"request {request.id}: the Captioner model takes audio only (no video)")
    if request.prompt or request.system:
        raise InputError(
            f"request {request.id}: the Captioner model takes no text prompt; build its requests with "
            "prompt=None (caption_prompt(kind, 'captioner') returns None)"
        )


def uses_audio_in_video(request: Request) -> bool:
    return request.video is not None and request.audio is not None


def strip_thinking(text: str) -> str:
    """The answer part of a Thinking model's output (after its reasoning block)."""
    marker = "</think>"
    if marker in text:
        return text.split(marker, 1)[1].strip()
    return text.strip()
