"""GPU check of the training loop (models/loop.py, the one every strategy and mode uses), on a
CIFAR-10-format dataset read through warmstart's CIFAR reader:

1. to-target: `resnet18` (warmstart's CIFAR stem) at 32 px trained until test accuracy reaches
   --target-acc (airbench's anchor: 94% on CIFAR-10 in 3.29 s on one A100); time to target,
   seconds per epoch, images/s.
2. finetune-224: torchvision `resnet18` (weights=None, or --weights FILE, a state dict loaded with
   weights_only=True) fine-tuned at --ft-size px (default 224; the 32 px images are upsampled on
   the device inside the model); images/s and seconds per epoch, with the data on the device and
   with the data on the host (streamed through pinned memory, non_blocking copies).
3. syncs (CUDA only): host syncs per epoch counted by torch.cuda.set_sync_debug_mode at two
   epoch lengths; equal counts = no sync per step.
4. strategies: every pretraining strategy and transfer mode for --strategy-steps steps (finite
   losses, images/s).

Without --cifar the dataset is generated (a learnable CIFAR-10-*format* stand-in: class = grating
orientation x tint, random phase/position/noise), written as the official python batches and read
back. Real CIFAR-10: --cifar PATH (cifar-10-python.tar.gz or its folder), then --target-acc 0.94.

    # GPU (one device call, about 3-4 min on an H100):
    .venv/bin/python benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json
    # CPU, the same code at small size (what tests/models/test_gpu_check.py runs):
    .venv/bin/python benchmarks/gpu_check.py --device cpu --small
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import warmstart.models  # noqa: F401
except ImportError:  # not installed (a bare GPU machine): map models/ as setuptools does
    import warmstart

    warmstart.__path__.append(str(ROOT))

from warmstart import models as M  # noqa: E402
from warmstart.data.cifar import load_cifar10  # noqa: E402
from warmstart.models.amp import configure_cuda, precision  # noqa: E402
from warmstart.models.device import configure_threads  # noqa: E402
from warmstart.models.loop import (  # noqa: E402
    Augment,
    adamw,
    evaluate,
    lr_factor,
    train_one_epoch,
)

SMALL = {  # CPU size for make test: same code paths, seconds not minutes
    "train": 320,
    "test": 128,
    "epochs": 2,
    "batch_size": 64,
    "ft_size": 32,
    "ft_images": 16,
    "ft_batch_size": 8,
    "ft_epochs": 1,
    "strategy_steps": 1,
    "target_acc": 0.2,
    "backbone": "convnet-s",  # resnet18 at 32 px is minutes per epoch on 2 CPU cores
}


def synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write a learnable dataset in the official CIFAR-10 python format (5 train batches, test
    batch, batches.meta) under root/cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angle = (y % 5) * np.pi / 5 + rng.normal(0, 0.08, n)
    freq = rng.uniform(0.35, 0.6, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(
        freq[:, None, None]
        * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
        + phase[:, None, None]
    )
    cy, cx = rng.uniform(8, 24, (2, n))
    window = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 90.0)
    tint = np.where((y // 5)[:, None] == 0, [1.0, 0.55, 0.3], [0.3, 0.6, 1.0])  # warm / cool
    tint = tint * rng.uniform(0.7, 1.0, (n, 1))
    img = 128 + 90 * (wave * window)[:, None] * tint[:, :, None, None]
    img += rng.normal(0, 22, img.shape)
    data = img.clip(0, 255).astype(np.uint8).reshape(n, 3072)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(n_train), 5) + [np.arange(n_train, n)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, idx in zip(names, parts, strict=True):
        entry = {"batch_label": name, "labels": y[idx].tolist(), "data": data[idx]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": len(parts[0])}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


class Upsampled(nn.Module):
    """`net` on images upsampled to `size` px and normalised with ImageNet statistics, on the
    device (the loop hands it [0, 1] floats at the stored 32 px)."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=False)
        return self.net((x - self.mean) / self.std)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epochs_run(model, x, y, test, *, device, epochs, batch_size, lr, target=None, pad=4):
    """Our loop for `epochs` epochs (one-cycle AdamW, crop + flip); per epoch: training seconds
    (synchronised), images/s, test accuracy. Data stays where x is (device or host)."""
    opt = adamw(model.parameters(), M.TrainConfig(lr=lr, weight_decay=5e-4))
    steps = -(-len(x) // batch_size)
    gen = torch.Generator().manual_seed(0)
    rows, t_train = [], 0.0
    for e in range(1, epochs + 1):
        sync(device)
        t = time.perf_counter()
        m = train_one_epoch(
            model,
            x,
            y,
            optimizer=opt,
            gen=gen,
            steps=steps,
            batch_size=batch_size,
            augment=Augment(pad=pad, hflip=True),
            lr_at=lambda s: lr_factor(s, steps * epochs, "onecycle", 0.2),
            step0=(e - 1) * steps,
            label_smoothing=0.1,
            device=device,
        )
        sync(device)
        secs = time.perf_counter() - t
        t_train += secs
        acc = evaluate(model, *test, batch_size=1024, device=device)["acc"] if test else None
        rows.append(
            {
                "epoch": e,
                "seconds": round(secs, 3),
                "images_per_s": round(m["images"] / secs, 1),
                "train_loss": round(m["train_loss"], 4),
                "test_acc": acc,
                "train_seconds_so_far": round(t_train, 3),
            }
        )
        print(f"  epoch {e}: {secs:7.2f} s, {m['images'] / secs:9.0f} img/s, test acc {acc}")
        if target is not None and acc is not None and acc >= target:
            break
    return rows


def to_target(data, a, device) -> dict:
    (x, y), (xt, yt) = data
    torch.manual_seed(0)
    model = M.get_backbone(a.backbone, in_channels=3, num_classes=10, image_size=(32, 32))
    model = model.to(device, memory_format=_mf(device))
    print(f"to-target: {a.backbone} 32 px, {len(x)} train images, batch {a.batch_size}")
    rows = epochs_run(
        model,
        x,
        y,
        (xt, yt),
        device=device,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        target=a.target_acc,
    )
    hit = next((r for r in rows if r["test_acc"] >= a.target_acc), None)
    return {
        "epochs": rows,
        "target_acc": a.target_acc,
        "reached": hit is not None,
        "seconds_to_target": hit["train_seconds_so_far"] if hit else None,
        "best_test_acc": max(r["test_acc"] for r in rows),
    }


def _mf(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def tv_resnet18(a, device) -> nn.Module:
    import torchvision  # deferred: only this part needs it

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    if a.weights:
        net.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True))
    net.fc = nn.Linear(net.fc.in_features, 10)
    return Upsampled(net, a.ft_size).to(device, memory_format=_mf(device))


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images bilinearly resized to size px (on x's device, in chunks), in host memory."""
    if x.shape[-1] == size:
        return x.cpu()
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 1000):
        xb = F.interpolate(x[i : i + 1000].float(), size=(size, size), mode="bilinear")
        out[i : i + 1000] = xb.round_().clamp_(0, 255).to(torch.uint8).cpu()
    return out


def finetune(data, a, device) -> dict:
    (x, y), (xt, yt) = data
    n = min(a.ft_images, len(x))
    out = {"size": a.ft_size, "images": n, "batch_size": a.ft_batch_size}
    for where in ("device", "host"):
        # device: 32 px uint8 on the GPU, upsampled in the model; host: already at ft_size px in
        # host memory, each batch gathered into pinned memory and copied without blocking
        xs, ys = (x[:n], y[:n]) if where == "device" else (resized(x[:n], a.ft_size), y[:n].cpu())
        print(f"finetune-{a.ft_size} ({where} data {tuple(xs.shape)}): torchvision resnet18")
        rows = epochs_run(
            tv_resnet18(a, device),
            xs,
            ys,
            (xt[: a.ft_images // 4], yt[: a.ft_images // 4]) if where == "device" else None,
            device=device,
            epochs=a.ft_epochs,
            batch_size=a.ft_batch_size,
            lr=a.ft_lr,
        )
        last = rows[-1]
        out[where] = {
            "images_per_s": last["images_per_s"],
            "seconds_per_epoch": last["seconds"],
            "epochs": rows,
        }
    out["host_over_device"] = round(out["host"]["images_per_s"] / out["device"]["images_per_s"], 3)
    return out


def count_syncs(data, a, device) -> dict:
    """Host syncs in one epoch at 3 and at 12 steps (CUDA's sync debug mode warns on each)."""
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    (x, y), _ = data
    model = M.get_backbone("resnet18", in_channels=3, num_classes=10, image_size=(32, 32))
    model = model.to(device, memory_format=torch.channels_last)
    opt = adamw(model.parameters(), M.TrainConfig())
    kw0 = {"optimizer": opt, "batch_size": 64, "augment": Augment(4, True)}
    train_one_epoch(model, x, y, steps=3, gen=torch.Generator(), **kw0)  # warm-up, autotune
    out = {}
    for steps in (3, 12):
        gen = torch.Generator().manual_seed(0)
        kw = {"optimizer": opt, "gen": gen, "batch_size": 64, "augment": Augment(4, True)}
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train_one_epoch(model, x, y, steps=steps, **kw)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        out[f"steps_{steps}"] = sum("synchroniz" in str(m.message) for m in w)
    out["per_step"] = out["steps_3"] != out["steps_12"]
    print(f"syncs per epoch: {out}")
    return out


def strategies(data, a, device) -> list[dict]:
    """Every pretraining strategy and four transfer modes, `strategy_steps` steps each (none
    for 0)."""
    if a.strategy_steps <= 0:
        return []
    (x, y), _ = data
    n = 32 * a.strategy_steps  # one pass = strategy_steps steps of 32 images
    xs, ys = x[:n].cpu().numpy(), y[:n].cpu().numpy()
    dev = {"device": device.type, "batch_size": 32, "min_steps_per_epoch": a.strategy_steps}
    probe = {"probe_views": 2, "probe_max_iter": 50}
    geo = {"backbone": a.backbone, "in_channels": 3, "image_size": (32, 32)}
    rows, state = [], None
    for strategy in M.list_strategies():
        r = M.pretrain(
            strategy,
            **geo,
            images=xs,
            labels=ys,
            num_classes=10,
            config=M.PretrainConfig(epochs=1, **dev),
        )
        state = r.backbone_state if strategy == "supervised" else state
        rows.append({"run": f"pretrain:{strategy}", "loss": r.history[-1]["loss"]})
        rows[-1]["images_per_s"] = round(r.images_per_second, 1)
    modes = ["finetune", "linear_probe", "lp_ft", M.list_transfer_modes(a.backbone)[-2]]
    for mode in modes:
        r = M.fit_target(
            **geo,
            init_state=state,
            mode=mode,
            num_classes=10,
            train=(xs, ys),
            val=(xs[:256], ys[:256]),
            config=M.TrainConfig(epochs=1, **dev, **probe),
        )
        loss = r.history[-1]["train_loss"]
        rows.append({"run": f"fit:{mode}", "loss": loss, "images_per_s": r.images_per_second})
    for r in rows:
        print(f"  {r['run']:24s} loss {r['loss']:.4f}  {r['images_per_s']:9.0f} img/s")
    return rows


def load_data(a, device):
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        where = a.cifar or str(synthetic_cifar(Path(tmp), a.train, a.test))
        ds = load_cifar10(where)
    test = ds.predefined_test
    x = torch.from_numpy(ds.images[~test][: a.train])
    y = torch.from_numpy(ds.labels[~test][: a.train])
    xt = torch.from_numpy(ds.images[test][: a.test])
    yt = torch.from_numpy(ds.labels[test][: a.test])
    src = "CIFAR-10 " + a.cifar if a.cifar else "generated CIFAR-10-format data"
    print(f"data: {src}, {len(x)} train / {len(xt)} test images 3x32x32")
    return ((x.to(device), y.to(device)), (xt.to(device), yt.to(device))), src


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="resnet18", help="warmstart backbone of parts 1 and 4")
    p.add_argument("--cifar", default=None, help="real CIFAR-10 (tar.gz or folder)")
    p.add_argument("--train", type=int, default=50000)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=12, help="at most; stops at --target-acc")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--target-acc", type=float, default=0.9)
    p.add_argument("--ft-size", type=int, default=224)
    p.add_argument("--ft-images", type=int, default=20000)
    p.add_argument("--ft-batch-size", type=int, default=128)
    p.add_argument("--ft-epochs", type=int, default=2)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--weights", default=None, help="torchvision resnet18 state dict file")
    p.add_argument("--strategy-steps", type=int, default=50, help="0: skip part 4")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--small", action="store_true", help="CPU test size (overrides the above)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    a = p.parse_args(argv)
    if a.small:  # small sizes as defaults: flags given explicitly still win
        p.set_defaults(**SMALL)
        a = p.parse_args(argv)
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA (use --device cpu --small for the CPU path)")
        return {"skipped": "no CUDA"}
    device = torch.device(a.device)
    configure_threads(a.threads)
    configure_cuda(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    amp = precision(device).dtype
    print(
        f"device: {name}, torch {torch.__version__}, autocast {amp}, {torch.get_num_threads()} threads"
    )
    t0 = time.perf_counter()
    data, src = load_data(a, device)
    out = {"device": name, "torch": torch.__version__, "autocast": str(amp), "data": src}
    out["to_target"] = to_target(data, a, device)
    out["finetune"] = finetune(data, a, device)
    out["syncs"] = count_syncs(data, a, device)
    out["strategies"] = strategies(data, a, device)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    tt = out["to_target"]
    print(
        f"SUMMARY to-target {tt['target_acc']}: reached={tt['reached']} in "
        f"{tt['seconds_to_target']} s (best {tt['best_test_acc']:.4f}); finetune {a.ft_size}px "
        f"{out['finetune']['device']['images_per_s']:.0f} img/s on-device, "
        f"{out['finetune']['host']['images_per_s']:.0f} img/s host-streamed; "
        f"total {out['total_seconds']} s"
    )
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
