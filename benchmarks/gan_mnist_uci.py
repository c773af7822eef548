"""Issue 16, MNIST-5k → UCI digits: do the GAN's frozen features beat random-init frozen features?

In-process (no services): the models API the pipeline's stages call (`pretrain`, `fit_target`),
the pipeline's split (seed 0, val 15 %, test 20 %, nested k-shot draws; seed s ≠ 0 draws k per
class afresh, as `seed_train` does for the gate's confirmation seeds) and the gate's statistics.
Source `builtin:mnist-5k?crop=content` converted to 8×8 gray (what `warmstart run` ingests),
target `builtin:uci-digits`; backbone convnet-s.

One command, two phases, in this order:

1. **Selection (validation only).** Every recipe variant (GAN, autoencoder, SimCLR; see VARIANTS:
   recipe options, pretraining epochs, and which images it pretrains on) is pretrained once
   (seed 0, cached), then probed with a logistic-regression head on frozen features at k = 1, 5,
   10 and selection seeds 0, 1, 2, with the pipeline probe's recipe (8 shifted views, standardised
   features, L2 grid chosen on validation). Each trunk is read out five ways (READOUTS): the
   pipeline's own (stage 3 pooled, BatchNorm statistics as trained), and variants that pool
   every stage, max-pool to 2×2 (Radford et al.'s DCGAN readout) or re-estimate BatchNorm
   statistics on real images (a GAN discriminator's running statistics are mostly those of
   generated images). The random-init frozen control is measured the same way, at every readout.
   The rule (validation only; revised once after the first validation numbers, before any test
   result, from "best mean accuracy" to the margin that goal (b) is about): per family, the
   (variant, readout) whose smallest-over-k mean validation margin over the control read out
   the same way is largest; and, per family, the best variant by that margin with the
   pipeline's readout (a choice that needs a config option only, no code change).
2. **Test (fresh seeds 1000–1004: new k-shot draw and init).** Scratch (fit_target finetune, the
   pipeline's recipe), the random-init frozen control at each readout a tested arm uses, each
   family's default with the pipeline readout and its picks. Test accuracy mean [95% CI], paired
   Δ vs scratch and vs the control read out the same way (bootstrap over seeds × test images, as
   §10; and the gate's seed-level t for GAN − control).

    python benchmarks/gan_mnist_uci.py --out /tmp/ganuci            # both phases, then tables
    python benchmarks/gan_mnist_uci.py --out /tmp/ganuci --report   # tables from the JSON
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from warmstart import models as M
from warmstart.data import load_source, make_splits
from warmstart.data.splits import seed_train
from warmstart.models.probe import _fit_logreg, augmented_features
from warmstart.models.strategies import AutoencoderConfig, GANConfig, SimCLRConfig
from warmstart.promotion.stats import accuracy_ci, paired_bootstrap, seed_t_interval

SOURCE = "builtin:mnist-5k?crop=content&size=8x8&channels=1"
TARGET = "builtin:uci-digits"
KS = (1, 5, 10)
SELECT_SEEDS = (0, 1, 2)
TEST_SEEDS = (1000, 1001, 1002, 1003, 1004)
EPOCHS = 16  # the pipeline's pretrain_epochs default (PipelineParams)

# name -> (strategy, config, pretraining images: source / target_pool / both, epochs)
VARIANTS = {
    "gan/default": ("gan", GANConfig(), "both", EPOCHS),
    "gan/feature matching": ("gan", GANConfig(feature_matching=1.0), "both", EPOCHS),
    "gan/spectral norm": ("gan", GANConfig(spectral_norm=True), "both", EPOCHS),
    "gan/spectral norm + feature matching": (
        "gan",
        GANConfig(spectral_norm=True, feature_matching=1.0),
        "both",
        EPOCHS,
    ),
    "gan/source only": ("gan", GANConfig(), "source", EPOCHS),
    "gan/target pool only": ("gan", GANConfig(), "target_pool", EPOCHS),
    "gan/4 epochs": ("gan", GANConfig(), "both", 4),
    "gan/1 epoch": ("gan", GANConfig(), "both", 1),
    "gan/2 epochs": ("gan", GANConfig(), "both", 2),
    "gan/8 epochs": ("gan", GANConfig(), "both", 8),
    "gan/48 epochs": ("gan", GANConfig(), "both", 48),
    "autoencoder/default (noise 0.1)": ("autoencoder", AutoencoderConfig(), "both", EPOCHS),
    "autoencoder/denoise 0.3": ("autoencoder", AutoencoderConfig(noise_std=0.3), "both", EPOCHS),
    "autoencoder/masked 2px 50%": (
        "autoencoder",
        AutoencoderConfig(noise_std=0.0, mask_frac=0.5, mask_patch=2),
        "both",
        EPOCHS,
    ),
    "simclr/default": ("simclr", SimCLRConfig(), "both", EPOCHS),
}
DEFAULTS = {"gan": "gan/default", "autoencoder": "autoencoder/default (noise 0.1)"}
DEFAULTS["simclr"] = "simclr/default"
PIPELINE = "stage3"
# readout -> (feature block, BatchNorm statistics re-estimated on real images)
READOUTS = {
    "stage3": ("gap3", False),
    "stage3, BN re-est.": ("gap3", True),
    "all stages": ("gap", False),
    "all stages, BN re-est.": ("gap", True),
    "all stages 2x2 max, BN re-est.": ("max2", True),
}
BN_IMAGES = 4096  # real images the BatchNorm statistics are re-estimated on


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Readout(torch.nn.Module):
    """forward_features = [GAP of stage 1..3 | 2×2 max-pool of stage 1..3], concatenated."""

    def __init__(self, model: M.Backbone) -> None:
        super().__init__()
        self.m = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.m.input_mean) / self.m.input_std
        gap, mx = [], []
        for _, stage in self.m.stages():
            x = stage(x)
            gap.append(x.mean(dim=(2, 3)))
            mx.append(F.adaptive_max_pool2d(x, 2).flatten(1))
        return torch.cat(gap + mx, 1)

    def blocks(self) -> dict[str, slice]:
        w = [stage[1].num_features for _, stage in self.m.stages()]
        g = sum(w)
        return {"gap3": slice(g - w[-1], g), "gap": slice(0, g), "max2": slice(g, g + 4 * g)}


def load() -> dict:
    tgt = load_source(TARGET, seed=0)
    src = load_source(SOURCE, seed=0)
    splits = {
        k: make_splits(tgt, seed=0, val_fraction=0.15, test_fraction=0.2, k_shot=k) for k in KS
    }
    s = splits[KS[0]]
    pool = np.union1d(s.train, s.unlabelled)  # the pipeline's unlabelled_pool: k-independent
    return {
        "x": tgt.images,
        "y": tgt.labels,
        "splits": splits,
        "val": s.val,
        "test": s.test,
        "images": {
            "source": src.images,
            "target_pool": tgt.images[pool],
            "both": np.concatenate([src.images, tgt.images[pool]]),
        },
    }


def pretrained(name: str, data: dict, cache: Path) -> dict:
    """Pretrain a variant once (seed 0, one thread); cached under `cache`."""
    path = cache / (name.replace("/", "_").replace(" ", "_") + ".pt")
    if path.exists():
        return torch.load(path)
    strategy, cfg, images_of, epochs = VARIANTS[name]
    images = data["images"][images_of]
    run = M.PretrainConfig(epochs=epochs, seed=0, num_threads=1).with_strategy(cfg)
    r = M.pretrain(strategy, backbone="convnet-s", images=images, config=run, **geometry(data))
    out = {
        "trunk": r.backbone_state,
        "seconds": r.seconds,
        "images": r.epochs_done * len(images),
        "bn_images": images_of,
    }
    torch.save(out, path)
    log("pretrained", name, f"{r.seconds:.0f}s", f"{out['images']:,} img")
    return out


def geometry(data: dict) -> dict:
    return {"in_channels": int(data["x"].shape[1]), "image_size": tuple(data["x"].shape[2:])}


def trunk_model(trunk, seed: int, data: dict, bn_images: str | None) -> Readout:
    """convnet-s with `trunk` (None: random init from `seed`, as fit_target builds the control);
    BatchNorm statistics re-estimated on real images of `bn_images` when given."""
    torch.manual_seed(seed)
    model = M.get_backbone("convnet-s", num_classes=0, **geometry(data))
    if trunk is not None:
        M.load_trunk(model, trunk)
    if bn_images is not None:
        imgs = data["images"][bn_images]
        sub = imgs[np.random.default_rng(0).permutation(len(imgs))[:BN_IMAGES]]
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        model.train()
        with torch.no_grad():
            for i in range(0, len(sub), 256):
                model(torch.from_numpy(sub[i : i + 256]).float() / 255.0)
    return Readout(model.eval())


def probe_all(trunk, bn_images: str, data: dict, k: int, seed: int, test: bool) -> dict:
    """Per readout: validation accuracy of the pipeline-style probe and, with `test`, the chosen
    L2's per-image test correctness."""
    cfg = M.TrainConfig()
    pad = cfg.crop_pad(geometry(data)["image_size"])
    tr = seed_train(data["splits"][k], data["y"], seed)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    feats = {}
    for bn in (False, True):
        model = trunk_model(trunk, seed, data, bn_images if bn else None)
        gen = torch.Generator().manual_seed(seed + 1)
        ftr, ytr = augmented_features(
            model, x[tr], y[tr], views=cfg.probe_views, pad=pad, hflip=False, gen=gen,
            batch_size=512,
        )  # fmt: skip
        fva = augmented_features(model, x[data["val"]], y[data["val"]], views=1, pad=pad,
                                 hflip=False, gen=gen, batch_size=512)[0]  # fmt: skip
        with torch.no_grad():
            fte = model.forward_features(x[data["test"]].float() / 255.0) if test else None
        feats[bn] = (ftr, ytr, fva, fte, model.blocks())
    out = {}
    for name, (block, bn) in READOUTS.items():
        ftr, ytr, fva, fte, blocks = feats[bn]
        sl = blocks[block]
        out[name] = choose_l2(ftr[:, sl], ytr, fva[:, sl], y[data["val"]], fte, y, data, sl, cfg)
    return out


@torch.no_grad()
def choose_l2(ftr, ytr, fva, yva, fte, y, data, sl, cfg) -> dict:
    """The pipeline probe's L2 choice (best validation accuracy, ties: lower loss)."""
    mu, sd = ftr.mean(0), ftr.std(0).clamp_min(1e-4)
    best = None
    for wd in cfg.probe_weight_decays:
        with torch.enable_grad():
            w, b = _fit_logreg((ftr - mu) / sd, ytr, 10, wd, cfg.probe_max_iter)
        logits = (fva - mu) / sd @ w.T + b
        key = (
            float((logits.argmax(1) == yva).float().mean()),
            -float(F.cross_entropy(logits, yva)),
        )
        if best is None or key > best[0]:
            best = (key, w, b)
    (val_acc, _), w, b = best
    row = {"val": val_acc}
    if fte is not None:
        pred = (((fte[:, sl] - mu) / sd) @ w.T + b).argmax(1)
        row["correct"] = (pred == y[data["test"]]).numpy()
    return row


def selection(data: dict, args, res: dict, save) -> None:
    names = ["random-init", *VARIANTS]
    for name in names:
        if name in res["selection"] or (args.only and name not in args.only + ["random-init"]):
            continue
        pre = None if name == "random-init" else pretrained(name, data, args.out / "trunks")
        trunk = None if pre is None else pre["trunk"]
        bn = "both" if pre is None else pre["bn_images"]
        vals = {r: {} for r in READOUTS}
        for k in KS:
            for s in SELECT_SEEDS:
                for r, row in probe_all(trunk, bn, data, k, s, test=False).items():
                    vals[r].setdefault(str(k), []).append(row["val"])
        res["selection"][name] = {
            "val": vals,
            "pretrain_seconds": 0.0 if pre is None else pre["seconds"],
            "pretrain_images": 0 if pre is None else pre["images"],
        }
        means = {r: round(100 * float(np.mean(sum(v.values(), []))), 1) for r, v in vals.items()}
        log("selection", name, means)
        save()


def mean_val(entry: dict, readout: str) -> float:
    return float(np.mean(sum(entry["val"][readout].values(), [])))


def margin(sel: dict, variant: str, readout: str) -> float:
    """The smallest, over k, mean validation margin over the control read out the same way."""
    mine, ctl = sel[variant]["val"][readout], sel["random-init"]["val"][readout]
    return min(float(np.mean(mine[str(k)]) - np.mean(ctl[str(k)])) for k in KS)


def choices(sel: dict) -> dict[str, tuple[str, str]]:
    """Test arms: label -> (variant or "random-init", readout); the rule in the docstring."""
    arms: dict[str, tuple[str, str]] = {}
    for fam, default in DEFAULTS.items():
        tried = [v for v in sel if v.startswith(fam + "/")]
        if not tried:
            continue
        arms[f"{default} [{PIPELINE}]"] = (default, PIPELINE)
        pipe = max(tried, key=lambda v: (margin(sel, v, PIPELINE), v == default))
        arms[f"{pipe} [{PIPELINE}]"] = (pipe, PIPELINE)
        pairs = [(v, r) for v in tried for r in READOUTS]
        v, r = max(pairs, key=lambda p: (margin(sel, *p), p == (default, PIPELINE)))
        arms[f"{v} [{r}]"] = (v, r)
    for _, r in list(arms.values()):
        arms[f"control/random-init-frozen [{r}]"] = ("random-init", r)
    return arms


def test_phase(data: dict, args, res: dict, save) -> None:
    arms = choices(res["selection"])
    res["arms"] = {a: list(v) for a, v in arms.items()}
    correct: dict[str, list] = {}
    for k in KS:
        for s in TEST_SEEDS:
            key = f"scratch@{k}"
            correct.setdefault(key, []).append(scratch(data, k, s))
            for variant in dict.fromkeys(v for v, _ in arms.values()):
                pre = (
                    None
                    if variant == "random-init"
                    else pretrained(variant, data, args.out / "trunks")
                )
                trunk, bn = (None, "both") if pre is None else (pre["trunk"], pre["bn_images"])
                rows = probe_all(trunk, bn, data, k, s, test=True)
                for a, (v, r) in arms.items():
                    if v == variant:
                        correct.setdefault(f"{a}@{k}", []).append(rows[r]["correct"])
            log("test k", k, "seed", s)
    np.savez(args.out / "test_correct.npz", **{a: np.stack(c) for a, c in correct.items()})
    save()


def scratch(data: dict, k: int, seed: int) -> np.ndarray:
    """The pipeline's scratch arm: convnet-s from random init, finetune, 12 epochs."""
    tr = seed_train(data["splits"][k], data["y"], seed)
    fit = M.fit_target(
        backbone="convnet-s",
        init_state=None,
        mode="finetune",
        num_classes=10,
        train=(data["x"][tr], data["y"][tr]),
        val=(data["x"][data["val"]], data["y"][data["val"]]),
        config=M.TrainConfig(seed=seed, num_threads=1),
        **geometry(data),
    )
    pred = M.predict_proba(fit.model, data["x"][data["test"]]).argmax(1)
    return pred == data["y"][data["test"]]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _d(d: dict) -> str:
    return f"{100 * d['mean_diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def _cost(entry: dict) -> str:
    if not entry["pretrain_seconds"]:
        return "—"
    return f"{entry['pretrain_images']:,} img, {entry['pretrain_seconds']:.0f} s"


def report(out: Path) -> str:
    res = json.loads((out / "results.json").read_text())
    sel = res["selection"]
    head = "| variant | pretraining | " + " | ".join(READOUTS) + " |"
    lines = [
        f"Validation accuracy %, mean over k = {', '.join(map(str, KS))} × selection seeds "
        f"{', '.join(map(str, SELECT_SEEDS))} ({res['val']} validation images); per k in "
        "brackets for the pipeline's readout (stage3):\n",
        head,
        "|---|---|" + "---|" * len(READOUTS),
    ]
    order = [n for n in ["random-init", *VARIANTS] if n in sel]
    for name in order:
        e = sel[name]
        cells = [_pct(mean_val(e, r)) for r in READOUTS]
        per_k = "/".join(_pct(np.mean(e["val"][PIPELINE][str(k)])) for k in KS)
        cells[0] += f" ({per_k})"
        lines.append(f"| {name} | {_cost(e)} | " + " | ".join(cells) + " |")
    lines += ["", "Smallest-over-k validation margin over the control read out the same way, points "
              "(the selection rule):\n", head, "|---|---|" + "---|" * len(READOUTS)]  # fmt: skip
    for name in order[1:]:
        cells = [f"{100 * margin(sel, name, r):+.1f}" for r in READOUTS]
        lines.append(f"| {name} | {_cost(sel[name])} | " + " | ".join(cells) + " |")
    if "arms" not in res:
        return "\n".join(lines) + "\n"
    correct = dict(np.load(out / "test_correct.npz"))
    arms = ["scratch", *res["arms"]]
    k_head = " | ".join(f"k={k}" for k in KS)
    lines += ["", f"Test accuracy %, mean [95% CI] over {len(TEST_SEEDS)} seeds × "
              f"{res['test']} test images:\n", f"| arm | {k_head} | pretraining |",
              "|---|" + "---|" * (len(KS) + 1)]  # fmt: skip
    for a in arms:
        cells = []
        for k in KS:
            ci = accuracy_ci(correct[f"{a}@{k}"])
            cells.append(f"{_pct(ci['accuracy'])} [{_pct(ci['ci_low'])}, {_pct(ci['ci_high'])}]")
        v = res["arms"].get(a, ["random-init"])[0]
        cost = _cost(sel[v]) if v in sel else "—"
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {cost} |")
    lines += ["", "Paired Δ, points [95% CI]: vs scratch (bootstrap), vs the random-init frozen "
              "control read out the same way (bootstrap; seed-level t, the gate's, in the last "
              "rows):\n", f"| arm | vs | {k_head} |", "|---|---|" + "---|" * len(KS)]  # fmt: skip
    for a in res["arms"]:
        v, r = res["arms"][a]
        ctl = f"control/random-init-frozen [{r}]"
        lines.append(f"| {a} | scratch | " + " | ".join(
            _d(paired_bootstrap(correct[f"{a}@{k}"], correct[f"scratch@{k}"])) for k in KS) + " |")  # fmt: skip
        if v != "random-init":
            lines.append(f"| {a} | control [{r}] | " + " | ".join(
                _d(paired_bootstrap(correct[f"{a}@{k}"], correct[f"{ctl}@{k}"])) for k in KS) + " |")  # fmt: skip
    for a, (v, r) in res["arms"].items():
        if v.startswith("gan/"):
            ctl = f"control/random-init-frozen [{r}]"
            lines.append(f"| {a} | control [{r}], seed-t | " + " | ".join(
                _d(seed_t_interval(correct[f"{a}@{k}"], correct[f"{ctl}@{k}"])) for k in KS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", action="store_true", help="only print the tables")
    ap.add_argument("--only", help="selection: comma list of variants (sizing runs)")
    ap.add_argument("--no-test", action="store_true", help="stop after the selection phase")
    args = ap.parse_args()
    if args.report:
        print(report(args.out))
        return
    args.only = args.only.split(",") if args.only else None
    torch.set_num_threads(1)
    (args.out / "trunks").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load()
    path = args.out / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {"selection": {}}
    res.update(val=int(len(data["val"])), test=int(len(data["test"])))
    res["pool"] = {n: int(len(v)) for n, v in data["images"].items()}

    def save() -> None:
        res["wall_seconds"] = res.get("wall_seconds_before", 0) + time.time() - t0
        path.write_text(json.dumps(res, indent=1))

    log("pool", res["pool"], "val", res["val"], "test", res["test"])
    selection(data, args, res, save)
    if not args.no_test and not args.only:
        test_phase(data, args, res, save)
    log("done", f"{time.time() - t0:.0f}s")
    print(report(args.out))


if __name__ == "__main__":
    main()
