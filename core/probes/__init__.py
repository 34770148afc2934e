"""Probes: what a trained network learned and where it fails, as arrays and small dataclasses.

Each module owns one look inside a model (filters, activations, mistakes, attribution,
ensembles). Probes take a model, a checkpoint path or the dataset splits and return numbers;
they never draw (`core.views.inspect_plots` does) and never ask the run store where files
live (the views do, and pass the paths in).
"""
