"""Probes: what a network computes and learned, returned as arrays or small dataclasses, never figures.

Each module here looks inside a model or a finished run (its recorded training diagnostics,
filters, activations, mistakes, attributions, ensembles) and hands back plain data; plotting
lives in `core.views`, and the pages only wire the two together. Probes sit above the training
engine (they may use its models and callbacks) and below the job runner, which calls the recorder.
"""
