"""Translations: every user-facing sentence lives in `assets/i18n/<language>.json`.

Owns loading the catalogs and filling their `{placeholders}`. Pages call `translate`; no
page carries inline text. A test keeps the English and Korean catalogs' keys and
placeholders identical.
"""

from __future__ import annotations

import json
import string
from functools import lru_cache
from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parents[2] / "assets" / "i18n"
LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT_LANGUAGE = "en"


@lru_cache(maxsize=None)
def catalog(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    return json.loads((CATALOG_DIR / f"{language}.json").read_text(encoding="utf-8"))


def translate(language: str, key: str, **values: object) -> str:
    """The text for `key` in `language` (English if missing there), with `{name}` filled from `values`."""
    text = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE).get(key)
    if text is None:
        return key  # A missing key shows itself, so a test or a reviewer notices it.
    return text.format(**values) if values else text


def placeholders(text: str) -> set[str]:
    """The `{names}` a catalog entry expects."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
