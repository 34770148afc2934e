"""Presets: named networks with the settings that train them and the figure their source reports.

Owns reading `assets/presets/*.json`. A preset uses the same format as a saved run (a spec
and a settings dict), so a preset, a run and a checkpoint can always rebuild each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import LayerLabError
from core.training.settings import TrainSettings

PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "presets"
# The network a new session starts with and the Train page falls back on: Nielsen ch. 6's first conv net.
DEFAULT_PRESET = "nielsen-2-conv-pool"


@dataclass(frozen=True)
class Preset:
    name: str  # file stem, e.g. "nielsen-3-two-conv-sigmoid"
    title: str
    description: str
    source: str  # where the network and its figure come from
    book_accuracy: float | None  # the test accuracy the source reports, in percent
    book_epochs: int | None  # epochs the source trained for
    network: dict
    settings: dict

    def train_settings(self, **overrides) -> TrainSettings:
        return TrainSettings.from_dict({**self.settings, **overrides})


@lru_cache(maxsize=1)
def all_presets() -> dict[str, Preset]:
    presets = {}
    for path in sorted(PRESET_DIR.glob("*.json")):
        values = json.loads(path.read_text(encoding="utf-8"))
        presets[path.stem] = Preset(
            name=path.stem,
            title=values["title"],
            description=values["description"],
            source=values["source"],
            book_accuracy=values.get("book_accuracy"),
            book_epochs=values.get("book_epochs"),
            network=values["network"],
            settings=values["settings"],
        )
    return presets


class PresetNotFound(LayerLabError, ValueError):
    """No preset has this name."""


def get(name: str) -> Preset:
    presets = all_presets()
    if name not in presets:
        raise PresetNotFound("preset.unknown", value=repr(name), names=list(presets))
    return presets[name]
