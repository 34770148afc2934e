"""Translations: every user-facing sentence lives in `assets/i18n/<language>.json`.

Pages call `translate`; no page carries inline text. The catalogs and their loader belong to
`core.errors` (which renders the messages of errors and runs from the same files); this
module is what the views and pages import. A test keeps the English and Korean catalogs'
keys and placeholders identical.
"""

from __future__ import annotations

from core.errors import (  # noqa: F401  (re-exported for the views and pages)
    CATALOG_DIR,
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Message,
    catalog,
    language_or_default,
    placeholders,
    render,
    render_any,
    translate,
)
