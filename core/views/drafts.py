"""Server-side drafts: what one browser was editing (network, settings, guide seen), kept across refreshes and restarts.

Each browser carries a draft key in its address (`?draft=`); the draft itself is a small JSON
object in `<runs>/drafts/<key>.json`, written atomically (a temporary file renamed over the old
one) so a crash never leaves half a draft. Keys are random URL-safe tokens checked against a
strict pattern before they name a file, and drafts are capped in size, so an address cannot
reach outside the folder or fill the disk. This module knows nothing of Streamlit; what a draft
holds is the page's business, and a draft that cannot be read is simply no draft.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from core.jobs.store import runs_dir

# URL-safe base64 letters only, 8 to 64 of them: no dots or slashes, so a key never names another folder.
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
# A network of vocabulary.MAX_LAYERS layers plus every setting is about 6 kB of JSON; this leaves room.
MAX_DRAFT_BYTES = 64_000


def new_key() -> str:
    """A fresh random draft key (16 URL-safe characters, 96 bits)."""
    return secrets.token_urlsafe(12)


def valid_key(key: Any) -> bool:
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def draft_path(key: str, directory: Path | None = None) -> Path:
    """Where the draft for `key` lives; ValueError for a key that is not a safe token."""
    if not valid_key(key):
        raise ValueError(f"{key!r} is not a draft key (8 to 64 letters, digits, '-' or '_').")
    return (directory or runs_dir()) / "drafts" / f"{key}.json"


def load(key: str, directory: Path | None = None) -> dict:
    """The draft saved under `key`; {} when there is none, the key is not valid, or the file cannot be read."""
    if not valid_key(key):
        return {}
    path = draft_path(key, directory)
    try:
        if path.stat().st_size > MAX_DRAFT_BYTES:
            return {}
        draft = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return draft if isinstance(draft, dict) else {}


def save(key: str, draft: dict, directory: Path | None = None) -> bool:
    """Write `draft` under `key` atomically; False (nothing written) when it is larger than MAX_DRAFT_BYTES."""
    text = json.dumps(draft, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_DRAFT_BYTES:
        return False
    path = draft_path(key, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True
