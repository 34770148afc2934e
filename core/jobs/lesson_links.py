"""Lesson links: a network and settings the teacher hands a class at one address, some of them locked.

The teacher picks a network and settings, ticks which are locked (any `TrainSettings` field,
and "network" for the whole network) and gets a link id. Students who open `?lesson=<id>` get
the link's network and settings; the Train page disables the locked ones, and
`JobService.submit(…, lesson_link=id)` refuses a submission whose locked values differ, so a
crafted request changes nothing. Runs made from a link record its id, which is what the
leaderboard and the presenter view read. The rows live in the run store (`lesson_links`).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, fields

from core.errors import LayerLabError
from core.training.settings import TrainSettings

NETWORK = "network"
LOCKABLE = (NETWORK, *(field.name for field in fields(TrainSettings)))
# What the teacher's form offers to lock, in the order it lists them (anything in LOCKABLE is accepted).
LOCK_CHOICES = (
    NETWORK, "dataset", "epochs", "batch_size", "optimizer", "learning_rate", "momentum", "schedule", "l2", "shift_pixels",
    "rotation_degrees", "early_stopping_patience", "train_subset", "seed", "adversarial",
)  # fmt: skip
LINK_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


class LessonLinkError(LayerLabError, ValueError):
    """An unknown or malformed lesson link, or a submission that changes what the link locks."""


@dataclass(frozen=True)
class LessonLink:
    id: str
    title: str
    network: dict  # the network spec as the teacher built it
    settings: dict  # TrainSettings as a dict
    locked: tuple[str, ...]
    hide_names: bool
    created_at: float

    def locks(self, name: str) -> bool:
        return name in self.locked


def new_id() -> str:
    return secrets.token_urlsafe(9)  # 12 characters; unguessable enough that a class cannot stumble on another's link


def checked_id(text: str) -> str:
    """The id from a URL, or LessonLinkError (`lesson_link.malformed`) for anything that cannot be one."""
    if not isinstance(text, str) or not LINK_ID.match(text):
        raise LessonLinkError("lesson_link.malformed", value=repr(str(text)[:40]))
    return text


def checked_locks(locked: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in locked if name not in LOCKABLE]
    if unknown:
        raise LessonLinkError("lesson_link.unknown_lock", names=", ".join(map(repr, unknown)))
    return tuple(dict.fromkeys(locked))


def from_row(row: dict) -> LessonLink:
    return LessonLink(
        id=row["id"], title=row["title"], network=json.loads(row["spec"]), settings=json.loads(row["settings"]),
        locked=tuple(json.loads(row["locked"])), hide_names=bool(row["hide_names"]), created_at=row["created_at"],
    )  # fmt: skip


def check_submission(link: LessonLink, validated_spec: dict, link_spec: dict, settings: TrainSettings) -> None:
    """Refuse (`lesson_link.locked_setting`) a submission that differs from the link in anything the link locks.

    `validated_spec` is the submitted network as `networks.validate` returned it, `link_spec` the link's, validated the same way.
    """
    if link.locks(NETWORK) and json.dumps(validated_spec, sort_keys=True) != json.dumps(link_spec, sort_keys=True):
        raise LessonLinkError("lesson_link.locked_network", title=link.title)
    wanted, submitted = TrainSettings.from_dict(link.settings).to_dict(), settings.to_dict()
    for name in link.locked:
        if name != NETWORK and submitted.get(name) != wanted.get(name):
            raise LessonLinkError("lesson_link.locked_setting", setting=name, value=json.dumps(wanted.get(name)), title=link.title)
