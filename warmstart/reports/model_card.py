"""The model card of a registered version: Markdown generated from what the run knows, never
written by hand. ``card_facts`` gathers the facts (pure: from the evaluation, the gate's
decision, the job, the version's tags and the leakage counts); ``render_card`` turns them into
Markdown (pure). The promote task puts the card in the version's description, logs it as
``model_card.md`` and publishes it as a Prefect Markdown artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from warmstart.contracts import Evaluation, Job, StageRecord
from warmstart.promotion.classes import CLASS_DROP  # the verdict's margin, for the served seed
from warmstart.reports.plots import confusion_matrix

CARD_MARKER = "# Model card: "  # the first line; set_card replaces a description from it on


@dataclass(frozen=True)
class CardFacts:
    """Everything a card says, JSON-able."""

    name: str
    version: str
    task: dict[str, Any]  # target name, spec, classes, channels, size
    lineage: dict[str, str]  # arm, strategy, mode, seed, source, runs, lineage.* tags
    data: dict[str, Any]  # dataset and split hashes and sizes, labels used
    verdict_markdown: str  # the gate's own Markdown (verdict, interval, protocol)
    leakage: dict[str, Any]  # counts (leakage.* metrics) and the guard's line
    per_class: list[dict[str, Any]]  # class, test images, served and scratch accuracy
    balanced: dict[str, float]  # balanced accuracy of the served model and of scratch
    confusion: list[list[int]]  # rows: true class, columns: predicted
    compute: dict[str, Any]  # seconds and images
    limits: list[str] = field(default_factory=list)


def per_class_accuracy(y: Sequence[int], pred: Sequence[int], k: int) -> np.ndarray:
    """Accuracy within each true class (NaN for a class with no test image)."""
    y, pred = np.asarray(y), np.asarray(pred)
    out = np.full(k, np.nan)
    for c in range(k):
        mask = y == c
        if mask.any():
            out[c] = float((pred[mask] == c).mean())
    return out


def class_metrics(evaluation: Evaluation) -> dict[str, float]:
    """MLflow metrics of every arm (mean over its seeds): ``test_balanced_acc.<arm>`` (the mean
    of the per-class accuracies) and ``test_class_acc.<arm>.<class>``."""
    k, y, out = len(evaluation.classes), evaluation.y_test, {}
    for name, arm in evaluation.arms.items():
        if not arm.pred:
            continue
        per = np.nanmean([per_class_accuracy(y, p, k) for p in arm.pred], axis=0)
        key = name.replace("/", ".")
        out[f"test_balanced_acc.{key}"] = float(np.nanmean(per))
        out |= {
            f"test_class_acc.{key}.{c}": float(a)
            for c, a in zip(evaluation.classes, per, strict=True)
        }
    return out


def confusion(y: Sequence[int], pred: Sequence[int], k: int) -> list[list[int]]:
    """The confusion counts (rows = true class) as nested lists, for the card's JSON."""
    return confusion_matrix(np.asarray(y), np.asarray(pred), k).tolist()


def _per_class(evaluation: Evaluation, candidate: str, served: int) -> tuple[list, dict, list]:
    """Per-class rows, balanced accuracies and the served model's confusion matrix."""
    k, y = len(evaluation.classes), evaluation.y_test
    pred = evaluation.arms[candidate].pred[served]
    mine = per_class_accuracy(y, pred, k)
    scratch_arm = evaluation.arms.get("scratch")
    seeds = scratch_arm.pred if scratch_arm else []
    scratch = (
        np.nanmean([per_class_accuracy(y, p, k) for p in seeds], axis=0)
        if seeds
        else np.full(k, np.nan)
    )
    counts = np.bincount(np.asarray(y), minlength=k)
    rows = [
        {"class": c, "test_images": int(n), "accuracy": float(a), "scratch_accuracy": float(s)}
        for c, n, a, s in zip(evaluation.classes, counts, mine, scratch, strict=True)
    ]
    balanced = {"served": float(np.nanmean(mine)), "scratch": float(np.nanmean(scratch))}
    return rows, balanced, confusion(y, pred, k)


def _compute(records: Sequence[StageRecord], wall_seconds: float, pretrain_images: int) -> dict:
    trained = [r for r in records if not r.reused]
    return {
        "wall_seconds": round(wall_seconds, 1),
        "stages_trained": len(trained),
        "stages_reused": len(records) - len(trained),
        "training_seconds": round(sum(r.seconds for r in trained), 1),
        "pretrain_images": pretrain_images,
    }


def card_facts(
    *,
    name: str,
    version: str,
    job: Job,
    evaluation: Evaluation,
    candidate: str,
    served_index: int,
    verdict_markdown: str,
    tags: Mapping[str, str],
    leakage: Mapping[str, Any],
    records: Sequence[StageRecord],
    wall_seconds: float,
    pretrain_images: int = 0,
) -> CardFacts:
    """The facts of one registered version (pure)."""
    t, s = job.target, job.split
    per_class, balanced, matrix = _per_class(evaluation, candidate, served_index)
    keys = ("arm", "strategy", "transfer_mode", "seed", "source_dataset_hash", "checkpoint_uri")
    lineage = {k: str(tags[k]) for k in keys if tags.get(k)}
    lineage |= {k: str(v) for k, v in tags.items() if k.startswith("lineage.")}
    lineage |= {"source": job.params.source, "training_run_id": str(tags.get("training_run_id"))}
    lineage |= {"flow_run_id": job.run.flow_run_id, "pipeline_run_id": job.run.run_id}
    data = {
        "target_dataset_hash": t.hash,
        "target_images": t.count,
        "split_hash": s.hash,
        "train": s.train,
        "val": s.val,
        "test": s.test,
        "unlabelled": s.unlabelled,
        "labels_used": f"{s.k_shot} per class x {t.num_classes} classes = {s.train} labelled "
        "training images (validation labels select; test labels only score)",
    }
    return CardFacts(
        name=name,
        version=version,
        task={
            "target": t.name,
            "spec": t.spec,
            "classes": list(evaluation.classes),
            "channels": t.channels,
            "size": list(t.size),
        },
        lineage=lineage,
        data=data,
        verdict_markdown=verdict_markdown,
        leakage=dict(leakage),
        per_class=per_class,
        balanced=balanced,
        confusion=matrix,
        compute=_compute(records, wall_seconds, pretrain_images),
        limits=limits(t.channels, tuple(t.size), t.spec, t.num_classes),
    )


def limits(channels: int, size: tuple[int, int], spec: str, classes: int) -> list[str]:
    h, w = size
    return [
        f"Input: {channels}-channel {h}x{w} images scaled to [0, 1]; larger or other-channel "
        "images are converted (`warmstart predict`, the served pyfunc) and images needing more "
        "than 8x enlargement or 4x aspect distortion are refused.",
        f"Trained and tested only on images like `{spec}`: other domains (photographs, other "
        "scanners, other writing) are untested.",
        f"Closed set of {classes} classes: every input gets one of them, whatever it shows.",
        "Intended use: classification of images from the training domain, and as a source for "
        "further transfer. Not evaluated for fairness, robustness or adversarial inputs.",
    ]


def weaker_classes(per_class: Sequence[Mapping[str, Any]], drop: float = CLASS_DROP) -> list[str]:
    """Classes whose accuracy is more than ``drop`` below scratch's (mean over its seeds)."""
    return [
        f"`{r['class']}` ({_pct(r['accuracy'])} vs scratch {_pct(r['scratch_accuracy'])})"
        for r in per_class
        if r["scratch_accuracy"] - r["accuracy"] > drop
    ]


def _weaker_line(f: CardFacts) -> str:
    weaker = weaker_classes(f.per_class)
    if not weaker:
        return f"No class is more than {100 * CLASS_DROP:.0f} points below scratch."
    return (
        f"**Classes more than {100 * CLASS_DROP:.0f} points below scratch:** "
        + ", ".join(weaker)
        + "."
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"


def _about(f: CardFacts) -> list[str]:
    """Task, lineage, data and verdict."""
    classes = f.task["classes"]
    return [
        f"{CARD_MARKER}`{f.name}` version {f.version}",
        "",
        "## Task",
        "",
        f"Image classification of `{f.task['target']}` (`{f.task['spec']}`): "
        f"{len(classes)} classes ({', '.join(f'`{c}`' for c in classes)}), input "
        f"{f.task['channels']}x{f.task['size'][0]}x{f.task['size'][1]}.",
        "",
        "## Source and lineage",
        "",
        *[f"- **{k}**: `{v}`" for k, v in f.lineage.items()],
        "",
        "## Data",
        "",
        *[f"- **{k}**: {v}" for k, v in f.data.items()],
        "",
        "## Verdict",
        "",
        f.verdict_markdown.replace("\n## ", "\n### ").replace("## Gate", "### Gate", 1),
        "",
        _weaker_line(f),
    ]


def _results(f: CardFacts) -> list[str]:
    """Leakage, per-class results, compute and limits."""
    classes = f.task["classes"]
    return [
        "## Leakage",
        "",
        *([f"- {f.leakage.get('report', 'not checked')}"]),
        *[f"- `{k}`: {int(v)}" for k, v in sorted(f.leakage.get("counts", {}).items())],
        "",
        "## Per class (test split)",
        "",
        *_table(
            ["class", "test images", "accuracy", "scratch (mean over seeds)"],
            [
                [
                    f"`{r['class']}`",
                    r["test_images"],
                    _pct(r["accuracy"]),
                    _pct(r["scratch_accuracy"]),
                ]
                for r in f.per_class
            ],
        ),
        "",
        f"Balanced accuracy: {_pct(f.balanced['served'])} (scratch {_pct(f.balanced['scratch'])}).",
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        *_table(
            ["true \\ pred", *classes],
            [[c, *row] for c, row in zip(classes, f.confusion, strict=True)],
        ),
        "",
        "## Compute",
        "",
        *[f"- **{k}**: {v}" for k, v in f.compute.items()],
        "",
        "## Intended use and known limits",
        "",
        *[f"- {x}" for x in f.limits],
        "",
        "_Generated by warmstart from the run's records; not written by hand._",
    ]


def render_card(f: CardFacts) -> str:
    """The card as Markdown (pure)."""
    return "\n".join([*_about(f), "", *_results(f)]) + "\n"
