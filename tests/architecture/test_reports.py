"""Everything a user reads is rendered by ``warmstart/reports/`` from results: no module there
imports torch, the models, the stages or a service client, and no production function that draws
a confusion matrix runs a model (its predictions come from the evaluation stage's
``Evaluation``, or from batch prediction's probabilities)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.architecture.test_shape import ROOT, _imports, _parse, production_files

REPORTS = ROOT / "warmstart" / "reports"
# What a renderer must not import: a model or its framework, the stages that train and
# evaluate, and the layers that talk to services (the tasks log what reports render).
FORBIDDEN = (
    "torch",
    "torchvision",
    "warmstart.models",
    "warmstart.stages",
    "warmstart.tasks",
    "warmstart.flows",
    "warmstart.tracking",
    "warmstart.storage",
    "mlflow",
    "prefect",
    "boto3",
)
# Calls that draw or count a confusion matrix, and calls that run (or load, to run) a model.
CONFUSION = {"confusion_matrix", "confusion_matrix_figure", "confusion"}
INFERENCE = {"load_arm_model", "_served_model", "predict_proba", "no_grad", "inference_mode"}


def report_files() -> list[Path]:
    return sorted(REPORTS.rglob("*.py"))


def test_report_files_found():
    assert {p.name for p in report_files()} >= {"table.py", "verdict.py", "plots.py"}


def _forbidden(path: Path) -> list[str]:
    return sorted(
        m for m in _imports(path) if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)
    )


@pytest.mark.parametrize("path", report_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_reports_import_no_model_and_no_service(path: Path):
    assert _forbidden(path) == []


def _called(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            f = call.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def confusion_from_inference(path: Path) -> list[str]:
    """Functions of ``path`` that both draw a confusion matrix and run a model."""
    bad = []
    for fn in ast.walk(_parse(path)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            called = _called(fn)
            if called & CONFUSION and called & INFERENCE:
                bad.append(f"{fn.name}: {sorted(called & INFERENCE)}")
    return bad


def test_confusion_matrices_come_from_predictions_not_inference():
    found = {
        str(p.relative_to(ROOT)): confusion_from_inference(p)
        for p in production_files()
        if confusion_from_inference(p)
    }
    assert found == {}


def test_the_scanners_catch_a_model_run_beside_a_confusion_matrix(tmp_path, monkeypatch):
    f = ROOT / "warmstart" / "reports" / "x.py"
    source = (
        "import torch\nfrom warmstart.stages import training\n"
        "def f(result, job, y):\n    model = training.load_arm_model(result, job)\n"
        "    return plots.confusion_matrix_figure(y, model(y).argmax(1), [])\n"
        "def g(evaluation):\n    return plots.confusion_matrix(evaluation.y_test, [], 2)\n"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert _forbidden(f) == ["torch", "warmstart.stages", "warmstart.stages.training"]
    assert confusion_from_inference(f) == ["f: ['load_arm_model']"]
