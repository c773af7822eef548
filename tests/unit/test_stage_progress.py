"""Stage progress as people see it, without services: the per-epoch line, stage labels, Prefect
artifact keys, the CLI's plain and live displays, and the console filter for epoch records."""

from __future__ import annotations

import io
import logging
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from warmstart.cli import progress as cli_progress
from warmstart.params import PipelineParams
from warmstart.tasks import sweep as sweep_tasks
from warmstart.tasks.flow_artifacts import artifact_key
from warmstart.tasks.stage_progress import (
    EPOCH_RECORD,
    StageEvent,
    epoch_summary,
    listening,
    notify,
    stage_label,
)


def test_epoch_summary_names_loss_and_validation_accuracy():
    row = {"epoch": 3, "train_loss": 0.41234, "train_acc": 0.9, "val_loss": 0.5, "val_acc": 0.913}
    assert epoch_summary(row) == "loss 0.412 · val 91.3%"
    gan = {"loss": 1.9, "d_loss": 0.7, "g_loss": 1.2}
    assert epoch_summary(gan) == "loss 1.900 · d_loss 0.700 · g_loss 1.200"
    assert epoch_summary({"loss": 0.25, "acc": 0.5}) == "loss 0.250 · acc 50.0%"
    assert epoch_summary({"lr": 0.1}) == ""


def test_stage_labels_say_what_trains():
    arm = {"arm": "supervised/finetune", "seed": 1, "k_shot": 5}
    assert stage_label(arm, "pipeline") == "supervised/finetune seed 1"
    assert stage_label(arm, "label_efficiency") == "supervised/finetune seed 1 k=5"
    assert stage_label({"strategy": "gan"}, "pipeline") == "pretrain gan"


def test_artifact_keys_are_per_target_and_valid_for_prefect():
    assert artifact_key("gate-verdict", "uci-digits-5-9") == "gate-verdict-uci-digits-5-9"
    key = artifact_key("accuracy-table", "My_Photos/2024 set")
    assert key == "accuracy-table-my-photos-2024-set"
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert artifact_key("gate-verdict", "???") == "gate-verdict-target"


def test_listeners_hear_events_and_a_broken_one_is_ignored():
    heard: list[str] = []

    def broken(event: StageEvent) -> None:
        raise RuntimeError("display gone")

    with listening(broken), listening(lambda e: heard.append(e.kind)):
        notify(StageEvent("start", "r1", "scratch seed 0", 0, 3))
    notify(StageEvent("done", "r1"))  # after the block: nobody listens
    assert heard == ["start"]


def _events() -> list[StageEvent]:
    return [
        StageEvent("start", "r1", "supervised/linear_probe seed 0", 0, 2),
        StageEvent("epoch", "r1", "supervised/linear_probe seed 0", 1, 2, "loss 0.900 · val 60.0%"),
        StageEvent("epoch", "r1", "supervised/linear_probe seed 0", 2, 2, "loss 0.500 · val 80.0%"),
        StageEvent("done", "r1", "supervised/linear_probe seed 0", 2, 2, "2 epoch(s) trained"),
        StageEvent("start", "r2", "scratch seed 0", 0, 2),
        StageEvent("failed", "r2", "scratch seed 0", 0, 2, "TrainingError: loss became nan"),
        StageEvent("start", "r3", "pretrain torchvision", 0, 0),  # loads weights: no epochs
        StageEvent("done", "r3", "pretrain torchvision", 0, 0, "loaded, nothing to train"),
    ]


def test_plain_lines_one_per_start_epoch_and_end():
    out = io.StringIO()
    display = cli_progress.PlainLines(Console(file=out, width=200, color_system=None))
    for event in _events():
        display(event)
    assert out.getvalue().splitlines() == [
        "supervised/linear_probe seed 0: started (2 epochs)",
        "supervised/linear_probe seed 0 · epoch 1/2 · loss 0.900 · val 60.0%",
        "supervised/linear_probe seed 0 · epoch 2/2 · loss 0.500 · val 80.0%",
        "supervised/linear_probe seed 0: done — 2 epoch(s) trained",
        "scratch seed 0: started (2 epochs)",
        "scratch seed 0: failed — TrainingError: loss became nan",
        "pretrain torchvision: started",
        "pretrain torchvision: done — loaded, nothing to train",
    ]


def test_live_display_counts_stages_and_leaves_one_line_per_finished_stage():
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    display = cli_progress.LiveStages(console)
    events = _events()
    for event in events[:3]:
        display(event)
    bars = {t.description: t for t in display.bars.tasks}
    assert bars["supervised/linear_probe seed 0"].completed == 2
    assert bars["supervised/linear_probe seed 0"].fields["summary"] == "loss 0.500 · val 80.0%"
    for event in events[3:]:
        display(event)
    assert [t.description for t in display.bars.tasks] == ["stages done"]
    assert (display.bars.tasks[0].completed, display.bars.tasks[0].total) == (3, 3)
    display(StageEvent("abandon"))  # Ctrl-C: the display stops (the cursor comes back)
    assert not display.bars.live.is_started
    text = out.getvalue()
    assert "✓ supervised/linear_probe seed 0: 2 epoch(s) trained (" in text
    assert "✗ scratch seed 0: TrainingError: loss became nan (" in text
    assert "✓ pretrain torchvision: loaded, nothing to train (" in text


def test_epoch_records_stay_off_the_console_other_records_pass():
    quiet = cli_progress.WithoutEpochLines()
    epoch = logging.LogRecord("prefect.task_runs", logging.INFO, "", 0, "epoch 1/2", None, None)
    setattr(epoch, EPOCH_RECORD, True)
    other = logging.LogRecord("prefect.task_runs", logging.INFO, "", 0, "splits ...", None, None)
    assert not quiet.filter(epoch) and quiet.filter(other)


def test_sweep_arm_runs_get_the_pipelines_metric_names(monkeypatch):
    """evaluate-k logs test_accuracy and val_accuracy on each arm's own run (Compare works)."""
    logged: dict[str, dict] = {}
    scores = SimpleNamespace(seeds=[0, 1], test_acc=[0.7, 0.8], val_acc=[0.6, 0.9])
    evaluation = SimpleNamespace(arms={"scratch": scores})

    def result(seed: int, run_id: str):
        spec = SimpleNamespace(arm="scratch", seed=seed)
        return SimpleNamespace(spec=spec, stage=SimpleNamespace(mlflow_run_id=run_id))

    monkeypatch.setattr(sweep_tasks.stages, "evaluate", lambda results, job: evaluation)
    monkeypatch.setattr(sweep_tasks.sweep, "curve_rows", lambda k, ev, results: [])
    monkeypatch.setattr(
        "warmstart.tasks.promote.tracking.log_metrics",
        lambda run_id, metrics, step=None: logged.setdefault(run_id, {}).update(metrics),
    )
    job = SimpleNamespace(run=SimpleNamespace(run_id="parent"))
    assert sweep_tasks.evaluate_k.fn(5, [result(0, "a"), result(1, "b")], job) == []
    assert logged == {
        "a": {"test_accuracy": 0.7, "val_accuracy": 0.6},
        "b": {"test_accuracy": 0.8, "val_accuracy": 0.9},
    }


@pytest.mark.parametrize("kind", ["start", "epoch", "done"])
def test_plain_lines_never_raise_on_partial_events(kind):
    out = io.StringIO()
    cli_progress.PlainLines(Console(file=out, color_system=None))(StageEvent(kind))
    assert out.getvalue().strip()


class FakeClient:
    """Hands out the given artifact ids in turn; records creations and deletions."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = iter(ids)
        self.created: list[tuple[int, str]] = []
        self.deleted: list[int] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def create_artifact(self, body):
        made = SimpleNamespace(id=next(self.ids))
        self.created.append((made.id, body.type))
        assert body.task_run_id is None  # on the flow run itself, above the task runs' cards
        return made

    def delete_artifact(self, artifact_id: int) -> None:
        self.deleted.append(artifact_id)


@pytest.mark.parametrize(
    ("ids", "deleted"),
    [([50, 10], []), ([5, 70, 90, 20], [70, 5]), ([5, 9] * 20, [9, 5] * 15)],
)
def test_the_pair_is_made_again_until_the_report_sorts_first(monkeypatch, ids, deleted):
    from warmstart.tasks import flow_artifacts

    client = FakeClient(ids)
    monkeypatch.setattr(flow_artifacts, "get_client", lambda sync_client: client)
    report, table = flow_artifacts.publish_report("# v", "gate-verdict-x", [{"a": 1.0}], "t", "d")
    assert client.deleted == deleted
    made = client.created
    assert (report, table) == (made[-2][0], made[-1][0])
    assert [kind for _, kind in made] == ["markdown", "table"] * (len(deleted) // 2 + 1)


def test_flow_run_name_names_the_sources_the_provider_builds(monkeypatch):
    """A dataset source lists its strategies; published weights are one `torchvision` source
    (its strategies parameter plays no part, so the name must not list it). The labels come from
    the plan the flow received; a run submitted without one (a deployment, the UI) names its
    source spec: the name is made before validation, which alone resolves a spec."""
    from warmstart.flows import hooks  # deferred: heavy (prefect flows)
    from warmstart.stages import make_plan  # deferred: heavy (torch)
    from warmstart.stages.sources_torchvision import TorchvisionProvider  # deferred: heavy

    monkeypatch.setattr(TorchvisionProvider, "validate", lambda self, params: None)  # no weights
    names, unplanned = [], []
    for source in ("builtin:mnist-5k", "torchvision:resnet18?weights=none"):
        params = PipelineParams(
            source=source, target="builtin:uci-digits?size=32x32", transfer_modes=["finetune"]
        )
        plan = make_plan(params)
        parameters = {"params": plan.params, "plan": plan}
        monkeypatch.setattr(hooks, "flow_run", SimpleNamespace(parameters=parameters))
        names.append(hooks.run_name())
        parameters = {"params": params.model_dump(), "plan": plan.to_dict()}  # as the API has it
        monkeypatch.setattr(hooks, "flow_run", SimpleNamespace(parameters=parameters))
        assert hooks.run_name() == names[-1]
        monkeypatch.setattr(hooks, "flow_run", SimpleNamespace(parameters={"params": params}))
        unplanned.append(hooks.run_name())
    assert names == [
        "uci-digits · k=5 · supervised,gan,autoencoder × finetune · 2 seeds",
        "uci-digits · k=5 · torchvision × finetune · 2 seeds",
    ]
    assert unplanned == [
        "uci-digits · k=5 · builtin:mnist-5k × finetune · 2 seeds",
        "uci-digits · k=5 · torchvision:resnet18 × finetune · 2 seeds",
    ]
