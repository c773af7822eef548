"""Issue 16: GAN, autoencoder and SimCLR transfer where unlabelled images vastly outnumber labels.

In-process (no services): the same models API the pipeline's stages call (`pretrain`,
`fit_target`), the same split function and the same bootstrap statistics as the gate.

Three phases (run `recipes` and `baselines` side by side, then `final`); each writes its JSON
as results come, and pretrained trunks are cached under --cache:

1. **recipes (validation only)**: recipe variants of the label-free strategies are pretrained on
   the scenario's unlabelled pool with one fixed budget, then probed at k = 5 on the *validation*
   split (3 probe seeds) with the pooled features of each trunk stage (and all concatenated).
   The best variant of each family is chosen by stage-3 validation accuracy (the layer the
   pipeline probes).
2. **baselines (test)**: scratch (finetune from random init) and the random-init frozen control
   at every k and seed; per-image correctness saved for pairing.
3. **final (test)**: each family's default and its chosen variant as linear probes at every k and
   seed; test accuracy with its 95% CI and the paired Δ vs scratch and vs the control, with the
   pretraining compute (epochs × images, and seconds) beside each row.

    python benchmarks/regime_study.py recipes --out /tmp/regime/recipes.json --variants 2
    python benchmarks/regime_study.py baselines --out /tmp/regime/baselines.json
    python benchmarks/regime_study.py final --out /tmp/regime/final.json \
        --recipes /tmp/regime/recipes.json --baselines /tmp/regime/baselines.npz
    python benchmarks/regime_study.py report /tmp/regime   # the Markdown tables
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from warmstart import models as M
from warmstart.data import load_source, make_splits
from warmstart.models.probe import _fit_logreg, augmented_features
from warmstart.models.strategies import AutoencoderConfig, GANConfig, SimCLRConfig
from warmstart.promotion.stats import accuracy_ci, paired_bootstrap
from warmstart.sweep import PRESETS

VARIANTS = {
    "autoencoder": {
        "default (noise 0.1)": AutoencoderConfig(),
        "masked patches 4px 50%": AutoencoderConfig(noise_std=0.0, mask_frac=0.5, mask_patch=4),
        "denoise 0.3": AutoencoderConfig(noise_std=0.3),
    },
    "gan": {
        "default": GANConfig(),
        "feature matching": GANConfig(feature_matching=1.0),
        "spectral norm": GANConfig(spectral_norm=True),
    },
    "simclr": {"default": SimCLRConfig()},
}


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Staged(torch.nn.Module):
    """forward_features = global-average-pooled output of every trunk stage, concatenated."""

    def __init__(self, model: M.Backbone) -> None:
        super().__init__()
        self.m = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.m.input_mean) / self.m.input_std
        outs = []
        for _, stage in self.m.stages():
            x = stage(x)
            outs.append(x.mean(dim=(2, 3)))
        return torch.cat(outs, 1)


def layer_probe(trunk, data, k_idx, seed: int, geometry: dict) -> dict[str, float]:
    """Validation accuracy of a logistic-regression probe on each stage's pooled features (and
    all stages concatenated), with the pipeline probe's views, L2 grid and iterations."""
    cfg = M.TrainConfig()
    model = M.get_backbone("convnet-s", num_classes=0, **geometry)
    if trunk is not None:
        M.load_trunk(model, trunk)
    staged = Staged(model.eval())
    x, y = data["x"], data["y"]
    tr = (torch.from_numpy(x[k_idx]), torch.from_numpy(y[k_idx]))
    va = (torch.from_numpy(x[data["val"]]), torch.from_numpy(y[data["val"]]))
    gen = torch.Generator().manual_seed(seed + 1)
    pad = cfg.crop_pad(geometry["image_size"])
    ftr, ytr = augmented_features(
        staged, *tr, views=cfg.probe_views, pad=pad, hflip=False, gen=gen, batch_size=512
    )
    fva = augmented_features(staged, *va, views=1, pad=pad, hflip=False, gen=gen, batch_size=512)[0]
    widths = [m[1].num_features for _, m in model.stages()]
    bounds = np.cumsum([0, *widths])
    layers = {f"stage{i + 1}": slice(bounds[i], bounds[i + 1]) for i in range(len(widths))}
    layers["all"] = slice(0, bounds[-1])
    out = {}
    for name, sl in layers.items():
        a, b = ftr[:, sl], fva[:, sl]
        mu, sd = a.mean(0), a.std(0).clamp_min(1e-4)
        best = 0.0
        for wd in cfg.probe_weight_decays:
            with torch.enable_grad():
                w, bias = _fit_logreg((a - mu) / sd, ytr, int(y.max()) + 1, wd, cfg.probe_max_iter)
            acc = float((((b - mu) / sd @ w.T + bias).argmax(1) == va[1]).float().mean())
            best = max(best, acc)
        out[name] = best
    return out


def load_scenario(name: str, target: str | None, ks: str | None) -> tuple[dict, dict]:
    p = dict(PRESETS[name])
    p["target"] = target or p["target"]
    p["k_values"] = [int(k) for k in ks.split(",")] if ks else p["k_values"]
    split_kw = dict(val_fraction=p["val_fraction"], test_fraction=p["test_fraction"])
    ds = load_source(p["target"], seed=0)
    base = make_splits(ds, seed=0, **split_kw)
    data = {"x": ds.images, "y": ds.labels, "val": base.val, "test": base.test}
    data["pool"] = np.sort(np.concatenate([base.train, base.unlabelled]))
    data["k"] = {k: make_splits(ds, seed=0, k_shot=k, **split_kw).train for k in p["k_values"]}
    src = None
    if p.get("unsupervised_data") == "both":
        src = load_source(p["source"], seed=0)
    return data, {"preset": p, "source_images": None if src is None else src.images}


def pretrain_variant(strategy, cfg, images, geometry, budget_epochs: int) -> dict:
    run = M.PretrainConfig(epochs=budget_epochs, num_threads=1).with_strategy(cfg)
    r = M.pretrain(strategy, backbone="convnet-s", images=images, config=run, **geometry)
    drawn = r.epochs_done * len(images)  # epochs × images
    return {
        "trunk": r.backbone_state,
        "seconds": r.seconds,
        "images": drawn,
        "passes": r.epochs_done,
    }


def arm(init, mode, data, k, seed, geometry, epochs) -> tuple[np.ndarray, float, float]:
    cfg = M.TrainConfig(epochs=epochs, seed=seed, num_threads=1)
    tr = data["k"][k]
    fit = M.fit_target(
        backbone="convnet-s",
        init_state=init,
        mode=mode,
        num_classes=int(data["y"].max()) + 1,
        train=(data["x"][tr], data["y"][tr]),
        val=(data["x"][data["val"]], data["y"][data["val"]]),
        config=cfg,
        **geometry,
    )
    te = data["test"]
    pred = M.predict_proba(fit.model, data["x"][te]).argmax(1)
    return pred == data["y"][te], fit.best_val_acc, fit.seconds


def cached_pretrain(fam: str, vname: str, cfg, pool, geometry, args) -> dict:
    """Pretrain once per (family, variant, budget); the trunk is cached under --cache."""
    path = args.cache / f"{fam}-{vname.replace(' ', '_').replace('/', '_')}-{len(pool)}.pt"
    if path.exists():
        return torch.load(path)
    pre = pretrain_variant(fam, cfg, pool, geometry, args.pretrain_epochs)
    torch.save(pre, path)
    return pre


def phase_recipes(args, data, pool, geometry, res, save) -> None:
    k_val = 5 if 5 in data["k"] else min(data["k"])
    res["recipes"]["random-init"] = {
        "val": [layer_probe(None, data, data["k"][k_val], s, geometry) for s in range(args.seeds)],
        "pretrain_seconds": 0.0,
        "pretrain_images": 0,
    }
    save()
    for fam in args.families.split(","):
        for vname, cfg in list(VARIANTS[fam].items())[args.skip_variants : args.variants]:
            pre = cached_pretrain(fam, vname, cfg, pool, geometry, args)
            vals = [
                layer_probe(pre["trunk"], data, data["k"][k_val], s, geometry)
                for s in range(args.seeds)
            ]
            res["recipes"][f"{fam}/{vname}"] = {
                "config": cfg.to_dict(),
                "val": vals,
                "pretrain_seconds": pre["seconds"],
                "pretrain_images": pre["images"],
            }
            log(
                fam,
                vname,
                f"{pre['seconds']:.0f}s",
                {n: round(float(np.mean([v[n] for v in vals])), 3) for n in vals[0]},
            )
            save()


def final_arms(args, pool, geometry, recipes: dict) -> dict:
    """Baselines, or each family's default and its best variant on validation (stage 3)."""
    if args.phase == "baselines":
        none = {"trunk": None, "seconds": 0.0, "images": 0}
        return {
            "scratch": (None, "finetune", none),
            "control/random-init-frozen": (None, "linear_probe", none),
        }
    arms = {}
    for fam in args.families.split(","):
        tried = {v: r for v, r in recipes.items() if v.startswith(fam + "/")}
        score = {v: np.mean([x["stage3"] for x in r["val"]]) for v, r in tried.items()}
        default = f"{fam}/{next(iter(VARIANTS[fam]))}"
        for key in dict.fromkeys([default, max(score, key=score.get)]):
            vname = key.split("/", 1)[1]
            pre = cached_pretrain(fam, vname, VARIANTS[fam][vname], pool, geometry, args)
            arms[f"{fam}/linear_probe [{vname}]"] = (pre["trunk"], "linear_probe", pre)
    return arms


def phase_final(args, data, pool, geometry, res, save) -> None:
    recipes = json.loads(args.recipes.read_text())["recipes"] if args.recipes else {}
    arms = final_arms(args, pool, geometry, recipes)
    base = dict(np.load(args.baselines)) if args.baselines else {}
    for k in sorted(data["k"]):
        for name, (init, mode, pre) in arms.items():
            rows = [
                arm(init, mode, data, k, s, geometry, args.finetune_epochs)
                for s in range(args.seeds)
            ]
            correct = np.stack([r[0] for r in rows])
            base[f"{name}@{k}"] = correct
            acc = accuracy_ci(correct)
            row = {
                "k": k,
                "arm": name,
                "test_acc": acc["accuracy"],
                "ci": [acc["ci_low"], acc["ci_high"]],
                "val_acc": float(np.mean([r[1] for r in rows])),
                "target_seconds": float(np.sum([r[2] for r in rows])),
                "pretrain_seconds": pre["seconds"],
                "pretrain_images": pre["images"],
            }
            for b in ("scratch", "control/random-init-frozen"):
                if f"{b}@{k}" in base and name != b:
                    d = paired_bootstrap(correct, base[f"{b}@{k}"])
                    row[f"delta_{b.split('/')[0]}"] = [d["mean_diff"], d["ci_low"], d["ci_high"]]
            res["final"].append(row)
            np.savez(args.out.with_suffix(".npz"), **base)
            log(k, name, f"{100 * row['test_acc']:.1f}", row.get("delta_scratch"))
            save()


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(folder: Path) -> str:
    """Markdown tables from the recipes / baselines / final JSON files in `folder`."""
    recs = [json.loads(f.read_text()) for f in sorted(folder.glob("recipes*.json"))]
    rec = {**recs[0], "recipes": {k: v for r in recs for k, v in r["recipes"].items()}}
    out = [
        f"Validation accuracy % at k = 5 (mean of {len(rec['recipes']['random-init']['val'])} "
        f"probe seeds, {rec['val']} validation images), linear probe on each stage's pooled "
        "features:\n",
        "| variant | stage1 | stage2 | stage3 (pipeline) | all stages | pretraining |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rec["recipes"].items():
        m = {n: np.mean([v[n] for v in r["val"]]) for n in r["val"][0]}
        cost = _cost(r, rec["pretrain_images_per_pass"])
        cells = " | ".join(_pct(m[n]) for n in ("stage1", "stage2", "stage3", "all"))
        out.append(f"| {name} | {cells} | {cost} |")
    rows = []
    for pattern in ("baselines*.json", "final*.json"):
        for f in sorted(folder.glob(pattern)):
            rows += json.loads(f.read_text())["final"]
    correct: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.npz")):
        correct.update(dict(np.load(f)))
    for r in rows:  # paired deltas from the saved per-image correctness of every phase
        for b in ("scratch", "control/random-init-frozen"):
            mine, base = correct.get(f"{r['arm']}@{r['k']}"), correct.get(f"{b}@{r['k']}")
            if mine is not None and base is not None and r["arm"] != b:
                d = paired_bootstrap(mine, base)
                r[f"delta_{b.split('/')[0]}"] = [d["mean_diff"], d["ci_low"], d["ci_high"]]
    ks = sorted({r["k"] for r in rows})
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    cell = {(r["arm"], r["k"]): r for r in rows}
    for title, fmt in (
        (
            "Test accuracy %, mean [95% CI]",
            lambda r: f"{_pct(r['test_acc'])} [{_pct(r['ci'][0])}, {_pct(r['ci'][1])}]",
        ),
        ("Paired Δ vs scratch, points [95% CI]", lambda r: _delta(r.get("delta_scratch"))),
        (
            "Paired Δ vs the random-init frozen control, points [95% CI]",
            lambda r: _delta(r.get("delta_control")),
        ),
    ):
        out += [
            "",
            f"{title}:\n",
            "| arm | " + " | ".join(f"k={k}" for k in ks) + " | pretraining |",
        ]
        out.append("|---|" + "---|" * (len(ks) + 1))
        for a in arms:
            cs = [fmt(cell[(a, k)]) if (a, k) in cell else "—" for k in ks]
            r0 = cell[(a, ks[0])]
            cost = _cost(r0, rec["pretrain_images_per_pass"])
            out.append(f"| {a} | " + " | ".join(cs) + f" | {cost} |")
    return "\n".join(out) + "\n"


def _cost(r: dict, per_pass: int) -> str:
    """epochs × images and seconds; runs recorded before the images count was kept ran one pass."""
    if not r["pretrain_seconds"]:
        return "—"
    return f"{r['pretrain_images'] or per_pass:,} img, {r['pretrain_seconds']:.0f} s"


def _delta(d: list[float] | None) -> str:
    return "—" if d is None else f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "report":
        print(render(Path(sys.argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["recipes", "baselines", "final"])
    ap.add_argument("--scenario", default="shapes-hard-32", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/regime/trunks"))
    ap.add_argument("--recipes", type=Path, help="final: the recipes phase's JSON (choice)")
    ap.add_argument("--baselines", type=Path, help="final: the baselines phase's .npz (pairing)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", type=int, default=3, help="recipe variants per family")
    ap.add_argument("--skip-variants", type=int, default=0, help="start at this variant")
    ap.add_argument("--pretrain-images", type=int, default=9600, help="pool images per pass")
    ap.add_argument("--pretrain-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=12)
    ap.add_argument("--target", help="override the preset's target spec (smoke runs)")
    ap.add_argument("--k", help="comma list of k, overriding the preset's")
    ap.add_argument("--families", default="autoencoder,gan,simclr")
    ap.add_argument("--baseline-arms", default="scratch,control/random-init-frozen")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data, meta = load_scenario(args.scenario, args.target, args.k)
    geometry = {"in_channels": int(data["x"].shape[1]), "image_size": tuple(data["x"].shape[2:])}
    rng = np.random.default_rng(0)
    pool = data["x"][rng.permutation(data["pool"])[: args.pretrain_images]]
    if meta["source_images"] is not None:
        pool = np.concatenate([meta["source_images"], pool])
    res: dict = {
        "scenario": args.scenario,
        "phase": args.phase,
        "preset": meta["preset"],
        "pool_total": int(len(data["pool"])),
        "pretrain_images_per_pass": int(len(pool)),
        "val": int(len(data["val"])),
        "test": int(len(data["test"])),
        "recipes": {},
        "final": [],
    }
    log(args.phase, args.scenario, "pool", len(data["pool"]), "pretrain on", len(pool))

    def save() -> None:
        res["wall_seconds"] = time.time() - t0
        args.out.write_text(json.dumps(res, indent=1, default=str))

    if args.phase == "recipes":
        phase_recipes(args, data, pool, geometry, res, save)
    else:
        phase_final(args, data, pool, geometry, res, save)
    save()
    log("done", f"{res['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
