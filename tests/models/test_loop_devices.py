"""The GPU-ready training loop, exercised on CPU: the CPU path is bit-identical to the loop before
mixed precision and streaming (a verbatim copy of it below); the CUDA code path (augmentation
draws on the device, flips without a host test, host data streamed batch by batch) computes the
same numbers when forced on CPU; bf16 and fp16 (+ GradScaler) autocast run through the same step
function; no host read-back per step; the precision chosen per device."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from warmstart.models import amp as A
from warmstart.models import loop as L
from warmstart.models.augment import apply_augment, batch_indices, draw_augment, to_float
from warmstart.models.registry import get_backbone


def reference_epoch(model, x, y, *, optimizer, gen, steps, batch_size, augment, lr_at):
    """train_one_epoch as it was before the GPU work (fp32 CPU path), for the exactness check."""
    model.train()
    idx = batch_indices(len(x), batch_size, steps, gen).to(x.device)
    oy, ox, flip = draw_augment(tuple(idx.shape), augment.pad, augment.hflip, gen)
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for s in range(steps):
        f = lr_at(s)
        for g in optimizer.param_groups:
            g["lr"] = g["peak_lr"] * f
        b = idx[s]
        xb = apply_augment(to_float(x[b]), augment.pad, oy[s], ox[s], flip[s]).contiguous()
        yb = y[b]
        logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(1) == yb).sum()
    return {"train_loss": float(loss_sum) / steps, "train_acc": int(correct) / (steps * len(b))}


def setup(seed: int = 0, opt: str = "adamw"):
    torch.manual_seed(seed)
    model = get_backbone("convnet-s", in_channels=1, num_classes=10, image_size=(8, 8))
    params = [{"params": model.parameters(), "peak_lr": 3e-3}]
    o = torch.optim.AdamW(params, lr=3e-3) if opt == "adamw" else torch.optim.SGD(params, lr=0.05)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    return model, o, x, y


def epoch(fn, steps=4, amp=None, seed=0, opt="adamw", **kw):
    model, o, x, y = setup(seed, opt)
    gen = torch.Generator().manual_seed(7)
    extra = {} if amp is None else {"amp": amp}
    m = fn(
        model,
        x,
        y,
        optimizer=o,
        gen=gen,
        steps=steps,
        batch_size=16,
        augment=L.Augment(pad=1, hflip=True),
        lr_at=lambda s: L.lr_factor(s, steps, "onecycle", 0.25),
        **extra,
        **kw,
    )
    return m, model, o


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cpu_path_is_bit_identical_to_the_loop_before():
    ref, m_ref, _ = epoch(reference_epoch)
    new, m_new, _ = epoch(L.train_one_epoch)
    assert new["train_loss"] == ref["train_loss"] and new["train_acc"] == ref["train_acc"]
    assert same_weights(m_new, m_ref)


def test_cuda_code_path_forced_on_cpu_gives_the_same_numbers(monkeypatch):
    base, m_base, _ = epoch(L.train_one_epoch)
    # what CUDA runs: draws on the device, flips by torch.where, host data copied batch by batch
    forced = functools.partial(L._Feed, host=True, sync_free=True, pin=False)
    monkeypatch.setattr(L, "_Feed", forced)
    got, m_got, _ = epoch(L.train_one_epoch)
    assert got == base and same_weights(m_got, m_base)


def test_host_feed_prefetches_one_batch_ahead():
    _, _, x, y = setup()
    idx = batch_indices(len(x), 16, 3, torch.Generator().manual_seed(0))
    aug = L.Augment(pad=0)
    feed = L._Feed(x, y, idx, torch.device("cpu"), aug, torch.Generator(), host=True, pin=False)
    xb, yb = feed.raw(0)  # nothing prefetched: copied on demand
    assert torch.equal(xb, x[idx[0]]) and torch.equal(yb, y[idx[0]])
    feed.prefetch(1)
    assert feed.ahead[0] == 1 and torch.equal(feed.ahead[1][0], x[idx[1]])
    xb, _ = feed.raw(1)
    assert feed.ahead is None and torch.equal(xb, x[idx[1]])
    feed.prefetch(3)  # past the last step: nothing fetched
    assert feed.ahead is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_step_on_cpu(dtype):
    amp = A.Precision(torch.device("cpu"), dtype)
    model, o, x, y = setup()
    seen = []
    model.head.register_forward_hook(lambda mod, i, out: seen.append(out.dtype))
    gen = torch.Generator().manual_seed(7)
    kw = {"optimizer": o, "gen": gen, "steps": 6, "batch_size": 16, "augment": L.Augment(pad=1)}
    m1 = L.train_one_epoch(model, x, y, amp=amp, **kw)
    m2 = L.train_one_epoch(model, x, y, amp=amp, **kw)
    assert set(seen) == {dtype}  # the forward really ran in the low precision
    assert all(0 < m["train_loss"] < 10 and 0 <= m["train_acc"] <= 1 for m in (m1, m2))
    assert m2["train_loss"] < 2.3  # learns: below chance-level cross-entropy ln(10) = 2.30
    scaler = amp.scaler(o)
    if dtype == torch.float16:  # one scaler per optimiser, kept across epochs
        assert isinstance(scaler, torch.amp.GradScaler) and scaler._growth_tracker is not None
        assert scaler.get_scale() == 65536.0 and amp.scaler(o) is scaler
    else:
        assert scaler is None
    fp32, m_fp32, _ = epoch(L.train_one_epoch, steps=6)
    assert not same_weights(model, m_fp32)


class CountReads(TorchDispatchMode):
    """Counts device→host reads of floating-point values (loss.item(), float(t), ...)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_floating_point():
            self.n += 1
        return func(*args, **(kwargs or {}))


def test_no_host_read_per_step(monkeypatch):
    monkeypatch.setattr(L, "_Feed", functools.partial(L._Feed, sync_free=True))
    counts = []
    for steps in (2, 6):
        with CountReads() as c:
            epoch(L.train_one_epoch, steps=steps, opt="sgd")
        counts.append(c.n)
    assert counts[0] == counts[1] <= 2, counts  # the epoch's loss (and lr) read once, at the end


def test_precision_per_device(monkeypatch):
    cpu = A.precision(torch.device("cpu"))
    assert cpu.dtype is None and not cpu.needs_scaler
    with cpu.autocast():
        assert not torch.is_autocast_enabled("cpu")
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert A.precision(cuda).dtype == torch.bfloat16 and not A.precision(cuda).needs_scaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert A.precision(cuda).dtype == torch.float16 and A.precision(cuda).needs_scaler
