"""Text and media front end of the tiny model: tokenizer, chat template, processor.

The tokenizer is a byte-level BPE trained here on a small built-in corpus and
wrapped as `Qwen2Tokenizer`, with the special tokens and attributes that
`Qwen3OmniMoeProcessor` reads. The chat template is written for this project
after the shape of Qwen's ChatML.
"""

from __future__ import annotations

import json

THINKER_VOCAB = 448  # text vocabulary of the Thinker: BPE + special + added tokens

# Special tokens, in id order, appended after the BPE vocabulary (as in Qwen's vocab).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
)
# Added but not special: decoded like text, as in Qwen3's vocab.
ADDED_TOKENS = ("<think>", "</think>")

# Frames are resized to a multiple of patch 16 x merge 2 = 32 pixels; keep them small.
TINY_VISION_SIZE = {"shortest_edge": 32 * 32 * 4, "longest_edge": 64 * 64 * 4}
# 128-bin log-mel at 16 kHz, 25 ms window, 10 ms hop, up to 300 s per call: upstream's front end.
FEATURE_EXTRACTOR = {
    "feature_size": 128,
    "sampling_rate": 16000,
    "hop_length": 160,
    "chunk_length": 300,
    "n_fft": 400,
    "padding_value": 0.0,
    "return_attention_mask": True,
}
VISION_PROCESSOR = {
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "size": TINY_VISION_SIZE,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}

# Written by hand for this project; the shape follows Qwen's ChatML: one
# `<|im_start|>{role}\n...<|im_end|>\n` block per turn, media as placeholders that
# the processor expands, and an open assistant turn for generation.
def chat_template(content: str, text_part: str) -> str:
    """The chat template, given the Jinja expressions that write a message's string content and the
    text of one of its parts (a variant changes those two only)."""
    return (
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}"
        + content +
        "{%- else -%}"
        "{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'audio' or 'audio' in part or 'audio_url' in part -%}"
        "{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
        "{%- elif part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
        "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
        "{%- elif part['type'] == 'video' or 'video' in part or 'video_url' in part -%}"
        "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
        "{%- elif part['type'] == 'text' -%}"
        + text_part +
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}"
        "{{- '<|im_start|>assistant\\n' -}}"
        "{%- endif -%}"
    )


CHAT_TEMPLATE = chat_template("{{- message['content'] -}}", "{{- part['text'] -}}")

# A small corpus for the BPE merges: chat roles and task prompts (so "system",
# "user", "assistant" become single tokens, which the Talker relies on), plus
# ordinary English about the media this project handles.
CORPUS = (
    "system\nuser\nassistant\nsystem\nuser\nassistant\nsystem\nuser\nassistant\n",
    "You are a helpful assistant. The user speaks and the assistant answers.",
    "Transcribe the audio into text. Transcribe the English audio into text.",
    "Describe the audio and the video in detail. Summarize the recording.",
    "Caption this clip: who speaks, what sounds are heard, what is seen.",
    "The speaker talks about the weather, the news, and the music in the room.",
    "A man and a woman are talking in a quiet office while a phone rings.",
    "Rain falls on the roof; a dog barks in the distance; a car passes by.",
    "The meeting starts at nine. We discuss the plan, the budget and the team.",
    "She reads a story to the children, then they sing a song together.",
    "The lecture covers the history of radio, sound recording and television.",
    "Please write a short summary of what was said, in plain simple words.",
    "one two three four five six seven eight nine ten eleven twelve",
    "go forward ten meters, turn left, stop, go back, and wait for the signal",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "At noon the station plays the news, then a quiz show with callers from the city.",
)


def build_tokenizer():
    """Train a byte-level BPE on the built-in corpus and wrap it as Qwen2Tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe_size = THINKER_VOCAB - len(SPECIAL_TOKENS) - len(ADDED_TOKENS)
    trainer_tok = Tokenizer(models.BPE())
    # The same pre-tokenization Qwen2Tokenizer applies, so merges line up with it.
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    trainer_tok.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    model_data = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = dict(model_data["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_data["merges"]]
    if len(vocab) != bpe_size:
        raise RuntimeError(f"BPE training gave {len(vocab)} tokens, expected {bpe_size}")
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        vocab[token] = len(vocab)

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        # Named multimodal tokens: the processor reads these attributes.
        audio_token="<|audio_pad|>",
        audio_bos_token="<|audio_start|>",
        audio_eos_token="<|audio_end|>",
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        vision_bos_token="<|vision_start|>",
        vision_eos_token="<|vision_end|>",
        extra_special_tokens=[
            t for t in SPECIAL_TOKENS if t not in {"<|endoftext|>", "<|im_end|>"}
        ],
        model_max_length=131072,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    for token, expected in ((t, vocab[t]) for t in SPECIAL_TOKENS + ADDED_TOKENS):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != expected:
            raise RuntimeError(f"tiny tokenizer: {token} has id {got}, expected {expected}")
    return tokenizer


def build_processor(tokenizer):
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3OmniMoeProcessor,
        WhisperFeatureExtractor,
    )

    feature_extractor = WhisperFeatureExtractor(**FEATURE_EXTRACTOR)
    image_processor = Qwen2VLImageProcessor(**VISION_PROCESSOR)
    # Bound a video's total pixels as upstream's qwen-vl-utils does (transformers' coming default).
    video_processor = Qwen2VLVideoProcessor(**VISION_PROCESSOR, cap_pixels_per_frame=True)
    return Qwen3OmniMoeProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def single_token_id(tokenizer, word: str) -> int:
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise RuntimeError(f"tiny tokenizer splits {word!r} into {len(ids)} tokens; it must be one")
    return ids[0]
