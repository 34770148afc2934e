"""The one error type every part of LayerLab raises for input or state a learner can fix, and its messages.

Each layer subclasses `LayerLabError` (a bad spec, impossible settings, a damaged checkpoint,
a missing run, unreadable data, a storage problem), so the CLI and the pages can catch "our"
errors in one place and show their message, while anything else is a bug with a traceback.

An error carries no sentence of its own: it carries a stable message code ("spec.field.at_most")
and parameters (numbers, text, lists), and the sentence is rendered from the catalogs
`assets/i18n/<language>.json` (key "message.<code>") in the reader's language. `str(error)`
is the English sentence, so logs and the CLI read as before. A `Message` is the same code and
parameters as data: the run store keeps one per run, so a run's outcome shows in whichever
language the page is in. Parameters that name a layer field, a setting, a layer kind or an
activation function are shown by their on-screen labels ("Kernel size f", not `kernel_size`).

This module also owns the tiny catalog loader (`catalog`, `translate`) that
`core.views.i18n` builds on. It imports nothing from the rest of `core`.
"""

from __future__ import annotations

import difflib
import json
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).resolve().parents[1] / "assets" / "i18n"
LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT_LANGUAGE = "en"
# Every message code lives in the catalogs under this prefix: "spec.field.at_most" -> "message.spec.field.at_most".
MESSAGE_PREFIX = "message."

# Parameters with these names are shown by the label the page shows for their value: a
# parameter {"field": "kernel_size"} reads "Kernel size f" in English and "커널 크기 f" in Korean.
# A value with no label (a name from a hand-written file) is shown as it is.
LABEL_KEYS = {
    "field": "build.field.",
    "setting": "train.field.",
    "kind": "build.kind_short.",
    "previous_kind": "build.kind_short.",
    "activation": "build.choice.activation.",
    "dataset": "train.choice.",
    "status": "common.status.",
}


# ----------------------------------------------------------------------------- catalogs


@lru_cache(maxsize=None)
def catalog(language: str) -> dict[str, str]:
    """Every text of `language` (English for a language LayerLab does not have), by key."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    return json.loads((CATALOG_DIR / f"{language}.json").read_text(encoding="utf-8"))


def language_or_default(language: str | None) -> str:
    """`language` when LayerLab has it, else English ("ko-KR" and "KO" read as Korean)."""
    short = (language or "").strip().lower().replace("_", "-").split("-")[0]
    return short if short in LANGUAGES else DEFAULT_LANGUAGE


def translate(language: str, key: str, **values: object) -> str:
    """The text for `key` in `language` (English if missing there), with `{name}` filled from `values`."""
    text = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE).get(key)
    if text is None:
        return key  # A missing key shows itself, so a test or a reviewer notices it.
    return text.format(**values) if values else text


def placeholders(text: str) -> set[str]:
    """The `{names}` a catalog entry expects."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# ----------------------------------------------------------------------------- messages


class Message(str):
    """A sentence as data: a message code and its parameters, rendered in any language.

    It is also the English sentence itself (a `str`), so code that stores, compares or prints
    messages as text keeps working, while the run store and the pages read `code` and
    `params` to show it in another language. Parameters are JSON values; one that is itself a
    message (such as an optional "Did you mean 'relu'?") is rendered in the same language.
    """

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, params: dict[str, Any] | None = None) -> "Message":
        plain = message_params(dict(params or {}))
        message = super().__new__(cls, render(code, plain))
        message.code, message.params = code, plain
        return message

    def __reduce__(self):
        return (Message, (self.code, self.params))

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        return render(self.code, self.params, language)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": self.params}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> "Message":
        return cls(str(value["code"]), dict(value.get("params") or {}))


def render(code: str, params: dict[str, Any], language: str = DEFAULT_LANGUAGE) -> str:
    """The sentence for message `code` in `language`, its placeholders filled from `params`."""
    key = MESSAGE_PREFIX + code
    template = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE).get(key)
    if template is None:
        # A code missing from both catalogs is a bug a test catches; still show what is known.
        return f"{code} {json.dumps(params, ensure_ascii=False, default=str)}"
    values = {name: _shown_parameter(name, value, language) for name, value in params.items()}
    text = string.Formatter().vformat(template, (), _Blank(values))
    # An empty optional part (no "Did you mean …?") leaves two spaces, or a space before a full stop.
    return re.sub(r" {2,}(?=\S)", " ", text).replace(" .", ".").strip()


def counted(code: str, count: int, **params: Any) -> Message:
    """The message `code` for `count` things: "<code>.none", "<code>.one" or "<code>.many" (each language words its plural)."""
    suffix = "none" if count == 0 else "one" if count == 1 else "many"
    return Message(f"{code}.{suffix}", {"count": count, **params})


def did_you_mean(value: Any, known: Any) -> Message | str:
    """The "Did you mean 'dense'?" that follows a misspelt name, or "" when nothing is close."""
    hint = difflib.get_close_matches(value, list(known), n=1) if isinstance(value, str) else []
    return Message("common.did_you_mean", {"name": hint[0]}) if hint else ""


def message_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with nested Messages turned into plain dicts, so they can be stored as JSON."""
    return {name: _plain(value) for name, value in params.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _shown_parameter(name: str, value: Any, language: str) -> Any:
    if isinstance(value, dict) and "code" in value:
        return render(str(value["code"]), dict(value.get("params") or {}), language)
    if isinstance(value, Message):
        return value.render(language)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_shown_parameter(name, item, language)) for item in value)
    if name in LABEL_KEYS and isinstance(value, str):
        return _label(LABEL_KEYS[name] + value, language) or value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"  # 79,500,010 parameters; run and layer numbers stay as they are.
    return value


def _label(key: str, language: str) -> str | None:
    text = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE).get(key)
    # A label with its own placeholder ("Dropout p (layer {layer})") is not a plain name.
    return text if text and not placeholders(text) else None


class _Blank(dict):
    """Fills a placeholder the parameters lack with nothing rather than failing on a page."""

    def __missing__(self, key: str) -> str:
        return ""


# ----------------------------------------------------------------------------- errors


class LayerLabError(Exception):
    """A problem with what the user gave or asked for; the message says what to change.

    `code` names the sentence in the catalogs and `params` fill it. `detail` is for logs only
    (a library's own wording, such as zlib's or SQLite's), never part of the sentence.
    """

    def __init__(self, code: str, *, detail: str = "", **params: Any):
        self.code = code
        self.params = message_params(params)
        self.detail = detail
        super().__init__(self.render(DEFAULT_LANGUAGE))

    @property
    def message(self) -> Message:
        return Message(self.code, self.params)

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        return render(self.code, self.params, language)

    def __reduce__(self):
        # Subclasses take their own keyword arguments, so rebuild from the state, not from `args`.
        return (_restore, (type(self), self.__dict__.copy()))


def _restore(cls: type, state: dict[str, Any]) -> LayerLabError:
    error = cls.__new__(cls)
    Exception.__init__(error, render(state["code"], state["params"]))
    error.__dict__.update(state)
    return error


def render_any(error: BaseException, language: str = DEFAULT_LANGUAGE) -> str:
    """The sentence for `error` in `language`: ours are rendered, anything else is its own text."""
    if isinstance(error, LayerLabError):
        return error.render(language)
    return str(error)
