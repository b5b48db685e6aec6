"""The one language table every engine and option uses: codes, English names, who speaks them.

Codes are Whisper's (ISO 639-1 where one exists, else 639-3: `haw`, `yue`; `jw`
for Javanese, as Whisper writes it). The 99 codes of the multilingual Whisper
models plus `yue` (Cantonese, which large-v3 models add) are accepted by every
engine; `QWEN3_OMNI_SPEECH` marks the languages the Qwen3-Omni model card names
for speech input. A language outside that list still reaches a Qwen3-Omni model
(its prompt names the language), with a warning that the model was not trained on it.

Anything that reads a language (`--language`, a manifest's `language`, the
summary language) goes through `normalize_language`, which takes a code, a
code with a region (`en-US`, `zh_CN`) or an English name, in any case, and
returns the code, or raises InputError listing the accepted codes.
"""

from __future__ import annotations

import re

from omnibatch.errors import InputError

# code -> English name. Whisper's multilingual models know all but "yue" (large-v3 adds it).
LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "ba": "Bashkir", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan",
    "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fo": "Faroese",
    "fr": "French", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "haw": "Hawaiian",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "jw": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada",
    "ko": "Korean", "la": "Latin", "lb": "Luxembourgish", "ln": "Lingala", "lo": "Lao",
    "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy", "mi": "Maori", "mk": "Macedonian",
    "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese",
    "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian",
    "oc": "Occitan", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit", "sd": "Sindhi", "si": "Sinhala",
    "sk": "Slovak", "sl": "Slovenian", "sn": "Shona", "so": "Somali", "sq": "Albanian",
    "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog",
    "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "yi": "Yiddish", "yo": "Yoruba", "yue": "Cantonese", "zh": "Chinese",
}

# Speech input languages named on the Qwen3-Omni model card (it says 19 and lists these 18).
QWEN3_OMNI_SPEECH: frozenset[str] = frozenset(
    {"en", "zh", "ko", "ja", "de", "ru", "it", "fr", "es", "pt", "ms", "nl", "id", "tr", "vi", "yue", "ar",
     "ur"}
)

# Other names and codes people use for the same languages.
ALIASES: dict[str, str] = {
    "burmese": "my", "myanmar": "my", "castilian": "es", "flemish": "nl", "haitian": "ht",
    "letzeburgesch": "lb", "moldavian": "ro", "moldovan": "ro", "mandarin": "zh", "pushto": "ps",
    "panjabi": "pa", "sinhalese": "si", "valencian": "ca", "filipino": "tl", "farsi": "fa",
    "nynorsk": "nn", "bokmal": "no", "norwegian bokmal": "no",
    # ISO codes Whisper writes differently, or older ones.
    "jv": "jw", "iw": "he", "in": "id", "fil": "tl", "nb": "no", "ji": "yi",
}

_TAGGED = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{2,8})+")
_BY_NAME: dict[str, str] = {name.casefold(): code for code, name in LANGUAGES.items()}


def find_language(value: str) -> str | None:
    """The code of `value` (a code, a code with a region, or an English name; any case), or None."""
    raw = " ".join(value.strip().split()).casefold()
    if not raw:
        return None
    if raw in LANGUAGES:
        return raw
    if raw in _BY_NAME:
        return _BY_NAME[raw]
    if raw in ALIASES:
        return ALIASES[raw]
    tagged = _TAGGED.fullmatch(raw)  # en-US, zh_CN, yue-HK, sr-Latn-RS
    if tagged:
        primary = tagged.group(1)
        if primary in LANGUAGES:
            return primary
        if primary in ALIASES:
            return ALIASES[primary]
    return None


def normalize_language(value: str, *, what: str = "language") -> str:
    """The code of `value`; InputError naming the accepted codes when it is not a known language."""
    code = find_language(value) if isinstance(value, str) else None
    if code is None:
        raise InputError(f"unknown {what} {value!r}: {accepted_text()}")
    return code


def accepted_text() -> str:
    """What the refusal of an unknown language says is accepted."""
    return (f"use one of these codes, or the language's English name: {', '.join(sorted(LANGUAGES))} "
            f"(Qwen3-Omni is trained on speech in {', '.join(sorted(QWEN3_OMNI_SPEECH))})")


def language_name(value: str) -> str:
    """The English name of a language given as anything `normalize_language` accepts."""
    return LANGUAGES[normalize_language(value)]


def qwen_speaks(code: str) -> bool:
    return code in QWEN3_OMNI_SPEECH
