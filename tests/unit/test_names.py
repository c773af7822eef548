"""The light index of registered names (warmstart/names.py) says what the model registries say,
and the contracts, the parameters and the CLI start without importing torch."""

from __future__ import annotations

import subprocess
import sys

from warmstart import models as M
from warmstart import names


def test_the_index_holds_the_shipped_names_of_every_model_registry():
    assert list(names.BACKBONES) == M.list_backbones()
    assert list(names.STRATEGIES) == M.list_strategies()
    assert [*names.MODES, names.FREEZE_TEMPLATE] == M.list_transfer_modes()
    for backbone in names.BACKBONES:
        stages = [f"freeze={s}" for s in names.STAGES[backbone]]
        assert [*names.MODES, *stages] == M.list_transfer_modes(backbone)


def test_contracts_params_and_the_cli_import_no_torch():
    """Validating the demo's parameters too: the index answers, the registries stay unloaded."""
    code = (
        "import sys, warmstart.contracts, warmstart.cli\n"
        "from warmstart.params import PipelineParams, SweepParams\n"
        "PipelineParams(transfer_modes=['freeze=stage2']); SweepParams(backbone='resnet18')\n"
        "print(sorted(m for m in ('torch', 'warmstart.models', 'prefect', 'mlflow') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
