"""The package layout the design card fixes: `core/` knows nothing of Streamlit, its sub-packages
import one way (views → jobs → drawing, probes → training → attacks → model → data), and the modules the CLI's quick
commands need import no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
# Lower layers first: a package may import only from packages further down this list.
LAYERS = ("data", "model", "attacks", "training", "probes", "drawing", "jobs", "export", "views")
# What `runs list/show`, `cancel`, `resume`, `delete` and `presets` load: they must answer without torch.
TORCH_FREE = (
    "core.cli",
    "core.model.vocabulary",
    "core.training.settings",
    "core.training.presets",
    "core.jobs.store",
    "core.jobs.service",
    "core.jobs.liveness",
    "core.jobs.locks",
    "core.jobs.disk",
    "core.jobs.access",
)


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_core_modules(path: Path) -> set[str]:
    """Every `core.…` module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("core")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


def test_the_sub_packages_exist_and_core_keeps_no_flat_modules():
    assert sorted(path.name for path in CORE.iterdir() if path.is_dir() and not path.name.startswith("__")) == sorted(LAYERS)
    assert sorted(path.name for path in CORE.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py", "errors.py"]


def test_core_never_imports_streamlit():
    program = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(name for name in sys.modules if name == 'streamlit' or name.startswith('streamlit.'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(core_modules()) > 25  # every module of every sub-package was imported, not only the top level


@pytest.mark.parametrize("package", LAYERS)
def test_imports_flow_one_way(package):
    allowed = {"errors", *LAYERS[: LAYERS.index(package) + 1]}  # core.errors sits below every layer
    for path in sorted((CORE / package).rglob("*.py")):
        for name in imported_core_modules(path):
            parts = name.split(".")
            assert len(parts) == 1 or parts[1] in allowed, f"{path.relative_to(ROOT)} imports {name}, above {package}"


@pytest.mark.parametrize("module", TORCH_FREE)
def test_quick_modules_do_not_import_torch(module):
    program = f"import importlib, sys\nimportlib.import_module({module!r})\nsys.exit(1 if 'torch' in sys.modules else 0)\n"
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} imports torch at import time\n{result.stderr}"


def test_pages_import_only_views_and_what_they_render():
    """Pages reach core through views (and the job service they share) and the probes they wire to plots; never the engine or the model builder."""
    for path in sorted((ROOT / "pages").glob("*.py")):
        for name in imported_core_modules(path):
            parts = name.split(".")
            assert len(parts) < 2 or parts[1] in ("views", "jobs", "probes", "drawing", "training", "model"), f"{path.name} imports {name}"
            assert not name.startswith(("core.training.loop", "core.jobs.scheduler", "core.jobs.worker", "core.jobs.runner")), (
                f"{path.name} imports {name}"
            )
