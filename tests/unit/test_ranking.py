"""The ranking's plumbing without services: candidates planned by ``make_plan`` and bad input
refused in one line before any work; the order (higher first, n/a last, ties as given); pruning
to the top M keeps scratch's search equal to the transfer side's; and the scores read the
k-shot train and validation images only: changing the test images changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from warmstart import models
from warmstart.cli import rank_cmd
from warmstart.cli.app import app
from warmstart.contracts import DatasetRef, Job, RunContext, RunPlan, SplitRef
from warmstart.errors import ConfigError
from warmstart.params import PipelineParams, RankParams
from warmstart.ranking import candidates as cand
from warmstart.ranking import features
from warmstart.ranking.order import CandidateScore, Ranking, pruned_line, rank
from warmstart.source_names import source_names
from warmstart.stages import arm_specs, make_plan
from warmstart.stages.leakage import source_whats

MNIST = "builtin:mnist-5k?crop=content"


def row(
    name: str, value: float | None, spec: str | None = None, label: str = "x"
) -> CandidateScore:
    return CandidateScore(name, spec or name, label, "pretrain", {"s": value, "t": 1.0}, 0.1)


@pytest.fixture
def no_services(monkeypatch):
    def reached():
        raise AssertionError("the CLI went on to the services")

    monkeypatch.setattr(rank_cmd, "check_services", reached)


def test_order_is_higher_first_not_applicable_last_ties_as_given():
    ranking = rank([row("a", 0.2), row("b", None), row("c", 0.9), row("d", 0.2)], "s")
    assert [r.name for r in ranking.rows] == ["c", "a", "d", "b"]
    assert ranking.chosen.name == "c"
    assert [r.name for r in ranking.pruned(2)] == ["d", "b"]
    assert Ranking.from_dict(ranking.to_dict()) == ranking
    assert ranking.to_dict()["line"] == "chosen: c, by s, on validation"
    line = pruned_line(ranking, 2)
    assert line == "ranked on validation by s; kept the top 2: c, a; pruned: d (s 0.2), b (s n/a)"


def params(**kw) -> RankParams:
    base = dict(sources=[MNIST, "builtin:noise"], strategies=["supervised", "autoencoder", "gan"])
    return RankParams(**{**base, "k_shot": 5, "seeds": 2, **kw})


def test_every_label_of_every_planned_source_is_a_candidate():
    found = cand.plan_candidates(params())
    assert [c.name for c in found] == [
        f"{s} × {k}" for s in (MNIST, "builtin:noise") for k in ("supervised", "autoencoder", "gan")
    ]
    assert {c.plan.source.provider for c in found} == {"pretrain"}
    assert [p.source.spec for p in cand.plans_of(found)] == [MNIST, "builtin:noise"]


def test_pruning_keeps_the_top_strategies_and_scratch_searches_as_many_configurations():
    found = cand.plan_candidates(params())
    scored = [
        row(c.name, v, c.spec, c.label) for c, v in zip(found, [3, 1, 4, 0, 0, 0], strict=True)
    ]
    plan = cand.prune(found, rank(scored, "s"), 2)
    assert plan.source.spec == MNIST
    assert plan.source.labels == ("supervised", "gan")
    assert plan.params.strategies == ["supervised", "gan"]
    assert "pruned: " + f"{MNIST} × autoencoder (s 1)" in plan.pruned
    specs = arm_specs(plan.params, list(plan.source.labels))
    transfer = {s.arm for s in specs if s.stage == "finetune-target"}
    scratch = {s.arm for s in specs if s.stage == "train-scratch-baseline"}
    assert len(transfer) == 2 * len(plan.params.transfer_modes) == len(scratch) == 4
    assert RunPlan.from_dict(plan.to_dict()) == plan


def test_pruning_to_candidates_of_two_sources_plans_both_in_one_run():
    found = cand.plan_candidates(params())
    scored = [
        row(c.name, v, c.spec, c.label) for c, v in zip(found, [3, 0, 0, 4, 0, 1], strict=True)
    ]
    plan = cand.prune(found, rank(scored, "s"), 3)
    assert [(s.spec, s.labels) for s in plan.sources] == [
        ("builtin:noise", ("supervised", "gan")),
        (MNIST, ("supervised",)),
    ]
    # two sources' `supervised` stay apart: each label is prefixed with its source's short name
    assert plan.labels == {
        "noise:supervised": (0, "supervised"),
        "noise:gan": (0, "gan"),
        "mnist-5k:supervised": (1, "supervised"),
    }
    specs = arm_specs(plan.params, list(plan.labels))
    transfer = {s.arm for s in specs if s.stage == "finetune-target"}
    scratch = {s.arm for s in specs if s.stage == "train-scratch-baseline"}
    modes = plan.params.transfer_modes
    assert transfer == {f"{label}/{m}" for label in plan.labels for m in modes}
    assert len(scratch) == len(transfer) == 3 * len(modes) == 6
    assert "kept the top 3: builtin:noise × supervised, " in plan.pruned
    assert f"pruned: {MNIST} × autoencoder (s 0), {MNIST} × gan (s 0)" in plan.pruned
    # each source's own plan: its spec and kept strategies, as a one-source run would have them
    mnist = plan.only(1)
    assert (mnist.params.source, mnist.params.strategies, mnist.sources) == (
        MNIST,
        ["supervised"],
        (plan.sources[1],),
    )
    assert plan.only(0).params.strategies == ["supervised", "gan"]
    assert RunPlan.from_dict(plan.to_dict()) == plan
    # a stage of an arm reads its own source's plan, and the provider gets its own label
    target = DatasetRef("h", "s3://b/datasets/h", "t", "builtin:t", 2, 1, (8, 8), 10)
    run = RunContext("1", "run", "flow")
    job = Job(plan, target, SplitRef("s", 5, 10, 5, 5, 0), run, labels_by_source=(0, 7))
    mine, own = job.of("mnist-5k:supervised")
    assert (own, mine.plan, mine.source_labels, mine.params.source) == (
        "supervised",
        plan.only(1),
        7,
        MNIST,
    )
    assert job.of(None) == (job, None)
    # the leakage guard names each source's overlaps as its arms do
    assert source_whats(job) == ["source noise", "source mnist-5k"]
    assert source_whats(mine) == ["source"]


def test_one_source_keeps_its_labels_as_they_are():
    found = cand.plan_candidates(params())
    scored = [
        row(c.name, v, c.spec, c.label) for c, v in zip(found, [3, 1, 2, 0, 0, 0], strict=True)
    ]
    plan = cand.prune(found, rank(scored, "s"), 2)
    assert plan.labels == {"supervised": (0, "supervised"), "gan": (0, "gan")}
    assert plan.only(0) is plan


def test_source_names_are_short_and_distinct():
    assert source_names(
        [
            "builtin:shapes?n=3",
            "mlflow:models:/warmstart-x/3",
            "torchvision:resnet18?weights=DEFAULT",
            "checkpoint:s3://bucket/checkpoints/abc/ckpt",
            "checkpoint:/tmp/run/model.safetensors?arch=resnet18",
            "builtin:shapes?size=8x8",
            "checkpoint:/",
        ]
    ) == ["shapes", "warmstart-x-3", "resnet18", "abc", "model", "shapes-6", "checkpoint"]


def test_kept_candidates_of_different_backbones_are_refused_in_one_line():
    found = cand.plan_candidates(params(strategies=["supervised"]))
    other = replace(
        found[1],
        plan=replace(
            found[1].plan, params=found[1].plan.params.model_copy(update={"backbone": "resnet18"})
        ),
    )
    scored = [row(c.name, v, c.spec, c.label) for c, v in zip(found, [2, 1], strict=True)]
    with pytest.raises(ConfigError) as exc:
        cand.prune([found[0], other], rank(scored, "s"), 2)
    line = str(exc.value)
    assert "\n" not in line
    assert line.startswith(f"--top 2: {MNIST} × supervised and builtin:noise × supervised need ")
    assert "different backbones (convnet-s vs resnet18" in line
    assert line.endswith("use --top 1, or rank candidates with one backbone and one input size")
    # known before ranking: no two candidates could share a run
    with pytest.raises(ConfigError, match=r"^--top 2: .* different backbones"):
        cand.check_shared([found[0], other], 2)
    cand.check_shared([found[0], other], 1)


def test_kept_candidates_of_different_target_inputs_are_refused_in_one_line():
    found = cand.plan_candidates(params(strategies=["supervised"]))
    moved = replace(found[1], plan=replace(found[1].plan, target="builtin:shapes?size=64x64"))
    scored = [row(c.name, v, c.spec, c.label) for c, v in zip(found, [2, 1], strict=True)]
    with pytest.raises(
        ConfigError, match=r"need different target inputs \(.* vs builtin:shapes\?size=64x64\)"
    ):
        cand.prune([found[0], moved], rank(scored, "s"), 2)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sources", "builtin:noise"], "at least two candidate sources"),
        (["--sources", f"{MNIST},builtin:nope"], "--sources builtin:nope:"),
        (["--sources", "builtin:noise,builtin:noise"], "given twice"),
        (["--sources", f"{MNIST},builtin:noise", "--score", "nope"], "--score nope: unknown"),
    ],
)
def test_bad_rank_input_is_one_line_before_any_service(no_services, args, says):
    out = CliRunner().invoke(app, ["rank", *args, "--strategies", "supervised"])
    assert out.exit_code == 2, out.output
    assert says in out.output and "Traceback" not in out.output


def test_top_must_leave_a_candidate_out(no_services):
    args = ["--sources", f"{MNIST},builtin:noise", "--strategies", "supervised", "--top", "2"]
    out = CliRunner().invoke(app, ["run", *args])
    assert out.exit_code == 2, out.output
    assert "--top 2 keeps every one of the 2 candidates" in out.output
    out = CliRunner().invoke(app, ["run", "--top", "1"])
    assert out.exit_code == 2 and "--top needs --sources" in out.output


def scored_ranking(images: np.ndarray, labels: np.ndarray, train, val) -> Ranking:
    rows = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = models.get_backbone("convnet-s", in_channels=1, num_classes=3, image_size=(8, 8))
        feats = features.frozen_features(model, images, train, val, "cpu")
        scores = features.score_features(feats, labels, train, val, 100)
        rows.append(CandidateScore(f"init{seed}", f"init{seed}", "x", "t", scores, 0.0))
    from warmstart.ranking.scores import DEFAULT_SCORE

    return rank(rows, DEFAULT_SCORE)


def test_the_ranking_reads_train_and_validation_only_never_test():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = rng.integers(0, 256, (60, 1, 8, 8), dtype=np.uint8)
    images[:, :, :4] = images[:, :, :4] // (1 + labels[:, None, None, None]).astype(np.uint8)
    train, val, test = np.arange(0, 60, 3), np.arange(1, 60, 3), np.arange(2, 60, 3)
    before = scored_ranking(images, labels, train, val)
    other_test = images.copy()
    other_test[test] = rng.integers(0, 256, (len(test), 1, 8, 8), dtype=np.uint8)
    assert scored_ranking(other_test, labels, train, val) == before
    other_val = images.copy()
    other_val[val] = rng.integers(0, 256, (len(val), 1, 8, 8), dtype=np.uint8)
    assert scored_ranking(other_val, labels, train, val) != before  # the check can fail


def test_rank_dry_run_prints_each_candidate_source_as_make_plan_plans_it(no_services):
    args = ["--sources", f"{MNIST},builtin:noise", "--strategies", "supervised", "--k-shot", "5"]
    out = CliRunner().invoke(app, ["rank", *args, "--backbone", "resnet18", "--dry-run"])
    assert out.exit_code == 0, out.output
    printed = [RunPlan.from_dict(p) for p in json.loads(out.output)]
    expected = [
        make_plan(
            PipelineParams(source=s, strategies=["supervised"], k_shot=5, backbone="resnet18")
        )
        for s in (MNIST, "builtin:noise")
    ]
    assert printed == expected
