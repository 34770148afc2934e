"""Training: settings, presets, the loop, optimisers and schedules, losses, evaluation, the
device and checkpoints. A checkpoint and a preset both carry a spec and settings.

`settings` and `presets` import no torch, so the CLI can read them instantly.
"""
