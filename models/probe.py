"""Linear-probe fast path: featurise the train set once (several augmented views), standardise the
features, fit a multinomial logistic regression head with full-batch LBFGS for each L2 value of a
small grid, keep the best on validation, and fold the standardisation into an nn.Linear."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .augment import apply_augment, draw_augment
from .loop import extract_features


@dataclass
class ProbeResult:
    """The fitted head (already folded) and one history row per L2 value tried."""

    head: nn.Linear
    history: list[dict]
    best_index: int
    images_featurised: int
    seconds: float


def augmented_features(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    views: int,
    pad: int,
    hflip: bool,
    gen: torch.Generator,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of x plus (views - 1) randomly shifted/flipped copies; labels repeated."""
    feats, labels = [extract_features(model, x, batch_size=batch_size)], [y]
    for _ in range(max(0, views - 1)):
        oy, ox, flip = draw_augment((len(x),), pad, hflip, gen)
        xa = apply_augment(x.float() / 255.0, pad, oy, ox, flip)
        feats.append(extract_features(model, xa, batch_size=batch_size))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def _fit_logreg(
    z: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(num_classes, z.shape[1], device=z.device, requires_grad=True)
    b = torch.zeros(num_classes, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_probe(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    num_classes: int,
    views: int,
    pad: int,
    hflip: bool,
    weight_decays: tuple[float, ...],
    max_iter: int,
    gen: torch.Generator,
    batch_size: int = 512,
) -> ProbeResult:
    """Fit a linear head on the frozen `model` features; select the L2 value on validation
    accuracy (ties: lower validation loss)."""
    t0 = time.perf_counter()
    ftr, ytr = augmented_features(
        model, train[0], train[1], views=views, pad=pad, hflip=hflip, gen=gen, batch_size=batch_size
    )
    fval = extract_features(model, val[0], batch_size=batch_size)
    mu, sd = ftr.mean(0), ftr.std(0).clamp_min(1e-4)
    ztr, zval = (ftr - mu) / sd, (fval - mu) / sd
    history, fits = [], []
    for i, wd in enumerate(weight_decays):
        t1 = time.perf_counter()
        with torch.enable_grad():
            w, b = _fit_logreg(ztr, ytr, num_classes, wd, max_iter)
        with torch.no_grad():
            ltr, lval = ztr @ w.T + b, zval @ w.T + b
            row = {
                "epoch": i + 1,
                "train_loss": float(F.cross_entropy(ltr, ytr)),
                "train_acc": float((ltr.argmax(1) == ytr).float().mean()),
                "val_loss": float(F.cross_entropy(lval, val[1])),
                "val_acc": float((lval.argmax(1) == val[1]).float().mean()),
                "lr": 0.0,
                "weight_decay": wd,
                "seconds": time.perf_counter() - t1,
            }
        history.append(row)
        fits.append((w, b))
    best = max(range(len(history)), key=lambda j: (history[j]["val_acc"], -history[j]["val_loss"]))
    w, b = fits[best]
    # no random init (the weights are set below): the global RNG is left to the stage's seeding
    head = nn.utils.skip_init(nn.Linear, w.shape[1], num_classes, device=w.device)
    with (
        torch.no_grad()
    ):  # logits = ((f - mu) / sd) @ w.T + b  ==  f @ (w / sd).T + (b - (w / sd) @ mu)
        ws = w / sd
        head.weight.copy_(ws)
        head.bias.copy_(b - ws @ mu)
    return ProbeResult(head, history, best, len(ftr) + len(fval), time.perf_counter() - t0)
