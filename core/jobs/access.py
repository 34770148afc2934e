"""Who may touch a run, without accounts: owner keys, the actor a request comes from, the teacher passcode.

Owns the owner key (a random token a browser keeps in its address, `?key=`; runs store only
its SHA-256 as `owner_key_hash`), the `Actor` that `JobService` checks before it cancels,
resumes, deletes or prunes a run, the teacher's passcode check with its rate limit, and the
one function that makes a typed display name safe to store and show. A run made before
classroom mode has no key hash: only the teacher and the administrator (the CLI without
`--as-owner`) may act on it. It knows nothing of the UI and imports no torch.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

from core.errors import LayerLabError

# secrets.token_urlsafe(16) is 16 random bytes as 22 URL-safe base64 characters (128 bits: unguessable).
KEY_BYTES = 16
KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{22}")
NAME_MAX_CHARACTERS = 40  # the sidebar's name box allows as many
PASSCODE_VARIABLE = "LAYERLAB_TEACHER_PASSCODE"
FREE_GUESSES = 5  # wrong passcodes before the teacher box locks
FIRST_LOCKOUT_SECONDS = 30.0  # the first lock; each wrong guess after a lock doubles it
MAX_LOCKOUT_SECONDS = 3600.0


class AccessDenied(LayerLabError, ValueError):
    """The actor may not act on this run: it is another owner's, or it was made before classroom mode."""


class TeacherLocked(LayerLabError, ValueError):
    """Too many wrong teacher passcodes: the check refuses every guess for a while."""


def new_key() -> str:
    """A fresh owner key for a browser's first visit."""
    return secrets.token_urlsafe(KEY_BYTES)


def valid_key(text: Any) -> bool:
    """Whether `text` has the shape of an owner key (what `new_key` makes); anything else in the URL is ignored."""
    return isinstance(text, str) and KEY_TEXT.fullmatch(text) is not None


def key_hash(key: str) -> str:
    """What a run stores of its owner's key: the hex SHA-256, so the database never holds a key that could act."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who asks: a browser (its key's hash), the teacher, or the server's administrator (the CLI)."""

    key_hash: str | None = None
    teacher: bool = False
    admin: bool = False

    @classmethod
    def for_key(cls, key: str, teacher: bool = False) -> "Actor":
        """The actor of a browser (or of `--as-owner KEY`); a key of the wrong shape owns nothing."""
        return cls(key_hash(key) if valid_key(key) else None, teacher=teacher)

    @property
    def oversees(self) -> bool:
        """The teacher and the administrator may act on every run and are not held to the queue cap."""
        return self.teacher or self.admin

    def may_act_on(self, run: Any) -> bool:
        """Whether this actor may cancel, resume, delete or prune `run` (anything with `owner_key_hash`)."""
        if self.oversees:
            return True
        return self.key_hash is not None and getattr(run, "owner_key_hash", None) == self.key_hash


ADMIN = Actor(admin=True)  # the CLI without --as-owner, and code that runs on the server itself


def check(actor: Actor, run: Any) -> None:
    """Raise AccessDenied unless `actor` may act on `run`."""
    if actor.may_act_on(run):
        return
    if getattr(run, "owner_key_hash", None) is None:
        raise AccessDenied("access.before_classroom", run=run.id)
    raise AccessDenied("access.not_yours", run=run.id, owner=display_name(run.owner) or "—")


# ----------------------------------------------------------------------------- display names

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def display_name(text: Any, limit: int = NAME_MAX_CHARACTERS) -> str:
    """A typed name made safe to store: control and format characters gone, whitespace collapsed, at most `limit` characters."""
    if not isinstance(text, str):
        return ""
    # Control, format and unassigned characters (category C) go; every kind of whitespace becomes one space.
    kept = "".join(" " if char.isspace() else char for char in text if char.isspace() or unicodedata.category(char)[0] != "C")
    return " ".join(kept.split())[:limit].strip()


def markdown_literal(text: str) -> str:
    """`text` escaped so that Streamlit's Markdown shows it character for character (no bold, no links, no HTML)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


# ----------------------------------------------------------------------------- teacher


def configured_passcode() -> str | None:
    """The teacher passcode from the server's environment; None (no teacher mode) when it is unset or blank."""
    return os.environ.get(PASSCODE_VARIABLE, "").strip() or None


class TeacherGate:
    """Checks teacher passcodes for one server process, refusing guesses for a while after too many wrong ones.

    The lock is for the whole process, not one browser: a student who opens new tabs gets no
    fresh guesses. After FREE_GUESSES wrong ones every guess is refused for FIRST_LOCKOUT_SECONDS;
    a wrong guess after a lock doubles it. The right passcode clears the count.
    """

    def __init__(self, passcode: str | None, clock: Callable[[], float] = time.monotonic):
        self.passcode = passcode
        self.clock = clock
        self.wrong = 0
        self.lockout = 0.0
        self.locked_until = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.passcode)

    def check(self, guess: str) -> bool:
        """True for the right passcode; False for a wrong one; TeacherLocked while guesses are refused."""
        if not self.passcode:
            return False
        with self._lock:
            now = self.clock()
            if now < self.locked_until:
                raise TeacherLocked("access.teacher_locked", seconds=int(self.locked_until - now) + 1)
            if hmac.compare_digest(guess.encode("utf-8"), self.passcode.encode("utf-8")):
                self.wrong, self.lockout = 0, 0.0
                return True
            self.wrong += 1
            if self.wrong >= FREE_GUESSES:
                self.lockout = min(MAX_LOCKOUT_SECONDS, self.lockout * 2 if self.lockout else FIRST_LOCKOUT_SECONDS)
                self.locked_until = now + self.lockout
            return False
