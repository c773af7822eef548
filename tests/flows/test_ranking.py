"""Which source? through the CLI against the real services (tiny sizes): a `rank` of three
candidates of two provider kinds (two datasets pretrained here, published torchvision weights
from the mirror) end to end (table as JSON, the MLflow run with its table and plot, the Prefect
artifact with the chosen line), and `run --sources … --top 1`: ranked on validation, the
protocol on the kept candidate only, scratch's search as large as the kept transfer side's, the
pruned candidate named with its score, and the ranking's pretraining reused (paid once); and
`run --sources … --top 2` over three dataset sources: one run trains both kept sources' arms,
scratch searches one configuration per transfer arm, the gate decides on fresh seeds, and the
registered version names the chosen arm's own source."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
import torchvision
from mlflow.tracking import MlflowClient

from tests.flows.cli_runs import WARMSTART, cli_env
from warmstart import weights
from warmstart.ranking.scores import DEFAULT_SCORE, SCORES
from warmstart.tasks.flow_artifacts import flow_run_artifacts

pytestmark = [pytest.mark.services]

DIGITS, NOISE = "builtin:uci-digits?classes=0-4", "builtin:noise"
SHAPES = "builtin:shapes?n=300&num_classes=5"
SHORT = {DIGITS: "uci-digits", NOISE: "noise", SHAPES: "shapes"}  # their arms' prefixes
TARGET = ["--target", "builtin:uci-digits?classes=5-9", "--k-shot", "5"]
SMALL = ["--strategies", "supervised", "--pretrain-epochs", "2"]


def cli(*args: str) -> dict:
    out = subprocess.run(
        [*WARMSTART, *args], capture_output=True, text=True, timeout=900, env=cli_env()
    )
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rank_three_candidates_end_to_end(stack, tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    weights.add(path, "my-resnet18", "resnet18")
    published = "torchvision:resnet18?weights=my-resnet18"
    target = ["--target", "builtin:uci-digits?classes=5-9&size=32x32&channels=3", "--k-shot", "5"]
    out = cli("rank", "--sources", f"{DIGITS},{NOISE},{published}", *target, *SMALL, "--json")
    ranked = out["ranked"]
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert {r["spec"] for r in ranked} == {DIGITS, NOISE, published}
    assert {r["provider"] for r in ranked} == {"pretrain", "torchvision"}
    assert out["score"] == DEFAULT_SCORE and out["chosen"] == ranked[0]["name"]
    values = [r["scores"][DEFAULT_SCORE] for r in ranked]
    assert values == sorted(values, reverse=True)
    for r in ranked:
        assert set(r["scores"]) == set(SCORES.names())
        assert r["extract_seconds"] > 0
        assert r["images"]["train"] == 25  # k=5 × 5 classes; validation only besides
        pretrained_here = r["provider"] == "pretrain"
        assert (r["pretrain_seconds"] > 0 or r["pretrain_reused"]) == pretrained_here
        # every candidate here has its own classifier: the supervised pretrainings' heads over
        # their source classes, resnet18's fc over ImageNet's: LEEP and NCE are numbers
        leep, nce = r["scores"]["leep"], r["scores"]["nce"]
        assert isinstance(leep, float) and math.isfinite(leep) and leep < 0.0, r
        assert isinstance(nce, float) and math.isfinite(nce) and nce <= 0.0, r
    line = f"chosen: {ranked[0]['name']}, by {DEFAULT_SCORE}, on validation"
    assert out["line"] == line
    run = MlflowClient().get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["warmstart.kind"] == "rank"
    assert run.data.tags["warmstart.flow_run_id"] == out["flow_run_id"]
    assert run.data.tags["rank.chosen"] == ranked[0]["name"]
    files = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"ranking.md", "ranking.json", "ranking.png"} <= files
    api, auth = stack.env["PREFECT_API_URL"], stack.prefect_auth
    artifacts = flow_run_artifacts(out["flow_run_id"], api, auth)
    report = next(a for a in artifacts if a["key"].startswith("source-ranking-"))
    assert report["data"].splitlines()[0] == f"**{line}**"


def test_run_sources_top_1_runs_the_protocol_on_the_chosen_source_only(stack):
    args = ["--sources", f"{DIGITS},{NOISE}", "--top", "1", *TARGET, *SMALL]
    args += ["--modes", "linear_probe", "--seeds", "1", "--epochs", "3", "--confirm-seeds", "0"]
    summary = cli("run", *args, "--json")
    pruned = summary["pruned"]
    assert pruned.startswith(f"ranked on validation by {DEFAULT_SCORE}; kept the top 1: ")
    kept = pruned.split("kept the top 1: ")[1].split(";")[0]
    other = NOISE if kept.startswith(DIGITS) else DIGITS
    assert f"pruned: {other} × supervised ({DEFAULT_SCORE} " in pruned
    arms = {row["arm"] for row in summary["table"]}
    transfer = {a for a in arms if a.startswith("supervised/")}
    scratch = {a for a in arms if a.startswith("scratch")}
    assert transfer == {"supervised/linear_probe"} and len(scratch) == len(transfer)
    assert summary["reused"] >= 1  # the kept source's pretraining, paid once by the ranking


def test_run_sources_top_2_trains_two_sources_in_one_run(stack):
    args = ["--sources", f"{DIGITS},{NOISE},{SHAPES}", "--top", "2", *TARGET, *SMALL]
    args += ["--modes", "linear_probe", "--seeds", "1", "--epochs", "3", "--confirm-seeds", "2"]
    summary = cli("run", *args, "--keep-candidates", "--json")
    pruned = summary["pruned"]
    assert pruned.startswith(f"ranked on validation by {DEFAULT_SCORE}; kept the top 2: ")
    kept = pruned.split("kept the top 2: ")[1].split(";")[0].split(", ")
    specs = [k.removesuffix(" × supervised") for k in kept]
    assert len(set(specs)) == 2 and set(specs) < set(SHORT)
    (other,) = set(SHORT) - set(specs)
    assert f"; pruned: {other} × supervised ({DEFAULT_SCORE} " in pruned and pruned.endswith(")")
    arms = {row["arm"] for row in summary["table"] if not row["arm"].endswith("(confirm)")}
    transfer = {a for a in arms if ":" in a}
    assert transfer == {f"{SHORT[s]}:supervised/linear_probe" for s in specs}
    assert len({a for a in arms if a.startswith("scratch")}) == len(transfer) == 2
    protocol = summary["protocol"]
    assert protocol["transfer_configs"] == protocol["scratch_configs"] == 2
    assert protocol["confirmation_seeds"] == [1000, 1001]
    assert summary["candidate"] in transfer
    # the version (kept even when refused) names the chosen arm's own source
    chosen = next(s for s in specs if summary["candidate"].startswith(SHORT[s] + ":"))
    version = MlflowClient().get_model_version(summary["model_name"], summary["version"])
    assert version.tags["arm"] == summary["candidate"]
    assert f"pretrained on `{chosen}`" in version.description
