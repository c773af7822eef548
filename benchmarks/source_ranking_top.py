"""Does `warmstart run --sources … --top M` reach the full protocol's gate verdict, for less
fine-tuning (issue 24, goal 2)?

The candidates, targets, image size, transfer modes and fine-tuning budget are those of
`source_ranking.py` (BENCHMARKS §13), fixed there before any result was seen; this script adds
the shot counts k = 1, 5, 10 and runs the gate's protocol with the production code, in-process:

- the arms of one run: `stages.training.arm_specs` (every kept candidate × mode × selection
  seed, and scratch's search grid, as large as the transfer side's: `scratch_grid`), with the
  `PipelineParams` defaults (2 selection seeds, 5 confirmation seeds 1000-1004, margin 0, the
  two-way interval, metric auto);
- the choice on validation: `promotion.protocol.plan_confirmation`; the confirmation seeds:
  `stages.training.confirmation_specs`; the gate: `protocol_record`, `gate_evaluation` and
  `promotion.decide`, on per-test-image correctness;
- the pruning: every candidate scored on the seed-0 k-shot draw and the validation images
  (`ranking.scores.score_all`, never test), ordered by `ranking.order.rank` with the default
  score (`DEFAULT_SCORE`), the top M kept.

Per (target, k) the *full protocol* keeps all 11 candidates; `--top M` keeps M. Each arm at each
seed is trained once and reused by every protocol that has it (training is deterministic per
seed), so the verdicts differ only by what was kept. Compute: the fine-tuning seconds of the
arms each protocol trains (selection and confirmation), and for `--top M` the seconds of
extracting features and scoring all candidates too; pretraining the dataset sources is paid
once by both and reported separately (§13). The random-init linear-probe control, which both
train alike, is left out of both.

    python benchmarks/source_ranking_top.py pretrain --part 0/2   # and 1/2 beside it (cached)
    python benchmarks/source_ranking_top.py run --targets uci-digits,mnist59  # resumes
    python benchmarks/source_ranking_top.py run --targets shapes47,hard47     # beside it
    python benchmarks/source_ranking_top.py report
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import machine_line  # this script's folder
from source_ranking import (
    BACKBONE,
    CANDIDATES,
    FINETUNE,
    GEOMETRY,
    MODES,
    TARGETS,
    load_target,
    log,
    pretrain_source,
    trunk_and_head,
)
from threadpoolctl import threadpool_limits

from warmstart import models as M
from warmstart.contracts import SCRATCH, ArmResult, ArmScores, ArmSpec, Evaluation, StageRecord
from warmstart.data.splits import seed_train
from warmstart.models.features import extract
from warmstart.params import PipelineParams
from warmstart.promotion import decide
from warmstart.promotion.metric import resolve, weights
from warmstart.promotion.protocol import gate_evaluation, plan_confirmation, protocol_record
from warmstart.ranking import ScoreInputs, score_all
from warmstart.ranking.order import CandidateScore, rank
from warmstart.ranking.scores import DEFAULT_SCORE
from warmstart.stages.training import arm_specs, confirmation_specs

KS = (1, 5, 10)
TOPS = (1, 2, 3)
GOAL_TOP = 2
# The pruning rules compared: the default score, and a random order (the sanity baseline).
RULES = (DEFAULT_SCORE, "random")
PARAMS = PipelineParams(backbone=BACKBONE, transfer_modes=list(MODES))


# ---- training, cached per (target, k, arm, seed) --------------------------------------------


def fit(spec: ArmSpec, src: dict | None, data: dict) -> dict:
    """One arm at one seed, as the pipeline trains it (scratch: random init, its grid's lr/wd)."""
    tr, va, te = seed_train(data["splits"], data["y"], spec.seed), data["val"], data["splits"].test
    cfg = M.TrainConfig(seed=spec.seed, num_threads=1, **FINETUNE)
    if spec.lr is not None:
        cfg = replace(cfg, lr=spec.lr, weight_decay=spec.weight_decay)
    result = M.fit_target(
        backbone=BACKBONE,
        init_state=None if src is None else src["trunk"],
        mode=spec.mode,
        num_classes=data["classes"],
        train=(data["x"][tr], data["y"][tr]),
        val=(data["x"][va], data["y"][va]),
        config=cfg,
        **GEOMETRY,
    )
    pred = M.predict_proba(result.model, data["x"][te]).argmax(1)
    correct = pred == data["y"][te]
    return {
        "val": float(result.best_val_acc),
        "test": float(correct.mean()),
        "correct": "".join("1" if c else "0" for c in correct),
        "seconds": result.seconds,
    }


def label_of(arm: str) -> str | None:
    """The candidate an arm was transferred from (None: scratch)."""
    return None if arm == SCRATCH or arm.startswith(SCRATCH + "/") else arm.rsplit("/", 1)[0]


def scratch_key(spec: ArmSpec) -> str:
    return f"{SCRATCH}/lr={spec.lr:g},wd={spec.weight_decay:g}"


class Trainer:
    """Trains each (arm, seed) of one (target, k) once; records persist in ``path``."""

    def __init__(self, path: Path, key: str, sources: dict, data: dict, res: dict) -> None:
        self.path, self.key, self.sources, self.data, self.res = path, key, sources, data, res

    def __call__(self, spec: ArmSpec) -> dict:
        arm = scratch_key(spec) if label_of(spec.arm) is None else spec.arm
        key = f"{self.key}|{arm}|{spec.seed}"
        if key not in self.res["fits"]:
            label = label_of(spec.arm)
            self.res["fits"][key] = fit(
                spec, None if label is None else self.sources[label], self.data
            )
            self.path.write_text(json.dumps(self.res))
        return self.res["fits"][key]


# ---- the protocol, with the production functions --------------------------------------------


def _result(spec: ArmSpec, rec: dict) -> ArmResult:
    stage = StageRecord(key="", checkpoint_uri="", seconds=rec["seconds"])
    return ArmResult(spec=spec, weights_uri="", val_acc=rec["val"], best_epoch=0, stage=stage)


def _scores(arm: str, specs: list[ArmSpec], recs: list[dict]) -> ArmScores:
    correct = [[c == "1" for c in r["correct"]] for r in recs]
    return ArmScores(
        arm=arm,
        strategy=specs[0].strategy,
        mode=specs[0].mode,
        seeds=[s.seed for s in specs],
        val_acc=[r["val"] for r in recs],
        test_acc=[r["test"] for r in recs],
        correct=correct,
        pred=[],
    )


def protocol(train: Trainer, kept: list[str], y_test: np.ndarray, classes: int) -> dict:
    """The gate's protocol on the ``kept`` candidates: its verdict, chosen arm and seconds."""
    specs = [s for s in arm_specs(PARAMS, kept) if s.stage != "train-control"]
    recs = [train(s) for s in specs]
    plan = plan_confirmation([_result(s, r) for s, r in zip(specs, recs, strict=True)])
    confirm = confirmation_specs(PARAMS, plan.candidate, plan.scratch, pool_control=False)
    crecs = [train(s) for s in confirm]
    arms = {}
    for arm in (plan.candidate.arm, SCRATCH):
        pairs = [(s, r) for s, r in zip(confirm, crecs, strict=True) if s.arm == arm]
        arms[arm] = _scores(arm, [s for s, _ in pairs], [r for _, r in pairs])
    evaluation = Evaluation(arms=arms, y_test=y_test.tolist(), test_index=[], classes=[])
    record = protocol_record(plan, evaluation, labels={})
    gate = gate_evaluation(evaluation, plan, record)
    metric = resolve(PARAMS.metric, y_test, classes)
    decision = decide(
        gate.arms[plan.candidate.arm],
        gate.arms[SCRATCH],
        margin=PARAMS.margin,
        weights=weights(metric, y_test, classes),
    )
    d = decision.delta_vs_scratch
    return {
        "kept": kept,
        "chosen": plan.candidate.arm,
        "scratch": plan.scratch.arm,
        "scratch_configs": plan.scratch_configs,
        "promoted": bool(decision.passed),
        "delta": [100 * d["mean_diff"], 100 * d["ci_low"], 100 * d["ci_high"]],
        "seconds": sum(r["seconds"] for r in recs + crecs),
        "parts": {  # seconds: transfer selection, scratch's grid, confirmation seeds
            "transfer": sum(
                r["seconds"] for s, r in zip(specs, recs, strict=True) if label_of(s.arm)
            ),
            "scratch": sum(
                r["seconds"] for s, r in zip(specs, recs, strict=True) if not label_of(s.arm)
            ),
            "confirmation": sum(r["seconds"] for r in crecs),
        },
        "fits": len(recs) + len(crecs),
    }


def scores_seed0(sources: dict, data: dict) -> dict:
    """Every score of every candidate on the seed-0 k-shot draw and validation, timed."""
    out = {}
    for name, src in sources.items():
        t0 = time.perf_counter()
        model, head = trunk_and_head(src)
        tr, va = data["splits"].train, data["val"]
        f_tr, p_tr = extract(model, torch.from_numpy(data["x"][tr]), head=head)
        f_va, p_va = extract(model, torch.from_numpy(data["x"][va]), head=head)
        inputs = ScoreInputs(
            f_tr, data["y"][tr], f_va, data["y"][va], p_tr, p_va,
            source_size=src.get("source_images", 0), seed=0,
        )  # fmt: skip
        values = score_all(inputs)
        out[name] = {"scores": values, "seconds": time.perf_counter() - t0}
    return out


def ranked(scores: dict, rule: str, seed: int) -> list[str]:
    """Candidates best first: by a score (the production ``rank``), or a seeded random order."""
    if rule == "random":
        names = list(CANDIDATES)
        random.Random(seed).shuffle(names)
        return names
    rows = [
        CandidateScore(
            name=n, spec=n, label=n, provider="", scores=s["scores"], extract_seconds=0.0
        )
        for n, s in scores.items()
    ]
    return [r.name for r in rank(rows, rule).rows]


def run(args) -> None:
    torch.set_num_threads(1)
    threadpool_limits(1)
    sources = {name: pretrain_source(name, args.cache) for name in CANDIDATES}
    args.out.mkdir(parents=True, exist_ok=True)
    for target in args.targets.split(","):
        path = args.out / f"{target}.json"
        res = json.loads(path.read_text()) if path.exists() else {"fits": {}, "cases": {}}
        for k in KS:
            data = load_target(TARGETS[target][0], k)
            y_test = data["y"][data["splits"].test]
            train = Trainer(path, f"k{k}", sources, data, res)
            case = res["cases"].get(str(k)) or {"scores": scores_seed0(sources, data)}
            case["full"] = protocol(train, list(CANDIDATES), y_test, data["classes"])
            for rule in RULES:
                order = ranked(case["scores"], rule, seed=k)
                for m in TOPS:
                    case[f"{rule}|top{m}"] = protocol(train, order[:m], y_test, data["classes"])
            res["cases"][str(k)] = case
            res["machine"] = machine_line()
            path.write_text(json.dumps(res))
            log(target, f"k={k}", "full", case["full"]["promoted"], case["full"]["chosen"])


def pretrain(args) -> None:
    torch.set_num_threads(1)
    threadpool_limits(1)
    part, parts = (int(x) for x in args.part.split("/"))
    for i, name in enumerate(CANDIDATES):
        if i % parts == part:
            log("source", name, f"{pretrain_source(name, args.cache)['seconds']:.0f}s")


# ---- report ---------------------------------------------------------------------------------


def _verdict(p: dict) -> str:
    d = p["delta"]
    word = "promoted" if p["promoted"] else "not promoted"
    return f"{word} ({d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}])"


def scoring_seconds(case: dict) -> float:
    """Extracting features and computing every score, for every candidate of one case."""
    return sum(s["seconds"] for s in case["scores"].values())


def cost(case: dict, key: str) -> float:
    """A protocol's fine-tuning seconds, plus the ranking's when it pruned by a score."""
    scored = key != "full" and not key.startswith("random|")
    return case[key]["seconds"] + (scoring_seconds(case) if scored else 0.0)


def report(args) -> None:
    cases = []  # (target, role, k, case)
    machine = ""
    for target, (_, role) in TARGETS.items():
        path = args.out / f"{target}.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        machine = res.get("machine", machine)
        cases += [
            (target, role, int(k), c)
            for k, c in sorted(res["cases"].items(), key=lambda x: int(x[0]))
        ]
    print(machine, "\n")
    print(
        f"Per (target, k): the full protocol (11 candidates) and `--top {GOAL_TOP}` by "
        f"`{DEFAULT_SCORE}`, each gate verdict with Δ vs scratch in points [95% CI]:\n"
    )
    print(
        f"| target | k | full protocol: chosen, verdict | `--top {GOAL_TOP}`: kept → chosen, verdict | same verdict | compute |"
    )
    print("|---|---|---|---|---|---|")
    for target, role, k, c in cases:
        full, top = c["full"], c[f"{DEFAULT_SCORE}|top{GOAL_TOP}"]
        same = "yes" if full["promoted"] == top["promoted"] else "**no**"
        print(
            f"| {target} ({role}) | {k} | {full['chosen']}, {_verdict(full)} | "
            f"{', '.join(top['kept'])} → {top['chosen']}, {_verdict(top)} | {same} | "
            f"{100 * cost(c, f'{DEFAULT_SCORE}|top{GOAL_TOP}') / full['seconds']:.0f}% |"
        )
    print(
        "\nAgreement with the full protocol's verdict, and compute as a share of its fine-tuning:\n"
    )
    print(
        "| pruning | cases | same verdict, held-out | same verdict, all | same chosen arm, all | compute (mean) | compute (range) |"
    )
    print("|---|---|---|---|---|---|---|")
    for rule in RULES:
        for m in TOPS:
            key = f"{rule}|top{m}"
            same = [c["full"]["promoted"] == c[key]["promoted"] for _, _, _, c in cases]
            held = [s for s, (_, role, _, _) in zip(same, cases, strict=True) if role == "held-out"]
            arm = [c["full"]["chosen"] == c[key]["chosen"] for _, _, _, c in cases]
            share = [100 * cost(c, key) / c["full"]["seconds"] for *_, c in cases]
            print(
                f"| `{rule}` top {m} | {len(cases)} | {sum(held)}/{len(held)} | "
                f"{sum(same)}/{len(same)} | {sum(arm)}/{len(arm)} | {np.mean(share):.0f}% | "
                f"{min(share):.0f}–{max(share):.0f}% |"
            )
    print("\nWhere the seconds go, summed over the cases (s):\n")
    print(
        "| protocol | transfer selection | scratch's grid | confirmation seeds | scoring | total | share |"
    )
    print("|---|---|---|---|---|---|---|")
    full_total = sum(c["full"]["seconds"] for *_, c in cases)
    for key in ("full", f"{DEFAULT_SCORE}|top{GOAL_TOP}"):
        parts = {
            p: sum(c[key]["parts"][p] for *_, c in cases)
            for p in ("transfer", "scratch", "confirmation")
        }
        score = (
            0.0
            if key == "full"
            else sum(s["seconds"] for *_, c in cases for s in c["scores"].values())
        )
        total = sum(parts.values()) + score
        name = (
            "full (11 candidates)" if key == "full" else f"`--top {GOAL_TOP}` by `{DEFAULT_SCORE}`"
        )
        print(
            f"| {name} | {parts['transfer']:.0f} | {parts['scratch']:.0f} | "
            f"{parts['confirmation']:.0f} | {score:.0f} | {total:.0f} | {100 * total / full_total:.0f}% |"
        )
    full_s = sum(c["full"]["seconds"] for *_, c in cases)
    fits = sum(c["full"]["fits"] for *_, c in cases)
    print(f"\nFull protocol: {fits} fits, {full_s:.0f} s of fine-tuning over {len(cases)} cases.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["pretrain", "run", "report"])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--cache", type=Path, default=Path("test-output/source_ranking"))
    ap.add_argument("--out", type=Path, default=Path("test-output/source_ranking_top"))
    args = ap.parse_args()
    {"pretrain": pretrain, "run": run, "report": report}[args.phase](args)


if __name__ == "__main__":
    main()
