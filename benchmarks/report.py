"""Renders the benchmark results (docs/benchmarks.json) as docs/benchmarks.md, marking each missed target.

The targets live here, next to the sentences that state them, so a table can never claim a
figure met a target that its own text names differently.
"""

from __future__ import annotations

import math
import statistics

ENGINE_MINIMUM_RATIO = 2.0  # engine images/s over the DataLoader loop's
FAST_MAXIMUM_SECONDS = 30.0  # `fast` to 99.0% reported test accuracy
SERVICE_MAXIMUM_OVERHEAD_PERCENT = 10.0
SERVICE_MAXIMUM_LATENCY_SECONDS = 1.0  # an epoch finishing → its metrics readable by another process
PAGE_MAXIMUM_SECONDS = 1.5  # first load of a page
INSPECT_MISTAKES_MAXIMUM_SECONDS = 0.5  # mistakes + confusion over the 10,000 test images, fast net
INSPECT_ACTIVATIONS_MAXIMUM_SECONDS = 0.050  # every layer's output for one image
RECORDING_MAXIMUM_OVERHEAD_PERCENT = 5.0  # training with the diagnostics recorder vs without
DRAWING_MAXIMUM_MILLISECONDS = 20.0  # p95 of preprocessing + prediction for one drawing
ROUND_TRIP_MAXIMUM_SECONDS = 0.5  # p95 from mouse-up to the prediction shown in the browser
ATTACKS_MAXIMUM_RATIO = 1.0  # our attack's time over torchattacks' for the same images: ours no slower
ROBUST_MINIMUM_PGD_ACCURACY = 0.80  # the `robust` preset under PGD-40 at ε = 0.3 (Madry et al. 2018's MNIST model keeps ~89%)
ROBUST_MINIMUM_CLEAN_ACCURACY = 0.97
ROBUST_MAXIMUM_SECONDS = 15 * 60.0  # its training, on this CPU
CLASSROOM_MAXIMUM_P95_SECONDS = 1.0  # a poll's answer within the live view's own one-second interval


def _checked(text: str, met: bool) -> str:
    """A table cell: the figure, followed by MISSED when it misses its target."""
    return text if met else f"{text} MISSED"


def _engine(rows: list[dict]) -> list[str]:
    lines = [
        "## Engine throughput vs a DataLoader loop",
        "",
        "Same network, optimiser (SGD), batch size and device; the reference feeds per-sample tensors through",
        "`Dataset` + `DataLoader` the way torchvision's MNIST does for pytorch/examples (a PIL image per item,",
        f"`ToTensor`, `Normalize`). Training images per second, median of the repeats. Target: ≥ {ENGINE_MINIMUM_RATIO:g}×.",
        "",
        "| network | batch | steps | LayerLab engine (img/s) | DataLoader loop (img/s) | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = _checked(f"**{row['ratio']:.2f}×**", row["ratio"] >= ENGINE_MINIMUM_RATIO)
        lines.append(
            f"| {row['network']} | {row['batch_size']} | {row['steps']} | {row['engine_images_per_second']:,.0f} | "
            f"{row['dataloader_images_per_second']:,.0f} | {ratio} |"
        )
    return lines + [""]


def _seconds(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "not reached"


def _fast(result: dict) -> list[str]:
    heading = "## `fast` preset: time to 99.0% MNIST test accuracy"
    if result.get("protocol") != "best-validation":
        return [
            heading,
            "",
            "These results were measured by an earlier rule (the first epoch whose own test accuracy passed 99%), not",
            "the figure `python -m core train --preset fast --json` reports; rerun `python -m benchmarks.run --only fast`.",
            "",
        ]
    seconds = ", ".join(_seconds(value) for value in result["all_seconds"])
    to_99 = _checked(f"**{_seconds(result['seconds_to_99'])}**", result["seconds_to_99"] <= FAST_MAXIMUM_SECONDS)
    return [
        heading,
        "",
        "What `python -m core train --preset fast --json` reports: the test accuracy at the best-validation epoch",
        "(Nielsen's protocol), not the best test accuracy of any epoch. Each seed trains the whole preset, as the",
        "command does, with MNIST already loaded; the time is from the start of training to the first epoch end from",
        "which that reported figure stays ≥ 99.0% to the end of the run, evaluation included (median over seeds; a",
        "seed whose final figure is below 99.0% counts as not reached). Reference measured in the same run: one epoch",
        "of a pytorch/examples-style loop (their network, batch 64, learning rate 1.0, DataLoader), stepped with plain",
        f"SGD as in the engine comparison; pytorch/examples itself uses Adadelta. Target: ≤ {FAST_MAXIMUM_SECONDS:g} s.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| `fast` to 99.0% (median; runs: {seconds}) | {to_99} |",
        f"| `fast`, the whole run (median) | {statistics.median(result['run_seconds']):.1f} |",
        f"| pytorch/examples-style loop, one epoch | {result['reference_epoch_seconds']:.1f} |",
        f"| ratio (one reference epoch / `fast` to 99%) | {result['ratio']:.2f}× |",
        "",
        f"Epochs needed: {result['epochs_to_99']}; test accuracy reported at the end: "
        + ", ".join(f"{value * 100:.2f}%" for value in result["reported_test_accuracy"]),
        "",
    ]


def _nielsen(rows: list[dict]) -> list[str]:
    epochs = rows[0]["epochs"] if rows else 0
    lines = [
        "## Nielsen ch. 6: the first three networks",
        "",
        f"The book's network, initialisation, optimiser (plain SGD), mini-batch 10 and η, for a budget of {epochs} epoch(s)",
        "on this machine, beside the book's figure after 60 epochs. The quoted figure is the test accuracy at the",
        "best-validation epoch, the book's protocol.",
        "",
        "| network | epochs here | test accuracy here | seconds | book (60 epochs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['epochs']} | {row['test_accuracy'] * 100:.2f}% | {row['seconds']:.0f} | {row['book_accuracy']:.2f}% |"
        )
    lines += [
        "",
        "The full 60-epoch reproduction (meant for a GPU server; about an hour per network on this CPU):",
        "",
        "```",
        "for preset in nielsen-1-shallow nielsen-2-conv-pool nielsen-3-two-conv-pool nielsen-4-relu-l2 \\",
        "              nielsen-5-expanded nielsen-6-extra-dense nielsen-7-dropout; do",
        "  .venv/bin/python -m core train --preset $preset --json",
        "done",
        "```",
        "",
    ]
    return lines


def _service(result: dict) -> list[str]:
    overhead = _checked(f"**{result['overhead_percent']:.1f}%**", result["overhead_percent"] <= SERVICE_MAXIMUM_OVERHEAD_PERCENT)
    latency = result["latency_median_seconds"]
    latency_cell = _checked(f"**{latency * 1000:.0f} ms**", latency <= SERVICE_MAXIMUM_LATENCY_SECONDS)
    worst = _checked(f"{result['latency_max_seconds'] * 1000:.0f} ms", result["latency_max_seconds"] <= SERVICE_MAXIMUM_LATENCY_SECONDS)
    return [
        "## Job service overhead",
        "",
        f"The same run ({result['description']}) through the job service vs calling the engine directly in one",
        "process with the data already loaded. The service is already up (as on a class server), so its standby worker",
        "has imported torch and loaded MNIST; the run still trains in its own process. Medians of the repeats. Targets:",
        f"≤ {SERVICE_MAXIMUM_OVERHEAD_PERCENT:g}% extra wall time; ≤ {SERVICE_MAXIMUM_LATENCY_SECONDS:g} s from an epoch finishing to its metrics being readable.",
        "",
        "| | value |",
        "|---|---:|",
        f"| engine called directly | {result['direct_seconds']:.2f} s |",
        f"| through the job service (submit → succeeded) | {result['service_seconds']:.2f} s |",
        f"| extra wall time | {overhead} |",
        f"| epoch finished → metrics readable by another process (median of {result['latency_samples']} epochs) | {latency_cell} |",
        f"| same, worst epoch | {worst} |",
        "",
    ]


def _pages(result: dict) -> list[str]:
    lines = [
        "## Page render time",
        "",
        "First load of each page with a finished run selected, until its title and main content (the diagram, the",
        "run's curves, the runs table, the Inspect page's filter images) are visible, in headless Chromium.",
        "*From the sidebar*: the app is open on another page and the person clicks this page's link for the first time. *Fresh browser*: a new browser context with an",
        "empty cache opens the page's address, so Streamlit's JavaScript is downloaded and parsed too. Medians of the",
        f"repeats. Target: ≤ {PAGE_MAXIMUM_SECONDS:g} s, both ways.",
        "",
        "| page | from the sidebar (s) | fresh browser (s) | all loads (s): sidebar / fresh |",
        "|---|---:|---:|---|",
    ]
    for page, values in result["pages"].items():
        clicks = ", ".join(f"{value:.2f}" for value in values["navigation_all"])
        loads = ", ".join(f"{value:.2f}" for value in values["cold_all"])
        navigation = _checked(f"**{values['navigation_median']:.2f}**", values["navigation_median"] <= PAGE_MAXIMUM_SECONDS)
        cold = _checked(f"{values['cold_median']:.2f}", values["cold_median"] <= PAGE_MAXIMUM_SECONDS)
        lines.append(f"| {page} | {navigation} | {cold} | {clicks} / {loads} |")
    return lines + [""]


def _cli(result: dict) -> list[str]:
    target = result["target_seconds"]
    lines = [
        "## CLI start-up",
        "",
        "Wall time of each command as a fresh process (`python -m core …`) on a runs directory with a few runs,",
        "beside the interpreter alone (`python -c pass`); `cancel` gets a fresh queued run each time. These commands",
        f"import no torch. Medians of {result['repeats']} runs. Target: < {target:g} s each.",
        "",
        "| command | median (s) | × `python -c pass` | target | all runs (s) |",
        "|---|---:|---:|---|---|",
    ]
    for row in result["rows"]:
        verdict = "" if row["command"] == "python -c pass" else ("met" if row["met"] else "**MISSED**")
        runs = ", ".join(f"{value:.3f}" for value in row["all_seconds"])
        lines.append(f"| `{row['command']}` | **{row['median_seconds']:.3f}** | {row['ratio_to_python']:.1f}× | {verdict} | {runs} |")
    return lines + [""]
def _inspect(result: dict) -> list[str]:
    mistakes = _checked(f"**{result['mistakes_confusion_seconds']:.3f}**", result["mistakes_confusion_seconds"] <= INSPECT_MISTAKES_MAXIMUM_SECONDS)
    activations = _checked(f"**{result['activations_seconds'] * 1000:.1f}**", result["activations_seconds"] <= INSPECT_ACTIVATIONS_MAXIMUM_SECONDS)
    return [
        "## Inspect probes (the `fast` net, CPU)",
        "",
        "Mistakes + confusion: predictions, the sorted misclassified list and the confusion matrix over the 10,000",
        f"test images; target ≤ {INSPECT_MISTAKES_MAXIMUM_SECONDS:g} s. Activations: every layer's output and the class",
        f"probabilities for one image; target ≤ {INSPECT_ACTIVATIONS_MAXIMUM_SECONDS * 1000:g} ms. Each beside a bare forward pass",
        f"over the same images, medians of the repeats ({result['threads']} torch threads).",
        "",
        "| probe | time | bare forward over the same images |",
        "|---|---:|---:|",
        f"| mistakes + confusion (s) | {mistakes} | {result['forward_seconds']:.3f} |",
        f"| activations of one image (ms) | {activations} | {result['one_forward_seconds'] * 1000:.1f} |",
        "",
    ]
def _recording(rows: list[dict]) -> list[str]:
    lines = [
        "## Recording the training diagnostics",
        "",
        "The same run with and without the recorder every run gets (gradient norms about 50 times an epoch, and",
        "activation and weight statistics on 512 validation images at epoch 0 and each epoch's end), the two",
        "alternating. Whole-run wall time, evaluation and the probe batch included; medians of the repeats.",
        f"Target: ≤ {RECORDING_MAXIMUM_OVERHEAD_PERCENT:g}% extra time.",
        "",
        "| run | without (s) | with (s) | extra time | all runs (s): without / with |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        overhead = _checked(f"**{row['overhead_percent']:+.1f}%**", row["overhead_percent"] <= RECORDING_MAXIMUM_OVERHEAD_PERCENT)
        without = ", ".join(f"{value:.2f}" for value in row["all_without"])
        with_recorder = ", ".join(f"{value:.2f}" for value in row["all_with"])
        lines.append(f"| {row['case']} | {row['seconds_without']:.2f} | {row['seconds_with']:.2f} | {overhead} | {without} / {with_recorder} |")
    return lines + [""]


def _drawing(result: dict) -> list[str]:
    prediction, trip = result["prediction"], result["round_trip"]
    whole, forward = prediction["milliseconds"], prediction["forward_milliseconds"]
    seconds, clear = trip["seconds"], trip["clear_seconds"]
    whole_p95 = _checked(f"**{whole['p95']:.2f}**", whole["p95"] <= DRAWING_MAXIMUM_MILLISECONDS)
    trip_p95 = _checked(f"**{seconds['p95'] * 1000:.0f}**", seconds["p95"] <= ROUND_TRIP_MAXIMUM_SECONDS)
    return [
        "## Draw page",
        "",
        f"Preprocessing + prediction of one drawing: {prediction['drawings']} MNIST test digits re-drawn as the canvas returns",
        "them (280×280 RGBA), each through `preprocess.prepare` and `classify.probabilities` with a short `fast` run",
        f"(test accuracy {result['test_accuracy']:.2%}), one at a time; beside it the bare model forward on one prepared image.",
        f"Target: p95 ≤ {DRAWING_MAXIMUM_MILLISECONDS:g} ms. Browser round trip: headless Chromium draws a \"1\" with the mouse",
        "after clearing the canvas; the time from the mouse's release to the prediction on the page (it includes the canvas",
        "component's own wait before sending), beside a rerun that classifies nothing (Clear until its hint shows).",
        f"{trip['repeats']} repetitions after a warm-up. Target: p95 ≤ {ROUND_TRIP_MAXIMUM_SECONDS * 1000:g} ms.",
        "",
        "| measure | p50 | p95 | target |",
        "|---|---:|---:|---|",
        f"| preprocessing + prediction (ms) | **{whole['p50']:.2f}** | {whole_p95} | ≤ {DRAWING_MAXIMUM_MILLISECONDS:g} |",
        f"| reference: model forward on one image (ms) | {forward['p50']:.2f} | {forward['p95']:.2f} | |",
        f"| mouse-up → prediction shown (ms) | **{seconds['p50'] * 1000:.0f}** | {trip_p95} | ≤ {ROUND_TRIP_MAXIMUM_SECONDS * 1000:g} |",
        f"| reference: Clear → hint shown (ms) | {clear['p50'] * 1000:.0f} | {clear['p95'] * 1000:.0f} | |",
        "",
    ]


def _attacks(result: dict) -> list[str]:
    lines = [
        "## Adversarial attacks (ours vs torchattacks)",
        "",
        f"The `fast` preset trained for real (all its epochs, seed 0, {result['train_seconds']:.0f} s; clean test accuracy "
        f"{result['clean_accuracy']:.2%}), attacked on the {result['device'].split(',')[0]} with {result['threads']} torch "
        f"thread{'' if result['threads'] == 1 else 's'} by `core.attacks.methods` and by torchattacks {result['torchattacks']}",
        "making the same adversarial images: same network, images, batch size and device, the two alternating after a warm-up;",
        "medians of the repeats. FGSM over the 10,000 test images; PGD (ε 0.3, step 0.01, random start) over the first 1,000.",
        f"Target: ours no slower (ratio ≤ {ATTACKS_MAXIMUM_RATIO:g}).",
        "",
        "| attack | images | batch | ours (s) | torchattacks (s) | ours / theirs | all runs (s): ours / theirs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["speed"]:
        ratio = _checked(f"**{row['ratio']:.3f}×**", row["ratio"] <= ATTACKS_MAXIMUM_RATIO)
        ours, theirs = (", ".join(f"{value:.2f}" for value in row[key]) for key in ("all_ours", "all_torchattacks"))
        lines.append(f"| {row['attack']} | {row['images']:,} | {row['batch_size']} | {row['ours_seconds']:.2f} | "
                     f"{row['torchattacks_seconds']:.2f} | {ratio} | {ours} / {theirs} |")  # fmt: skip
    spread = max((max(row[key]) - min(row[key])) / statistics.median(row[key]) for row in result["speed"] for key in ("all_ours", "all_torchattacks"))
    tutorial = result["tutorial"]
    by_epsilon = {str(point["epsilon"]): point["ours"] for point in result["fgsm_curve"]}
    lines += [
        "",
        f"The repeats spread by up to {spread:.0%} of their median on this machine (its cores are shared), so a ratio within",
        f"±{spread:.0%} of 1 is a tie within noise rather than a measured difference either way.",
        "",
        "FGSM accuracy over the 10,000 test images (`attacked_accuracy`, the path of the CLI and the lab page), torchattacks'",
        "FGSM on the same images, and what the PyTorch FGSM tutorial prints (correct images of 10,000) for the net it attacks:",
        "its older page's LeNet and its current page's pytorch/examples MNIST net, both pretrained and downloaded.",
        "",
        "| ε | ours | torchattacks | tutorial (older) | tutorial (current) |",
        "|---:|---:|---:|---:|---:|",
        f"| 0 | {result['clean_accuracy']:.2%} | | {tutorial['older']['0.0']:.2%} | {tutorial['current']['0.0']:.2%} |",
    ]
    for point in result["fgsm_curve"]:
        key = str(point["epsilon"])
        lines.append(f"| {point['epsilon']:g} | **{point['ours']:.2%}** | {point['torchattacks']:.2%} | {tutorial['older'][key]:.2%} | "
                     f"{tutorial['current'][key]:.2%} |")  # fmt: skip
    pgd = result["pgd"]
    lines += [
        "",
        f"PGD-{pgd['steps']} at ε {pgd['epsilon']:g} (step {pgd['step_size']:g}, random start) over the {pgd['images']:,} test images: "
        f"**{pgd['accuracy']:.2%}** ({pgd['seconds']:.0f} s); torchattacks' PGD on the first {pgd['torchattacks_images']:,}: "
        f"{pgd['torchattacks_accuracy']:.2%}.",
        "",
        f"Where ours stands: at ε 0.1 it keeps {by_epsilon['0.1']:.1%} (tutorial {tutorial['older']['0.1']:.1%} and "
        f"{tutorial['current']['0.1']:.1%}), at ε 0.2 {by_epsilon['0.2']:.1%} ({tutorial['older']['0.2']:.1%}, "
        f"{tutorial['current']['0.2']:.1%}), at ε 0.3 {by_epsilon['0.3']:.1%} ({tutorial['older']['0.3']:.1%}, {tutorial['current']['0.3']:.1%}).",
        "",
        "Why the curves differ. The tutorial's nets are other networks trained another way: the older page's LeNet has conv",
        "layers of 10 and 20 maps (5×5), dropout, a 50-unit hidden layer and inputs in [0, 1]; the current page's is pytorch/examples'",
        "net (conv 32 and 64 maps of 3×3, dropout 0.25 and 0.5, a 128-unit hidden layer, about 1.2 M parameters) on normalized inputs,",
        "stepping the de-normalized image so ε is in [0, 1] pixels too. Both end in log-softmax trained with NLL, whose input",
        "gradient is that of our cross-entropy on logits, and both were trained elsewhere and downloaded. Ours has no hidden dense",
        "layer or dropout (about 18 k parameters: two conv layers straight into the softmax), is trained with Adam and a one-cycle",
        "schedule for four epochs, and normalizes inside the model, so our ε is in pixels as well. FGSM's figures follow the shape of",
        "the network's gradient far more than its clean accuracy: the two tutorial nets, about one point apart clean, are 5–6 points",
        "apart at ε 0.2–0.3. A small net that is close to linear from its pooled features to its logits is what Goodfellow et al.'s",
        "linearity argument says FGSM hurts most, and Madry et al. found capacity alone buys some robustness: the likely reasons ours",
        "falls faster at ε 0.1–0.2 (not separately measured here). At large ε one signed step overshoots the nearest boundary on",
        "some digits, so FGSM's curve flattens while PGD, which takes 40 small steps, still finds nearly every image. The tutorial",
        "attacks one image at a time and counts an image it first got wrong as wrong; our robust accuracy attacks every image and",
        "counts those still right, which differs only for the rare image an attack turns from wrong to right.",
        "",
    ]
    return lines
def _robust(result: dict) -> list[str]:
    lines = [
        "## Adversarial training: the `robust` preset beside a normal `fast` run",
        "",
        "Each preset trained once (seed 0) as `python -m core train --preset NAME` trains it, on "
        f"{result['rows'][0]['threads']} torch thread(s); then, on the",
        f"{result['rows'][0]['test_images']:,} MNIST test images, clean accuracy, FGSM at ε = {result['epsilon']:g}, and PGD-"
        f"{result['pgd_steps']} at ε = {result['epsilon']:g}",
        f"(step {result['pgd_step_size']:g}, random start; Madry et al. 2018's MNIST evaluation). Training time includes each epoch's",
        "evaluation (for `robust`, PGD-10 on 1,000 test images too). Targets for `robust`: PGD ≥ "
        f"{ROBUST_MINIMUM_PGD_ACCURACY:.0%}, clean ≥ {ROBUST_MINIMUM_CLEAN_ACCURACY:.0%},",
        f"training ≤ {ROBUST_MAXIMUM_SECONDS / 60:g} min. See docs/adversarial-training.md.",
        "",
        "| preset | epochs | clean | FGSM ε 0.3 | PGD-40 ε 0.3 | training (min) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        robust = row["preset"] == "robust"
        pgd = _checked(f"**{row['pgd_accuracy']:.2%}**", not robust or row["pgd_accuracy"] >= ROBUST_MINIMUM_PGD_ACCURACY)
        clean = _checked(f"{row['clean_accuracy']:.2%}", not robust or row["clean_accuracy"] >= ROBUST_MINIMUM_CLEAN_ACCURACY)
        minutes = _checked(f"{row['train_seconds'] / 60:.1f}", not robust or row["train_seconds"] <= ROBUST_MAXIMUM_SECONDS)
        lines.append(f"| `{row['preset']}` | {row['epochs']} | {clean} | {row['fgsm_accuracy']:.2%} | {pgd} | {minutes} |")
    return lines + [""]


def _classroom(result: dict) -> list[str]:
    def row(label: str, part: dict, target: bool) -> str:
        errors = len(part["errors"])
        p95 = f"{part['poll_p95'] * 1000:.0f} ms" if part["poll_p95"] is not None else "–"
        if target:
            p95 = _checked(f"**{p95}**", part["poll_p95"] is not None and part["poll_p95"] <= CLASSROOM_MAXIMUM_P95_SECONDS)
            errors = _checked(f"**{errors}**", errors == 0)
        median = f"{part['poll_median'] * 1000:.0f} ms" if part["poll_median"] is not None else "–"
        load = f"{part['load_median']:.2f} s" if part["load_median"] is not None else "–"
        return f"| {label} | {part['students']} | {part['polls']:,} | {median} | {p95} | {load} | {errors} |"

    ours, default = result["ours"], result["streamlit_default_gc"]
    ratio = default["class"]["poll_p95"] / ours["class"]["poll_p95"] if ours["class"]["poll_p95"] and default["class"]["poll_p95"] else None
    lines = [
        "## A class on one server",
        "",
        f"{result['students']} simulated students on 127.0.0.1, each a real Streamlit websocket client (no browser), open the Train page with",
        f"their own run selected (`?run=…&key=…`, half in Korean) and poll its live view as the page's timer does, while {result['training']}",
        "runs train and the rest wait in the queue (`benchmarks/classroom.py`). A poll's latency runs from the request to the server's",
        "\"fragment finished\", every change in between received. An error is an exception on the page, a script that does not",
        "finish, an unanswered poll or a dropped connection. The reference is one student alone with one run training, on the same",
        f"server. Targets: poll p95 ≤ {CLASSROOM_MAXIMUM_P95_SECONDS:g} s and no errors. The same class is then run against Streamlit's",
        "default of a full garbage collection after every script run, which LayerLab's `.streamlit/config.toml` turns off.",
        "",
        "| server | students | polls | poll median | poll p95 | page load median | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("LayerLab's settings, one student (reference)", ours["reference"], False),
        row("LayerLab's settings, the class", ours["class"], True),
        row("Streamlit's default GC, one student", default["reference"], False),
        row("Streamlit's default GC, the class", default["class"], False),
        "",
        f"Each class ran {ours['seconds']:.0f} s; {ours['epochs_recorded']:,} epochs were recorded meanwhile and {ours['training_at_end']} runs were",
        "still training at the end.",
    ]
    if ratio:
        lines.append(f"Turning the collection off made the class's p95 **{ratio:.1f}×** shorter.")
    return lines + [""]


def render(results: dict) -> str:
    machine = results.get("machine", {})
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python -m benchmarks.run`); do not edit by hand. Each figure is measured",
        "beside its reference in the same run, on the machine below.",
        "",
        f"- Machine: {machine.get('device', '?')}, {machine.get('cores', '?')} cores ({machine.get('cpu', '?')}); "
        f"torch {machine.get('torch', '?')}, Python {machine.get('python', '?')}",
        f"- Date: {machine.get('date', '?')}",
        "",
    ]
    sections = {
        "engine": _engine, "fast": _fast, "nielsen": _nielsen, "service": _service, "recording": _recording,
        "inspect": _inspect, "pages": _pages, "cli": _cli, "drawing": _drawing, "attacks": _attacks,
        "robust": _robust, "classroom": _classroom,
    }  # fmt: skip
    for part, section in sections.items():
        if part in results:
            part_lines = section(results[part])
            part_lines.insert(1, f"\n_Measured {results.get(f'measured_{part}', '?')}._")
            lines += part_lines
    return "\n".join(lines)
