"""Register the served model and move ``champion`` as a compare-and-set.

``promote`` holds the per-model promotion lock (``lock.prefect_lock``) while it reads the
champion, scores it on this run's test examples, decides, registers and moves the alias. Inside
the lock it re-reads the alias right before moving it and moves it only if the champion is still
the version the gate compared against; otherwise it re-gates against the new champion (up to
``attempts`` rounds). Two pipeline runs promoting into one model therefore take turns, and the
second is compared with the first's result instead of overwriting it.

What remains: MLflow has no atomic compare-and-set on aliases. A writer that does not take the
lock (the MLflow UI, another tool) can still move the alias in the milliseconds between the
re-read and the move; the alias is read once more afterwards and ``Promotion.champion_version``
reports what it really is.

Versions: registered only when promoted, or when ``keep_candidates`` is on (then tagged
``candidate``). A model whose weights (``weights_sha256``) are already registered is not
registered again: its existing version is reused. On promotion the replaced champion gets the
alias ``previous-champion`` and the tag ``previous_champion=true``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from warmstart import tracking
from warmstart.contracts import (
    SCRATCH,
    ArmResult,
    ArmScores,
    DatasetRef,
    Evaluation,
    Job,
    SourceModel,
)
from warmstart.data import parse_spec
from warmstart.errors import DataError, TrackingError
from warmstart.promotion.classes import gate_class_drops
from warmstart.promotion.lock import prefect_lock
from warmstart.promotion.metric import gate_weights
from warmstart.promotion.policy import Champion, Decision, decide, select_candidate, served_index
from warmstart.tracking import CHAMPION, PREVIOUS_CHAMPION, VersionRef
from warmstart.tracking.client import client
from warmstart.tracking.registry import delete_alias

if TYPE_CHECKING:
    import torch

ScoreVersion = Callable[[VersionRef], np.ndarray]  # a version → per-example correctness
Lock = Callable[[str], AbstractContextManager]
DESCRIPTION = "warmstart transfer models; alias champion = served"


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did. ``version`` is the served model's version (None: not registered)."""

    decision: Decision
    model_name: str
    version: str | None
    champion_version: str | None  # the champion after the call, as read back
    previous_champion: str | None  # the version this call replaced
    registered: bool  # this call created ``version``
    weights_sha256: str
    attempts: int  # gate rounds: more than 1 when the champion moved meanwhile

    @property
    def model_uri(self) -> str | None:
        return f"models:/{self.model_name}/{self.version}" if self.version else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = self.decision.to_dict()
        return out


@dataclass(frozen=True)
class _Request:
    """Everything one promotion needs, checked once."""

    model_name: str
    candidate: ArmScores
    scratch: ArmScores
    served: ArmResult
    model: Any  # torch.nn.Module (imported lazily)
    example: np.ndarray
    digest: str
    tags: dict[str, str]
    margin: float
    keep_candidates: bool
    score_version: ScoreVersion
    fallback_run_id: str  # the pipeline's parent run
    source_spec: str = ""  # what the source was pretrained on (for the version's description)
    data: tuple[str, str] = ("", "")  # this run's (target dataset hash, split hash)
    blocked: str | None = None  # the leakage guard's line: never promoted
    classes: tuple[str, ...] = ()  # the target's class names (the served pyfunc returns them)
    weights: Any = None  # per-example weights of the gate's metric (None: plain accuracy)
    class_drops: tuple = ()  # classes the candidate serves worse than scratch (``classes``)


def provenance_tags(served: ArmResult, job: Job, source: SourceModel | None) -> dict[str, str]:
    """Where a served model came from: strategy, mode, seed, data and split hashes, checkpoint,
    k, the flow run and the MLflow run that trained it."""
    tags = {
        "arm": served.arm,
        "strategy": served.spec.strategy or "none",
        "transfer_mode": served.spec.mode,
        "seed": str(served.seed),
        "source_dataset_hash": str(
            (source.provenance if source else {}).get("source_dataset_hash", "")
        ),
        "source_key": served.source_key or "",
        "target_dataset_hash": job.target.hash,
        "split_hash": job.split.hash,
        "checkpoint_uri": served.stage.checkpoint_uri,
        "k_shot": str(job.split.k_shot),
        "flow_run_id": job.run.flow_run_id,
        "training_run_id": served.stage.mlflow_run_id or "",
    }
    if source is not None:  # the source kind and its lineage (mlflow: the version it came from)
        tags["lineage.source_kind"] = source.provider
        tags |= {k: str(v) for k, v in source.provenance.items() if k.startswith("lineage.")}
    return {k: v for k, v in tags.items() if v}


def model_name(target: DatasetRef) -> str:
    """The registered model of a target, ``warmstart-<name>-<H>x<W>-<C>ch-<digest6>``: only models
    of the same inputs are comparable, so the name carries the geometry, and a digest of the
    preprocessing (size, channels, ``crop``, class selection) tells e.g. cropped from uncropped."""
    spec = parse_spec(target.spec)
    prep = {
        "size": list(target.size),
        "channels": target.channels,
        "crop": spec.crop,
        "classes": list(spec.classes or ()),
    }
    digest = hashlib.sha256(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:6]
    h, w = target.size
    return f"{tracking.model_name_for(target.name)}-{h}x{w}-{target.channels}ch-{digest}"


def not_comparable(tags: dict[str, str], target_hash: str, split_hash: str) -> str | None:
    """Why a version cannot be compared with this run (None: same target data and split). A
    champion trained on another split may have trained on this run's test images."""
    theirs, ours = tags.get("target_dataset_hash", ""), target_hash
    if theirs != ours:
        return f"trained on target data {theirs[:12] or 'unknown'}, this run's is {ours[:12]}"
    theirs, ours = tags.get("split_hash", ""), split_hash
    if theirs != ours:
        return (
            f"trained on split {theirs[:12] or 'unknown'}, this run's is {ours[:12]}: "
            "its training images may be in this test split"
        )
    return None


def retire_leaky_champion(
    name: str, data: tuple[str | None, str, str], reason: str, lock: Lock = prefect_lock
) -> str | None:
    """Remove ``champion`` from a version trained on leaky data: its (source dataset, target
    dataset, split) hashes equal ``data``, the inputs the leakage guard just refused. The version
    keeps a ``leakage`` tag saying why. Returns the version, or None when nothing matched."""
    source, target, split = data
    ref = tracking.version_by_alias(name, CHAMPION)
    if ref is None or not _trained_on(ref, source, target, split):
        return None
    with lock(name):
        ref = tracking.version_by_alias(name, CHAMPION)  # it may have moved meanwhile
        if ref is None or not _trained_on(ref, source, target, split):
            return None
        tags = {"leakage": reason, "champion_removed": "leakage found by the guard"}
        tracking.set_version_tags(name, ref.version, tags)
        delete_alias(name, CHAMPION)
    return ref.version


def _trained_on(ref: VersionRef, source: str | None, target: str, split: str) -> bool:
    t = ref.tags
    same = (t.get("target_dataset_hash"), t.get("split_hash")) == (target, split)
    return same and t.get("source_dataset_hash", "") == (source or "")


def test_set_scorer(x_test: np.ndarray, y_test: np.ndarray) -> ScoreVersion:
    """Score a registered version on this run's test images (float32 N×C×H×W in [0, 1])
    through plain ``mlflow.pyfunc``: its per-example correctness. The version is loaded by
    number, never by alias, so a concurrent promotion cannot swap the model mid-comparison."""
    labels = np.asarray(y_test)

    def score(version: VersionRef) -> np.ndarray:
        model = tracking.load_pyfunc(version.uri)
        logits = tracking.predict_logits(model, version.uri, x_test)
        if logits.ndim != 2 or len(logits) != len(labels):
            raise tracking.UnusableModel(
                f"{version.uri} returned shape {logits.shape} for {len(labels)} test images: "
                "it is not a classifier of these inputs"
            )
        return logits.argmax(axis=1) == labels

    return score


def _score(req: _Request, ref: VersionRef | None) -> Champion | None:
    """The champion scored on this test set; identical weights need no scoring."""
    if ref is None:
        return None
    why = not_comparable(ref.tags, *req.data)
    if why is not None:
        return Champion(ref.version, not_applicable=why)
    if ref.tags.get("weights_sha256") == req.digest:
        best = served_index(req.candidate)
        return Champion(ref.version, correct=np.asarray(req.candidate.correct[best], dtype=bool))
    try:
        return Champion(ref.version, correct=np.asarray(req.score_version(ref), dtype=bool))
    except tracking.UnusableModel as exc:
        return Champion(ref.version, error=str(exc))


def _version_tags(req: _Request, decision: Decision) -> dict[str, str]:
    row = np.asarray(req.candidate.correct[served_index(req.candidate)], dtype=bool)
    return {
        **decision.tags(),
        "test_accuracy": f"{float(row.mean()):.4f}",
        "test_examples": str(row.size),
        "candidate": "false" if decision.passed else "true",
    }


def _version_for(req: _Request, decision: Decision) -> tuple[VersionRef, bool]:
    """The served model's version: an existing one with the same weights, else a new one
    logged into the run that trained it, which becomes its ``run_id`` (the pipeline's parent
    run when the training run is unknown)."""
    existing = tracking.find_versions(req.model_name, "weights_sha256", req.digest)
    if existing:
        return existing[0], False
    run_id = req.served.stage.mlflow_run_id or req.fallback_run_id
    if not run_id:
        raise DataError(
            f"served result {req.served.arm}/seed={req.served.seed} has no MLflow run id and the "
            "job no parent run: record StageRecord.mlflow_run_id (or RunContext.run_id)"
        )
    logged = tracking.log_model(
        run_id, req.model, example=req.example, tags=req.tags, classes=req.classes or None
    )
    tracking.ensure_registered_model(req.model_name, DESCRIPTION)
    tags = {
        **req.tags,
        **_version_tags(req, decision),
        "model_uri": logged.uri,
        "serialization": logged.serialization,
        "weights_sha256": logged.weights_sha256,
    }
    ref = tracking.create_version(req.model_name, logged.uri, run_id=run_id, tags=tags)
    with tracking.errors(f"description of {req.model_name} version {ref.version}"):
        client().update_model_version(
            req.model_name, ref.version, description=version_description(req, decision, run_id)
        )
    return ref, True


def version_description(req: _Request, decision: Decision, run_id: str) -> str:
    """What the registry page shows first: the gate's verdict with its numbers, and where the
    model came from (arm, seed, source, the run that trained it)."""
    t = req.tags
    source = (
        f" pretrained on `{req.source_spec}`,"
        if req.source_spec and req.served.spec.strategy
        else ""
    )
    return (
        f"**{decision.verdict}** ({decision.rule}): {decision.reason}\n\n"
        f"Source: arm `{req.served.arm}` (strategy {t.get('strategy', 'none')}, transfer mode "
        f"{t.get('transfer_mode', '?')}, seed {req.served.seed}),{source} fine-tuned with "
        f"k={t.get('k_shot', '?')} labelled target images per class; trained in MLflow run "
        f"`{run_id}` of Prefect flow run `{t.get('flow_run_id', '?')}`."
        + (f"\n\nLineage: {t['lineage.note']}" if t.get("lineage.note") else "")
    )


def _compare_and_set(model_name: str, expected: str | None, new: str) -> bool:
    """Move ``champion`` to ``new`` only if it still points at ``expected`` (None: no champion)."""
    if tracking.aliases(model_name).get(CHAMPION) != expected:
        return False
    if expected is not None:
        tracking.set_alias(model_name, PREVIOUS_CHAMPION, expected)
        tracking.set_version_tags(model_name, expected, {"previous_champion": "true"})
    tracking.set_alias(model_name, CHAMPION, new)
    tracking.set_version_tags(model_name, new, {"promoted": "true"})
    return True


def _round(req: _Request, attempt: int, made: list[VersionRef]) -> Promotion | None:
    """One gate + compare-and-set round; None when the champion moved since it was read.
    ``made`` collects the versions this call registered (an earlier round may have registered
    the served model before it lost the race: it then records the later verdict)."""
    ref = tracking.version_by_alias(req.model_name, CHAMPION)
    champion = _score(req, ref)
    kw = {"margin": req.margin, "blocked": req.blocked, "weights": req.weights}
    kw["class_drops"] = list(req.class_drops)
    decision = decide(req.candidate, req.scratch, champion=champion, **kw)
    current = ref.version if ref else None

    def result(version: str | None, registered: bool, previous: str | None = None) -> Promotion:
        champion = tracking.aliases(req.model_name).get(CHAMPION) if version else current
        return Promotion(
            decision, req.model_name, version, champion, previous, registered, req.digest, attempt
        )

    if not decision.passed and not req.keep_candidates and not made:
        return result(None, False)
    version, registered = _version_for(req, decision)
    if registered:
        made.append(version)
    elif version.version != current:  # a reused version records this gate
        tracking.set_version_tags(req.model_name, version.version, _version_tags(req, decision))
    if not decision.passed or current == version.version:
        return result(version.version, bool(made))
    if not _compare_and_set(req.model_name, current, version.version):
        return None
    return result(version.version, bool(made), previous=current)


def promote(
    evaluation: Evaluation,
    served: ArmResult,
    model: torch.nn.Module,
    *,
    job: Job,
    source: SourceModel | None,
    example: np.ndarray,
    score_version: ScoreVersion,
    lock: Lock = prefect_lock,
    attempts: int = 3,
) -> Promotion:
    """Gate the candidate against scratch and the current champion and, when it passes,
    register the served model and make it ``champion`` (compare-and-set, under ``lock``).

    ``served`` is the candidate's best-on-validation seed (``served_result``) and ``model`` its
    weights loaded; ``example`` a few float32 test images for the signature; ``score_version``
    scores a registered version on this run's test set (``test_set_scorer``). The registered
    model is ``model_name(job.target)``; margin and ``keep_candidates`` come from
    ``job.params``; ``job.leakage`` (the guard's line, when allowed to run) refuses promotion.
    A champion trained on other target data or another split is not compared (the verdict says
    why) and does not block.
    """
    candidate = select_candidate(evaluation)
    if served.key != candidate.keys[served_index(candidate)]:
        raise DataError(
            f"served result {served.arm}/seed={served.seed} is not the candidate's best seed: "
            "pass served_result(evaluation, results)"
        )
    req = _Request(
        model_name=model_name(job.target),
        candidate=candidate,
        scratch=evaluation.arms[SCRATCH],
        served=served,
        model=model,
        example=example,
        digest=tracking.weights_sha256(model),
        tags=provenance_tags(served, job, source),
        margin=job.params.margin,
        keep_candidates=job.params.keep_candidates,
        score_version=score_version,
        fallback_run_id=job.run.run_id,
        source_spec=job.source.spec,
        data=(job.target.hash, job.split.hash),
        blocked=job.leakage,
        classes=tuple(job.target.classes),
        weights=gate_weights(job, evaluation),
        class_drops=tuple(gate_class_drops(evaluation, candidate.arm)),
    )
    made: list[VersionRef] = []
    with lock(req.model_name):
        for attempt in range(1, attempts + 1):
            outcome = _round(req, attempt, made)
            if outcome is not None:
                return outcome
    raise TrackingError(
        f"the champion of {req.model_name} moved {attempts} times while this run was promoting "
        "(another writer bypasses the promotion lock): rerun the promotion"
    )


def served_result(evaluation: Evaluation, results: list[ArmResult]) -> ArmResult:
    """The trained result promotion would register: the candidate's best-on-validation seed."""
    candidate = select_candidate(evaluation)
    key = candidate.keys[served_index(candidate)]
    for result in results:
        if result.key == key:
            return result
    raise DataError(
        f"no trained result with key {key} for {candidate.arm}: pass the results the "
        "evaluation was computed from"
    )
