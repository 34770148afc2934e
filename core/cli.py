"""The command line: `python -m core …` runs the book's experiments without the app.

Owns argument parsing and printing. Every command takes `--json`; then the last line it
prints is one JSON object, and `--lang ko` (or LAYERLAB_LANG=ko) prints error lines and run
messages in Korean, so scripts and tests can read the result. Bad input, a missing
run, missing data or unusable storage ends with a one-line error and exit status 2, never a
traceback; output cut short by a closed pipe (`| head`) ends quietly. Commands that need no
tensors (`runs`, `cancel`, `resume`, `delete`, `presets`) never import torch, so they answer at once;
the others import it inside their handler.

The CLI acts as the server's administrator: it may cancel, resume and delete every run.
With `--as-owner KEY` (a browser's owner key, from its `?key=` link) `train`, `cancel`,
`resume` and `delete` act as that browser instead and obey the same rules (`core.jobs.access`):
a refused action prints why and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.data.bounds import shown
from core.errors import LANGUAGES, LayerLabError, counted, language_or_default, render_any
from core.jobs import access
from core.jobs.service import JobService
from core.jobs.store import RunStore
from core.model import vocabulary
from core.training.settings import TrainSettings, parse_assignment


class CommandError(LayerLabError):
    """An error to print as one line (exit status 2)."""


def _emit(arguments: argparse.Namespace, text: str, payload: dict[str, Any]) -> None:
    if text:
        print(text, file=sys.stderr if arguments.json else sys.stdout)
    if arguments.json:
        print(json.dumps(payload))


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError("cli.no_file", path=path) from None
    except IsADirectoryError:
        raise CommandError("cli.is_directory", path=path) from None
    except OSError as error:
        raise CommandError("cli.unreadable", detail=str(error), path=path, cause=error.strerror or str(error)) from None
    except UnicodeDecodeError:
        raise CommandError("cli.not_text", path=path) from None
    except json.JSONDecodeError as error:
        raise CommandError("cli.not_json", detail=error.msg, path=path, line=error.lineno, column=error.colno) from None


def _actor(arguments: argparse.Namespace) -> access.Actor:
    """The administrator, or with `--as-owner KEY` the browser whose key that is."""
    key = getattr(arguments, "as_owner", None)
    if key is None:
        return access.ADMIN
    if not access.valid_key(key):
        raise CommandError("cli.bad_owner_key")
    return access.Actor.for_key(key)


# ----------------------------------------------------------------------------- commands


def command_data_fetch(arguments: argparse.Namespace) -> None:
    from core.data import datasets

    names = datasets.DATASET_NAMES if arguments.dataset == "all" else (arguments.dataset,)
    folders = {}
    for name in names:
        folders[name] = str(datasets.fetch(name, log=lambda message: print(message, file=sys.stderr)))
    _emit(arguments, "\n".join(f"{name}: verified in {folder}" for name, folder in folders.items()), {"datasets": folders})


def command_presets(arguments: argparse.Namespace) -> None:
    from core.training.presets import all_presets

    presets = all_presets()
    lines = []
    for preset in presets.values():
        figure = f"{preset.book_accuracy:.2f}%" if preset.book_accuracy else "—"
        lines.append(f"{preset.name:<26} {figure:>7}  {preset.title}")
    payload = {name: {"title": p.title, "book_accuracy": p.book_accuracy, "network": p.network, "settings": p.settings} for name, p in presets.items()}
    _emit(arguments, "\n".join(lines), {"presets": payload})


def command_validate(arguments: argparse.Namespace) -> None:
    from core.model import network as networks

    network = _read_json(arguments.file)
    if isinstance(network, dict) and "network" in network:  # A preset or saved-run file.
        network = network["network"]
    summary = networks.validate(network, arguments.dataset)
    rows = [
        {"layer": row.index + 1, "kind": row.kind, "description": row.description, "output_shape": list(row.output_shape), "parameters": row.parameters}
        for row in summary.rows
    ]
    _emit(arguments, summary.table(), {"valid": True, "layers": rows, "total_parameters": summary.total_parameters})


def _network_and_settings(arguments: argparse.Namespace) -> tuple[dict, TrainSettings, str]:
    from core.model import network as networks
    from core.training.presets import get

    if bool(arguments.preset) == bool(arguments.spec):
        raise CommandError("cli.preset_or_spec")
    if arguments.preset:
        preset = get(arguments.preset)
        network, values, name = preset.network, dict(preset.settings), preset.name
    else:
        loaded = _read_json(arguments.spec)
        if isinstance(loaded, dict) and "network" in loaded:
            network, values = loaded["network"], loaded.get("settings", {})
            if not isinstance(values, dict):
                raise CommandError("cli.settings_not_object", path=arguments.spec, value=shown(values))
            values = dict(values)
        else:
            network, values = loaded, {}
        name = Path(arguments.spec).stem
    if arguments.epochs is not None:
        values["epochs"] = arguments.epochs
    for assignment in arguments.set or []:
        key, value = parse_assignment(assignment)
        values[key] = value
    settings = TrainSettings.from_dict(values)
    network = networks.validate(network, settings.dataset).spec
    return network, settings, arguments.name or name


def _run_payload(run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": run.status,
        "message": run.message,
        "best_validation_accuracy": run.best_validation_accuracy,
        "test_accuracy": run.test_accuracy,
        "best_epoch": run.best_epoch,
        "epochs": run.epochs_done,
        "seconds": round(run.seconds, 3),
        "device": run.device,
    }


class _ProgressBar:
    """Draws one line of progress on stderr from the run's stored progress."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id, self.last_epoch = store, run_id, 0

    def poll(self) -> None:
        run = self.store.get(self.run_id)
        progress = run.progress
        if progress:
            fraction = progress["step"] / progress["steps_per_epoch"]
            bar = "#" * int(fraction * 30)
            sys.stderr.write(
                f"\repoch {progress['epoch']}/{progress['epochs']} [{bar:<30}] loss {progress['loss']:.4f} "
                f"{progress['images_per_second']:,.0f} img/s   "
            )
        for metrics in run.metrics[self.last_epoch :]:
            robust = metrics.get("robust_accuracy")
            robust_text = f"  robust acc {robust:.4f}" if robust is not None else ""
            sys.stderr.write(
                f"\repoch {metrics['epoch']}: train acc {metrics['train_accuracy']:.4f}  validation acc "
                f"{metrics['validation_accuracy']:.4f}  test acc {metrics['test_accuracy']:.4f}{robust_text}  ({metrics['seconds']:.1f} s)\n"
            )
            self.last_epoch = metrics["epoch"]
        sys.stderr.flush()


def command_train(arguments: argparse.Namespace) -> None:
    network, settings, name = _network_and_settings(arguments)
    store = RunStore()
    service = JobService(store)
    run_id = service.submit(network, settings, owner=arguments.owner, name=name, actor=_actor(arguments))
    if arguments.background:
        service.ensure_scheduler()
        _emit(arguments, f"Run {run_id} queued. Follow it with `python -m core runs show {run_id}`.", {"run_id": run_id, "status": "queued"})
        return
    bar = _ProgressBar(store, run_id) if not arguments.quiet else None
    status = service.run_here(run_id, poll=bar.poll if bar else None)
    run = store.get(run_id)
    if bar:
        bar.poll()
        sys.stderr.write("\n")
    payload = _run_payload(run)
    text = f"Run {run_id} {status}."
    if run.best_epoch:
        text += f" Best validation accuracy {run.best_validation_accuracy:.4f} (epoch {run.best_epoch}), test accuracy {run.test_accuracy:.4f}."
    if run.message:
        text += f" {run.message_in(_language(arguments))}"
    _emit(arguments, text, payload)
    if status in ("failed", "diverged"):
        raise SystemExit(1)


def command_runs_list(arguments: argparse.Namespace) -> None:
    runs = JobService(RunStore()).runs(owner=arguments.owner)  # Runs whose worker is gone read `interrupted`.
    lines = [f"{'id':>4}  {'status':<11} {'owner':<10} {'dataset':<13} {'val acc':>7} {'test acc':>8} {'epochs':>6}  network"]
    for run in runs:
        validation = f"{run.best_validation_accuracy:.4f}" if run.best_validation_accuracy is not None else "—"
        test = f"{run.test_accuracy:.4f}" if run.test_accuracy is not None else "—"
        lines.append(
            f"{run.id:>4}  {run.status:<11} {run.owner[:10]:<10} {run.dataset:<13} {validation:>7} {test:>8} {run.epochs_done:>6}  "
            f"{vocabulary.summarize_network(run.spec)}"
        )
    _emit(arguments, "\n".join(lines), {"runs": [_run_payload(run) | {"owner": run.owner, "name": run.name} for run in runs]})


def command_runs_show(arguments: argparse.Namespace) -> None:
    service = JobService(RunStore())
    run = service.run(arguments.id)  # A run whose worker is gone reads `interrupted`, not a stale `running`.
    queue_position = service.queue_position(run.id) if run.status == "queued" else None
    wait = _estimated_wait(service, queue_position) if queue_position is not None else None
    lines = [
        f"Run {run.id} — {run.name or 'unnamed'} ({run.status}) owner {run.owner or '—'}, {run.dataset}, {run.device or 'not started'}",
        f"Network: {vocabulary.summarize_network(run.spec)}",
    ]
    if queue_position is not None:
        lines.append(f"Queue position: {queue_position} (1 starts next).")
        if wait is not None:
            lines.append(f"Expected to start in about {round(wait)} s, when a running run ends (from their progress).")
    if run.message:
        lines.append(run.message_in(_language(arguments)))
    for metrics in run.metrics:
        lines.append(
            f"  epoch {metrics['epoch']:>3}: train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.4f} | "
            f"validation loss {metrics['validation_loss']:.4f} acc {metrics['validation_accuracy']:.4f} | "
            f"test acc {metrics['test_accuracy']:.4f} | lr {metrics['learning_rate']:.4g} | {metrics['seconds']:.1f} s"
        )
    _emit(arguments, "\n".join(lines), run.to_dict() | {"queue_position": queue_position, "estimated_start_seconds": wait})


def _estimated_wait(service: JobService, position: int) -> float | None:
    """Seconds until the queued run at `position` should start, from the running runs' ETAs (`run_views.estimated_wait`)."""
    from core.views import run_views  # no torch; only a queued run's `runs show` needs it

    return run_views.estimated_wait([service.run(run.id) for run in service.runs() if run.status == "running"], position)


def command_eval(arguments: argparse.Namespace) -> None:
    from core.training import evaluation

    store = RunStore()
    store.get(arguments.run, with_metrics=False)  # A wrong id is RunNotFound, not a missing file.
    report = evaluation.evaluate_checkpoint(store.best_checkpoint_path(arguments.run), arguments.run)
    lines = [f"Run {arguments.run}: test accuracy {report['test_accuracy']:.4f} ({report['errors']} of {report['total']} wrong)"]
    lines.append("Per class: " + ", ".join(f"{name} {accuracy:.3f}" for name, accuracy in zip(report["class_names"], report["per_class_accuracy"])))
    lines.append("Confusion matrix (rows: true class, columns: predicted):")
    lines += ["  " + " ".join(f"{count:>5}" for count in row) for row in report["confusion_matrix"]]
    _emit(arguments, "\n".join(lines), report)


def _loaded_run(run_id: int):
    """The run's best-validation weights with its dataset (`core.views.inspection.LoadedRun`).

    An unknown id or a run without weights answers before torch loads; a damaged checkpoint keeps
    its error's code and parameters, so the line reads in the language asked for.
    """
    store = RunStore()
    run = store.get(run_id, with_metrics=False)
    if not store.best_checkpoint_path(run_id).is_file():
        raise CommandError("probe.no_weights", run=run_id, status=run.status, done=counted("probe.epochs_done", run.epochs_done))
    from core.views import inspection

    try:
        return inspection.load_run(store, run_id)
    except inspection.ERRORS as error:
        raise CommandError(error.code, detail=error.detail, **error.params) from None


def command_inspect(arguments: argparse.Namespace) -> None:
    """Mistakes, confusion matrix or one test image's activations of a run's best-validation weights."""
    from core.probes import mistakes
    from core.views import inspection

    loaded = _loaded_run(arguments.run)
    if arguments.what == "activations":
        if arguments.image is None:
            raise CommandError("cli.inspect_needs_image")
        result = inspection.test_image_activations(loaded, arguments.image)
        label = int(loaded.splits.test_labels[arguments.image])
        layers = [
            {"layer": layer.index + 1, "kind": layer.kind, "description": layer.description, "shape": list(layer.values.shape),
             "mean": float(layer.values.mean()), "max": float(layer.values.max())}
            for layer in result.layers
        ]  # fmt: skip
        lines = [f"Run {arguments.run}, test image {arguments.image}: label {label}, predicted {result.prediction} ({result.probabilities.max():.1%})"]
        lines += [f"  {row['layer']:>2} {row['description']:<30} {'×'.join(map(str, row['shape'])):<10} mean {row['mean']:.4f} max {row['max']:.4f}" for row in layers]
        payload = {"run_id": arguments.run, "image": arguments.image, "label": label, "prediction": result.prediction,
                   "probabilities": result.probabilities.tolist(), "layers": layers}  # fmt: skip
        _emit(arguments, "\n".join(lines), payload)
        return
    predictions = inspection.test_predictions(loaded)
    if arguments.what == "confusion":
        matrix = mistakes.confusion(predictions).tolist()
        lines = [f"Run {arguments.run}: confusion matrix of the {sum(map(sum, matrix)):,} test images (rows: true class, columns: predicted):"]
        lines += ["  " + " ".join(f"{count:>5}" for count in row) for row in matrix]
        _emit(arguments, "\n".join(lines), {"run_id": arguments.run, "matrix": matrix})
        return
    indices = mistakes.misclassified(predictions).tolist()
    shown = ", ".join(map(str, indices[:30])) + (" …" if len(indices) > 30 else "")
    text = f"Run {arguments.run}: {len(indices)} misclassified test images, most confident first: {shown}"
    _emit(arguments, text, {"run_id": arguments.run, "count": len(indices), "indices": indices})

ATTACK_IMAGES = 1000  # the first N test images `attack` uses unless --n says otherwise
L2_EPSILON_MAXIMUM = 28.0  # the L2 length of a change of 1 in every one of 28×28 pixels: the farthest any image can move


def _checked_attack_request(arguments: argparse.Namespace) -> float | None:
    """The ε to attack with (None for DeepFool, which finds its own size), once method, ε, count and steps make sense."""
    import math

    from core.attacks.robustness import METHODS, AttackError

    if arguments.method not in METHODS:
        raise AttackError("attack.unknown_method", method=arguments.method, choices=list(METHODS))
    if arguments.n < 1:
        raise AttackError("attack.bad_count", value=str(arguments.n))
    if arguments.steps is not None and arguments.steps < 0:
        raise AttackError("attack.bad_steps", value=str(arguments.steps))
    if arguments.method == "deepfool":
        return None
    if arguments.eps is None:
        raise CommandError("cli.attack_needs_epsilon", method=arguments.method)
    epsilon = arguments.eps
    if arguments.method == "pgd_l2":
        if not (math.isfinite(epsilon) and 0 <= epsilon <= L2_EPSILON_MAXIMUM):
            raise AttackError("attack.out_of_range.epsilon", value=str(epsilon), minimum="0", maximum=f"{L2_EPSILON_MAXIMUM:g}")
    elif not (math.isfinite(epsilon) and 0 <= epsilon <= 1):
        raise AttackError("attack.epsilon_range", value=str(epsilon))
    return epsilon


def command_attack(arguments: argparse.Namespace) -> None:
    """Clean and adversarial accuracy of a run's best-validation weights on the first N test images."""
    epsilon = _checked_attack_request(arguments)
    loaded = _loaded_run(arguments.run)
    import torch

    from core.attacks import robustness
    from core.attacks.robustness import AttackError
    from core.training.device import describe, pick_device
    available = len(loaded.splits.test_images)
    if arguments.n > available:
        raise AttackError("attack.out_of_range.images", value=str(arguments.n), minimum="1", maximum=str(available))
    device = pick_device(arguments.device)
    model = loaded.model.to(device)
    steps = arguments.steps if arguments.steps is not None else (50 if arguments.method == "deepfool" else 40)
    report = robustness.attacked_accuracy(
        model, loaded.splits.test_images[: arguments.n], loaded.splits.test_labels[: arguments.n], arguments.method,
        0.0 if epsilon is None else epsilon, steps=steps, step_size=arguments.step_size,
        generator=torch.Generator().manual_seed(arguments.seed),
    )  # fmt: skip
    used_steps = None if arguments.method == "fgsm" else steps
    size = "its own smallest change" if epsilon is None else f"ε {epsilon:g}"
    text = (
        f"Run {arguments.run}, {arguments.method} ({size}{f', {used_steps} steps' if used_steps is not None else ''}) on the first "
        f"{report.n:,} test images: clean accuracy {report.clean_accuracy:.4f}, adversarial accuracy {report.adversarial_accuracy:.4f} "
        f"({report.seconds:.1f} s on {describe(device)})"
    )
    payload = {
        "run_id": arguments.run, "method": arguments.method, "epsilon": epsilon, "steps": used_steps,
        "step_size": arguments.step_size if arguments.method in ("pgd", "pgd_l2") else None, "n": report.n,
        "clean_accuracy": report.clean_accuracy, "adversarial_accuracy": report.adversarial_accuracy,
        "seconds": round(report.seconds, 3), "device": describe(device),
    }  # fmt: skip
    _emit(arguments, text, payload)


def command_predict(arguments: argparse.Namespace) -> None:
    """Classify image files with a run's best checkpoint, through the drawing page's preprocessing."""
    from core.data.datasets import class_names
    from core.drawing import classify, preprocess
    from core.training import checkpoint

    store = RunStore()
    store.get(arguments.run, with_metrics=False)  # A wrong id is RunNotFound, not a missing file.
    model, _, settings = checkpoint.load(store.best_checkpoint_path(arguments.run))
    names = class_names(settings.dataset)
    lines, predictions = [], []
    for file in arguments.images:
        try:
            prepared = preprocess.prepare_upload(_read_image_bytes(file))
        except LayerLabError as error:  # Unreadable or empty: say so for this file and go on with the others.
            sentence = _one_line(error.render(_language(arguments)))
            lines.append(f"{file}: error: {sentence}")
            predictions.append({"file": file, "error": sentence, "code": error.code})
            continue
        probabilities = classify.probabilities(model, prepared.image)
        digit = int(probabilities.argmax())
        lines.append(f"{file}: {digit} ({names[digit]}, {probabilities[digit]:.1%})")
        predictions.append({"file": file, "digit": digit, "probabilities": [round(float(value), 6) for value in probabilities]})
    _emit(arguments, "\n".join(lines), {"run_id": arguments.run, "predictions": predictions})


def command_export(arguments: argparse.Namespace) -> None:
    """Write a finished run's weights + spec, ONNX, a runnable PyTorch file or the HTML report (see core/export/files.py)."""
    from core.export import files

    store = RunStore()
    if arguments.format == "report":
        from core.views import report

        written = files.write([files.ExportFile("report.html", report.report_bytes(store, arguments.run, _language(arguments)))], arguments.out)
    else:
        exporters = {"safetensors": files.safetensors_files, "onnx": files.onnx_files, "python": files.python_files}
        written = files.write(exporters[arguments.format](store, arguments.run), arguments.out)
    sizes = [{"path": str(path), "bytes": path.stat().st_size} for path in written]
    text = "\n".join(f"Run {arguments.run}: wrote {item['path']} ({item['bytes']:,} bytes)" for item in sizes)
    _emit(arguments, text, {"run_id": arguments.run, "format": arguments.format, "files": sizes})


def _read_image_bytes(file: str) -> bytes:
    from core.drawing.preprocess import MAX_UPLOAD_BYTES, DrawingError

    try:
        with open(file, "rb") as handle:
            return handle.read(MAX_UPLOAD_BYTES + 1)  # One byte over the cap is enough to refuse it.
    except OSError as error:
        raise DrawingError("drawing.file_unreadable", detail=str(error), path=file) from None


def command_cancel(arguments: argparse.Namespace) -> None:
    status = JobService(RunStore()).cancel(arguments.id, actor=_actor(arguments))
    _emit(arguments, f"Run {arguments.id}: {status}.", {"run_id": arguments.id, "status": status})


def command_delete(arguments: argparse.Namespace) -> None:
    JobService(RunStore()).delete(arguments.id, actor=_actor(arguments))
    _emit(arguments, f"Run {arguments.id} deleted, with its metrics and files.", {"run_id": arguments.id, "deleted": True})


def command_resume(arguments: argparse.Namespace) -> None:
    service = JobService(RunStore())
    service.resume(arguments.id, actor=_actor(arguments))
    service.ensure_scheduler()
    _emit(arguments, f"Run {arguments.id} queued to resume from its last finished epoch.", {"run_id": arguments.id, "status": "queued"})


def command_scheduler(arguments: argparse.Namespace) -> None:
    from core.jobs import scheduler

    scheduler.run_scheduler(RunStore(), exit_when_idle=arguments.exit_when_idle)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="LayerLab from the command line.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="end with one line of JSON")
    common.add_argument(
        "--lang", choices=sorted(LANGUAGES), help="the language of error lines and run messages (default: $LAYERLAB_LANG, else en)"
    )
    as_owner = argparse.ArgumentParser(add_help=False)
    as_owner.add_argument(
        "--as-owner", metavar="KEY", help="act as the browser with this owner key (its ?key= link) instead of as the administrator"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data_parser = commands.add_parser("data", help="fetch and verify datasets").add_subparsers(dest="action", required=True)
    fetch = data_parser.add_parser("fetch", parents=[common], help="fetch and verify a dataset into the data directory")
    fetch.add_argument("--dataset", default="all", choices=("all", "mnist", "fashion-mnist"))
    fetch.set_defaults(handler=command_data_fetch)

    commands.add_parser("presets", parents=[common], help="list the preset networks").set_defaults(handler=command_presets)

    validate = commands.add_parser("validate", parents=[common], help="show a spec's shapes and parameters, or its error")
    validate.add_argument("file")
    validate.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    validate.set_defaults(handler=command_validate)

    train = commands.add_parser("train", parents=[common, as_owner], help="train a network (in the foreground unless --background)")
    train.add_argument("--preset")
    train.add_argument("--spec", help="a JSON file: a layer list, a spec, or a preset-style {network, settings}")
    train.add_argument("--epochs", type=int)
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. --set learning_rate=0.03")
    train.add_argument("--name", default="")
    train.add_argument("--owner", default="cli")
    train.add_argument("--background", action="store_true", help="queue the run for the job service and return")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=command_train)

    runs = commands.add_parser("runs", help="list or show runs").add_subparsers(dest="action", required=True)
    runs_list = runs.add_parser("list", parents=[common])
    runs_list.add_argument("--owner")
    runs_list.set_defaults(handler=command_runs_list)
    runs_show = runs.add_parser("show", parents=[common])
    runs_show.add_argument("id", type=int)
    runs_show.set_defaults(handler=command_runs_show)

    evaluate = commands.add_parser("eval", parents=[common], help="test accuracy, per-class accuracy and confusion matrix of a run")
    evaluate.add_argument("--run", type=int, required=True)
    evaluate.set_defaults(handler=command_eval)

    inspect = commands.add_parser("inspect", parents=[common], help="a run's mistakes, confusion matrix or one test image's activations")
    inspect.add_argument("--run", type=int, required=True)
    inspect.add_argument("what", choices=("mistakes", "confusion", "activations"))
    inspect.add_argument("--image", type=int, help="the test image's index, for activations")
    inspect.set_defaults(handler=command_inspect)
    predict = commands.add_parser("predict", parents=[common], help="classify image files (PNG/JPEG) with a run, as the Draw page does")
    predict.add_argument("--run", type=int, required=True)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.set_defaults(handler=command_predict)

    export = commands.add_parser("export", parents=[common], help="write a finished run's weights, ONNX, a runnable PyTorch file or a report")
    export.add_argument("--run", type=int, required=True)
    export.add_argument("--format", required=True, choices=("safetensors", "onnx", "python", "report"))
    export.add_argument(
        "--out", required=True, type=Path,
        help="the file to write; a second file goes beside it (net.safetensors + net.json, net.py + net.pt)",
    )  # fmt: skip
    export.set_defaults(handler=command_export)

    attack = commands.add_parser(
        "attack", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="clean and adversarial accuracy of a run on its first N test images",
        description=(
            "Attack the first N test images of a run's dataset with its best-validation weights and print the\n"
            "accuracy before and after. Every image is attacked, the ones the network already gets wrong too.\n"
            "  fgsm      one signed gradient step of size --eps (L∞); --steps is not used\n"
            "  pgd       --steps signed steps from a random start, kept within --eps of the image (L∞)\n"
            "  pgd_l2    the same under the L2 norm: the whole change has length at most --eps (up to 28)\n"
            "  deepfool  the smallest L2 change it finds across the nearest boundary, with 2% overshoot;\n"
            "            it needs no --eps (it is not used) and takes --steps as its iteration limit (default 50)\n"
            "PGD's step size defaults to 2.5 ε / steps; its random start is seeded by --seed."
        ),
    )  # fmt: skip
    attack.add_argument("--run", type=int, required=True)
    attack.add_argument("--method", required=True, metavar="fgsm|pgd|pgd_l2|deepfool")
    attack.add_argument("--eps", type=float, metavar="E", help="the attack size ε: 0 to 1 under L∞ (fgsm, pgd), 0 to 28 under L2 (pgd_l2)")
    attack.add_argument("--steps", type=int, help="PGD's iterations (default 40) or DeepFool's limit (default 50)")
    attack.add_argument("--step-size", type=float, help="PGD's step (default 2.5 ε / steps)")
    attack.add_argument("--n", type=int, default=ATTACK_IMAGES, help=f"attack the first N test images (default {ATTACK_IMAGES:,})")
    attack.add_argument("--seed", type=int, default=0, help="seeds PGD's random start (default 0)")
    attack.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    attack.set_defaults(handler=command_attack)

    cancel = commands.add_parser("cancel", parents=[common, as_owner], help="cancel a queued or running run")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(handler=command_cancel)

    delete = commands.add_parser("delete", parents=[common, as_owner], help="delete a run that is not running, with its metrics and files")
    delete.add_argument("id", type=int)
    delete.set_defaults(handler=command_delete)

    resume = commands.add_parser("resume", parents=[common, as_owner], help="resume an interrupted or cancelled run from its last epoch")
    resume.add_argument("id", type=int)
    resume.set_defaults(handler=command_resume)

    scheduler = commands.add_parser("scheduler", parents=[common], help="run the job scheduler in the foreground")
    scheduler.add_argument("--exit-when-idle", action="store_true")
    scheduler.set_defaults(handler=command_scheduler)
    return parser


def _one_line(message: str) -> str:
    """A message on one line: a DataError lists each source it tried on a line of its own ("- …")."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for previous, line in zip(lines, lines[1:]):
        if line.startswith("- "):
            text += ("; " if previous.startswith("- ") else " ") + line[2:]
        else:
            text += (". " if previous.startswith("- ") and not previous.endswith(".") else " ") + line
    return text


def _language(arguments: argparse.Namespace) -> str:
    """`--lang`, else the LAYERLAB_LANG environment variable ("ko", "ko_KR.UTF-8"), else English."""
    return language_or_default(getattr(arguments, "lang", None) or os.environ.get("LAYERLAB_LANG"))


def _run(arguments: argparse.Namespace) -> int:
    try:
        arguments.handler(arguments)
    except (LayerLabError, ValueError) as error:
        message = _one_line(render_any(error, _language(arguments)))
        if getattr(arguments, "json", False):
            print(json.dumps({"error": message}))
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        status = _run(arguments)
        sys.stdout.flush()  # Here, so a closed pipe is noticed inside the try and not at exit.
        return status
    except BrokenPipeError:
        # The reader went away (`python -m core presets | head -1`). As the Python docs advise
        # (signal module, "Note on SIGPIPE"), point stdout at devnull so the flush at exit
        # cannot raise again, and exit with 1 without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
