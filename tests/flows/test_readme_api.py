"""The README's "Python API" examples run as written: the plain-stage example for real against
the test stack, the flow example with the very parameters the pipeline tests run for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warmstart.params import PipelineParams

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_section_has_a_flow_example_and_a_stage_example():
    flow_example, stage_example = python_blocks("Python API")
    assert "transfer_pipeline(params)" in flow_example
    assert "stages.finetune_target(" in stage_example


def test_flow_example_builds_valid_parameters_and_reads_the_summary(monkeypatch, capsys):
    """The flow itself is run for real by tests/flows/test_pipeline.py; here: the example's
    imports, parameters (validated by the flow's model) and the summary keys it prints."""
    import warmstart.flows.pipeline as pipeline

    seen = []

    def fake_flow(params: PipelineParams) -> dict:
        seen.append(params)
        return {"verdict": "not promoted", "reason": "r", "table": [{"arm": "a", "test_acc": 0.5}]}

    monkeypatch.setattr(pipeline, "transfer_pipeline", fake_flow)
    exec(compile(python_blocks("Python API")[0], "README.md", "exec"), {})
    assert len(seen) == 1 and isinstance(seen[0], PipelineParams)
    assert (seen[0].k_shot, seen[0].strategies, seen[0].seeds) == (5, ["supervised"], 2)
    assert capsys.readouterr().out.splitlines() == ["not promoted - r", "a 0.5"]


@pytest.mark.services
@pytest.mark.slow
def test_stage_example_trains_and_evaluates_scratch(stack, capsys):
    exec(compile(python_blocks("Python API")[1], "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] in (["epoch 1", "epoch 2", "epoch 3"], [])
    last = lines[-1]
    assert last.startswith("scratch test accuracy [")
    accuracy = float(last.split("[")[1].split("]")[0])
    assert 0.3 < accuracy <= 1.0  # 10 digit classes, 5 labels each, 3 epochs: far above chance
