"""Hyperparameters as frozen dataclasses (nanoGPT `GPTConfig` style). Comments give units and why.

Defaults are tuned for small grey/RGB images on a 2-core CPU (MNIST-5k -> UCI digits 8×8 demo);
they are the same for transfer and scratch runs so the comparison is fair."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Target training (fine-tuning, probing, scratch) with a budget in optimisation steps."""

    epochs: int = 12  # passes over the target train set; best-on-validation picks the epoch
    min_steps_per_epoch: int = 25  # a 10-image k-shot set still gets 25 updates per epoch
    batch_size: int = 64  # images per step (capped at the train-set size)
    lr: float = 3e-3  # peak AdamW learning rate of the head (and of a scratch trunk)
    backbone_lr_scale: float = 0.1  # pretrained trunk lr = lr × this (discriminative LRs)
    lp_ft_lr_scale: float = 0.3  # lp_ft fine-tunes at lr × this: the probed head is already good
    weight_decay: float = 5e-4  # AdamW decoupled weight decay
    schedule: str = "onecycle"  # "onecycle" (linear warm-up, cosine down) or "cosine"
    warmup_frac: float = 0.15  # fraction of all steps spent warming up (onecycle only)
    label_smoothing: float = 0.0  # cross-entropy smoothing; 0 keeps probabilities honest
    pad: int | None = None  # random-crop padding in px; None: 1 for <= 16 px, 2 to 32 px, else 4
    hflip: bool = False  # horizontal flips; never for digits (a flipped 2 is not a 2)
    probe_views: int = 8  # linear probe: augmented views per train image (1 = no augmentation)
    probe_weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # L2 grid, chosen on validation
    probe_max_iter: int = 200  # LBFGS iterations per L2 value on cached, standardised features
    eval_batch_size: int = 512  # images per evaluation batch
    seed: int = 0  # seeds torch, numpy, random, data order and augmentation
    device: str | None = None  # "cuda", "mps", "cpu"; None = best available (cuda > mps > cpu)
    num_threads: int | None = None  # CPU threads; None = the CPU count unless OMP_NUM_THREADS set

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, d)


@dataclass(frozen=True)
class PretrainConfig:
    """Source pretraining for every strategy; strategy-specific fields are prefixed."""

    epochs: int = (
        16  # source passes; MNIST-5k 8×8 on 2 cores ≈ 0.3 s each; 8 gave a 1 pt weaker probe
    )
    min_steps_per_epoch: int = 20  # lower bound on updates per epoch for tiny unlabelled pools
    batch_size: int = 64  # images per step
    lr: float = 3e-3  # supervised / autoencoder peak AdamW learning rate
    weight_decay: float = 5e-4  # AdamW decoupled weight decay (supervised, autoencoder)
    schedule: str = "onecycle"  # supervised / autoencoder schedule: "onecycle" or "cosine"
    warmup_frac: float = 0.15  # fraction of steps warming up (onecycle)
    label_smoothing: float = 0.0  # supervised cross-entropy smoothing
    pad: int | None = None  # random-crop padding (supervised); None: by image size as TrainConfig
    hflip: bool = False  # horizontal flips (supervised); never for digits
    gan_lr: float = 2e-4  # DCGAN: Adam lr for generator and discriminator (Radford et al.)
    gan_beta1: float = 0.5  # DCGAN: Adam β1; 0.9 makes the game oscillate
    gan_latent_dim: int = 64  # generator input noise dimension
    gan_width: int = 64  # generator channels at its last hidden layer (doubles per level up)
    gan_real_label: float = 0.9  # one-sided label smoothing for real images (stabiliser)
    ae_noise_std: float = 0.1  # denoising autoencoder: Gaussian noise σ on [0, 1] inputs (0: off)
    ae_mask_frac: float = 0.0  # denoising autoencoder: fraction of pixels zeroed (0: off)
    ae_width: int = 64  # decoder channels
    grid_images: int = 64  # samples / reconstructions shown in the artifact grids
    seed: int = 0  # seeds torch, numpy, random, data order and augmentation
    device: str | None = None  # "cuda", "mps", "cpu"; None = best available
    num_threads: int | None = None  # CPU threads; None = the CPU count unless OMP_NUM_THREADS set

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        return _from_dict(cls, d)


# Fields that change where/how fast a run goes, not what it computes: ignored when resuming.
RUNTIME_FIELDS = frozenset({"device", "num_threads", "eval_batch_size"})


def _to_dict(cfg: Any) -> dict[str, Any]:
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
    return cls(**kw)


def default_pad(image_size: tuple[int, int]) -> int:
    """Random-crop padding in px by image size: 1 for 8-16 px, 2 up to 32 px, 4 above."""
    s = min(image_size)
    return 1 if s <= 16 else 2 if s <= 32 else 4
