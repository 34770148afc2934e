"""Tests for core/drawing: MNIST-style preprocessing against LeCun et al.'s description, safe uploads,
the "my digits" set on disk, and the accuracy of a real trained run through the whole drawing path.

The accuracy check trains one short run of the `fast` preset (about 10 s on a quiet 2-core
CPU) and is the acceptance criterion: MNIST test digits re-drawn on a canvas (ten times larger,
thicker strokes, anywhere on the canvas, black on white) are read as well as the originals.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.drawing import classify, digits, preprocess, synthetic
from core.drawing.preprocess import DrawingError, EmptyDrawing
from core.errors import translate
from core.jobs import runner
from core.jobs.store import RunStore
from core.training import checkpoint
from core.training.presets import get as get_preset
from core.training.settings import TrainSettings

ROOT = Path(__file__).resolve().parent.parent
ACCURACY_IMAGES = 1000


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(image)
    return rows.min(), rows.max(), columns.min(), columns.max()


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    rows, columns = np.indices(image.shape)
    return float((rows * weights).sum() / weights.sum()), float((columns * weights).sum() / weights.sum())


def canvas_with(digit: np.ndarray, scale: float, top: int, left: int, side: int = 280) -> np.ndarray:
    """`digit` (white on black) scaled by `scale` and pasted black on white at (top, left) on a side×side RGB canvas."""
    rows, columns = np.nonzero(digit)
    crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    large = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
    ink = np.zeros((side, side), dtype=np.uint8)
    ink[top : top + large.shape[0], left : left + large.shape[1]] = large
    return np.repeat((255 - ink)[:, :, None], 3, axis=2)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    "placement",
    [
        ("off-centre, top left", 8.0, 2, 2),
        ("off-centre, bottom right", 6.0, 158, 158),
        ("tiny", 1.5, 200, 30),
        ("huge, touching the edges", 13.9, 0, 0),
    ],
    ids=lambda placement: placement[0],
)
def test_a_digit_anywhere_and_of_any_size_ends_centred_with_a_20_px_longer_side(mnist, placement):
    _, scale, top, left = placement
    for index in range(5):
        digit = mnist.test_images[index].numpy()
        prepared = preprocess.prepare(canvas_with(digit, scale, top, left))
        image = prepared.image
        assert image.shape == (28, 28) and image.dtype == np.uint8
        first_row, last_row, first_column, last_column = ink_box(image)
        height, width = last_row - first_row + 1, last_column - first_column + 1
        assert max(height, width) == preprocess.BOX_SIDE, (index, height, width)
        # The aspect ratio is kept (to a pixel of rounding, plus the anti-aliased rim).
        original = ink_box(digit)
        original_ratio = (original[3] - original[2] + 1) / (original[1] - original[0] + 1)
        assert abs(width / height - original_ratio) < 0.15, (index, width / height, original_ratio)
        row, column = centre_of_mass(image)
        assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5, (index, row, column)
        assert prepared.dark_on_light


def test_mnist_digits_pass_through_almost_unchanged(mnist):
    """An MNIST digit is already in MNIST's format: preparing it again must barely move a pixel."""
    images = mnist.test_images[:200].numpy()
    differences = [np.abs(preprocess.prepare(image).image.astype(int) - image.astype(int)).mean() for image in images]
    assert np.mean(differences) < 6, np.mean(differences)  # of 255; mostly a one-pixel shift from rounding


def test_inverted_colours_are_detected_and_give_the_same_image(mnist):
    digit = mnist.test_images[3].numpy()
    dark_on_light = canvas_with(digit, 9.0, 20, 40)
    light_on_dark = 255 - dark_on_light
    first, second = preprocess.prepare(dark_on_light), preprocess.prepare(light_on_dark)
    assert first.dark_on_light and not second.dark_on_light
    assert np.array_equal(first.image, second.image)


def test_a_drawing_on_a_transparent_canvas_uses_the_alpha_channel(mnist):
    digit = mnist.test_images[1].numpy()
    opaque = canvas_with(digit, 9.0, 20, 40)
    transparent = np.zeros((280, 280, 4), dtype=np.uint8)
    transparent[:, :, 3] = 255 - opaque[:, :, 0]  # ink painted white: only its alpha shows it
    prepared = preprocess.prepare(transparent)
    assert prepared.from_alpha
    assert np.abs(prepared.image.astype(int) - preprocess.prepare(opaque).image.astype(int)).max() <= 2


@pytest.mark.parametrize(
    "blank",
    [
        np.full((280, 280, 3), 255, dtype=np.uint8),  # white canvas
        np.zeros((280, 280, 4), dtype=np.uint8),  # transparent canvas
        np.full((280, 280), 180, dtype=np.uint8),  # a grey sheet
    ],
    ids=["white", "transparent", "grey"],
)
def test_a_blank_canvas_is_refused_with_a_message(blank):
    with pytest.raises(EmptyDrawing) as caught:
        preprocess.prepare(blank)
    assert caught.value.code == "drawing.empty"
    assert str(caught.value) == translate("en", "message.drawing.empty")
    assert caught.value.render("ko") == translate("ko", "message.drawing.empty")


def test_a_speck_is_refused_not_guessed():
    canvas = np.full((280, 280, 3), 255, dtype=np.uint8)
    canvas[100:104, 100:104] = 0
    with pytest.raises(EmptyDrawing) as caught:
        preprocess.prepare(canvas)
    assert caught.value.code == "drawing.faint"
    with pytest.raises(DrawingError):  # and EmptyDrawing is one of our errors, so pages and the CLI show it
        preprocess.prepare(canvas)


def test_a_photo_of_a_digit_on_paper_gives_the_clean_drawings_image(mnist):
    """Grey paper lit unevenly, pencil-grey ink, sensor noise, specks, and the dark desk along one edge."""
    digit = mnist.test_images[7].numpy()
    clean = canvas_with(digit, 7.0, 60, 70, side=320)[:, :, 0].astype(np.float64)
    random = np.random.default_rng(1)
    rows, columns = np.indices(clean.shape)
    paper = 150 + 60 * columns / clean.shape[1]  # brighter to the right
    ink = 1 - clean / 255
    photo = paper * (1 - 0.6 * ink) + random.normal(0, 6, clean.shape)
    photo[:, :18] = 35  # the desk beside the sheet
    for row, column in random.integers(40, 300, size=(6, 2)):
        photo[row : row + 2, column : column + 2] = 60  # specks of dust
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    from_photo, from_drawing = preprocess.prepare(photo), preprocess.prepare(clean.astype(np.uint8))
    assert from_photo.dark_on_light
    first, second = from_photo.image.astype(float).ravel(), from_drawing.image.astype(float).ravel()
    similarity = first @ second / np.linalg.norm(first) / np.linalg.norm(second)
    assert similarity > 0.9, similarity


# ----------------------------------------------------------------------------- uploads


def test_uploads_read_png_and_jpeg_and_refuse_other_formats(mnist):
    digit = canvas_with(mnist.test_images[0].numpy(), 9.0, 30, 30)
    assert preprocess.prepare_upload(png_bytes(digit)).image.shape == (28, 28)
    jpeg = io.BytesIO()
    Image.fromarray(digit).save(jpeg, format="JPEG", quality=85)
    assert preprocess.prepare_upload(jpeg.getvalue()).dark_on_light
    gif = io.BytesIO()
    Image.fromarray(digit).save(gif, format="GIF")
    with pytest.raises(DrawingError) as caught:
        preprocess.read_upload(gif.getvalue())
    assert caught.value.code == "drawing.not_png_or_jpeg"
    with pytest.raises(DrawingError) as caught:
        preprocess.read_upload(png_bytes(digit)[:60])  # cut short
    assert caught.value.code in ("drawing.unidentified", "drawing.unreadable")
    # Pillow's own words stay in the log detail, never in the sentence a learner reads.
    assert caught.value.detail not in str(caught.value) or not caught.value.detail


def test_an_oversized_upload_is_refused_before_it_is_read():
    with pytest.raises(DrawingError) as caught:
        preprocess.read_upload(b"\x89PNG\r\n\x1a\n" + bytes(preprocess.MAX_UPLOAD_BYTES))
    assert caught.value.code == "drawing.file_too_large"
    assert caught.value.params["limit"] == preprocess.MAX_UPLOAD_BYTES // 2**20


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    """A valid PNG whose header claims 50000×50000 pixels (2.5 billion; 7.5 GB decoded) and whose data is a few bytes."""
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)  # 8-bit grey
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b"")
    assert len(bomb) < 200

    def decoding_is_forbidden(self, *arguments, **keywords):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoding_is_forbidden)
    with pytest.raises(DrawingError) as caught:
        preprocess.read_upload(bomb)
    assert caught.value.code in ("drawing.decompression_bomb", "drawing.too_many_pixels")
    # Below Pillow's own bomb limit but above ours (a 64-megapixel header): refused by our check, also from the header.
    large = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 0, 0, 0, 0)) + png_chunk(b"IEND", b"")
    with pytest.raises(DrawingError) as caught:
        preprocess.read_upload(large)
    assert (caught.value.code, caught.value.params["width"], caught.value.params["height"]) == ("drawing.too_many_pixels", 8000, 8000)
    assert "8000×8000" in str(caught.value) and "8000×8000" in caught.value.render("ko")


# ----------------------------------------------------------------------------- a trained run through the real path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist):
    """One short run of the `fast` preset (about 98 % test accuracy), trained and saved the way a worker does."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    preset = get_preset("fast")
    settings = TrainSettings.from_dict({**preset.settings, "epochs": 2, "train_subset": 20_000, "device": "cpu", "eval_batch_size": 2000})
    run_id = store.create(preset.network, settings.to_dict(), name="fast", owner="test")
    assert runner.execute(store, run_id) == "succeeded", store.get(run_id).message
    model, _, _ = checkpoint.load(store.best_checkpoint_path(run_id))
    return store, run_id, model


def test_redrawn_test_digits_are_read_as_well_as_the_originals(trained_run, mnist):
    """MNIST test digits drawn on a canvas (×10, thicker strokes, random place, black on white) through
    preprocessing and the trained run: accuracy within one point of the same run on the originals."""
    _, _, model = trained_run
    images = mnist.test_images[:ACCURACY_IMAGES].numpy()
    labels = mnist.test_labels[:ACCURACY_IMAGES].numpy()
    random = np.random.default_rng(0)
    redrawn = np.stack([preprocess.prepare(synthetic.as_drawn(image, random)).image for image in images])
    original_accuracy = float((classify.probabilities(model, images).argmax(axis=1) == labels).mean())
    redrawn_accuracy = float((classify.probabilities(model, redrawn).argmax(axis=1) == labels).mean())
    print(f"\naccuracy on {ACCURACY_IMAGES} test digits: original {original_accuracy:.4f}, redrawn {redrawn_accuracy:.4f}")
    assert original_accuracy > 0.96
    assert abs(redrawn_accuracy - original_accuracy) <= 0.01


def test_probabilities_are_a_softmax_that_agrees_with_the_logits(trained_run, mnist):
    _, _, model = trained_run
    images = mnist.test_images[:20].numpy()
    probabilities = classify.probabilities(model, images)
    assert probabilities.shape == (20, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    logits = model(mnist.test_images[:20].unsqueeze(1).float() / 255).detach().numpy()
    assert np.array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))
    assert np.allclose(classify.probabilities(model, images[0]), probabilities[0], atol=1e-6)


def test_the_predict_command_classifies_files_and_reports_bad_ones_in_their_entry(trained_run, mnist, tmp_path):
    store, run_id, model = trained_run
    seven = tmp_path / "seven.png"
    seven.write_bytes(png_bytes(canvas_with(mnist.test_images[0].numpy(), 9.0, 20, 40)))  # test image 0 is a 7
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(np.full((100, 100), 255, dtype=np.uint8)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    files = [str(seven), str(blank), str(broken), str(tmp_path / "missing.png")]
    result = subprocess.run(
        [sys.executable, "-m", "core", "predict", "--run", str(run_id), *files, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"LAYERLAB_RUNS": str(store.directory), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["run_id"] == run_id
    entries = payload["predictions"]
    assert [entry["file"] for entry in entries] == files
    expected = classify.probabilities(model, preprocess.prepare_upload(seven.read_bytes()).image)
    assert entries[0]["digit"] == int(expected.argmax()) == 7
    assert np.allclose(entries[0]["probabilities"], expected, atol=1e-5) and len(entries[0]["probabilities"]) == 10
    assert entries[1]["code"] == "drawing.empty" and "digit" not in entries[1]
    assert entries[1]["error"] == translate("en", "message.drawing.empty")
    assert entries[2]["code"] in ("drawing.unidentified", "drawing.unreadable")
    assert (entries[3]["code"], entries[3]["error"]) == ("drawing.file_unreadable", translate("en", "message.drawing.file_unreadable", path=files[3]))


def test_the_predict_command_names_a_missing_run(runs_dir):
    result = subprocess.run([sys.executable, "-m", "core", "predict", "--run", "99", "x.png", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error" in json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- my digits


def digit_images(mnist, count: int) -> list[tuple[np.ndarray, int]]:
    return [(mnist.test_images[index].numpy(), int(mnist.test_labels[index])) for index in range(count)]


def test_my_digits_are_kept_per_owner_under_the_runs_directory(tmp_path, mnist):
    mine, theirs = digits.DigitSet(tmp_path, "Kim Min-ji"), digits.DigitSet(tmp_path, "Lee / ../etc")
    for image, label in digit_images(mnist, 3):
        mine.add(image, label)
    theirs.add(mnist.test_images[9].numpy(), 9)
    assert mine.directory.parent == theirs.directory.parent == tmp_path / "digits"
    assert mine.directory != theirs.directory and len(mine) == 3 and len(theirs) == 1
    index = json.loads((mine.directory / "index.json").read_text())
    assert index["owner"] == "Kim Min-ji" and [entry["label"] for entry in index["digits"]] == [7, 2, 1]
    images, labels = digits.DigitSet(tmp_path, "Kim Min-ji").tensors()  # a new object reads the disk
    assert images.shape == (3, 28, 28) and str(images.dtype) == "torch.uint8" and labels.tolist() == [7, 2, 1]
    assert np.array_equal(images[0].numpy(), mnist.test_images[0].numpy())
    assert mine.counts() == [0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    mine.remove(mine.digits()[0].file)
    assert digits.DigitSet(tmp_path, "Kim Min-ji").tensors()[1].tolist() == [2, 1]
    with pytest.raises(digits.DigitSetError) as caught:
        mine.add(mnist.test_images[0].numpy(), 10)
    assert (caught.value.code, caught.value.params["value"]) == ("drawing.digits.bad_label", "10")
    with pytest.raises(digits.DigitSetError) as caught:
        mine.add(np.zeros((28, 29), np.uint8), 1)
    assert caught.value.code == "drawing.digits.not_prepared"


def test_export_then_import_gives_back_the_same_digits(tmp_path, mnist):
    source = digits.DigitSet(tmp_path, "a")
    for image, label in digit_images(mnist, 12):
        source.add(image, label)
    archive = source.export_zip()
    assert all(name.endswith(".png") for name in zipfile.ZipFile(io.BytesIO(archive)).namelist())
    target = digits.DigitSet(tmp_path, "b")
    assert target.import_zip(archive) == 12
    source_images, source_labels = source.tensors()
    target_images, target_labels = target.tensors()
    assert target_labels.tolist() == source_labels.tolist()
    assert np.array_equal(target_images.numpy(), source_images.numpy())


def test_a_hostile_zip_cannot_escape_overfill_or_bomb_the_set(tmp_path, mnist, monkeypatch):
    digit = png_bytes(mnist.test_images[0].numpy())
    photo = png_bytes(canvas_with(mnist.test_images[1].numpy(), 6.0, 10, 10, side=200))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("../../7-escape.png", digit)  # the path is dropped, the name kept
        archive.writestr("/etc/3-absolute.png", digit)
        archive.writestr("2/from-a-folder.png", photo)  # a bigger picture: prepared like an upload
        archive.writestr("notes.txt", b"hello")  # not a labelled PNG: ignored
        archive.writestr("4-huge.png", b"\x89PNG\r\n\x1a\n" + bytes(digits.MAX_ENTRY_BYTES + 10))  # over the cap: skipped
        archive.writestr("5-broken.png", b"\x89PNG\r\n\x1a\nbroken")  # unreadable: skipped
    target = digits.DigitSet(tmp_path / "runs", "c")
    assert target.import_zip(buffer.getvalue()) == 3
    assert sorted(target.tensors()[1].tolist()) == [2, 3, 7]
    created = {path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file()}
    assert all(path.parts[0] == "runs" for path in created), created
    with pytest.raises(digits.DigitSetError) as caught:
        target.import_zip(b"PK\x03\x04 nonsense")
    assert caught.value.code == "drawing.digits.not_zip" and caught.value.detail  # the zip module's words are kept for logs
    assert caught.value.detail not in str(caught.value)
    monkeypatch.setattr(digits, "MAX_DIGITS", 4)
    with pytest.raises(digits.DigitSetError) as caught:
        target.import_zip(buffer.getvalue())
    assert caught.value.code in ("drawing.digits.zip_overfills", "drawing.digits.set_full")
    assert len(target) == 3  # refused as a whole


def test_a_run_is_scored_on_my_digits(trained_run, mnist, tmp_path):
    _, _, model = trained_run
    digit_set = digits.DigitSet(tmp_path, "d")
    images = mnist.test_images[:40].numpy()
    labels = mnist.test_labels[:40].numpy()
    for image, label in zip(images, labels):
        digit_set.add(image, int(label))
    report = digits.evaluate(model, digit_set)
    predictions = classify.probabilities(model, images).argmax(axis=1)
    assert report.total == 40 and report.correct == int((predictions == labels).sum())
    assert report.accuracy == pytest.approx(float((predictions == labels).mean()))
    assert report.per_label_total == np.bincount(labels, minlength=10).tolist()
    assert sum(map(sum, report.confusion)) == 40 and report.confusion[int(labels[0])][int(predictions[0])] >= 1
    empty = digits.evaluate(model, digits.DigitSet(tmp_path, "nobody"))
    assert empty.total == 0 and empty.accuracy == 0.0
