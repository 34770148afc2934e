"""Checks shared by the tests of messages: a Korean rendering reads as Korean, and a page shows no English sentence."""

from __future__ import annotations

import re
from typing import Any

from core.errors import LayerLabError, Message, catalog, render

HANGUL = re.compile("[가-힣]")
# A word of the English template that the Korean one does not also keep (a JSON key, a command, a name).
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]{3,}")
# Four Latin words in a row with only spaces or light punctuation between them: an English sentence.
ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,;:]+[A-Za-z]{2,}){3,}\b")


def _parameter_texts(params: dict[str, Any]) -> list[str]:
    """Every plain text value in `params`, nested messages' included: what the sentence quotes, not its words."""
    texts: list[str] = []
    for value in params.values():
        if isinstance(value, dict) and "code" in value:
            texts += _parameter_texts(value.get("params") or {})
        elif isinstance(value, (list, tuple)):
            texts += [str(item) for item in value]
        else:
            texts.append(str(value))
    return texts


def english_words_left(code: str, params: dict[str, Any], korean: str) -> list[str]:
    """Words of the English template found in `korean` that neither the Korean template nor a parameter value holds."""
    english_template = catalog("en")["message." + code]
    korean_template = catalog("ko")["message." + code]
    quoted = " ".join(_parameter_texts(params))
    left = []
    for word in set(LATIN_WORD.findall(re.sub(r"\{[^}]*\}", " ", english_template))):
        if re.search(rf"\b{re.escape(word)}\b", korean) and word not in korean_template and word not in quoted:
            left.append(word)
    for value in params.values():  # A nested message rendered in English would leak its words too.
        if isinstance(value, dict) and "code" in value:
            left += english_words_left(value["code"], value.get("params") or {}, korean)
    return left


def assert_reads_korean(message: LayerLabError | Message) -> str:
    """The message's Korean rendering, after checking it has Hangul and no English sentence or template word."""
    code, params = message.code, message.params
    assert "message." + code in catalog("ko"), f"no Korean text for {code}"
    korean = render(code, params, "ko")
    assert HANGUL.search(korean), f"{code}: {korean!r} has no Hangul"
    assert not english_words_left(code, params, korean), f"{code}: English words {english_words_left(code, params, korean)} in {korean!r}"
    for text in _parameter_texts(params):
        # A parameter is a value the sentence quotes (a number, a name, a path, a value as JSON or
        # Python writes it), never a sentence of its own.
        quoted_value = text[:1] in "'\"[{(<-0123456789" or "/" in text or "\n" in text
        assert quoted_value or not ENGLISH_RUN.search(text), f"{code}: the parameter {text!r} reads as a sentence"
    return korean


# English a Korean page keeps on purpose: the title of the book a preset cites as its source.
KEPT_ENGLISH = ("Neural Networks and Deep Learning",)


def english_sentences(text: str) -> list[str]:
    """Runs of four or more English words in `text`, which a Korean page must not show (titles it cites aside)."""
    for kept in KEPT_ENGLISH:
        text = text.replace(kept, "")
    return ENGLISH_RUN.findall(text)
