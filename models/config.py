"""Hyperparameters as frozen dataclasses (nanoGPT `GPTConfig` style). Comments give units and why.

Shared pieces are small bases: `RunConfig` (budget, seed, where a run goes), `OptimConfig` (AdamW
with a schedule) and `ClassifierConfig` (cross-entropy with augmentation). `TrainConfig` (target
training) combines all three; `PretrainConfig` is a RunConfig plus the chosen strategy's own config
(each strategy declares its dataclass as `Strategy.config_class`, e.g. `GANConfig`).

Defaults are tuned for small grey/RGB images on a 2-core CPU (MNIST-5k -> UCI digits 8×8 demo);
they are the same for transfer and scratch runs so the comparison is fair."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Self


@dataclass(frozen=True)
class ConfigBase:
    """to_dict / from_dict for every config (tuples become lists, nested configs dicts)."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)


@dataclass(frozen=True)
class RunConfig(ConfigBase):
    """What every training run has: its budget, its seed and where it runs."""

    epochs: int = 12  # passes over the train set
    min_steps_per_epoch: int = 25  # a 10-image k-shot set still gets 25 updates per epoch
    batch_size: int = 64  # images per step (capped at the train-set size)
    seed: int = 0  # seeds torch, numpy, random, data order and augmentation
    device: str | None = None  # "cuda", "mps", "cpu"; None = best available (cuda > mps > cpu)
    num_threads: int | None = None  # CPU threads; None = the CPU count unless OMP_NUM_THREADS set


@dataclass(frozen=True)
class OptimConfig(ConfigBase):
    """AdamW with a learning-rate schedule."""

    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 5e-4  # AdamW decoupled weight decay
    schedule: str = "onecycle"  # "onecycle" (linear warm-up, cosine down) or "cosine"
    warmup_frac: float = 0.15  # fraction of all steps spent warming up (onecycle only)


@dataclass(frozen=True)
class ClassifierConfig(OptimConfig):
    """Cross-entropy training on labelled images with random-crop (and flip) augmentation."""

    label_smoothing: float = 0.0  # cross-entropy smoothing; 0 keeps probabilities honest
    pad: int | None = None  # random-crop padding in px; None: 1 for <= 16 px, 2 to 32 px, else 4
    hflip: bool = False  # horizontal flips; never for digits (a flipped 2 is not a 2)

    def crop_pad(self, image_size: tuple[int, int]) -> int:
        """`pad`, or the default for `image_size` when it is None."""
        return self.pad if self.pad is not None else default_pad(image_size)


@dataclass(frozen=True)
class TrainConfig(ClassifierConfig, RunConfig):
    """Target training (fine-tuning, probing, scratch) with a budget in optimisation steps; `lr` is
    the head's (and a scratch trunk's) peak rate, and best-on-validation picks the epoch."""

    backbone_lr_scale: float = 0.1  # pretrained trunk lr = lr × this (discriminative LRs)
    lp_ft_lr_scale: float = 0.3  # lp_ft fine-tunes at lr × this: the probed head is already good
    probe_views: int = 8  # linear probe: augmented views per train image (1 = no augmentation)
    probe_weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # L2 grid, chosen on validation
    probe_max_iter: int = 200  # LBFGS iterations per L2 value on cached, standardised features
    eval_batch_size: int = 512  # images per evaluation batch


@dataclass(frozen=True)
class PretrainConfig(RunConfig):
    """Source pretraining: the run's budget plus the strategy's own hyper-parameters."""

    epochs: int = 16  # source passes; MNIST-5k 8×8 on 2 cores ≈ 0.3 s each; 8: 1 pt weaker probe
    min_steps_per_epoch: int = 20  # lower bound on updates per epoch for tiny unlabelled pools
    grid_images: int = 64  # samples / reconstructions shown in the artifact grids
    strategy: ConfigBase | None = None  # the strategy's config_class instance; None: its defaults

    @classmethod
    def from_dict(cls, d: dict[str, Any], strategy_config: type[ConfigBase] | None = None) -> Self:
        """Inverse of to_dict; a nested strategy dict needs its class (`Strategy.config_class`)."""
        sub = d.get("strategy")
        base = super().from_dict({k: v for k, v in d.items() if k != "strategy"})
        if isinstance(sub, dict):
            if strategy_config is None:
                raise TypeError("PretrainConfig.from_dict: pass strategy_config= for 'strategy'")
            base = base.with_strategy(strategy_config.from_dict(sub))
        return base

    def with_strategy(self, strategy: ConfigBase) -> PretrainConfig:
        """A copy with `strategy` set."""
        return replace(self, strategy=strategy)


# Fields that change where/how fast a run goes, not what it computes: ignored when resuming.
RUNTIME_FIELDS = frozenset({"device", "num_threads", "eval_batch_size"})


def identity_dict(cfg: ConfigBase) -> dict[str, Any]:
    """cfg.to_dict() without RUNTIME_FIELDS: what a run's results depend on."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


def default_pad(image_size: tuple[int, int]) -> int:
    """Random-crop padding in px by image size: 1 for 8-16 px, 2 up to 32 px, 4 above."""
    s = min(image_size)
    return 1 if s <= 16 else 2 if s <= 32 else 4
