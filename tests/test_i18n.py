"""The translation catalogs agree with each other and with the code, and core/ stays free of Streamlit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.model import vocabulary
from core.training import presets
from core.views import i18n

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = {language: i18n.catalog(language) for language in i18n.LANGUAGES}
# `t("key")` or `t('key', ...)` with a literal key; f-string keys are checked by family below.
LITERAL_KEY = re.compile(r"""\bt\(\s*(["'])([A-Za-z0-9_.\-]+)\1""")
UI_SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]


def test_every_language_has_the_same_keys():
    english = set(CATALOGS["en"])
    for language, catalog in CATALOGS.items():
        assert set(catalog) == english, f"{language}: missing {sorted(english - set(catalog))}, extra {sorted(set(catalog) - english)}"


@pytest.mark.parametrize("language", [language for language in i18n.LANGUAGES if language != "en"])
def test_placeholders_match_english(language):
    different = {
        key: (i18n.placeholders(CATALOGS["en"][key]), i18n.placeholders(text))
        for key, text in CATALOGS[language].items()
        if key in CATALOGS["en"] and i18n.placeholders(text) != i18n.placeholders(CATALOGS["en"][key])
    }
    assert not different


@pytest.mark.parametrize("language", list(i18n.LANGUAGES))
def test_no_empty_texts_and_every_text_formats(language):
    for key, text in CATALOGS[language].items():
        assert isinstance(text, str) and text.strip(), f"{language}: {key} is empty"
        text.format(**{name: "x" for name in i18n.placeholders(text)})  # Stray braces would raise here.


def test_build_texts_are_translated():
    # A Build text left in English by mistake is a Korean entry without one Hangul letter.
    # Names that stay as they are (ReLU, LeNet-5, "#") are listed.
    hangul = re.compile("[가-힣]")
    same_in_both = ("build.col.number", "build.choice.", "build.activation_short.", "build.preset.lenet-5.title")
    untranslated = [
        key for key, text in CATALOGS["ko"].items()
        if key.startswith("build.") and not key.startswith(same_in_both) and not hangul.search(text)
    ]
    assert not untranslated


@pytest.mark.parametrize("source", UI_SOURCES, ids=lambda path: path.name)
def test_every_literal_key_in_the_ui_exists(source):
    used = {match.group(2) for match in LITERAL_KEY.finditer(source.read_text(encoding="utf-8"))}
    assert not sorted(used - set(CATALOGS["en"]))


def test_the_scan_finds_keys():
    # Guards the regex above: it must see the Build page's keys, or the test before proves nothing.
    used = {match.group(2) for match in LITERAL_KEY.finditer((ROOT / "pages" / "build.py").read_text(encoding="utf-8"))}
    assert {"build.title", "build.total_parameters"} <= used


def test_keys_built_from_names_exist():
    """Keys the Build page makes from layer kinds, fields, choices and presets."""
    expected = set()
    for kind, fields in vocabulary.LAYER_FIELDS.items():
        expected |= {f"build.kind.{kind}", f"build.kind_short.{kind}", f"build.explain.{kind}"}
        for name, field in fields.items():
            expected |= {f"build.field.{name}", f"build.help.{name}"}
            expected |= {f"build.choice.{name}.{choice}" for choice in field.choices or ()}
    for name in presets.all_presets():
        expected |= {f"build.preset.{name}.title", f"build.preset.{name}.description"}
    for reason in ("too_large", "not_text", "not_json", "not_link", "not_network"):
        expected.add(f"build.load_error.{reason}")
    for idea in ("receptive", "shared", "pooling", "size", "nonlinear"):
        expected |= {f"build.idea.{idea}.title", f"build.idea.{idea}.body"}
    assert not sorted(expected - set(CATALOGS["en"]))
