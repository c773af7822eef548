"""Typed contracts between the pipeline's stages: the only things flows pass from task to task.

One name per concept, frozen so a stage cannot change what another stage handed it:
- ``DatasetRef``: an ingested dataset (content hash, geometry, classes) in the object store;
- ``SplitRef``: the stored train/val/test/k-shot split of a target dataset;
- ``SourceModel``: a backbone's weights with architecture, input spec and provenance;
- ``ArmSpec`` / ``ArmResult``: one arm at one seed, before and after training;
- ``RunContext``: the tracking ids a stage logs under;
- ``RunPlan``: what the run will do, made once by validation before anything is ingested: the
  sources resolved to their providers and pinned, the target spec as it will be ingested, the
  split and the k values (``PlannedSource``, ``SplitPlan``);
- ``Job``: what every stage shares — the plan, the target, its split and the run context.
Each contract converts to and from plain JSON (``to_dict`` / ``from_dict``): a finished stage's
``result.json`` in S3, read back on reuse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Self

from warmstart.params import PipelineParams, SweepParams
from warmstart.source_names import source_names

SCRATCH = "scratch"
CONTROL_PREFIX = "control/"
RANDOM_INIT_CONTROL = "control/random-init-frozen"
PIXEL_CONTROL = "control/pixel-logreg"
TARGET_POOL_CONTROL = "control/target-pool-only"  # + /<arm>: pretrained on the target pool only


class _Json:
    """``to_dict``/``from_dict`` for frozen dataclasses of JSON-friendly fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DatasetRef(_Json):
    """An ingested dataset, stored once per content hash under ``datasets/<hash>/``."""

    hash: str  # sha256 of the canonical arrays
    uri: str  # s3://<bucket>/datasets/<hash>
    name: str  # short task name (experiment and registered-model names derive from it)
    spec: str  # the canonical spec it was loaded from
    num_classes: int
    channels: int
    size: tuple[int, int]  # H, W
    count: int
    classes: tuple[str, ...] = ()
    uploaded: bool = False  # this ingest uploaded it (False: already stored)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = {**data, "size": tuple(data["size"]), "classes": tuple(data.get("classes", ()))}
        return super().from_dict(data)


@dataclass(frozen=True)
class SplitRef(_Json):
    """A stored split of a target dataset (indices under ``splits/<hash>/``) and its sizes."""

    hash: str
    k_shot: int  # labelled training images per class
    train: int
    val: int
    test: int
    unlabelled: int
    removed_val: int = 0  # validation images the leakage guard removed (flagged as overlap)
    removed_test: int = 0  # test images it removed; every arm is evaluated without them


@dataclass(frozen=True)
class RunContext(_Json):
    """Where a stage logs: the MLflow experiment and parent run, and the Prefect flow run."""

    experiment_id: str
    run_id: str
    flow_run_id: str
    kind: str = "pipeline"


@dataclass(frozen=True)
class LearnedFrom(_Json):
    """Data that a source's weights already learned from, by content hash: the leakage guard
    checks it against the run's validation and test images like a source dataset."""

    what: str  # how the report names it, e.g. "source model's labels"
    dataset_hash: str
    split_hash: str | None = None  # its labelled part: this split's train and validation


@dataclass(frozen=True)
class PlannedSource(_Json):
    """One source as the run will use it: its spec pinned (it cannot change during the run),
    the provider that claimed it, and what that provider said about it at validation."""

    spec: str  # pinned (an alias replaced by the version it names now)
    provider: str  # registered source-provider name
    needs_dataset: bool  # the flow ingests ``spec`` as a dataset and pretrains on it
    labels: tuple[str, ...]  # one SourceModel per label; arms are ``<label>/<mode>``
    learned_from: tuple[LearnedFrom, ...] = ()  # stored data its weights were trained on

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        seen = tuple(LearnedFrom.from_dict(s) for s in data.get("learned_from", ()))
        return super().from_dict({**data, "labels": tuple(data["labels"]), "learned_from": seen})


@dataclass(frozen=True)
class SplitPlan(_Json):
    """How the target is split: the fractions per class and the split's fixed seed."""

    val_fraction: float
    test_fraction: float
    seed: int = 0  # one split for the whole run: every arm and seed sees the same examples


@dataclass(frozen=True)
class RunPlan(_Json):
    """What one run (or sweep) does, made once by ``stages.make_plan`` before anything is
    ingested; the CLI prints it (``--dry-run``) and submits it, and every stage reads it."""

    params: PipelineParams  # as given, with ``source`` pinned and ``target`` = the target below
    sources: tuple[PlannedSource, ...]  # several after ``run --sources … --top M``
    target: str  # the target spec as ingested (a source's input preset applied)
    split: SplitPlan
    k_values: tuple[int, ...]  # labelled images per class: one for a run, several for a sweep
    pruned: str = ""  # ``run --sources … --top M``: the ranking's line naming what it pruned

    @property
    def source(self) -> PlannedSource:
        return self.sources[0]

    @cached_property
    def labels(self) -> dict[str, tuple[int, str]]:
        """Each label of the run → (its source's index, the provider's label): one source's as
        they are; several sources' as ``<source name>:<label>`` (two ``supervised`` kept apart)."""
        if len(self.sources) == 1:
            return {label: (0, label) for label in self.source.labels}
        names = source_names([s.spec for s in self.sources])
        return {
            f"{name}:{label}": (i, label)
            for i, (name, s) in enumerate(zip(names, self.sources, strict=True))
            for label in s.labels
        }

    def only(self, i: int) -> RunPlan:
        """The plan of source ``i`` alone (its spec, and its strategies for a dataset, in the
        parameters): what a stage of that source's arms reads. A one-source plan is itself."""
        if len(self.sources) == 1:
            return self
        s = self.sources[i]
        update = {"source": s.spec} | ({"strategies": list(s.labels)} if s.needs_dataset else {})
        return dataclasses.replace(self, params=self.params.model_copy(update=update), sources=(s,))

    def at(self, k: int) -> PipelineParams:
        """The parameters of the run at ``k`` (a sweep's point, or the run itself)."""
        params = self.params
        if isinstance(params, SweepParams):
            return params.at(k)
        return params if params.k_shot == k else params.model_copy(update={"k_shot": k})

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "params": self.params.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kind = SweepParams if "k_values" in data["params"] else PipelineParams
        return super().from_dict(
            {
                **data,
                "params": kind(**data["params"]),
                "sources": tuple(PlannedSource.from_dict(s) for s in data["sources"]),
                "split": SplitPlan.from_dict(data["split"]),
                "k_values": tuple(data["k_values"]),
            }
        )


@dataclass(frozen=True)
class Job:
    """What every stage of one run shares (the clump each task used to take apart): the plan,
    the target as ingested, the split at this k, and where to log. ``params`` are the plan's
    parameters at this split's k; k itself is read from ``split.k_shot``."""

    plan: RunPlan
    target: DatasetRef
    split: SplitRef
    run: RunContext
    leakage: str | None = None  # the leakage guard's line when allowed to run: never promoted
    source_labels: int = 0  # labelled images of this split the source model already learned
    labels_by_source: tuple[int, ...] = ()  # the same per planned source, when there are several

    @cached_property
    def params(self) -> PipelineParams:
        return self.plan.at(self.split.k_shot)

    @property
    def source(self) -> PlannedSource:
        return self.plan.source

    def of(self, label: str | None) -> tuple[Job, str | None]:
        """The job as the source behind run label ``label`` sees it (``RunPlan.only``), and the
        provider's own label; a one-source job (or no label: scratch, a control) is itself."""
        if label is None or len(self.plan.sources) == 1:
            return self, label
        i, own = self.plan.labels[label]
        seen = self.labels_by_source[i] if self.labels_by_source else self.source_labels
        return dataclasses.replace(self, plan=self.plan.only(i), source_labels=seen), own


@dataclass(frozen=True)
class StageRecord(_Json):
    """What any training stage reports beside its product: for reuse accounting and tracking."""

    key: str  # content-hash run key: checkpoints/<key>/ in the bucket
    checkpoint_uri: str
    history: tuple[dict, ...] = ()  # per epoch: epoch, loss, val_acc, seconds, …
    seconds: float = 0.0
    reused: bool = False  # read back from S3, nothing trained
    resumed_from: int | None = None  # epoch a killed run resumed after
    config: dict = field(default_factory=dict)  # the resolved config it trained with
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return super().from_dict({**data, "history": tuple(data.get("history", ()))})


@dataclass(frozen=True)
class SourceModel(_Json):
    """A backbone to transfer from: weights, architecture, input spec and provenance.

    ``label`` names the arms built on it (``<label>/<mode>``): the strategy for pretrained
    sources. ``provenance`` says how it was obtained, with hashes (source dataset, target pool,
    provider-specific ids), and is recorded on every model version trained from it.
    """

    label: str
    provider: str  # registered source-provider name
    backbone: str  # architecture name in the backbone registry
    weights_uri: str  # s3://… safetensors of the trunk
    channels: int
    image_size: tuple[int, int]
    provenance: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> s3:// PNG (samples, …)
    images: int = 0  # images it was pretrained on (0: not pretrained here)
    stage: StageRecord | None = None  # the pretraining stage, when one ran
    # s3:// safetensors holding the source's own classifier over its source classes
    # (``head.weight``, ``head.bias``; other keys ignored), "" when it has none: LEEP and NCE
    # read it; every arm replaces the head
    head_uri: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        stage = data.get("stage")
        return super().from_dict(
            {
                **data,
                "image_size": tuple(data["image_size"]),
                "stage": StageRecord.from_dict(stage) if isinstance(stage, dict) else stage,
            }
        )

    @property
    def key(self) -> str:
        """What identifies these weights in run keys of the stages built on them."""
        return self.stage.key if self.stage else str(self.provenance.get("weights_sha256", ""))

    @property
    def seconds(self) -> float:
        return self.stage.seconds if self.stage else 0.0


@dataclass(frozen=True)
class ArmSpec(_Json):
    """One arm at one seed, before training: ``<label>/<mode>``, ``scratch`` or a control."""

    arm: str
    mode: str  # transfer mode name (scratch: finetune from random init; control: linear_probe)
    seed: int
    stage: str  # task name: finetune-target | train-scratch-baseline | train-control
    strategy: str | None = None  # the source's label for transfer arms, None otherwise
    lr: float | None = None  # a searched learning rate (scratch's grid); None: the default
    weight_decay: float | None = None  # a searched weight decay; None: the default
    phase: str = "selection"  # selection | confirmation (fresh seeds the gate decides on)

    @property
    def is_candidate(self) -> bool:
        """Only transfer arms can be promoted; scratch and controls are baselines."""
        return is_candidate(self.arm)


def is_candidate(arm: str) -> bool:
    """The one definition of "can be promoted": not scratch (nor a point of its search grid,
    ``scratch/lr=…``), not a control."""
    return arm != SCRATCH and not arm.startswith((CONTROL_PREFIX, SCRATCH + "/"))


@dataclass(frozen=True)
class ArmResult(_Json):
    """A trained arm at one seed: its weights, best-on-validation accuracy and stage record."""

    spec: ArmSpec
    weights_uri: str
    val_acc: float  # best validation accuracy (selection uses only this)
    best_epoch: int
    stage: StageRecord
    source_key: str | None = None  # SourceModel.key it was transferred from
    images_per_second: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return super().from_dict(
            {
                **data,
                "spec": ArmSpec.from_dict(data["spec"]),
                "stage": StageRecord.from_dict(data["stage"]),
            }
        )

    @property
    def arm(self) -> str:
        return self.spec.arm

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def key(self) -> str:
        return self.stage.key


@dataclass(frozen=True)
class ArmScores(_Json):
    """One arm over its seeds on the test split: the arrays every statistic is recomputed from."""

    arm: str
    strategy: str | None
    mode: str
    seeds: list[int]
    val_acc: list[float]  # per seed, best on validation
    test_acc: list[float]  # per seed
    correct: list[list[bool]]  # seeds × test examples
    pred: list[list[int]]  # seeds × test examples
    keys: list[str] = field(default_factory=list)  # run keys of the seeds' stages
    seconds: list[float] = field(default_factory=list)
    # How the gate's arm was chosen and confirmed (phase, seeds, arms compared, labels used):
    # set on the candidate the gate decides on, empty elsewhere.
    protocol: dict = field(default_factory=dict)

    @property
    def is_candidate(self) -> bool:
        return is_candidate(self.arm)


@dataclass(frozen=True)
class Evaluation(_Json):
    """Every arm scored on the test split (read once, here), with the labels and indices."""

    arms: dict[str, ArmScores]
    y_test: list[int]
    test_index: list[int]
    classes: list[str]
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        arms = {k: ArmScores.from_dict(v) for k, v in data["arms"].items()}
        return super().from_dict({**data, "arms": arms})


@dataclass(frozen=True)
class TableRow(_Json):
    """One row of the results table (fractions; formatting is the report's job)."""

    arm: str
    strategy: str
    mode: str
    seeds: int
    val_acc: float
    test_acc: float
    test_ci: tuple[float, float]
    delta_vs_scratch: float
    delta_ci: tuple[float, float]
    pretrain_seconds: float
    finetune_seconds: float
    pretrain_images: int = 0  # pretraining compute: epochs × images (0: nothing pretrained here)
    balanced_acc: float | None = None  # mean per-class test accuracy, over seeds (None: no preds)
