"""Adversarial attacks on a trained network, and what they measure: robustness, transfer.

`methods` holds the attacks (FGSM, PGD, DeepFool, fooling images), each a pure function on
images in [0, 1]; `robustness` runs them by name over a test set in batches and reports
accuracies. Imports only torch: runs, checkpoints and pages are other packages' concern.
"""

from core.attacks.methods import ChangeSize, FoolingResult, change_size, deepfool, fgsm, fooling_image, pgd
from core.attacks.robustness import (
    METHODS,
    AttackError,
    AttackReport,
    CurvePoint,
    TransferReport,
    attack,
    attacked_accuracy,
    robustness_curve,
    transfer,
)

__all__ = [
    "METHODS",
    "AttackError",
    "AttackReport",
    "ChangeSize",
    "CurvePoint",
    "FoolingResult",
    "TransferReport",
    "attack",
    "attacked_accuracy",
    "change_size",
    "deepfool",
    "fgsm",
    "fooling_image",
    "pgd",
    "robustness_curve",
    "transfer",
]
