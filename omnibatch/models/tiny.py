"""The embedded default model: a tiny Qwen3-Omni with random weights, built locally.

It is the real `Qwen3OmniMoeForConditionalGeneration` architecture (Thinker with
audio and vision towers, Talker, Code2Wav) at toy size, with the tokenizer and
processor of `tiny_processor`. Every code path (processor, engines, speech) runs on it
without downloads; the text it writes is meaningless, and `omnibatch.json` beside
the weights says so.

The build is deterministic (fixed seeds, fixed corpus): two builds give the same
files byte for byte. It is written to a temporary folder and renamed into place,
so concurrent processes never see a half-written model.

A second variant, `--model tiny-thinking`, is the same Thinker as a Thinking
checkpoint: text only (no Talker, `enable_audio_output` off, as upstream's
Qwen3-Omni-30B-A3B-Thinking), a Thinking chat template, and `"variant":
"thinking"` in its marker. Its random weights never write `</think>`, so every
answer it is asked for never arrives: the runs that use it show what a
reasoning cut at the token limit becomes (an error row saying so).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from omnibatch.models.tiny_processor import (
    ADDED_TOKENS,
    CHAT_TEMPLATE,
    CORPUS,
    FEATURE_EXTRACTOR,
    SPECIAL_TOKENS,
    THINKER_VOCAB,
    TINY_VISION_SIZE,
    VISION_PROCESSOR,
    build_processor,
    build_tokenizer,
    chat_template,
    single_token_id,
)

TINY_MODEL_NAME = "tiny-qwen3-omni-v1"
TINY_THINKING_NAME = "tiny-qwen3-omni-thinking-v1"
TINY_NAMES = {"instruct": TINY_MODEL_NAME, "thinking": TINY_THINKING_NAME}
TINY_MODEL_VERSION = 1
MARKER_FILE = "omnibatch.json"
SEED = 20250922
# Weight init draws from torch's global RNG: two threads building at once would interleave draws.
_BUILD_LOCK = threading.Lock()

CODEBOOK_SIZE = 64  # codec codes per quantizer (Talker code predictor, Code2Wav)
NUM_CODE_GROUPS = 4  # Talker code groups == Code2Wav quantizers
# Talker.generate suppresses the top 1024 ids of the talker vocab, so the codec
# control ids live there, above the codebook.
TALKER_VOCAB = CODEBOOK_SIZE + 1024
CODEC_IDS = {
    "codec_pad_id": CODEBOOK_SIZE,
    "codec_bos_id": CODEBOOK_SIZE + 1,
    "codec_eos_token_id": CODEBOOK_SIZE + 2,
    "codec_nothink_id": CODEBOOK_SIZE + 3,
    "codec_think_bos_id": CODEBOOK_SIZE + 4,
    "codec_think_eos_id": CODEBOOK_SIZE + 5,
}
SPEAKERS = {"ethan": CODEBOOK_SIZE + 6, "chelsie": CODEBOOK_SIZE + 7, "aiden": CODEBOOK_SIZE + 8}

# The Thinking variant's chat template, written for this project after the shape of Qwen's: earlier
# assistant turns keep only their answer (their reasoning is dropped, as Qwen's template does), and
# the generation prompt opens the assistant turn; the model writes <think> ... </think> itself.
def _answer_only(text: str) -> str:
    """Jinja that writes `text`, keeping only what follows `</think>` in an assistant turn."""
    return ("{%- if message['role'] == 'assistant' and '</think>' in " + text + " -%}"
            "{{- " + text + ".split('</think>')[-1].lstrip('\\n') -}}"
            "{%- else -%}"
            "{{- " + text + " -}}"
            "{%- endif -%}")


THINKING_CHAT_TEMPLATE = chat_template(_answer_only("message['content']"), _answer_only("part['text']"))
VARIANTS = ("instruct", "thinking")

def default_cache_root() -> Path:
    env = os.environ.get("OMNIBATCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "omnibatch"


def tiny_model_dir(cache_dir: Path | None = None, variant: str = "instruct") -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / TINY_NAMES[_check_variant(variant)]


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"the tiny model has no {variant!r} variant; it has: {', '.join(VARIANTS)}")
    return variant


def is_tiny_model_dir(path: Path, variant: str = "instruct") -> bool:
    """True when `path` holds a complete tiny model, as this version of the code builds it."""
    return _is_complete(Path(path), variant)


def read_marker(path: Path) -> dict[str, Any] | None:
    marker = Path(path) / MARKER_FILE
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_tiny_model(cache_dir: Path | None = None, variant: str = "instruct") -> Path:
    """Return the folder of the tiny model, building it first if it is not there.

    The model lives in `<cache_dir>/tiny-qwen3-omni-v1` (the Thinking variant in
    `tiny-qwen3-omni-thinking-v1`), where `cache_dir` defaults to
    `$OMNIBATCH_CACHE` or `~/.cache/omnibatch`.
    """
    target = tiny_model_dir(cache_dir, variant)
    if _is_complete(target, variant):
        return target
    with _BUILD_LOCK:
        if not _is_complete(target, variant):
            _build_into_place(target, variant)
    return target


def _build_into_place(target: Path, variant: str = "instruct") -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not _is_complete(target, variant):
        # Not one of ours (writers only ever rename complete copies into place): move it aside.
        _discard(target)
    tmp = target.parent / f".{TINY_NAMES[variant]}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build_tiny_model(tmp, variant)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process renamed its copy first; theirs is as good as ours.
            if not _is_complete(target, variant):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _is_complete(path: Path, variant: str = "instruct") -> bool:
    info = read_marker(path)
    return (
        info is not None
        and info.get("tiny") is True
        and info.get("version") == TINY_MODEL_VERSION
        and info.get("recipe") == recipe_fingerprint(variant)
    )


def recipe_fingerprint(variant: str = "instruct") -> str:
    """A hash of everything the build reads, so a cache built by older code is rebuilt.

    Pure Python (no torch, no transformers): checking a warm cache stays instant.
    """
    placeholder_ids = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    placeholder_roles = {"system": -1, "user": -2, "assistant": -3}
    recipe = {
        "version": TINY_MODEL_VERSION,
        "seed": SEED,
        "corpus": CORPUS,
        "template": CHAT_TEMPLATE,
        "special": SPECIAL_TOKENS,
        "added": ADDED_TOKENS,
        "features": FEATURE_EXTRACTOR,
        "vision": VISION_PROCESSOR,
        "config": tiny_config_dict(placeholder_ids, placeholder_roles),
    }
    if _check_variant(variant) == "thinking":  # the Instruct recipe stays as it was: its cache stays valid
        recipe.update(variant=variant, template=THINKING_CHAT_TEMPLATE,
                      config=tiny_config_dict(placeholder_ids, placeholder_roles, variant))
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _discard(path: Path) -> None:
    aside = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except OSError:
        return  # someone else moved or replaced it meanwhile
    shutil.rmtree(aside, ignore_errors=True)


def build_tiny_model(out_dir: Path, variant: str = "instruct") -> Path:
    """Write the tiny model, tokenizer and processor into `out_dir` (created)."""
    from omnibatch.models.hf_quiet import quiet_transformers

    _check_variant(variant)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    with quiet_transformers():
        _write_tiny_model(out_dir, variant)
    return out_dir


def _write_tiny_model(out_dir: Path, variant: str = "instruct") -> None:
    import torch

    tokenizer = build_tokenizer()
    if variant == "thinking":
        tokenizer.chat_template = THINKING_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    roles = {role: single_token_id(tokenizer, role) for role in ("system", "user", "assistant")}

    # Initialization must not depend on how many threads this process happens to use.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _build_model(ids, roles, variant)
    finally:
        torch.set_num_threads(threads)

    model.save_pretrained(out_dir, safe_serialization=True)
    processor = build_processor(tokenizer)
    if variant == "thinking":
        processor.chat_template = THINKING_CHAT_TEMPLATE
    processor.save_pretrained(out_dir)
    note = ("tiny Qwen3-Omni with random weights, built locally by omnibatch: "
            "its text and speech are meaningless; pass --model for real weights")
    if variant == "thinking":
        note = ("tiny Qwen3-Omni Thinking (text only) with random weights, built locally by omnibatch: it "
                "never finishes its reasoning, so every answer is an error; pass --model for real weights")
    _write_json(
        out_dir / MARKER_FILE,
        {
            "tiny": True,
            "name": TINY_NAMES[variant],
            "version": TINY_MODEL_VERSION,
            "recipe": recipe_fingerprint(variant),
            "variant": variant,
            "note": note,
            "eos_token": "<|im_end|>",
            "vision_size": TINY_VISION_SIZE,
        },
    )


def _build_model(ids: dict[str, int], roles: dict[str, int], variant: str = "instruct"):
    import torch
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    config = Qwen3OmniMoeConfig(**tiny_config_dict(ids, roles, variant))
    torch.manual_seed(SEED)
    model = Qwen3OmniMoeForConditionalGeneration(config)
    if getattr(model, "has_talker", False):
        _init_talker_experts(model, std=config.talker_config.initializer_range)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise RuntimeError(f"tiny model has non-finite weights after init: {bad[:5]}")
    return model.eval()


def _init_talker_experts(model, std: float) -> None:
    # transformers allocates the Talker's expert weights with torch.empty and its
    # _init_weights skips them: left alone they hold garbage (NaN/inf in most seeds).
    import torch

    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
            if type(module).__name__ == "Qwen3OmniMoeTalkerTextExperts":
                for param in (module.gate_up_proj, module.down_proj):
                    param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_config_dict(ids: dict[str, int], roles: dict[str, int], variant: str = "instruct") -> dict[str, Any]:
    """The tiny Qwen3OmniMoeConfig as plain data (dimensions measured to work).

    The Thinking variant is text only, as upstream's: `enable_audio_output` off (no Talker or
    Code2Wav weights are built or saved) and its name in `_name_or_path`."""
    # Attention heads are 32 wide: vLLM's CPU attention takes no narrower head (16 fails).
    # mrope_section sums to head_dim / 2, split like upstream's [24, 20, 20].
    rope = {
        "rope_type": "default",
        "rope_theta": 1_000_000.0,
        "mrope_section": [6, 5, 5],
        "interleaved": True,
    }
    thinker = {
        "audio_config": {
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": 64,
            "downsample_hidden_size": 16,
            "n_window": 50,
            "n_window_infer": 800,
            "conv_chunksize": 500,
            "max_source_positions": 1500,
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
            # Read by vLLM, not declared by transformers' config class.
            "image_size": 128,
            "apply_vit_abs_pos_embed": True,
        },
        "text_config": {
            "vocab_size": THINKER_VOCAB,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "moe_intermediate_size": 32,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "max_position_embeddings": 65536,
            "rope_parameters": dict(rope),
            "tie_word_embeddings": False,
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        "audio_token_id": ids["<|audio_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
        "audio_end_token_id": ids["<|audio_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "user_token_id": roles["user"],
        "position_id_per_seconds": 13,
    }
    talker = {
        "text_config": {
            "vocab_size": TALKER_VOCAB,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 32,  # read by the Talker, not declared
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "max_position_embeddings": 65536,
            "rope_parameters": dict(rope),
        },
        "code_predictor_config": {
            "vocab_size": CODEBOOK_SIZE,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "num_code_groups": NUM_CODE_GROUPS,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
        "num_code_groups": NUM_CODE_GROUPS,
        "thinker_hidden_size": 64,
        "accept_hidden_layer": 1,
        **CODEC_IDS,
        "audio_token_id": ids["<|audio_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
        "position_id_per_seconds": 13,
        "speaker_id": dict(SPEAKERS),
        "spatial_merge_size": 2,  # read by the Talker, not declared
    }
    code2wav = {
        "codebook_size": CODEBOOK_SIZE,
        "hidden_size": 32,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_quantizers": NUM_CODE_GROUPS,
        "decoder_dim": 32,
        # 8*5*4*3 * 2*2 = 1920 samples per code at 24 kHz, as in the real model.
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
        "sliding_window": 72,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
    }
    config = {
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "thinker_config": thinker,
        "talker_config": talker,
        "code2wav_config": code2wav,
        "enable_audio_output": True,
        "im_start_token_id": ids["<|im_start|>"],
        "im_end_token_id": ids["<|im_end|>"],
        "tts_pad_token_id": ids["<tts_pad>"],
        "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"],
        "system_token_id": roles["system"],
        "user_token_id": roles["user"],
        "assistant_token_id": roles["assistant"],
    }
    if variant == "thinking":
        config.update(enable_audio_output=False, _name_or_path=TINY_THINKING_NAME)
    return config


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
