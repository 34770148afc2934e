"""What the Runs page offers to download for a run: one file per export format (a zip where a format is two files)."""

from __future__ import annotations

from dataclasses import dataclass

from core.export import files
from core.jobs.store import RunStore
from core.views import report

MIME = {"safetensors": "application/zip", "onnx": "application/octet-stream", "python": "application/zip", "report": "text/html"}
SUFFIX = {"safetensors": "-safetensors.zip", "onnx": ".onnx", "python": "-python.zip", "report": "-report.html"}


@dataclass(frozen=True)
class Download:
    file_name: str
    data: bytes
    mime: str


def download(store: RunStore, run_id: int, format: str, language: str = "en") -> Download:
    """The download of `format` for run `run_id`; `files.ExportError` when the run cannot be exported."""
    run, _ = files.exportable(store, run_id)
    if format == "report":
        data = report.report_bytes(store, run_id, language)
    elif format == "onnx":
        data = files.onnx_files(store, run_id)[0].data
    else:
        data = files.as_zip(files.safetensors_files(store, run_id) if format == "safetensors" else files.python_files(store, run_id))
    return Download(file_name(run, format), data, MIME[format])


def file_name(run, format: str) -> str:
    """The downloaded file's name, e.g. 'run_12_fast.onnx' (known before the bytes are made)."""
    return files.stem(run) + SUFFIX[format]


def refusal(store: RunStore, run_id: int) -> files.ExportError | None:
    """Why the run cannot be exported, or None when it can."""
    try:
        files.exportable(store, run_id)
    except files.ExportError as error:
        return error
    return None
