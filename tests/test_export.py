"""Exports: the runnable PyTorch file and ONNX reproduce the app's network for every preset; refusals; the CLI; the report.

The PyTorch files run in a fresh interpreter that cannot import LayerLab, safetensors or
Streamlit (their modules are blocked), so only torch and Pillow are left to them. ONNX goes
through ONNX Runtime. Batch-norm and L2-pooling nets join the presets, since no preset has
them; batch-norm's running averages are moved off their initial values first, or a wrong
eval-mode export would go unnoticed.
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plotly.offline import get_plotlyjs
from safetensors.torch import load_file

from core import cli
from core.views.i18n import translate
from core.export import files
from core.export.source import python_source
from core.jobs.store import RunStore
from core.model import network as networks
from core.training import checkpoint, presets
from core.training.settings import TrainSettings
from core.views import builder_state, exports, report
from tests.conftest import short_fast_run

EXTRA_NETWORKS = {
    "batchnorm-l2pool": {
        "layers": [
            {"kind": "conv", "filters": 6, "kernel_size": 5, "activation": "linear"},
            {"kind": "batchnorm"},
            {"kind": "activation", "activation": "elu"},
            {"kind": "l2pool", "size": 2},
            {"kind": "conv", "filters": 8, "kernel_size": 3, "padding": 1, "activation": "gelu"},
            {"kind": "avgpool", "size": 2},
            {"kind": "dense", "units": 20, "activation": "leaky_relu"},
            {"kind": "batchnorm"},
            {"kind": "dropout", "p": 0.3},
            {"kind": "output"},
        ]
    },
}
# Modules the generated file must run without.
BLOCKED = ("core", "safetensors", "streamlit", "plotly", "onnx", "onnxruntime", "captum")


def networks_to_check() -> dict[str, dict]:
    found = {name: preset.network for name, preset in presets.all_presets().items()}
    return {**found, **EXTRA_NETWORKS}


def built(name: str, spec: dict) -> torch.nn.Sequential:
    """The network with seeded weights and, for batch-norm nets, running averages that are not the initial 0 and 1."""
    model = networks.build(spec, seed=len(name))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(64, 1, 28, 28))
    return model.eval()


@pytest.fixture(scope="module")
def test_images(mnist) -> torch.Tensor:
    return mnist.test_images[:100].unsqueeze(1).float().div(255)


def test_the_pytorch_file_reproduces_every_network_in_an_interpreter_without_layerlab(tmp_path, test_images):
    expected = {}
    for name, spec in networks_to_check().items():
        model = built(name, spec)
        folder = tmp_path / name
        folder.mkdir()
        for file in files.python_files_for(model, spec, "mnist", "net", f"{name} test"):
            (folder / file.name).write_bytes(file.data)
        with torch.no_grad():
            expected[name] = model(test_images)
    torch.save(test_images, tmp_path / "images.pt")
    script = f"""
import importlib.util, sys, torch
for blocked in {BLOCKED!r}:
    sys.modules[blocked] = None
images = torch.load({str(tmp_path / "images.pt")!r}, weights_only=True)
logits = {{}}
for name in {sorted(expected)!r}:
    spec = importlib.util.spec_from_file_location("net_" + name.replace("-", "_"), {str(tmp_path)!r} + "/" + name + "/net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        logits[name] = module.load()(images)
torch.save(logits, {str(tmp_path / "logits.pt")!r})
"""
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    produced = torch.load(tmp_path / "logits.pt", weights_only=True)
    for name, logits in expected.items():
        assert torch.equal(produced[name].argmax(1), logits.argmax(1)), name
        assert (produced[name] - logits).abs().max() <= 1e-5, name


def test_the_pytorch_file_imports_only_torch_and_pillow_and_a_hostile_name_stays_inside_its_docstring():
    source = python_source(presets.get("fast").network, "mnist", "net", 'x"""\nimport os; os.system("echo owned")\n"""')
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"sys", "pathlib", "torch", "PIL"}
    assert "os" not in {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert ast.get_docstring(tree).startswith("x'''")  # the name's quotes were made harmless, so it stayed text


def test_the_pytorch_file_classifies_png_files_given_on_its_command_line(tmp_path, trained_conv, mnist):
    folder = tmp_path / "export"
    folder.mkdir()
    for file in files.python_files_for(trained_conv, presets.get("fast").network, "mnist", "net", "fast"):
        (folder / file.name).write_bytes(file.data)
    digits = mnist.test_images[:3].numpy()
    paths = []
    for number, digit in enumerate(digits):
        image = Image.fromarray(digit)
        if number == 2:
            image = image.resize((112, 112), Image.Resampling.NEAREST)  # any other size is resized to 28×28
        paths.append(tmp_path / f"digit-{number}.png")
        image.save(paths[-1])
    # From another folder: the file finds its weights beside itself.
    result = subprocess.run([sys.executable, "-I", str(folder / "net.py"), *map(str, paths)], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    with torch.no_grad():
        app = trained_conv(torch.from_numpy(digits[:2]).unsqueeze(1).float().div(255)).argmax(1).tolist()
    assert [int(line.split()[-1]) for line in lines[:2]] == app
    assert int(lines[2].split()[-1]) == int(mnist.test_labels[2])


def test_onnx_runtime_matches_pytorch_for_every_network_at_any_batch_size(test_images):
    import onnxruntime

    for name, spec in networks_to_check().items():
        model = built(name, spec)
        session = onnxruntime.InferenceSession(files.onnx_bytes(model), providers=["CPUExecutionProvider"])
        for images in (test_images, test_images[:1]):
            produced = session.run(["logits"], {"images": images.numpy()})[0]
            with torch.no_grad():
                expected = model(images).numpy()
            assert produced.shape == expected.shape, name
            assert np.abs(produced - expected).max() <= 1e-4, name


# ----------------------------------------------------------------------------- runs: refusals, the CLI, the page's downloads, the report


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[RunStore, int]:
    """A short real run (one epoch on 2,000 images) named like a hostile student would name it."""
    store = RunStore(tmp_path_factory.mktemp("export-runs"))
    return store, short_fast_run(store, epochs=1, train_subset=2000, name="<b>my</b> net", owner="<script>alert(1)</script>")


@pytest.mark.parametrize(
    "status, epochs, code",
    [("running", 0, "export.not_stopped"), ("queued", 0, "export.not_stopped"), ("failed", 1, "export.failed_run"), ("cancelled", 0, "export.no_epoch")],
)
def test_a_run_that_is_training_failed_or_finished_no_epoch_is_refused_in_both_languages(store, status, epochs, code):
    run_id = store.create(presets.get("fast").network, TrainSettings().to_dict(), name="x")
    store.update(run_id, status=status, epochs_done=epochs, best_epoch=epochs)
    with pytest.raises(files.ExportError) as raised:
        files.exportable(store, run_id)
    assert raised.value.code == code
    korean = raised.value.render("ko")
    assert f"#{run_id}" in korean and korean != raised.value.render("en")
    assert exports.refusal(store, run_id).code == code


def test_the_cli_writes_each_format_of_a_finished_run(finished, tmp_path, monkeypatch, capsys):
    store, run_id = finished
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    written = {}
    for format, name in (("safetensors", "net.safetensors"), ("python", "net.py"), ("report", "report.html")):
        assert cli.main(["export", "--run", str(run_id), "--format", format, "--out", str(tmp_path / name), "--json"]) == 0
        written[format] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["files"]
    # Weights + spec: the checkpoint's tensors, and a JSON the Build page loads.
    tensors, _ = checkpoint.read(store.best_checkpoint_path(run_id))
    assert {key: value.tolist() for key, value in load_file(tmp_path / "net.safetensors").items()} == {k: v.tolist() for k, v in tensors.items()}
    saved = json.loads((tmp_path / "net.json").read_text())
    assert builder_state.spec_from_json((tmp_path / "net.json").read_bytes())["layers"][0]["filters"] == 16
    assert saved["settings"]["train_subset"] == 2000
    assert [Path(item["path"]).name for item in written["python"]] == ["net.py", "net.pt"]
    assert (tmp_path / "report.html").read_text().count("data-figure=") >= 4
    # A folder as --out is one line and exit status 2, in Korean when asked.
    assert cli.main(["export", "--run", str(run_id), "--format", "onnx", "--out", str(tmp_path), "--lang", "ko"]) == 2
    assert "폴더" in capsys.readouterr().err


def test_the_pages_downloads_are_what_the_cli_writes(finished):
    store, run_id = finished
    python = exports.download(store, run_id, "python")
    assert python.file_name == f"run_{run_id}_b_my_b_net-python.zip"  # the learner's name, made safe for a file name
    with zipfile.ZipFile(io.BytesIO(python.data)) as archive:
        assert sorted(archive.namelist()) == [f"run_{run_id}_b_my_b_net.pt", f"run_{run_id}_b_my_b_net.py"]
    weights = exports.download(store, run_id, "safetensors")
    with zipfile.ZipFile(io.BytesIO(weights.data)) as archive:
        assert archive.read(f"run_{run_id}_b_my_b_net.safetensors") == store.best_checkpoint_path(run_id).read_bytes()


def test_the_report_holds_every_figure_escapes_what_the_learner_typed_and_speaks_korean(finished):
    store, run_id = finished
    english = report.run_report(store, run_id, "en")
    for figure in ("curves", "filters", "confusion", "per-class", "mistakes"):
        assert f'data-figure="{figure}"' in english
    assert "<script>alert(1)</script>" not in english and "&lt;script&gt;alert(1)&lt;/script&gt;" in english
    assert "<b>my</b>" not in english
    assert "<script src=" not in english and get_plotlyjs()[-2000:] in english  # plotly.js is inlined: the file opens with no network
    korean = report.run_report(store, run_id, "ko")
    assert translate("ko", "report.network") in korean and "학습 곡선" in korean


def test_the_runs_page_offers_each_export_of_a_finished_run_and_says_why_not_for_a_queued_one(finished, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_app_train_runs import APP

    store, run_id = finished
    waiting = store.create(presets.get("fast").network, TrainSettings().to_dict(), name="busy", status="queued")
    monkeypatch.setenv("LAYERLAB_RUNS", str(store.directory))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.session_state["language"] = "ko"
        at.switch_page("pages/runs.py").run()
        rows = list(at.dataframe[0].value["id"])
        for chosen, expected in ((run_id, "offers"), (waiting, "refuses")):
            at.session_state[at.dataframe[0].key] = {"selection": {"rows": [rows.index(chosen)], "columns": [], "cells": []}}
            at.run()
            assert not at.exception, [error.value for error in at.exception]
            labels = [element.proto.label for element in at.get("download_button")]
            offered = [translate("ko", f"runs.export.{format}") for format in exports.MIME]
            if expected == "offers":
                assert set(offered) <= set(labels), labels
            else:
                assert not set(offered) & set(labels)
                reason = translate("ko", "message.export.not_stopped", run=waiting, status=translate("ko", "common.status.queued"))
                assert any(reason in caption.value for caption in at.caption), [caption.value for caption in at.caption]
    finally:
        st.cache_resource.clear()


def test_every_chart_in_the_app_keeps_its_download_as_png_button():
    """A `plotly_chart` call keeps Plotly's default mode bar or passes `plots.CHART_CONFIG` (PNG button only); only the invisible preload hides it."""
    from core.views import plots

    assert plots.CHART_CONFIG["modeBarButtons"] == [["toImage"]] and plots.CHART_CONFIG["toImageButtonOptions"]["format"] == "png"
    assert "displayModeBar" not in plots.CHART_CONFIG
    checked = 0
    for path in sorted((Path(__file__).resolve().parent.parent / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "plotly_chart"):
                continue
            checked += 1
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            if isinstance(keywords.get("key"), ast.Constant) and keywords["key"].value == "plotly_preload":
                continue
            config = keywords.get("config")
            assert config is None or ast.unparse(config) == "plots.CHART_CONFIG", f"{path.name}:{node.lineno} {ast.unparse(config)}"
    assert checked >= 10
