"""A quickly trained conv run for the Inspect tests: the `fast` preset on 3,000 images for 2 epochs, stored like any run.

It goes through `core.jobs.runner.execute`, so its files (best weights, per-epoch checkpoints)
are where and what a real run leaves. About 5 s on a 2-core CPU.
"""

from __future__ import annotations

from core.jobs import runner
from core.jobs.store import RunStore
from core.training.presets import get as get_preset

PRESET = "fast"


def train_run(store: RunStore, name: str = "inspect", seed: int = 0, epochs: int = 2, train_subset: int = 3000) -> int:
    preset = get_preset(PRESET)
    settings = preset.train_settings(epochs=epochs, train_subset=train_subset, device="cpu", seed=seed, eval_batch_size=5000)
    run_id = store.create(preset.network, settings.to_dict(), name=name, owner="tests")
    assert runner.execute(store, run_id) == "succeeded", store.get(run_id).message
    return run_id
