"""Training diagnostics: what the recorder writes equals what plain PyTorch computes on the same
batch and weights, the epoch-0 checkpoint is the initial network, a deep sigmoid net shows the
vanishing gradient, a resumed or damaged recording still reads, the fit verdict says the right
thing, and the Diagnostics view renders a real run in English and Korean."""

from __future__ import annotations

import json

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from core.jobs import runner
from core.jobs.store import RunStore
from core.model import network as networks
from core.probes import recording
from core.training import checkpoint
from core.training.loop import train
from core.training.settings import TrainSettings
from core.views import diagnostics, i18n

# A ReLU layer (dead units) then a sigmoid layer (saturated units); batch 100 of 2,000 images is
# 20 steps an epoch, so the gradient norms are recorded at every step (K = 1). The learning rate
# is far too high on purpose: by epoch 2 it has killed some ReLUs and saturated most sigmoids.
NETWORK = {
    "layers": [
        {"kind": "dense", "units": 30, "activation": "relu", "init": "he"},
        {"kind": "dense", "units": 20, "activation": "sigmoid", "init": "nielsen"},
        {"kind": "output", "init": "default"},
    ],
    "normalize": True,
}
SETTINGS = TrainSettings(epochs=2, batch_size=100, train_subset=2000, learning_rate=5.0, seed=3, device="cpu")


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory, mnist):
    """A short run trained to the end through the runner, as a worker trains it."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.create(NETWORK, SETTINGS.to_dict(), owner="ada")
    assert runner.execute(store, run_id) == "succeeded"
    return store, run_id


def probe_images(mnist) -> torch.Tensor:
    return mnist.validation_images[:512].unsqueeze(1).float() / 255.0  # (512, 1, 28, 28)


def test_epoch_zero_checkpoint_holds_the_initial_weights(recorded_run):
    store, run_id = recorded_run
    tensors, metadata = checkpoint.read(store.epoch_checkpoint_path(run_id, 0))
    initial = networks.build(NETWORK, seed=SETTINGS.seed).state_dict()
    assert metadata["epoch"] == 0 and sorted(tensors) == sorted(initial)
    for name, tensor in initial.items():
        assert torch.equal(tensors[name], tensor), name
    trained, _ = checkpoint.read(store.epoch_checkpoint_path(run_id, 1))
    assert not torch.equal(trained["1.1.weight"], initial["1.1.weight"])  # epoch 1 did move the weights


def test_recorded_gradient_norms_equal_plain_torch_on_the_same_batches(recorded_run, mnist):
    store, run_id = recorded_run
    record = diagnostics.load(store, run_id).records[1]
    gradients = record["gradients"]
    assert record["weight_layers"] == [{"index": 0, "kind": "dense"}, {"index": 1, "kind": "dense"}, {"index": 2, "kind": "output"}]
    assert gradients["interval"] == 1 and gradients["steps"] == list(range(1, 21)) and len(gradients["norms"]) == 20

    # Replay the first three steps by hand: same initial weights, same shuffled order, plain SGD.
    model = networks.build(NETWORK, seed=SETTINGS.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=SETTINGS.learning_rate)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(SETTINGS.seed))
    images, labels = mnist.train_images[:2000], mnist.train_labels[:2000]
    for step in range(3):
        batch = order[step * 100 : (step + 1) * 100]
        loss = torch.nn.functional.cross_entropy(model(images[batch].unsqueeze(1).float() / 255.0), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        expected = [float(model[index + 1][-2 if index < 2 else -1].weight.grad.norm()) for index in range(3)]
        assert gradients["norms"][step] == pytest.approx(expected, rel=1e-4), step
        optimizer.step()


def test_dead_and_saturated_fractions_equal_a_direct_computation_on_the_probe_batch(recorded_run, mnist):
    store, run_id = recorded_run
    recorded = diagnostics.load(store, run_id)
    assert recorded.epochs == [0, 1, 2] and recorded.damaged_lines == 0
    for epoch in (0, 2):
        model, _, _ = checkpoint.load(store.epoch_checkpoint_path(run_id, epoch))
        model.eval()
        with torch.no_grad():
            relu_outputs = model[1](model[0](probe_images(mnist)))  # (512, 30)
            sigmoid_outputs = model[2](relu_outputs)  # (512, 20)
        dead = (relu_outputs.max(dim=0).values <= 0).float().mean().item()
        near_limits = ((sigmoid_outputs <= 0.01) | (sigmoid_outputs >= 0.99)).float().mean(dim=0)
        saturated = (near_limits >= 0.99).float().mean().item()
        relu_entry, sigmoid_entry = recorded.records[epoch]["activations"]
        assert relu_entry["dead_fraction"] == pytest.approx(dead) and relu_entry["saturated_fraction"] is None
        assert sigmoid_entry["saturated_fraction"] == pytest.approx(saturated) and sigmoid_entry["dead_fraction"] is None
        assert relu_entry["mean"] == pytest.approx(relu_outputs.mean().item(), rel=1e-5)
        # The sigmoid histogram has fixed bins over [0, 1] and counts every probe output.
        assert sigmoid_entry["edges"] == [0.0, 1.0] and sum(sigmoid_entry["counts"]) == 512 * 20
    dead_epochs, dead_fractions = recorded.unit_fractions("dead_fraction")[0]
    assert dead_epochs == [0, 1, 2] and 0 < dead_fractions[2] < 1  # some units died, so the check above compared real counts
    assert recorded.unit_fractions("saturated_fraction")[1][1][2] > 0.5


def test_a_deep_sigmoid_net_records_smaller_gradients_in_its_first_layer_than_its_last(mnist, tmp_path):
    """Nielsen ch. 5: in a deep sigmoid net the early layers learn far more slowly than the later ones."""
    network = {"layers": [{"kind": "dense", "units": 30, "activation": "sigmoid", "init": "nielsen"}] * 5 + [{"kind": "output", "init": "nielsen"}]}
    settings = TrainSettings(epochs=1, batch_size=10, train_subset=3000, learning_rate=0.1, device="cpu")
    path = tmp_path / recording.RECORDING_FILE
    train(network, settings, mnist, recording.Recorder(path, network, mnist.validation_images))
    positions, norms = recording.read(path).gradient_series()
    assert len(positions) == 50 and positions[-1] == pytest.approx(1.0)  # 300 steps, K = 6
    means = [sum(values) / len(values) for values in norms]
    assert means[0] < means[-1] / 10, means
    assert means[0] < means[4], means  # first hidden layer below the last hidden layer too


def test_a_resumed_run_appends_and_a_line_cut_short_spoils_only_itself(mnist, tmp_path):
    class KeepingState(recording.Recorder):
        def on_epoch_end(self, metrics, state, improved):
            super().on_epoch_end(metrics, state, improved)
            self.state = state.state_dict()

    path = tmp_path / recording.RECORDING_FILE
    first = KeepingState(path, NETWORK, mnist.validation_images)
    settings = TrainSettings(epochs=1, batch_size=100, train_subset=500, device="cpu")
    train(NETWORK, settings, mnist, first)
    with open(path, "ab") as handle:
        handle.write(b'{"version": 1, "epoch": 2, "acti')  # a worker killed in the middle of a write
    second = recording.Recorder(path, NETWORK, mnist.validation_images)
    train(NETWORK, TrainSettings(epochs=2, batch_size=100, train_subset=500, device="cpu"), mnist, second, resume_state=first.state)
    read = recording.read(path)
    assert read.epochs == [0, 1, 2] and read.damaged_lines == 1
    epochs_written = [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.endswith("}")]
    assert epochs_written == [0, 1, 2]  # the resumed run did not record epoch 0 again

    path.write_bytes(b"\x00\xffnot json\n")
    assert recording.read(path).records == {} and recording.read(path).damaged_lines == 1
    assert recording.read(tmp_path / "missing.jsonl") is None


def history(train_accuracy: list[float], validation_accuracy: list[float]) -> list[dict]:
    return [
        {"epoch": epoch, "train_accuracy": train, "validation_accuracy": validation}
        for epoch, (train, validation) in enumerate(zip(train_accuracy, validation_accuracy), start=1)
    ]


def test_verdict_on_crafted_histories():
    validation = [0.95, 0.96, 0.97, 0.975, 0.978, 0.979, 0.981, 0.980, 0.979, 0.980, 0.978, 0.977]
    training = [0.95, 0.965, 0.975, 0.982, 0.987, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999, 0.9995]
    code, values = diagnostics.verdict(history(training, validation))
    assert code == "overfitting" and values["epoch"] == 7 and values["gap"] == pytest.approx(2.25)
    english = diagnostics.verdict_text("en", code, values)
    assert "stopped improving at epoch 7 while training accuracy kept rising" in english and "2.3 points" in english
    assert "에폭 7" in diagnostics.verdict_text("ko", code, values) and "과대적합" in diagnostics.verdict_text("ko", code, values)

    assert diagnostics.verdict(history([0.88, 0.90, 0.905, 0.91], [0.89, 0.905, 0.91, 0.912])) == ("underfitting", {"train_accuracy": pytest.approx(91.0)})
    code, values = diagnostics.verdict(history([0.95, 0.97, 0.98, 0.985], [0.955, 0.972, 0.979, 0.983]))
    assert code == "good_fit" and values["epoch"] == 4
    assert diagnostics.verdict(history([0.9, 0.95], [0.9, 0.95])) == ("too_early", {"epochs": 2})
    # Fashion-MNIST is harder: 91% on its training images is not underfitting there.
    assert diagnostics.verdict(history([0.85, 0.89, 0.91], [0.84, 0.87, 0.89]), "fashion-mnist")[0] == "good_fit"
    # A plateau of the validation accuracy while the training accuracy stays flat is not overfitting.
    assert diagnostics.verdict(history([0.98] * 6, [0.981, 0.982, 0.982, 0.981, 0.98, 0.98]))[0] == "good_fit"


def diagnostics_script(run_id: int, language: str) -> None:
    import streamlit as st

    from pages import diagnostics_view
    from pages.common import service

    st.session_state.language = language
    diagnostics_view.render(service().store.get(run_id))


def render(store: RunStore, run_id: int, language: str) -> AppTest:
    at = AppTest.from_function(diagnostics_script, args=(run_id, language), default_timeout=60)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    return at


@pytest.mark.parametrize("language", ["en", "ko"])
def test_diagnostics_view_renders_a_recorded_run(recorded_run, monkeypatch, language):
    store, run_id = recorded_run
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = render(store, run_id, language)
    headings = [element.value for element in at.subheader]
    for key in ("diagnostics.fit_heading", "diagnostics.gradients_heading", "diagnostics.histograms_heading", "diagnostics.units_heading"):
        assert i18n.translate(language, key) in headings
    code, values = diagnostics.verdict(store.metrics(run_id))
    assert code == "too_early" and at.markdown[0].value == diagnostics.verdict_text(language, code, values)
    assert at.select_slider(key="diagnostics.epoch").options == ["0", "1", "2"]
    assert len(at.get("plotly_chart")) == 5  # gap, gradients, activations, weights, dead and saturated units
    at.select_slider(key="diagnostics.epoch").set_value(0).run()
    assert not at.exception


def test_diagnostics_view_explains_a_run_without_or_with_a_damaged_recording(recorded_run, monkeypatch):
    store, run_id = recorded_run
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    st.cache_resource.clear()
    st.cache_data.clear()
    older = store.create(NETWORK, SETTINGS.to_dict(), owner="ada")  # as a run trained before recordings existed
    at = render(store, older, "en")
    assert [element.value for element in at.info] == [i18n.translate("en", "diagnostics.no_recording")]
    diagnostics.recording_path(store, older).parent.mkdir(parents=True, exist_ok=True)
    diagnostics.recording_path(store, older).write_bytes(b'{"version": 1, "epo')
    at = render(store, older, "ko")
    assert [element.value for element in at.warning] == [i18n.translate("ko", "diagnostics.unreadable", lines=1)]
