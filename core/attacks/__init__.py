"""Adversarial attacks on a trained network, and what they measure: robustness, transfer.

`methods` holds the attacks (FGSM, PGD, DeepFool, fooling images), each a pure function on
images in [0, 1]. Imports only torch: runs, checkpoints and pages are other packages' concern.
"""

from core.attacks.methods import ChangeSize, FoolingResult, change_size, deepfool, fgsm, fooling_image, pgd

__all__ = ["ChangeSize", "FoolingResult", "change_size", "deepfool", "fgsm", "fooling_image", "pgd"]
