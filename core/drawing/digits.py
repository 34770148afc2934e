""" "My digits": a learner's own handwritten digits, kept with their true labels as a small dataset.

Owns where a set lives (`<runs dir>/digits/<owner hash>/`, one 28×28 PNG per digit and an
`index.json` of labels), adding and removing digits, export and import as a zip of PNGs
(checked the way an upload is: names reduced to safe ones, sizes and counts capped), a run's
accuracy and confusion on the set, and the set as tensors for a new run's training data.
It does not know where the runs directory is (the caller passes `RunStore.directory`) and
never touches a run's training.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.drawing import classify, preprocess
from core.drawing.preprocess import DrawingError

FOLDER = "digits"
INDEX = "index.json"
MAX_DIGITS = 5000  # a set larger than this is not "my handwriting" any more
MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024  # an exported digit is a few hundred bytes; a photo of one fits too
# An imported file's label: "7-anything.png", "7_anything.png", or a file in a folder named "7".
_LABELLED_NAME = re.compile(r"^([0-9])[-_ ][A-Za-z0-9._ -]{0,80}\.png$", re.IGNORECASE)


class DigitSetError(DrawingError):
    """The set cannot be changed as asked: a bad label, a full set, an unusable zip."""


@dataclass(frozen=True)
class Digit:
    file: str  # the PNG's name inside the set's folder
    label: int
    saved_at: float


@dataclass(frozen=True)
class SetReport:
    """How one model does on a set: accuracy, and per true label how many, how many right, and the confusion matrix."""

    total: int
    correct: int
    per_label_total: list[int]  # 10 counts
    per_label_correct: list[int]  # 10 counts
    confusion: list[list[int]]  # (10, 10), rows true labels, columns predictions

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def owner_key(owner: str) -> str:
    """The folder name for `owner`: a hash, so any name (spaces, slashes, Hangul) is a safe path."""
    return hashlib.sha256(owner.strip().encode("utf-8")).hexdigest()[:16]


class DigitSet:
    """One owner's digits on disk. Every method reads the disk afresh, so several sessions and processes can share a set."""

    def __init__(self, runs_directory: Path | str, owner: str):
        self.owner = owner.strip()
        self.directory = Path(runs_directory) / FOLDER / owner_key(self.owner)

    # -------------------------------------------------------------------- reading

    def digits(self) -> list[Digit]:
        index = self.directory / INDEX
        if not index.is_file():
            return []
        try:
            entries = json.loads(index.read_text(encoding="utf-8"))["digits"]
            return [Digit(str(entry["file"]), int(entry["label"]), float(entry["saved_at"])) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DigitSetError("drawing.digits.index_damaged", detail=str(error), path=str(index)) from None

    def __len__(self) -> int:
        return len(self.digits())

    def counts(self) -> list[int]:
        """How many digits of each label 0–9 the set holds."""
        return np.bincount([digit.label for digit in self.digits()], minlength=10).tolist()

    def image(self, digit: Digit) -> np.ndarray:
        return np.asarray(Image.open(self.directory / digit.file).convert("L"), dtype=np.uint8)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The set as MNIST-format tensors: images (N, 28, 28) uint8 and labels (N,) int64, to add to a run's training data.

        They match `Splits.train_images` / `train_labels`, so a runner can put them in front of
        the training split (`torch.cat`, then `dataclasses.replace(splits, …)`); in front, so
        that `train_subset`, which keeps the first N images, keeps them too.
        """
        digits = self.digits()
        images = np.stack([self.image(digit) for digit in digits]) if digits else np.zeros((0, 28, 28), np.uint8)
        return torch.from_numpy(images), torch.tensor([digit.label for digit in digits], dtype=torch.int64)

    # -------------------------------------------------------------------- changing

    def add(self, image: np.ndarray, label: int) -> Digit:
        """Save a prepared (28, 28) uint8 digit with its true label."""
        return self._add_many([(image, label)])[0]

    def _add_many(self, labelled: list[tuple[np.ndarray, int]]) -> list[Digit]:
        checked = []
        for image, label in labelled:
            image = np.asarray(image)
            if image.shape != (28, 28) or image.dtype != np.uint8:
                raise DigitSetError("drawing.digits.not_prepared", dtype=str(image.dtype), shape=str(image.shape))
            checked.append((image, _checked_label(label)))
        added = []
        with self._locked() as digits:  # One lock and one index write for the whole batch.
            if len(digits) + len(checked) > MAX_DIGITS:
                raise DigitSetError("drawing.digits.set_full", limit=MAX_DIGITS, count=len(digits))
            for image, label in checked:
                digit = Digit(f"{label}-{uuid.uuid4().hex[:12]}.png", label, time.time())
                buffer = io.BytesIO()
                Image.fromarray(image, mode="L").save(buffer, format="PNG")
                _write_atomically(self.directory / digit.file, buffer.getvalue())
                digits.append(digit)
                added.append(digit)
        return added

    def remove(self, file: str) -> None:
        with self._locked() as digits:
            kept = [digit for digit in digits if digit.file != file]
            if len(kept) == len(digits):
                raise DigitSetError("drawing.digits.no_such_digit", file=file)
            digits[:] = kept
            (self.directory / Path(file).name).unlink(missing_ok=True)

    def export_zip(self) -> bytes:
        """Every digit as `<label>-<id>.png` in one zip."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for digit in self.digits():
                archive.write(self.directory / digit.file, arcname=digit.file)
        return buffer.getvalue()

    def import_zip(self, data: bytes) -> int:
        """Add the labelled PNGs of a zip (as `export_zip` writes them); returns how many were added.

        A file counts when its name (or its folder's name) gives the label: `7-….png`, or
        `7/….png`. Each is read like an upload and prepared, unless it already is a 28×28
        grey image. Path parts, other files and oversized entries are ignored; a zip that
        is too large, not a zip, or would overfill the set is refused as a whole.
        """
        if len(data) > MAX_ZIP_BYTES:
            raise DigitSetError("drawing.digits.zip_too_large", size=f"{len(data) / 2**20:.1f}", limit=MAX_ZIP_BYTES // 2**20)
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise DigitSetError("drawing.digits.not_zip", detail=str(error)) from None
        labelled = [(member, label) for member in members if (label := _label_of(member)) is not None]
        if len(self) + len(labelled) > MAX_DIGITS:
            raise DigitSetError("drawing.digits.zip_overfills", count=len(labelled), limit=MAX_DIGITS)
        prepared = []
        for member, label in labelled:
            if member.file_size > MAX_ENTRY_BYTES:
                continue
            with archive.open(member) as handle:
                content = handle.read(MAX_ENTRY_BYTES + 1)  # The header's size is not trusted.
            if len(content) > MAX_ENTRY_BYTES:
                continue
            try:
                prepared.append((_as_digit(content), label))
            except DrawingError:
                continue  # An empty or unreadable picture in someone's zip is skipped, not fatal.
        return len(self._add_many(prepared))

    @contextmanager
    def _locked(self) -> Iterator[list[Digit]]:
        """The digit list under an exclusive lock; what the block leaves in it is written back."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "index.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            digits = self.digits()
            yield digits
            payload = {"owner": self.owner, "digits": [digit.__dict__ for digit in digits]}
            _write_atomically(self.directory / INDEX, json.dumps(payload, indent=1).encode("utf-8"))


def evaluate(model: nn.Module, digit_set: DigitSet) -> SetReport:
    """How `model` does on the set: accuracy, per-label counts and the confusion matrix."""
    images, labels = digit_set.tensors()
    predictions = classify.probabilities(model, images.numpy()).argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    return report(labels.numpy(), predictions)


def report(labels: np.ndarray, predictions: np.ndarray) -> SetReport:
    """The SetReport of predicted classes (N,) against true labels (N,): one model's or an ensemble's."""
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return SetReport(
        total=int(confusion.sum()),
        correct=int(confusion.trace()),
        per_label_total=confusion.sum(axis=1).tolist(),
        per_label_correct=confusion.diagonal().tolist(),
        confusion=confusion.tolist(),
    )


def _checked_label(label: int) -> int:
    if not isinstance(label, (int, np.integer)) or isinstance(label, bool) or not 0 <= int(label) <= 9:
        raise DigitSetError("drawing.digits.bad_label", value=repr(label))
    return int(label)


def _label_of(member: zipfile.ZipInfo) -> int | None:
    """The label a zip member's name gives, or None: only the last two path parts count, never the path itself."""
    if member.is_dir():
        return None
    parts = [part for part in re.split(r"[\\/]", member.filename) if part]
    if not parts:
        return None
    name = parts[-1]
    if _LABELLED_NAME.match(name):
        return int(name[0])
    if len(parts) >= 2 and re.fullmatch(r"[0-9]", parts[-2]) and name.lower().endswith((".png", ".jpg", ".jpeg")):
        return int(parts[-2])
    return None


def _as_digit(content: bytes) -> np.ndarray:
    image = preprocess.read_upload(content)
    if image.size == (28, 28) and image.mode == "L":
        return np.asarray(image, dtype=np.uint8)  # Already in MNIST format (an exported digit).
    return preprocess.prepare(image).image


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
