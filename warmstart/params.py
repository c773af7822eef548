"""Pipeline parameters: one pydantic model, rendered by Prefect as the run form in the UI.

Defaults are the demo: MNIST-5k digits (source) → UCI optical digits (target), 10 labelled images
per class, all three strategies, two transfer modes, two selection seeds and five confirmation
seeds, budgets sized for 2 CPU cores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from warmstart import names

TORCHVISION = "torchvision:"


class PipelineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        "builtin:mnist-5k?crop=content",
        description="Source: a dataset spec (`builtin:NAME`, `cifar10:PATH_OR_S3`, `imagefolder:PATH_OR_S3`, "
        "options after `?`, e.g. `?classes=0-4&crop=content`; converted to the target's size and channels) "
        "or published weights, `torchvision:MODEL[?weights=ENUM]` (e.g. `torchvision:resnet18`), "
        "or a registered model, `mlflow:models:/NAME@ALIAS` or `mlflow:models:/NAME/VERSION`, "
        "or a checkpoint, `checkpoint:PATH_OR_S3[?arch=MODEL]` (trunk reused, head replaced).",
        examples=["builtin:mnist-5k?crop=content", "torchvision:resnet18?weights=IMAGENET1K_V1"],
    )
    target: str = Field(
        "builtin:uci-digits",
        description="Target dataset spec: the small labelled task we transfer to.",
    )
    k_shot: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Labelled target images per class (default 5: the demo's few-label regime; see README).",
    )
    backbone: str = Field(
        "convnet-s",
        description="Backbone from the model registry: "
        + ", ".join(names.BACKBONES)
        + " or `torchvision:MODEL` (set from a `torchvision:` source).",
    )
    strategies: list[str] = Field(
        default_factory=lambda: ["supervised", "gan", "autoencoder"],
        description="Pretraining strategies on the source (the strategy registry).",
        # The registered names as an enum, so the Prefect form offers them as choices; the
        # validator below re-checks against the registry at run time (plug-ins included).
        json_schema_extra={"items": {"type": "string", "enum": list(names.STRATEGIES)}},
    )
    transfer_modes: list[str] = Field(
        default_factory=lambda: ["finetune", "lp_ft"],
        description="`finetune`, `linear_probe`, `lp_ft` or `freeze=STAGE`",
    )
    seeds: int = Field(
        2,
        ge=1,
        le=20,
        description="Selection seeds 0..n-1 for every fine-tuned arm and scratch's grid: they "
        "only choose (on validation); the gate decides on `confirm_seeds` fresh seeds.",
    )
    pretrain_epochs: int = Field(
        16, ge=1, le=500, description="Source pretraining epochs per strategy."
    )
    finetune_epochs: int = Field(
        12, ge=1, le=1000, description="Target epochs for every arm (scratch gets the same)."
    )
    unsupervised_data: Literal["source", "target_pool", "both"] = Field(
        "both",
        description="Images the GAN and autoencoder pretrain on: source, the target's unlabelled pool, or both.",
    )
    margin: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="Gate: lower CI bound of (candidate − scratch) must exceed this.",
    )
    metric: Literal["auto", "accuracy", "balanced_accuracy"] = Field(
        "auto",
        description="What the gate compares: accuracy, balanced_accuracy (the mean of the "
        "per-class accuracies), or auto: balanced when the test split's largest class has more "
        "than 1.5x the images of its smallest (warmstart.promotion.metric.IMBALANCE_RATIO).",
    )
    confirm_seeds: int = Field(
        5,
        ge=0,
        le=50,
        description="Gate: the chosen arm and scratch are trained again on this many fresh seeds "
        "(new initialisation and k-shot draw; seeds 1000, 1001, …) and the gate decides on those "
        "only, with an interval over those seeds and the test images. 0 = no confirmation: the "
        "run can never be promoted.",
    )
    val_per_class: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Cap on validation labels per class (selection and early stopping); "
        "None = every validation image (`val_fraction` of each class).",
    )
    scratch_lrs: list[float] = Field(
        default_factory=lambda: [3e-3, 1e-3, 1e-2],
        description="Scratch's learning-rate grid (× `scratch_weight_decays`), chosen on "
        "validation: scratch searches as many configurations as there are transfer arms "
        "(more arms than grid points: geometric midpoints of these rates are added).",
    )
    scratch_weight_decays: list[float] = Field(
        default_factory=lambda: [5e-4, 5e-2],
        description="Scratch's weight-decay grid (× `scratch_lrs`).",
    )
    source_control: bool = Field(
        True,
        description="When the chosen arm is a GAN/autoencoder pretrained on the source plus the "
        "target pool, also confirm it pretrained on the target pool only: the gain due to the source.",
    )
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.6)
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto = cuda > mps > cpu."
    )
    register_model: bool = Field(
        True, description="Run the gate and register a promoted model in the MLflow registry."
    )
    keep_candidates: bool = Field(
        False,
        description="Also register candidates the gate refused (tagged `candidate`); by default "
        "only promoted models become versions.",
    )
    allow_leakage: bool = Field(
        False,
        description="Run even when the source or the unsupervised pool holds more than 1% of the "
        "target's validation or test images (the leakage guard); the candidate is then never promoted.",
    )

    @model_validator(mode="before")
    @classmethod
    def _source_backbone(cls, data: dict) -> dict:
        """A `torchvision:MODEL` source fixes the backbone (transfer arms and scratch alike)."""
        source = data.get("source") if isinstance(data, dict) else None
        if isinstance(source, str) and source.startswith(TORCHVISION):
            arch = TORCHVISION + source[len(TORCHVISION) :].split("?")[0]
            if data.get("backbone", arch) != arch:
                raise ValueError(f"--backbone {data['backbone']}: drop it, {source} sets {arch}")
            try:
                names.check_backbone(arch)
            except ValueError as exc:
                raise ValueError(f"--source {source}: {exc}") from None
            data = {**data, "backbone": arch}
        return data

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, value: str) -> str:
        try:
            names.check_backbone(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; choose from {', '.join(names.backbones())}") from None
        return value

    @field_validator("transfer_modes")
    @classmethod
    def _modes(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Modes depend on the backbone (``freeze=<stage>`` names one of its stages)."""
        if not value:
            raise ValueError("at least one transfer mode is needed")
        backbone = info.data.get("backbone")
        valid = names.transfer_modes(backbone)
        for mode in value:
            if backbone and mode not in valid:
                raise ValueError(
                    f"unknown transfer mode {mode!r} for {backbone}: choose from {', '.join(valid)}"
                )
        return value

    @field_validator("scratch_lrs", "scratch_weight_decays")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 <= v < 10.0 for v in value):
            raise ValueError("give at least one value, each in [0, 10)")
        return list(dict.fromkeys(value))

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one strategy is needed")
        for name in value:
            if name not in names.strategies():
                raise ValueError(
                    f"unknown strategy {name!r}: choose from {', '.join(names.strategies())}"
                )
        return list(dict.fromkeys(value))


class SweepParams(PipelineParams):
    """The pipeline's parameters plus the k values to sweep (``k_shot`` is ignored)."""

    k_values: list[int] = Field(
        default_factory=lambda: [1, 5, 10, 20, 50],
        description="Labelled target images per class, one point of the curve each.",
    )
    transfer_modes: list[str] = Field(
        default_factory=lambda: ["finetune", "linear_probe", "lp_ft"],
        description="`finetune`, `linear_probe`, `lp_ft` or `freeze=STAGE`",
    )
    register_model: bool = Field(False, description="The sweep measures; it never registers.")
    seeds: int = Field(
        3, ge=1, le=20, description="Seeds 0..n-1 per arm and k (the curve's intervals)."
    )

    @field_validator("k_values")
    @classmethod
    def _k_values(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("k_values needs at least one k >= 1")
        return sorted(set(value))

    def at(self, k: int) -> PipelineParams:
        data = self.model_dump(exclude={"k_values"})
        data["k_shot"] = k
        return PipelineParams(**data)


class RankParams(PipelineParams):
    """The pipeline's parameters plus the candidate sources to rank (``source`` is ignored):
    every candidate is planned with these parameters and its own spec (``stages.make_plan``)."""

    sources: list[str] = Field(
        default_factory=lambda: [
            "builtin:mnist-5k?crop=content",
            "builtin:shapes",
            "builtin:noise",
        ],
        description="Candidate sources, each a `source` spec (dataset, `torchvision:`, `mlflow:`, "
        "`checkpoint:`); a dataset is one candidate per strategy (its pretraining is cached).",
    )
    score: str = Field(
        "default",
        description="The score that ranks the candidates (`warmstart.ranking.scores.SCORES`); "
        "`default` = the one the ranking benchmark chose (`DEFAULT_SCORE`).",
    )
    top: int | None = Field(
        None,
        ge=1,
        le=50,
        description="`warmstart run --top M`: the candidates kept for the protocol.",
    )

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        value = [s.strip() for s in value if s.strip()]
        if len(value) < 2:
            raise ValueError("give at least two candidate sources, comma-separated")
        twice = sorted({s for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} given twice: name each candidate once")
        return value

    def candidate(self, spec: str) -> PipelineParams:
        """The pipeline's parameters with ``spec`` as the source (a ``torchvision:`` spec sets
        its own backbone, so the backbone is left out for it)."""
        drop = {"sources", "score", "top"} | (
            {"backbone"} if spec.startswith(TORCHVISION) else set()
        )
        return PipelineParams(**{**self.model_dump(exclude=drop), "source": spec})
