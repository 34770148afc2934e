"""Messages as codes: every code our errors and runs use has English and Korean text, renders in
either language with field labels instead of code names, survives the run store, and reaches the
command line in the language asked for."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import LayerLabError, Message, catalog, counted, placeholders, render
from core.jobs.store import RunStore
from core.model import network as networks
from core.model.vocabulary import SpecError
from core.training.settings import TrainSettings
from core.views import builder_state as builder
from core.views import run_views
from tests.message_checks import assert_reads_korean
from tests.test_settings import INVALID_VALUES
from tests.test_spec import INVALID_SPECS

ROOT = Path(__file__).resolve().parent.parent
CODE_PREFIXES = ("spec", "settings", "bound", "augment", "load", "checkpoint", "store", "data", "prune", "preset", "device", "cli", "run",
                 "resume", "common", "probe", "drawing", "attack", "export")  # fmt: skip
# A message code written in the source: a quoted name such as "spec.field.at_most" under one of the prefixes.
CODE_LITERAL = re.compile(rf"""["']((?:{'|'.join(CODE_PREFIXES)})\.[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*)["']""")
COUNTED = re.compile(r"""counted\(\s*["']([a-z0-9_.\-]+)["']""")
MESSAGES = {key[len("message."):]: text for key, text in catalog("en").items() if key.startswith("message.")}


def source_codes() -> set[str]:
    """Every message code the code under core/ names, with the three plural forms of each counted one."""
    codes: set[str] = set()
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        counted_bases = set(COUNTED.findall(text))
        codes |= {f"{base}.{form}" for base in counted_bases for form in ("none", "one", "many")}
        codes |= {code for code in CODE_LITERAL.findall(text) if code not in counted_bases}
    return codes


def test_every_code_in_the_source_has_a_text():
    codes = source_codes()
    assert len(codes) > 100  # The scan sees the codes; an empty set would prove nothing.
    # A literal that is a page text's key ("common.test_accuracy" in the report view) is a text too, not a message code.
    assert not sorted(code for code in codes if code not in MESSAGES and code not in catalog("en"))



def error_classes() -> set[str]:
    """The names of every LayerLabError subclass defined under core/, found from the class statements' bases."""
    bases: dict[str, set[str]] = {}
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}
                bases.setdefault(node.name, set()).update(names)
    ours = {"LayerLabError"}
    while grown := {name for name, parents in bases.items() if parents & ours} - ours:
        ours |= grown
    return ours


def test_no_error_under_core_is_raised_with_an_english_sentence():
    ours = error_classes()
    assert {"ProbeError", "DrawingError", "EmptyDrawing", "DigitSetError", "CommandError", "SpecError"} <= ours
    sentences = []
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.exc if isinstance(node, ast.Raise) else None
            if not (isinstance(call, ast.Call) and call.args):
                continue
            name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
            first = call.args[0]
            english = isinstance(first, ast.JoinedStr) or (isinstance(first, ast.Constant) and isinstance(first.value, str) and " " in first.value)
            if name in ours and english:
                sentences.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    # A sentence in the source cannot be shown in Korean: raise a message code with parameters instead.
    assert not sentences

def test_every_message_has_korean_text_with_the_same_placeholders():
    korean = catalog("ko")
    for code, english in MESSAGES.items():
        text = korean["message." + code]
        assert placeholders(text) == placeholders(english), code
        # Only messages that are nothing but their parameters or a product name may lack Hangul.
        assert re.search("[가-힣]", text) or code in ("load.not_network", "device.cuda"), code


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[case[0] for case in INVALID_SPECS])
def test_every_invalid_spec_reads_as_korean(case):
    with pytest.raises(SpecError) as caught:
        networks.validate(case[1])
    korean = assert_reads_korean(caught.value)
    if caught.value.layer_index is not None:
        assert f"{caught.value.layer_index + 1}번 층" in korean


@pytest.mark.parametrize("case", INVALID_VALUES, ids=[f"{case[0]}={case[1]!r}" for case in INVALID_VALUES])
def test_every_invalid_setting_reads_as_korean(case):
    name, value, _words = case
    with pytest.raises(LayerLabError) as caught:
        TrainSettings.from_dict({name: value})
    korean = assert_reads_korean(caught.value)
    label = catalog("ko").get(f"train.field.{name}")
    if label and not placeholders(label):
        assert label in korean  # Named as the Train page names it ...
    assert f"'{name}'" not in korean  # ... never by its code name.


def test_fields_are_named_by_their_labels_in_both_languages():
    with pytest.raises(SpecError) as caught:
        networks.validate([{"kind": "conv", "kernel_size": 29}, {"kind": "output"}])
    error = caught.value
    assert str(error) == "Layer 1 (conv): Kernel size f is 29, but it can be at most 28."
    assert error.render("ko") == "1번 층(합성곱)의 커널 크기 f 값이 29입니다. 최대 28까지 쓸 수 있습니다."
    assert error.code == "spec.field.at_most" and error.params["field"] == "kernel_size"


def test_a_damaged_link_never_shows_zlib_words():
    with pytest.raises(builder.LoadError) as caught:
        builder.decode_link("bm90IHpsaWIgYXQgYWxs")  # base64 of "not zlib at all"
    error = caught.value
    for language in ("en", "ko"):
        text = error.render(language)
        assert "decompress" not in text and "Error -" not in text and "header check" not in text
    assert error.detail  # zlib's words stay available for a log.
    assert_reads_korean(error)


def test_a_file_that_is_not_json_names_the_place_not_the_parser():
    with pytest.raises(builder.LoadError) as caught:
        builder.spec_from_json(b'{"layers": [}')
    assert caught.value.reason == "not_json"
    assert "line 1, column 13" in str(caught.value) and "Expecting" not in str(caught.value)
    assert "1번째 줄, 13번째 글자" in assert_reads_korean(caught.value)


@pytest.mark.parametrize(
    "count, english, korean",
    [
        (0, "It stopped during epoch 1, before any epoch had finished, so nothing is kept.", "1번째 에포크 도중에 멈췄습니다. 아직 완료된 에포크가 없어서 남은 결과가 없습니다."),
        (1, "It stopped during epoch 2; the 1 finished epoch is kept.", "2번째 에포크 도중에 멈췄습니다. 완료된 에포크 1개는 그대로 남아 있습니다."),
        (2, "It stopped during epoch 3; the 2 finished epochs are kept.", "3번째 에포크 도중에 멈췄습니다. 완료된 에포크 2개는 그대로 남아 있습니다."),
    ],
)
def test_a_cancelled_run_counts_its_kept_epochs_as_a_person_would(count, english, korean):
    message = counted("run.cancelled_during", count, epoch=count + 1)
    assert message == english and message.render("en") == english
    assert message.render("ko") == korean
    assert "(s)" not in message


def test_messages_and_errors_survive_pickling_and_json():
    message = Message("spec.field.at_most", {"layer": 1, "kind": "conv", "field": "kernel_size", "value": "29", "limit": "28", "hint": ""})
    assert pickle.loads(pickle.dumps(message)).render("ko") == message.render("ko")
    assert Message.from_dict(json.loads(json.dumps(message.to_dict()))) == message
    error = SpecError("spec.output_not_last", 0)
    copied = pickle.loads(pickle.dumps(error))  # Errors cross from worker processes this way.
    assert (type(copied), copied.layer_index, copied.render("ko")) == (SpecError, 0, error.render("ko"))


def test_a_stored_message_shows_in_the_readers_language(store):
    run_id = store.create({"layers": [{"kind": "output"}]}, {"dataset": "mnist"}, status="cancelled")
    store.update(run_id, message=counted("run.cancelled_during", 2, epoch=3))
    run = store.get(run_id)
    assert run.message == "It stopped during epoch 3; the 2 finished epochs are kept."  # Old readers see English text.
    assert run.message_code == "run.cancelled_during.many" and run.message_params == {"count": 2, "epoch": 3}
    assert run_views.message(run, "ko") == "3번째 에포크 도중에 멈췄습니다. 완료된 에포크 2개는 그대로 남아 있습니다."
    # An error is stored the same way; plain text clears the code, so the two never disagree.
    store.update(run_id, message=SpecError("spec.empty"))
    assert run_views.message(store.get(run_id), "ko") == "신경망이 비어 있습니다. 출력층을 하나 이상 추가하세요."
    store.update(run_id, message="A note in English.")
    run = store.get(run_id)
    assert (run.message_code, run_views.message(run, "ko")) == (None, "A note in English.")


def test_an_old_database_gains_the_message_columns(tmp_path):
    # A version-1 database: the runs table without message_code and message_params.
    RunStore(tmp_path)
    with sqlite3.connect(tmp_path / "runs.sqlite") as connection:
        connection.execute("ALTER TABLE runs DROP COLUMN message_code")
        connection.execute("ALTER TABLE runs DROP COLUMN message_params")
        connection.execute("INSERT INTO runs (dataset, spec, settings, status, message, created_at) VALUES ('mnist', '{}', '{}', 'failed', 'Old text.', 0)")
        connection.execute("PRAGMA user_version = 1")
    store = RunStore(tmp_path)
    old = store.list()[0]
    assert (old.message, old.message_code, run_views.message(old, "ko")) == ("Old text.", None, "Old text.")
    store.update(old.id, message=Message("run.interrupted"))
    assert run_views.message(store.get(old.id), "ko") == render("run.interrupted", {}, "ko")


def test_network_summary_device_and_default_name_speak_korean(store):
    spec = {"layers": [{"kind": "conv", "filters": 16, "kernel_size": 5}, {"kind": "maxpool", "size": 2},
                       {"kind": "activation", "activation": "sigmoid"}, {"kind": "dense", "units": 100}, {"kind": "output"}]}  # fmt: skip
    assert run_views.network_summary(spec, "ko") == "합성곱 16 × 5×5 → 최대 풀링 2×2 → 시그모이드(sigmoid) → 완전 연결 100 → 출력 소프트맥스 10"
    assert run_views.network_summary(spec) == "conv 16 × 5×5 → maxpool 2×2 → sigmoid → dense 100 → output softmax 10"
    assert run_views.device_text("CPU, 2 threads", "ko") == "CPU, 스레드 2개"
    assert run_views.device_text("CUDA: NVIDIA H100", "ko") == "CUDA: NVIDIA H100"
    run_id = store.create(spec, {"dataset": "mnist"})
    assert run_views.display_name(store.get(run_id), "ko") == f"실행 #{run_id}"
    assert run_views.table_rows(store.list(), "ko")[0]["name"] == f"실행 #{run_id}"


def cli(*arguments: str, language: str | None = None, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("LAYERLAB_LANG", None)
    if language:
        environment["LAYERLAB_LANG"] = language
    return subprocess.run([sys.executable, "-m", "core", *arguments], capture_output=True, text=True, cwd=cwd, env=environment, timeout=120)


def test_the_command_line_prints_errors_in_the_language_asked_for(tmp_path, runs_dir):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"kind": "conv", "kernel_size": 29}, {"kind": "output"}]))
    korean = "error: 1번 층(합성곱)의 커널 크기 f 값이 29입니다. 최대 28까지 쓸 수 있습니다."
    by_environment = cli("validate", str(bad), language="ko", cwd=tmp_path)
    assert (by_environment.returncode, by_environment.stderr.strip()) == (2, korean)
    by_option = cli("validate", str(bad), "--lang", "ko", cwd=tmp_path)
    assert by_option.stderr.strip() == korean
    english = cli("validate", str(bad), cwd=tmp_path)
    assert english.stderr.strip() == "error: Layer 1 (conv): Kernel size f is 29, but it can be at most 28."


def test_runs_show_prints_the_run_message_in_korean(tmp_path, runs_dir):
    store = RunStore(runs_dir)
    run_id = store.create({"layers": [{"kind": "output"}]}, {"dataset": "mnist"}, status="cancelled")
    store.update(run_id, message=counted("run.cancelled_during", 1, epoch=2))
    shown = cli("runs", "show", str(run_id), "--lang", "ko", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "2번째 에포크 도중에 멈췄습니다. 완료된 에포크 1개는 그대로 남아 있습니다." in shown.stdout
