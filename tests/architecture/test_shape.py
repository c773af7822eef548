"""The shape of production code (everything outside tests/ and benchmarks/), enforced: short
functions and modules, imports that show the dependency graph, layers that import downwards only,
one namespace on install, and a repository that stands alone."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {
    "warmstart": "warmstart",
    "models": "models",
    "tasks": "tasks",
    "flows": "flows",
    "infra": "infra",
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# A function-local import of a project module must say why on its line: a real cycle or a heavy
# import deferred (torch, mlflow, prefect on a CLI path that should stay fast).
DEFERRAL_NOTE = re.compile(r"#\s*deferred:|#\s*cycle:")


def production_files() -> list[Path]:
    files = []
    for top in PACKAGE_DIRS:
        files += sorted((ROOT / top).rglob("*.py"))
    return files


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_production_files_found():
    assert len(production_files()) > 40


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_function_length(path: Path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{len(lines)} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(_parse(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def _local_project_imports(path: Path) -> list[str]:
    source = path.read_text().splitlines()
    bad = []
    for fn in ast.walk(_parse(path)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            project = module.startswith((".", "warmstart"))
            if project and not DEFERRAL_NOTE.search(source[node.lineno - 1]):
                bad.append(f"{fn.name}: line {node.lineno} imports {module}")
    return bad


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_hidden_function_local_project_imports(path: Path):
    assert _local_project_imports(path) == []


def test_the_scanner_catches_an_unexplained_local_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        "def f():\n    from warmstart import tracking\n"
        "def g():\n    from warmstart import tracking  # deferred: heavy (mlflow)\n"
    )
    assert _local_project_imports(f) == ["f: line 2 imports warmstart"]


def module_name(path: Path) -> str:
    """``models/backbones/base.py`` -> ``warmstart.models.backbones.base``, as installed."""
    rel = path.relative_to(ROOT)
    top = rel.parts[0]
    parts = [*(() if top == "warmstart" else ("warmstart",)), *rel.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, in every form, as its installed dotted name:
    ``import a.b``, ``from a import b`` (``a`` and, when ``b`` is a submodule, ``a.b``) and
    relative imports resolved against the file's own package."""
    names = set()
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names if a.name != "*"}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_the_import_scanner_sees_every_form(tmp_path, monkeypatch):
    f = ROOT / "tasks" / "x.py"
    source = (
        "import warmstart.flows.a\nfrom warmstart import flows\nfrom warmstart.flows import b\n"
        "from . import pipeline\nfrom .promote import c\nfrom .. import stages\n"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    found = _imports(f)
    assert {"warmstart.flows.a", "warmstart.flows", "warmstart.flows.b"} <= found
    assert {"warmstart.tasks.pipeline", "warmstart.tasks.promote.c", "warmstart.stages"} <= found
    assert (
        module_name(ROOT / "models" / "backbones" / "__init__.py") == "warmstart.models.backbones"
    )
    assert module_name(ROOT / "warmstart" / "cli" / "app.py") == "warmstart.cli.app"


def test_layers_import_downwards_only():
    """The library never imports tasks or flows (only the CLI, above them, does); infra depends
    on the standard library, httpx and itself; tasks never import flows; models import nothing
    of warmstart but themselves."""
    upward = []
    for path in production_files():
        rel = path.relative_to(ROOT)
        imports = _imports(path)
        top = rel.parts[0]
        if top == "warmstart" and rel.parts[1] != "cli":
            above = ("warmstart.flows", "warmstart.tasks")
            upward += [f"{rel}: {m}" for m in imports if m.startswith(above)]
        if top == "models":
            upward += [
                f"{rel}: {m}"
                for m in imports
                if m.startswith("warmstart.") and not m.startswith("warmstart.models")
            ]
        if top in ("tasks", "models", "infra"):
            upward += [f"{rel}: {m}" for m in imports if m.startswith("warmstart.flows")]
        if top == "infra":
            upward += [
                f"{rel}: {m}"
                for m in imports
                if m.startswith("warmstart") and not m.startswith("warmstart.infra")
            ]
    assert upward == []


def test_every_package_is_installed_under_one_namespace():
    """Every folder with an __init__.py is listed in pyproject under `warmstart.`: nothing
    installs as a generic top-level `models`, `tasks`, `flows` or `infra`."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert all(p == "warmstart" or p.startswith("warmstart.") for p in listed)
    found = set()
    for top, folder in PACKAGE_DIRS.items():
        base = "warmstart" if top == "warmstart" else f"warmstart.{top}"
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((base, *rel)))
    assert found == listed


def test_the_repository_stands_alone():
    """No file points at documents outside the repository."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"\.\./shared|shared/(ARCHITECTURE|CONVENTIONS|ANCHORS|STYLE)\.md")
    hits = []
    for name in tracked:
        path = ROOT / name
        if name.startswith(("tests/architecture/", ".ci/")) or path.suffix not in (
            ".py",
            ".md",
            ".yaml",
            ".toml",
            ".txt",
            ".json",
            "",
        ):
            continue
        if path.is_file() and pattern.search(path.read_text(errors="ignore")):
            hits.append(name)
    assert hits == []
