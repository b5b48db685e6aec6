"""One language table for every engine and option, and refusals before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnibatch.config import RunConfig
from omnibatch.errors import InputError
from omnibatch.languages import LANGUAGES, QWEN3_OMNI_SPEECH, find_language, language_name, normalize_language
from omnibatch.manifests import read_inputs
from omnibatch.pipeline.transcribe import TranscribeTask
from omnibatch.prompts import asr_prompt

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))


def test_the_table_holds_whisper_s_codes_and_names_qwen_s():
    assert len(LANGUAGES) == 100  # Whisper's 99 and Cantonese (large-v3)
    assert len(set(LANGUAGES.values())) == 100
    assert QWEN3_OMNI_SPEECH <= set(LANGUAGES) and len(QWEN3_OMNI_SPEECH) == 18


def test_whisper_s_own_list_is_the_table():
    tokenizer = pytest.importorskip("faster_whisper.tokenizer")
    assert set(tokenizer._LANGUAGE_CODES) == set(LANGUAGES)  # the codes faster-whisper accepts


@pytest.mark.parametrize(
    "given, code",
    [
        ("en", "en"),
        ("EN", "en"),
        ("English", "en"),
        ("  english ", "en"),
        ("en-US", "en"),
        ("en_GB", "en"),
        ("zh-CN", "zh"),
        ("Mandarin", "zh"),
        ("yue", "yue"),
        ("Cantonese", "yue"),
        ("haw", "haw"),
        ("Haitian Creole", "ht"),
        ("haitian", "ht"),
        ("jv", "jw"),
        ("fil", "tl"),
        ("Filipino", "tl"),
        ("norwegian nynorsk", "nn"),
        ("Burmese", "my"),
        ("myanmar", "my"),
        ("iw", "he"),
    ],
)
def test_codes_names_and_regions_are_accepted_in_any_case(given, code):
    assert find_language(given) == code
    assert normalize_language(given) == code


@pytest.mark.parametrize("given", ["klingon", "xx", "", "en-", "e n", "english!", "zz-US"])
def test_unknown_languages_are_refused_with_the_accepted_codes(given):
    assert find_language(given) is None
    with pytest.raises(InputError) as err:
        normalize_language(given)
    message = str(err.value)
    assert "klingon" in message or repr(given) in message
    assert all(code in message for code in ("af", "en", "yue", "zh"))


def test_prompts_name_languages_from_the_table():
    assert language_name("de") == "German"
    assert asr_prompt("nl") == "Transcribe the Dutch audio into text."
    assert asr_prompt("Japanese") == asr_prompt("ja") == "Transcribe the Japanese audio into text."
    with pytest.raises(InputError):
        asr_prompt("Klingon")


def test_the_transcribe_task_refuses_a_bad_language_and_takes_names():
    with pytest.raises(InputError, match="unknown --language 'klingon'"):
        TranscribeTask(RunConfig(task="transcribe", inputs=[], out="/o", language="klingon"))
    assert (
        TranscribeTask(RunConfig(task="transcribe", inputs=[], out="/o", language="German")).language == "de"
    )
    assert TranscribeTask(RunConfig(task="transcribe", inputs=[], out="/o")).language is None


def test_a_manifest_language_is_read_as_its_code(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": "a.wav", "language": "English"})
        + "\n"
        + json.dumps({"id": "b", "path": "a.wav", "language": "pt-BR"})
        + "\n"
    )
    items = read_inputs([str(manifest)]).items
    assert [i.language for i in items] == ["en", "pt"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OMNIBATCH, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def test_cli_refuses_a_bad_language_before_anything_runs(tmp_path):
    out = tmp_path / "d"
    result = run_cli("transcribe", str(tmp_path / "x.wav"), "--out", str(out), "--language", "klingon")
    assert result.returncode == 2, result.stderr
    assert "klingon" in result.stderr
    assert all(code in result.stderr for code in ("af", "de", "en", "yue", "zh"))
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing ran: not even the output folder


def test_cli_refuses_a_bad_manifest_language_with_its_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": "a.wav", "language": "en"})
        + "\n"
        + json.dumps({"id": "b", "path": "a.wav", "language": "klingon"})
        + "\n"
    )
    out = tmp_path / "d"
    result = run_cli("transcribe", str(manifest), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "m.jsonl:2" in result.stderr and "klingon" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "transcribe").exists()
