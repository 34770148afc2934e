"""Tests for core/checkpoint.py: weights that rebuild their own model, and files that are refused.

A checkpoint must give back exactly the model that was saved (same logits, bit for bit, on
real test images) from nothing but its path, and must refuse, with a sentence a learner can
act on, anything that is damaged or changed after saving, foreign, or a pickle that could run
code. The SHA-256 is unkeyed, so it catches corruption, not a forger who recomputes it; the
tests say so, and check that the formats (safetensors, `weights_only=True`) keep code out
even when the sum matches.
The last test runs a whole stored run through `core.runner.execute` and checks the files it
leaves and the evaluation of its best checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import pickle
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from core.jobs import runner
from core.model import network as networks
from core.model import vocabulary
from core.training import checkpoint
from core.training.checkpoint import CheckpointError
from core.training.evaluation import evaluate_checkpoint
from core.training.loop import train
from core.training.settings import TrainSettings

# Conv, batch-norm and dropout: weights, biases, running statistics and the Normalize buffers
# must all survive the round trip.
NETWORK = {
    "layers": [
        {"kind": "conv", "filters": 4, "kernel_size": 5, "activation": "relu"},
        {"kind": "batchnorm"},
        {"kind": "maxpool", "size": 2},
        {"kind": "dense", "units": 20, "activation": "tanh"},
        {"kind": "dropout", "p": 0.2},
        {"kind": "output"},
    ],
    "normalize": True,
}
SETTINGS = TrainSettings(epochs=1, batch_size=100, train_subset=1000, optimizer="adam", learning_rate=0.003, device="cpu", seed=4)


class Custom:
    """Any class of ours: a weights-only loader must not rebuild it."""

    def __init__(self):
        self.value = 1


class RunsCode:
    """Unpickling this would create `marker` (a stand-in for any code an attacker chooses)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(mnist):
    """A briefly trained model (so batch-norm statistics are not their defaults), its spec and settings."""
    # Evaluating on 1,000 images per epoch is enough here; the weights are what matter.
    splits = dataclasses.replace(
        mnist,
        validation_images=mnist.validation_images[:1000],
        validation_labels=mnist.validation_labels[:1000],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )
    result = train(NETWORK, SETTINGS, splits)
    assert result.status == "succeeded"
    return result.model.eval(), vocabulary.normalize_spec(NETWORK), SETTINGS


@pytest.fixture
def saved(trained, tmp_path):
    model, network, settings = trained
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, model, network, settings, epoch=1)
    return path


def test_a_loaded_checkpoint_gives_identical_logits(trained, saved, mnist):
    model, _, _ = trained
    loaded, _, _ = checkpoint.load(saved)
    assert not loaded.training
    images = mnist.test_images[:1000].unsqueeze(1).float() / 255.0
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    running_mean = [name for name in model.state_dict() if name.endswith("running_mean")]
    assert running_mean and not torch.equal(model.state_dict()[running_mean[0]], torch.zeros_like(model.state_dict()[running_mean[0]]))


def test_the_checkpoint_carries_what_rebuilds_its_model(trained, saved):
    _, network, settings = trained
    loaded, loaded_network, loaded_settings = checkpoint.load(saved)  # nothing but the path
    assert loaded_network == network
    assert loaded_settings == settings
    assert vocabulary.summarize_network(loaded_network) == vocabulary.summarize_network(NETWORK)
    _, metadata = checkpoint.read(saved)
    assert metadata["epoch"] == 1  # extra values travel as JSON
    assert sum(parameter.numel() for parameter in loaded.parameters()) == networks.validate(network).total_parameters


def tensor_data_offset(path) -> int:
    """Safetensors layout: an 8-byte little-endian header length, the JSON header, then the tensor bytes."""
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_length


def test_a_flipped_byte_in_the_weights_is_refused(saved):
    data = bytearray(saved.read_bytes())
    position = tensor_data_offset(saved) + (len(data) - tensor_data_offset(saved)) // 2
    data[position] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="changed or damaged after it was saved"):
        checkpoint.load(saved)


def edit_activation(saved, recompute_sum: bool) -> None:
    """Rewrite the checkpoint with the same weights and a different activation in its spec."""
    with safe_open(str(saved), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    network = json.loads(metadata["spec"])
    network["layers"][3]["activation"] = "sigmoid"
    metadata = {**metadata, "spec": json.dumps(network)}
    if recompute_sum:
        metadata["sha256"] = checkpoint._digest(tensors, metadata)
    save_file(tensors, str(saved), metadata=metadata)


def test_a_header_edited_without_a_new_sum_is_refused(saved):
    # Same weights, same shapes, a different activation: loading would quietly rebuild a
    # different model, so the header is covered by the SHA-256 too.
    edit_activation(saved, recompute_sum=False)
    with pytest.raises(CheckpointError, match="changed or damaged after it was saved"):
        checkpoint.load(saved)


def test_the_sum_is_unkeyed_so_an_edit_that_recomputes_it_loads(saved):
    # What the module docstring says: the SHA-256 detects corruption, not a deliberate edit by
    # someone who writes a new sum. If this ever fails, the sum became keyed: update the words.
    edit_activation(saved, recompute_sum=True)
    _, network, _ = checkpoint.load(saved)
    assert network["layers"][3]["activation"] == "sigmoid"


def test_a_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(saved)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "absent.safetensors")


def test_a_torch_pickle_is_refused(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "note": "a plain torch.save file"}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(RunsCode(str(marker))))
    # Check the stand-in works: plain unpickling does run it.
    pickle.loads(path.read_bytes()).close()
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="carries no LayerLab checksum"):
        checkpoint.load_resume_state(path)
    assert not marker.exists()
    # The sum is unkeyed, so an attacker can give a hostile pickle a matching header: then
    # `weights_only=True` is what refuses it.
    for payload in (pickle.dumps(RunsCode(str(marker))), torch_save_bytes({"payload": RunsCode(str(marker))})):
        torch_path = tmp_path / "evil.pt"
        torch_path.write_bytes(with_resume_header(payload))
        with pytest.raises(CheckpointError, match="cannot be read safely"):
            checkpoint.load_resume_state(torch_path)
        assert not marker.exists()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.ones(3, 3)}, str(path), metadata={"framework": "someone else's"})
    with pytest.raises(CheckpointError, match="not a LayerLab checkpoint"):
        checkpoint.load(path)
    bare = tmp_path / "bare.safetensors"
    save_file({"weight": torch.ones(3, 3)}, str(bare))
    with pytest.raises(CheckpointError, match="not a LayerLab checkpoint"):
        checkpoint.load(bare)


def test_weights_that_do_not_fit_their_spec_are_refused(trained, tmp_path):
    model, network, settings = trained
    path = tmp_path / "mismatch.safetensors"
    wider = {**network, "layers": [dict(layer) for layer in network["layers"]]}
    wider["layers"][3]["units"] = 21
    checkpoint.save(path, model, wider, settings)
    with pytest.raises(CheckpointError, match="does not match the network"):
        checkpoint.load(path)


def torch_save_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def with_resume_header(payload: bytes) -> bytes:
    """The resume-state layout: one header line with the payload's SHA-256, then the payload."""
    return b"layerlab-resume-1 sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_resume_state_round_trips_and_refuses_custom_classes(tmp_path):
    path = tmp_path / "state.pt"
    state = {"model": {"weight": torch.arange(6.0)}, "history": [{"epoch": 1, "loss": 0.5}], "cpu_rng": torch.get_rng_state()}
    checkpoint.save_resume_state(path, state)
    assert path.read_bytes() == with_resume_header(path.read_bytes().partition(b"\n")[2])
    loaded = checkpoint.load_resume_state(path)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["history"] == state["history"]

    path.write_bytes(with_resume_header(torch_save_bytes({"model": {}, "extra": Custom()})))
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        checkpoint.load_resume_state(path)
    torch.save(state, path)  # A plain torch.save file: no sum to check it by.
    with pytest.raises(CheckpointError, match="carries no LayerLab checksum.*start the run again"):
        checkpoint.load_resume_state(path)
    with pytest.raises(CheckpointError, match="never finished an epoch"):
        checkpoint.load_resume_state(tmp_path / "absent.pt")


def test_a_flipped_byte_in_the_resume_state_is_refused(trained, tmp_path):
    model, _, settings = trained
    model = copy.deepcopy(model)  # The fixture's model is shared with the other tests.
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()  # Adam's moments exist now, as in a real resume state.
    model.zero_grad(set_to_none=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": [{"epoch": 1}]}
    path = tmp_path / "last_state.pt"
    checkpoint.save_resume_state(path, state)
    intact = checkpoint.load_resume_state(path)
    assert all(torch.equal(intact["model"][name], tensor) for name, tensor in state["model"].items())

    # Flip one bit in the middle of the largest weight tensor's bytes.
    name, weight = max(state["model"].items(), key=lambda item: item[1].numel())
    data = bytearray(path.read_bytes())
    raw = weight.detach().cpu().contiguous().numpy().tobytes()
    position = data.find(raw) + len(raw) // 2
    assert position > len(raw) // 2  # The tensor is stored as-is in the file.
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    # Without the sum, torch.load would resume silently with a different weight.
    unchecked = torch.load(io.BytesIO(bytes(data).partition(b"\n")[2]), weights_only=True)
    assert not torch.equal(unchecked["model"][name], weight)
    with pytest.raises(CheckpointError, match="changed or damaged after it was saved.*it is refused.*start the run again"):
        checkpoint.load_resume_state(path)


# ----------------------------------------------------------------------------- a whole run


def test_a_stored_run_leaves_its_files_and_evaluates_to_its_test_accuracy(store):
    network = [{"kind": "dense", "units": 30, "activation": "relu"}, {"kind": "output"}]
    settings = TrainSettings(epochs=2, batch_size=100, train_subset=2000, optimizer="adam", learning_rate=0.003, device="cpu")
    run_id = store.create(network, settings.to_dict())
    assert runner.execute(store, run_id) == "succeeded"
    run = store.get(run_id)
    assert run.status == "succeeded" and run.epochs_done == 2
    assert [row["epoch"] for row in run.metrics] == [1, 2]

    assert store.best_checkpoint_path(run_id).is_file()
    # Epoch 0 is the initial weights, written before the first step.
    assert store.epoch_checkpoints(run_id) == [store.epoch_checkpoint_path(run_id, epoch) for epoch in (0, 1, 2)]
    state = checkpoint.load_resume_state(store.resume_state_path(run_id))
    assert [metrics["epoch"] for metrics in state["history"]] == [1, 2]
    _, metadata = checkpoint.read(store.best_checkpoint_path(run_id))
    assert metadata["epoch"] == run.best_epoch

    report = evaluate_checkpoint(store.best_checkpoint_path(run_id), run_id)
    matrix = torch.tensor(report["confusion_matrix"])
    assert matrix.shape == (10, 10)
    assert int(matrix.sum()) == report["total"] == 10_000
    assert int(matrix.diagonal().sum()) / int(matrix.sum()) == run.test_accuracy
    assert report["test_accuracy"] == run.test_accuracy
    assert report["errors"] == report["total"] - int(matrix.diagonal().sum())
    # Rows are true classes: their sums are the test set's per-digit counts (LeCun et al.).
    assert matrix.sum(dim=1).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
