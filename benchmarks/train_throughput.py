"""Training throughput of models/' loop vs a minimal plain PyTorch loop, same model, data, batch
size and threads, measured in one run, interleaved (ABAB...), several repeats; plus achieved
training GFLOP/s (FlopCounterMode on one fwd+bwd step) vs an fp32 matmul on the same threads.

    .venv/bin/python benchmarks/train_throughput.py [--size 28] [--batch-size 128] [--threads N]
    # issue 12: torchvision resnet18 (weights=None, 10 classes), 3 channels, at 64 and 224 px
    .venv/bin/python benchmarks/train_throughput.py --torchvision resnet18 --size 64 \
        --batch-size 32 --steps 8 --repeats 8
    .venv/bin/python benchmarks/train_throughput.py --torchvision resnet18 --size 224 \
        --batch-size 8 --steps 4 --repeats 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import cpu_name  # noqa: E402  (this script's folder)

from warmstart.models import get_backbone  # noqa: E402
from warmstart.models.config import default_pad  # noqa: E402
from warmstart.models.device import configure_threads  # noqa: E402
from warmstart.models.loop import Augment, train_one_epoch  # noqa: E402


def plain_loop(model, x, y, opt, idx) -> None:
    """The reference (torchvision's references/classification train_one_epoch without its
    logging): index, scale, forward, loss, zero_grad, backward, step. Nothing else."""
    model.train()
    for b in idx:
        xb = x[b].float().div_(255.0)
        loss = F.cross_entropy(model(xb), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def ours(model, x, y, opt, gen, steps, bs, aug) -> None:
    train_one_epoch(
        model,
        x,
        y,
        optimizer=opt,
        gen=gen,
        steps=steps,
        batch_size=bs,
        augment=aug,
        lr_at=lambda s: 1.0,
    )


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def step_flops(model, x, y, bs: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    xb, yb = x[:bs].float() / 255, y[:bs]
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(xb), yb).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def build(a: argparse.Namespace) -> torch.nn.Module:
    """The benchmarked model: a torchvision classification model (weights=None, 10 classes) or a
    warmstart backbone."""
    if a.torchvision:
        import torchvision  # deferred: only this option needs it

        return torchvision.models.get_model(a.torchvision, weights=None, num_classes=10)
    size = (a.size, a.size)
    return get_backbone(a.backbone, in_channels=a.channels, num_classes=10, image_size=size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="convnet-s")
    p.add_argument("--torchvision", default=None, help="a torchvision model name, e.g. resnet18")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="steps per timed measurement")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-augment", action="store_true", help="run our loop without crop/flip")
    a = p.parse_args()
    if a.torchvision:
        a.channels = 3
    threads = configure_threads(a.threads)
    torch.manual_seed(0)
    n = a.batch_size * max(16, a.steps)
    x = torch.randint(0, 256, (n, a.channels, a.size, a.size), dtype=torch.uint8)
    y = torch.randint(0, 10, (n,))
    size = (a.size, a.size)
    m_ours, m_plain = build(a), build(a)
    m_plain.load_state_dict(m_ours.state_dict())
    o_ours = torch.optim.AdamW([{"params": m_ours.parameters(), "peak_lr": 1e-3}], lr=1e-3)
    o_plain = torch.optim.AdamW(m_plain.parameters(), lr=1e-3)
    aug = Augment(pad=0 if a.no_augment else default_pad(size))
    gen = torch.Generator().manual_seed(0)
    # warm-up both
    ours(m_ours, x, y, o_ours, gen, 3, a.batch_size, aug)
    plain_loop(m_plain, x, y, o_plain, torch.randperm(n)[: 3 * a.batch_size].view(3, -1))
    r_ours, r_plain = [], []  # images per wall-clock second
    c_ours, c_plain = [], []  # images per CPU second of this process (robust to other jobs)
    imgs = a.steps * a.batch_size
    for r in range(a.repeats):
        order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
        for which in order:
            t, c = time.perf_counter(), time.process_time()
            if which == "ours":
                ours(m_ours, x, y, o_ours, gen, a.steps, a.batch_size, aug)
                r_ours.append(imgs / (time.perf_counter() - t))
                c_ours.append(imgs / (time.process_time() - c))
            else:
                idx = torch.randperm(n)[:imgs].view(a.steps, -1)
                plain_loop(m_plain, x, y, o_plain, idx)
                r_plain.append(imgs / (time.perf_counter() - t))
                c_plain.append(imgs / (time.process_time() - c))
        print(
            f"repeat {r + 1}/{a.repeats}: wall ours {r_ours[-1]:.1f} plain {r_plain[-1]:.1f} img/s "
            f"(ratio {r_ours[-1] / r_plain[-1]:.3f}); CPU time ours {c_ours[-1]:.1f} plain "
            f"{c_plain[-1]:.1f} img/CPU-s (ratio {c_ours[-1] / c_plain[-1]:.3f})",
            flush=True,
        )
    flops = step_flops(m_plain, x, y, a.batch_size)
    med_o, med_p = statistics.median(r_ours), statistics.median(r_plain)
    mm = matmul_gflops()
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(
        f"machine: {cpu_name()}, {threads} torch threads, torch {torch.__version__}, {platform.platform()}"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"setup: {a.torchvision or a.backbone} {a.channels}x{a.size}x{a.size}, batch {a.batch_size}, {a.steps} steps x {a.repeats} repeats, "
        f"our augmentation pad={aug.pad}"
    )
    print(f"ours  images/s: median {med_o:8.1f}  runs {[round(v, 1) for v in r_ours]}")
    print(f"plain images/s: median {med_p:8.1f}  runs {[round(v, 1) for v in r_plain]}")
    print(f"ours  images/CPU-s: median {statistics.median(c_ours):8.1f}")
    print(f"plain images/CPU-s: median {statistics.median(c_plain):8.1f}")
    for what, o_, p_ in (("wall", r_ours, r_plain), ("CPU-time", c_ours, c_plain)):
        pairs = [o / q for o, q in zip(o_, p_, strict=True)]  # adjacent in time: fair under load
        print(
            f"{what} ratio ours/plain: {statistics.median(o_) / statistics.median(p_):.3f} of "
            f"medians; paired: median {statistics.median(pairs):.3f}, min {min(pairs):.3f}, "
            f"max {max(pairs):.3f}, all {[round(v, 3) for v in pairs]} (goal >= 0.95)"
        )
    print(f"training FLOPs per image (fwd+bwd): {flops / a.batch_size / 1e6:.1f} MFLOP")
    print(f"achieved training GFLOP/s (ours): {flops / a.batch_size * med_o / 1e9:.1f}")
    print(f"fp32 matmul 1024^3 GFLOP/s on {threads} threads: {mm:.1f}")


if __name__ == "__main__":
    main()
