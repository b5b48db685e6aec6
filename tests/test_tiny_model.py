"""The embedded tiny Qwen3-Omni: built, saved, reloaded, deterministic, and usable by the processor."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omnibatch.errors import InputError
from omnibatch.models.resolve import detect_variant, looks_like_hub_id, resolve_model
from omnibatch.models.tiny import (
    MARKER_FILE,
    SPECIAL_TOKENS,
    TINY_MODEL_NAME,
    build_tiny_model,
    ensure_tiny_model,
    is_tiny_model_dir,
    recipe_fingerprint,
)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_builds_give_identical_files(tiny_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again")
    first, second = file_hashes(tiny_dir), file_hashes(again)
    assert first == second
    expected = {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", MARKER_FILE}
    assert expected <= set(first)
    total = sum(p.stat().st_size for p in tiny_dir.iterdir())
    assert total < 3_000_000, f"tiny model is {total} bytes"


def test_marker_says_random_weights(tiny_dir):
    marker = json.loads((tiny_dir / MARKER_FILE).read_text())
    assert marker["tiny"] is True and marker["name"] == TINY_MODEL_NAME
    assert "meaningless" in marker["note"]
    assert is_tiny_model_dir(tiny_dir)


def test_config_keeps_keys_transformers_does_not_declare(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    thinker, talker = config["thinker_config"], config["talker_config"]
    assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    assert config["model_type"] == "qwen3_omni_moe"
    assert thinker["vision_start_token_id"] is not None
    assert thinker["audio_end_token_id"] is not None
    assert thinker["vision_config"]["image_size"] and thinker["vision_config"]["apply_vit_abs_pos_embed"]
    assert talker["spatial_merge_size"] == 2
    assert talker["text_config"]["shared_expert_intermediate_size"] > 0
    text = thinker["text_config"]
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == text["head_dim"]


def test_thinker_loads_alone_and_full_model_has_finite_weights(tiny_dir):
    import torch
    from transformers import Qwen3OmniMoeForConditionalGeneration, Qwen3OmniMoeThinkerForConditionalGeneration

    from omnibatch.models.hf_quiet import quiet_transformers

    with quiet_transformers():
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(tiny_dir)
        full = Qwen3OmniMoeForConditionalGeneration.from_pretrained(tiny_dir)
    assert not any(name.startswith(("talker", "code2wav")) for name, _ in thinker.named_parameters())
    assert full.has_talker and hasattr(full, "code2wav")
    for name, param in full.named_parameters():
        assert torch.isfinite(param).all(), name
    # The Talker's experts start as torch.empty upstream; ours must hold real small values.
    experts = [p for n, p in full.named_parameters() if n.startswith("talker.") and ".experts." in n]
    assert experts and all(0.005 < float(p.detach().std()) < 0.05 for p in experts)
    n_params = sum(p.numel() for p in full.parameters())
    assert n_params < 1_000_000


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty`")
def test_full_model_speaks(tiny_dir):
    """Thinker -> Talker -> Code2Wav runs on the tiny model (24 kHz, 1920 samples per code)."""
    import torch
    from transformers import AutoProcessor, Qwen3OmniMoeForConditionalGeneration

    from omnibatch.models.hf_quiet import quiet_transformers

    torch.set_num_threads(1)
    with quiet_transformers():
        processor = AutoProcessor.from_pretrained(tiny_dir)
        model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(tiny_dir).eval()
    messages = [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], return_tensors="pt")
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with quiet_transformers(), torch.inference_mode():
        _, wav = model.generate(
            **inputs, return_audio=True, speaker="Ethan", thinker_max_new_tokens=6,
            thinker_eos_token_id=im_end, talker_max_new_tokens=6, talker_do_sample=False,
        )
    samples = wav.reshape(-1)
    assert torch.isfinite(samples).all()
    assert (samples.numel() + 555) % 1920 == 0 and samples.numel() > 0


def test_tokenizer_has_what_the_processor_reads(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    for token in SPECIAL_TOKENS:
        assert tok.encode(token, add_special_tokens=False) == [tok.convert_tokens_to_ids(token)]
    assert (tok.audio_token, tok.image_token) == ("<|audio_pad|>", "<|image_pad|>")
    assert tok.video_token == "<|video_pad|>"
    assert (tok.audio_bos_token, tok.audio_eos_token) == ("<|audio_start|>", "<|audio_end|>")
    assert (tok.vision_bos_token, tok.vision_eos_token) == ("<|vision_start|>", "<|vision_end|>")
    for role in ("system", "user", "assistant"):  # the Talker finds turns by these single ids
        assert len(tok.encode(role, add_special_tokens=False)) == 1
    text = "Transcribe the English audio into text: 42 apples, naïve café!"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert max(tok.get_vocab().values()) < 448


def test_processor_expands_audio_at_13_tokens_per_second(tiny_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    assert type(processor).__name__ == "Qwen3OmniMoeProcessor"
    messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Transcribe."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>Transcribe.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    for seconds in (2, 10):
        audio = np.zeros(seconds * 16000, dtype=np.float32)
        inputs = processor(text=[text], audio=[audio], return_tensors="np")
        assert inputs["input_features"].shape[1] == 128  # mel bins
        assert int((inputs["input_ids"] == audio_id).sum()) == 13 * seconds


def test_ensure_builds_once_into_cache(tmp_path):
    folder = ensure_tiny_model(tmp_path)
    assert folder == tmp_path / TINY_MODEL_NAME and is_tiny_model_dir(folder)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_MODEL_NAME]  # no temp folders left


def test_ensure_replaces_a_half_written_folder(tmp_path, monkeypatch):
    broken = tmp_path / TINY_MODEL_NAME
    broken.mkdir()
    (broken / "config.json").write_text("{")
    monkeypatch.setenv("OMNIBATCH_CACHE", str(tmp_path))
    folder = ensure_tiny_model()
    assert folder == broken and is_tiny_model_dir(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_MODEL_NAME]


def test_ensure_rebuilds_a_cache_from_an_older_recipe(tmp_path, tiny_dir):
    stale = tmp_path / TINY_MODEL_NAME
    shutil.copytree(tiny_dir, stale)
    marker = json.loads((stale / MARKER_FILE).read_text())
    assert marker["recipe"] == recipe_fingerprint()
    (stale / MARKER_FILE).write_text(json.dumps({**marker, "recipe": "built-by-older-code"}))
    (stale / "model.safetensors").write_bytes(b"old weights")
    folder = ensure_tiny_model(tmp_path)
    assert file_hashes(folder) == file_hashes(tiny_dir)


@pytest.mark.slow
def test_racing_processes_agree(tmp_path, tiny_dir):
    code = "import sys; from pathlib import Path; from omnibatch.models.tiny import ensure_tiny_model; " \
           "print(ensure_tiny_model(Path(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == str(tmp_path / TINY_MODEL_NAME)
    assert file_hashes(tmp_path / TINY_MODEL_NAME) == file_hashes(tiny_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_MODEL_NAME]


# -- resolving --model --------------------------------------------------------------------


def test_resolve_default_is_the_tiny_model(tmp_path):
    for spec in (None, "tiny", ""):
        model = resolve_model(spec, cache_dir=tmp_path)
        assert model.is_tiny and model.is_local and model.has_talker
        assert model.variant == "instruct" and model.label == TINY_MODEL_NAME
        assert Path(model.source) == tmp_path / TINY_MODEL_NAME
        assert "meaningless" in model.note


def test_resolve_local_tiny_folder(tiny_dir):
    model = resolve_model(str(tiny_dir))
    assert model.is_tiny and model.source == str(tiny_dir.resolve())


def test_resolve_missing_path_says_what_to_do(tmp_path):
    for missing in (str(tmp_path / "nope"), "./models/qwen", "qwen-omni", "~/x/y/z"):
        with pytest.raises(InputError, match="does not exist"):
            resolve_model(missing)


@pytest.fixture()
def fake_hub(monkeypatch):
    """A hub on loopback that answers HEAD for config.json: 404 under missing/, 401 under gated/."""
    import http.server
    import threading

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the http.server name
            code = 404 if self.path.startswith("/missing/") else 401 if self.path.startswith("/gated/") else 200
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from omnibatch.models.resolve import check_hub_reachable

    check_hub_reachable.cache_clear()
    yield server
    server.shutdown()
    check_hub_reachable.cache_clear()


def test_resolve_hub_id_passes_through(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing known locally
    instruct = resolve_model("Qwen/Qwen3-Omni-30B-A3B-Instruct")
    assert instruct.source == instruct.label == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert not instruct.is_local and not instruct.is_tiny
    assert instruct.variant == "instruct" and instruct.has_talker
    captioner = resolve_model("Qwen/Qwen3-Omni-30B-A3B-Captioner")
    assert captioner.variant == "captioner" and not captioner.has_talker
    assert resolve_model("Qwen/Qwen3-Omni-30B-A3B-Thinking").variant == "thinking"


def test_resolve_hub_id_offline_asks_for_a_local_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="local folder"):
        resolve_model("Qwen/Qwen3-Omni-30B-A3B-Instruct")


def test_resolve_local_captioner_by_name_and_config(tmp_path):
    folder = tmp_path / "Qwen3-Omni-30B-A3B-Captioner"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["Qwen3OmniMoeForConditionalGeneration"], "model_type": "qwen3_omni_moe",
         "enable_audio_output": False, "thinker_config": {}}))
    model = resolve_model(str(folder))
    assert model.variant == "captioner" and not model.has_talker and not model.is_tiny
    with pytest.raises(InputError, match="is a file"):
        resolve_model(str(folder / "config.json"))


def test_variant_and_hub_id_helpers():
    assert detect_variant("my-model", {"_name_or_path": "Qwen/Qwen3-Omni-30B-A3B-Captioner"}) == "captioner"
    assert detect_variant("Qwen3-Omni-30B-A3B-Instruct") == "instruct"
    assert looks_like_hub_id("Qwen/Qwen3-Omni-30B-A3B-Instruct")
    for not_an_id in ("/abs/path", "a/b/c", "../x", "name", "./a/b"):
        assert not looks_like_hub_id(not_an_id)


def test_hub_ids_the_hub_refuses_say_why(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="has no such model"):
        resolve_model("missing/Qwen3-Omni-30B-A3B-Instruct")
    with pytest.raises(InputError, match="gated or private.*hf auth login"):
        resolve_model("gated/Qwen3-Omni-30B-A3B-Instruct")


def test_unreachable_hub_fails_at_once_with_the_download_command(monkeypatch, tmp_path):
    """With HF_HUB_OFFLINE unset and no hub answering, the CLI exits 2 within seconds, naming the command
    that downloads the model (huggingface_hub alone retries for ~25 s, an engine's loader for minutes)."""
    from tests.mediagen import make_speech

    speech = make_speech(tmp_path / "a.wav", "one two three")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hub"))
    omnibatch = str(Path(sys.executable).with_name("omnibatch"))
    started = time.monotonic()
    done = subprocess.run([omnibatch, "transcribe", str(speech), "--out", str(tmp_path / "out"), "--model",
                           "Qwen/Qwen3-Omni-30B-A3B-Instruct", "--engine", "transformers"],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert took < 10, f"took {took:.1f} s"
    assert "cannot be reached" in done.stderr and "hf download Qwen/Qwen3-Omni-30B-A3B-Instruct --local-dir" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
