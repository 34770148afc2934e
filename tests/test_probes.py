"""Tests of the probes behind the Inspect page, and `python -m core inspect`, on two quickly trained conv runs.

Every check compares a probe with an independent computation: the weights in the checkpoint
file, a direct forward pass, `core.training.evaluation`'s predictions, Captum called directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from core import cli
from core.errors import Message, counted, translate
from core.jobs.store import RunStore
from core.probes import activations as activation_probes
from core.probes import attribution, ensembles, filters, loading, mistakes
from core.training import checkpoint, evaluation
from core.views import inspect_plots, inspection
from tests.inspect_support import train_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run of the fast conv net, with an epoch-0 checkpoint as the engine's recording writes it."""
    store = RunStore(tmp_path_factory.mktemp("inspect-runs"))
    first = train_run(store, "first", seed=0)
    assert store.epoch_checkpoint_path(first, 0).is_file()  # the engine keeps the initial weights as epoch 0
    return store, first


@pytest.fixture(scope="module")
def loaded(runs):
    store, first = runs
    return inspection.load_run(store, first)


@pytest.fixture(scope="module")
def predictions(loaded):
    return inspection.test_predictions(loaded)


def test_a_conv_filter_grid_has_one_tile_per_filter_holding_its_weights(loaded):
    layers = filters.filter_layers(loaded.model, loaded.spec)
    assert [(layer.index, layer.kind, layer.filters, layer.input_channels) for layer in layers] == [(0, "conv", 16, 1), (2, "conv", 32, 16)]
    for layer, channel in ((layers[0], 0), (layers[1], 5)):
        grid = filters.filter_grid(loaded.model, layer, channel)
        weights = loaded.model[layer.index + 1][0].weight.detach()[:, channel].numpy()
        np.testing.assert_array_equal(grid.weights, weights)
        figure = inspect_plots.filter_grid(grid)
        assert len(figure.data) == layer.filters
        for tile, weight in zip(figure.data, weights):
            np.testing.assert_array_equal(np.asarray(tile.z), weight)
        limit = float(np.abs(weights).max())
        assert figure.layout.coloraxis.cmid == 0 and figure.layout.coloraxis.cmin == -limit and figure.layout.coloraxis.cmax == limit


def test_a_dense_layer_on_pixels_draws_28_by_28_weight_images(tmp_path):
    from core.model import network as networks

    model = networks.build([{"kind": "dense", "units": 30, "activation": "sigmoid"}, {"kind": "output"}], seed=0)
    spec = networks.validate([{"kind": "dense", "units": 30, "activation": "sigmoid"}, {"kind": "output"}]).spec
    (layer,) = filters.filter_layers(model, spec)
    grid = filters.filter_grid(model, layer)
    assert grid.weights.shape == (30, 28, 28)
    np.testing.assert_array_equal(grid.weights.reshape(30, -1), model[1][1].weight.detach().numpy())


def test_the_epoch_slider_replays_exactly_the_checkpoints_on_disk_epoch_0_included(runs):
    store, first = runs
    epochs = inspection.epoch_checkpoints(store, first)
    assert list(epochs) == [0, 1, 2]
    grids = {}
    for epoch, path in epochs.items():
        model, spec, _ = loading.load(path)
        layer = filters.filter_layers(model, spec)[0]
        grids[epoch] = filters.filter_grid(model, layer).weights
        tensors, _ = checkpoint.read(store.epoch_checkpoint_path(first, epoch))
        np.testing.assert_array_equal(grids[epoch], tensors["1.0.weight"][:, 0].numpy())
    assert not np.array_equal(grids[0], grids[2])  # training moved the filters
    pruned = [path for epoch, path in epochs.items() if epoch != 1]
    assert list(loading.epochs_on_disk(pruned)) == [0, 2]  # a pruned epoch is simply not offered


def test_top_patches_are_the_strongest_responses_with_their_receptive_fields(runs, loaded, monkeypatch):
    store, first = runs
    patches = inspection.top_patches(store, first, loaded.path, loaded.model, loaded.spec, 2, loaded.splits)
    assert patches.image_indices.shape == (32, 9) and patches.boxes.shape == (32, 9, 4)
    with torch.no_grad():
        outputs = loaded.model[:4](loading.as_inputs(loaded.splits.validation_images))  # (10000, 32, 8, 8), conv layer 3's output
    strongest = outputs.flatten(2).max(dim=2).values  # (10000, 32)
    expected = strongest.topk(9, dim=0)
    np.testing.assert_allclose(patches.activations, expected.values.T.numpy(), rtol=1e-5)
    # Conv 5×5, pool 2, conv 5×5: each unit sees 14×14 pixels, one output step is 2 pixels.
    assert filters.receptive_field(loaded.spec, 2) == (14, 2, 0)
    assert {tuple(box[2:] - box[:2]) for box in patches.boxes.reshape(-1, 4)} == {(14, 14)}
    cache = store.run_directory(first) / inspection.CACHE_FOLDER / "top_patches_best_layer2.npz"
    assert cache.is_file()
    monkeypatch.setattr(filters, "top_patches", lambda *arguments, **options: pytest.fail("the cached patches were recomputed"))
    again = inspection.top_patches(store, first, loaded.path, loaded.model, loaded.spec, 2, loaded.splits)
    np.testing.assert_array_equal(again.image_indices, patches.image_indices)


def test_activations_equal_a_direct_forward_pass(loaded):
    image = loaded.splits.test_images[7]
    result = inspection.test_image_activations(loaded, 7)
    inputs = image.reshape(1, 1, 28, 28).float() / 255.0
    with torch.no_grad():
        for layer in result.layers:
            np.testing.assert_allclose(layer.values, loaded.model[: layer.index + 2](inputs)[0].numpy(), rtol=1e-5, atol=1e-6)
        logits = loaded.model(inputs)[0]
    assert [layer.values.shape for layer in result.layers] == [(16, 24, 24), (16, 12, 12), (32, 8, 8), (32, 4, 4), (10,)]
    np.testing.assert_allclose(result.probabilities, torch.softmax(logits, dim=0).numpy(), rtol=1e-5)
    assert result.prediction == int(logits.argmax())
    with pytest.raises(loading.ProbeError) as caught:
        inspection.test_image_activations(loaded, 10_000)
    assert (caught.value.code, caught.value.params) == ("probe.no_test_image", {"index": "10000", "last": 9999})
    assert str(caught.value) == translate("en", "message.probe.no_test_image", index=10000, last=9999)
    assert caught.value.render("ko") == translate("ko", "message.probe.no_test_image", index=10000, last=9999)


def test_the_gallery_holds_exactly_the_misclassified_test_images_most_confident_first(loaded, predictions):
    predicted = evaluation.predict(loaded.model, loaded.splits.test_images)
    wrong = torch.nonzero(predicted != loaded.splits.test_labels).flatten().numpy()
    gallery = mistakes.misclassified(predictions)
    assert sorted(gallery.tolist()) == wrong.tolist() and len(wrong) > 20
    assert np.all(np.diff(predictions.confidence[gallery]) <= 0)
    threes_as_fives = mistakes.misclassified(predictions, true_class=3, predicted_class=5)
    assert set(threes_as_fives) == {index for index in wrong if loaded.splits.test_labels[index] == 3 and predicted[index] == 5}


def test_confusion_cells_sum_to_the_test_set_and_each_cell_holds_its_pairs(runs, loaded, predictions):
    store, first = runs
    matrix = mistakes.confusion(predictions)
    assert matrix.sum() == 10_000
    assert matrix.tolist() == evaluation.evaluate_checkpoint(store.best_checkpoint_path(first), first)["confusion_matrix"]
    labels, predicted = loaded.splits.test_labels.numpy(), predictions.predicted
    for true_class in range(10):
        for predicted_class in range(10):
            images = mistakes.cell(predictions, true_class, predicted_class)
            assert len(images) == matrix[true_class, predicted_class]
            assert np.all(labels[images] == true_class) and np.all(predicted[images] == predicted_class)
    np.testing.assert_allclose(mistakes.per_class_accuracy(matrix), matrix.diagonal() / matrix.sum(axis=1))


def test_an_ensemble_of_one_run_is_that_run_and_of_two_combines_them(runs, loaded, predictions):
    store, first = runs
    for combination in ensembles.COMBINATIONS:
        alone = ensembles.combine([predictions], combination)
        np.testing.assert_array_equal(alone.predicted, predictions.predicted)
        assert alone.accuracy == predictions.accuracy and len(alone.disagreements) == 0
        np.testing.assert_array_equal(alone.mistakes, np.sort(mistakes.misclassified(predictions)))
    # A second member that differs: the same run's weights after its first epoch.
    model, _, _ = loading.load(store.epoch_checkpoint_path(first, 1))
    other = mistakes.predict(model, loaded.splits.test_images, loaded.splits.test_labels)
    assert 0 < np.count_nonzero(other.predicted != predictions.predicted)
    averaged = ensembles.combine([predictions, other], "average")
    np.testing.assert_array_equal(averaged.predicted, (predictions.probabilities + other.probabilities).argmax(axis=1))
    np.testing.assert_array_equal(averaged.disagreements, np.flatnonzero(predictions.predicted != other.predicted))
    assert averaged.member_accuracies == [predictions.accuracy, other.accuracy]
    voted = ensembles.combine([predictions, predictions, other], "vote")  # two identical voters always win
    np.testing.assert_array_equal(voted.predicted, predictions.predicted)


def test_attribution_maps_have_the_image_shape_and_equal_captum_called_directly(loaded):
    image = loaded.splits.test_images[11]
    inputs = (image.reshape(1, 1, 28, 28).float() / 255.0).requires_grad_()
    target = int(loaded.splits.test_labels[11])
    layer = attribution.last_conv(loaded.model)
    assert layer is loaded.model[3][0]
    direct = {
        "saliency": Saliency(loaded.model).attribute(inputs, target=target, abs=True),
        "integrated_gradients": IntegratedGradients(loaded.model).attribute(inputs, baselines=torch.zeros_like(inputs), target=target),
        "grad_cam": LayerAttribution.interpolate(LayerGradCam(loaded.model, layer).attribute(inputs, target=target), (28, 28), interpolate_mode="bilinear"),
    }
    assert attribution.methods_for(loaded.model) == attribution.METHODS
    for method, expected in direct.items():
        values = attribution.attribute(loaded.model, image, target, method)
        assert values.shape == (28, 28)
        np.testing.assert_allclose(values, expected[0, 0].detach().numpy(), rtol=1e-4, atol=1e-6)
        assert np.abs(values).max() > 0


# ----------------------------------------------------------------------------- python -m core inspect


def run_cli(runs_directory: Path, *arguments: str) -> subprocess.Popen:
    environment = {**os.environ, "LAYERLAB_RUNS": str(runs_directory)}
    return subprocess.Popen(
        [sys.executable, "-m", "core", "inspect", *arguments], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cli_inspect_prints_mistakes_confusion_and_activations_and_one_line_errors(runs, loaded, predictions, capsys, monkeypatch):
    store, first = runs
    untrained = store.create(loaded.spec, {"epochs": 1}, name="never trained")
    # The real command for one case and the quick errors (they answer before torch loads); the rest in this process.
    started = {
        "confusion": run_cli(store.directory, "--run", str(first), "confusion", "--json"),
        "no-run": run_cli(store.directory, "--run", "999", "mistakes"),
        "no-checkpoint": run_cli(store.directory, "--run", str(untrained), "confusion"),
    }
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))

    def in_process(*arguments: str) -> tuple[int, str, str]:
        code = cli.main(["inspect", *arguments])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = in_process("--run", str(first), "mistakes", "--json")
    listed = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and listed == {"run_id": first, "count": len(listed["indices"]), "indices": mistakes.misclassified(predictions).tolist()}
    code, out, _ = in_process("--run", str(first), "activations", "--image", "7", "--json")
    activations = json.loads(out.strip().splitlines()[-1])
    expected = activation_probes.activations(loaded.model, loaded.spec, loaded.splits.test_images[7])
    assert code == 0 and activations["prediction"] == expected.prediction
    assert [layer["shape"] for layer in activations["layers"]] == [[16, 24, 24], [16, 12, 12], [32, 8, 8], [32, 4, 4], [10]]
    code, _, err = in_process("--run", str(first), "activations", "--image", "10000")
    assert code == 2 and err.strip() == "error: " + translate("en", "message.probe.no_test_image", index=10000, last=9999)
    code, _, err = in_process("--run", str(first), "activations", "--image", "10000", "--lang", "ko")
    assert code == 2 and err.strip() == "error: " + translate("ko", "message.probe.no_test_image", index=10000, last=9999)

    results = {name: process.communicate(timeout=120) + (process.returncode,) for name, process in started.items()}
    assert results["confusion"][2] == 0, results["confusion"][1]
    confusion = json.loads(results["confusion"][0].strip().splitlines()[-1])
    assert confusion == {"run_id": first, "matrix": mistakes.confusion(predictions).tolist()}
    for name, words in {"no-run": "no run 999", "no-checkpoint": "no saved weights"}.items():
        stdout, stderr, code = results[name]
        lines = stderr.strip().splitlines()
        assert code == 2 and "Traceback" not in stdout + stderr and len(lines) == 1, stderr
        assert lines[0].startswith("error: ") and words in lines[0].lower(), lines[0]
    no_weights = Message("probe.no_weights", {"run": untrained, "status": store.get(untrained).status, "done": counted("probe.epochs_done", 0)})
    assert results["no-checkpoint"][1].strip() == f"error: {no_weights}"
