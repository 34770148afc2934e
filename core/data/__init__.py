"""Data: the datasets (fetched, verified, split) and augmentation of their images.

Images leave this package as uint8 (N, 28, 28) or float tensors in [0, 1]; it knows nothing
of models, training or the UI.
"""
