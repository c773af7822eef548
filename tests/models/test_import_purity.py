"""models/ stays pure torch: no prefect, mlflow, boto3 (or the pipeline's own warmstart package);
scikit-learn only in models/controls.py. Scans the AST, so lazy imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
FORBIDDEN = {
    "prefect",
    "mlflow",
    "boto3",
    "botocore",
    "s3transfer",
    "warmstart",
    "tasks",
    "flows",
}  # relative imports only inside models/


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(
            node.func, "attr", getattr(node.func, "id", "")
        ) in (
            "import_module",
            "__import__",
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value.split(".")[0])
    return names


def test_models_files_found():
    files = list(MODELS.rglob("*.py"))
    assert len(files) >= 15, files


def test_no_forbidden_imports():
    bad = {
        str(p.relative_to(MODELS)): sorted(_imports(p) & FORBIDDEN)
        for p in MODELS.rglob("*.py")
        if _imports(p) & FORBIDDEN
    }
    assert bad == {}


def test_sklearn_only_in_controls():
    users = sorted(
        str(p.relative_to(MODELS)) for p in MODELS.rglob("*.py") if "sklearn" in _imports(p)
    )
    assert users == ["controls.py"]


def test_scanner_catches_lazy_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    import mlflow.pytorch\n    from boto3 import client\n")
    assert {"mlflow", "boto3"} <= _imports(f)
