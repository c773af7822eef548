"""Which source? Do the transferability scores rank candidate sources the way fine-tuning does
(issue 24 items 5 and 6)?

In-process (no services): the models API the pipeline's stages call (`pretrain`, `fit_target`),
the pipeline's own splits (`make_splits`, `seed_train`, `capped_val`) and the scores of
`warmstart.ranking`. Candidates and targets are fixed below, before any result was seen:

- 11 candidate sources, all 16×16 grey `convnet-s` trunks: MNIST digits 0-4, shapes classes 0-3
  and hard shapes classes 0-3 pretrained with several strategies, plus three sanity anchors that
  should rank last (uniform noise with random labels, MNIST 0-4 with shuffled labels, a random
  init that learned nothing);
- 4 targets at k = 10 per class: two to choose the default score on (UCI digits, shapes 4-7) and
  two held out (MNIST 5-9, hard shapes 4-7), on which it is reported.

Ground truth per (candidate, target): the fine-tuned test accuracy of the transfer mode
(finetune or linear_probe) that is best on validation, mean over 3 seeds; each seed draws its own
k-shot set (`seed_train`), exactly as the pipeline's arms do. Each score is computed per seed from
that seed's k-shot train images and the (capped) validation images, never test. Per score and
target: weighted Kendall tau (`scipy.stats.weightedtau`) and Spearman rho against the ground
truth, and top-1 regret (points of test accuracy lost by taking the score's first choice);
bootstrap CIs resample targets, then seeds within a target. The default score is the one with the
highest mean weighted tau on the two selection targets (ties: lower regret), among the scores that
apply to every candidate. Compute: seconds to extract features and score every candidate, against
seconds to fine-tune them (modes × seeds), side by side in one process; pretraining is separate.

    python benchmarks/source_ranking.py run      # ~25 min on 2 loaded cores; resumes
    python benchmarks/source_ranking.py choose   # the default, from the selection targets only
    python benchmarks/source_ranking.py report   # the Markdown for BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine_line  # this script's folder
from scipy import stats
from threadpoolctl import threadpool_limits

from warmstart import models as M
from warmstart.data import load_source, make_splits
from warmstart.data.splits import capped_val, seed_train
from warmstart.models.checkpoint import load_checkpoint
from warmstart.models.features import extract
from warmstart.ranking import SCORES, ScoreInputs, score_all

GEOMETRY = dict(in_channels=1, image_size=(16, 16))
BACKBONE = "convnet-s"
K_SHOT = 10
SEEDS = (0, 1, 2)
VAL_PER_CLASS = 20  # validation images per class the arms and the scores see
MODES = ("finetune", "linear_probe")
PRETRAIN_EPOCHS = 4
FINETUNE = dict(epochs=6, min_steps_per_epoch=8, batch_size=32)  # tiny: the ranking, not SOTA

MNIST04 = "builtin:mnist-5k?classes=0-4&size=16x16"
SHAPES03 = "builtin:shapes?n=2000&num_classes=8&classes=0-3&size=16x16&channels=1"
HARD03 = "builtin:shapes-hard?n=2000&num_classes=8&classes=0-3&size=16x16&channels=1"
NOISE = "builtin:noise?n=2000&num_classes=5&size=16x16&channels=1"
# name -> (dataset spec, strategy, labels shuffled); None: a random init, no pretraining
CANDIDATES: dict[str, tuple[str, str, bool] | None] = {
    "mnist04/supervised": (MNIST04, "supervised", False),
    "mnist04/autoencoder": (MNIST04, "autoencoder", False),
    "mnist04/gan": (MNIST04, "gan", False),
    "shapes03/supervised": (SHAPES03, "supervised", False),
    "shapes03/autoencoder": (SHAPES03, "autoencoder", False),
    "shapes03/gan": (SHAPES03, "gan", False),
    "hard03/supervised": (HARD03, "supervised", False),
    "hard03/autoencoder": (HARD03, "autoencoder", False),
    "anchor: noise/supervised": (NOISE, "supervised", False),
    "anchor: mnist04-shuffled/supervised": (MNIST04, "supervised", True),
    "anchor: random-init": None,
}
TARGETS = {  # name -> (spec, role)
    "uci-digits": ("builtin:uci-digits?size=16x16", "selection"),
    "shapes47": (
        "builtin:shapes?n=2000&num_classes=8&classes=4-7&size=16x16&channels=1",
        "selection",
    ),
    "mnist59": ("builtin:mnist-5k?classes=5-9&size=16x16", "held-out"),
    "hard47": (
        "builtin:shapes-hard?n=2000&num_classes=8&classes=4-7&size=16x16&channels=1",
        "held-out",
    ),
}
BASELINES = ("random", "largest_source")


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---- sources -------------------------------------------------------------------------------


def pretrain_source(name: str, cache: Path) -> dict:
    """Trunk (+ the supervised head), images learned from and pretraining seconds; cached."""
    path = cache / "sources" / (name.replace(": ", "-").replace("/", "_") + ".pt")
    if path.exists():
        return torch.load(path)
    recipe = CANDIDATES[name]
    if recipe is None:
        out = {"trunk": None, "head": None, "images": 0, "seconds": 0.0}
    else:
        spec, strategy, shuffled = recipe
        ds = load_source(spec, seed=0)
        labels = ds.labels.copy()
        if shuffled:
            labels = np.random.default_rng(0).permutation(labels)
        ck = cache / "ck" / path.stem
        r = M.pretrain(
            strategy,
            backbone=BACKBONE,
            images=ds.images,
            labels=labels,
            num_classes=int(labels.max()) + 1,
            config=M.PretrainConfig(epochs=PRETRAIN_EPOCHS, num_threads=1),
            checkpoint_dir=ck,
            **GEOMETRY,
        )
        weights = load_checkpoint(ck).weights
        head = None
        if strategy == "supervised":
            head = {k.removeprefix("model.head."): v for k, v in weights.items() if ".head." in k}
        out = {"trunk": r.backbone_state, "head": head, "images": len(ds.images) * r.epochs_done}
        out |= {"seconds": r.seconds, "source_images": len(ds.images)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def trunk_and_head(src: dict) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    torch.manual_seed(0)
    model = M.get_backbone(BACKBONE, num_classes=0, **GEOMETRY)
    if src["trunk"] is not None:
        M.load_trunk(model, src["trunk"])
    head = None
    if src["head"] is not None:
        w = src["head"]["weight"]
        head = torch.nn.Linear(w.shape[1], w.shape[0])
        head.load_state_dict(src["head"])
    return model, head


# ---- one target ----------------------------------------------------------------------------


def load_target(spec: str, k: int = K_SHOT) -> dict:
    ds = load_source(spec, seed=0)
    splits = make_splits(ds, seed=0, k_shot=k)
    return {
        "x": ds.images,
        "y": ds.labels,
        "splits": splits,
        "val": capped_val(splits, ds.labels, VAL_PER_CLASS),
        "classes": int(ds.labels.max()) + 1,
    }


def scores_for(src: dict, data: dict, seed: int) -> dict:
    """Every score of one candidate on one seed's k-shot set + validation, timed."""
    t0 = time.perf_counter()
    model, head = trunk_and_head(src)
    tr, va = seed_train(data["splits"], data["y"], seed), data["val"]
    f_tr, p_tr = extract(model, torch.from_numpy(data["x"][tr]), head=head)
    f_va, p_va = extract(model, torch.from_numpy(data["x"][va]), head=head)
    extract_s = time.perf_counter() - t0
    inputs = ScoreInputs(
        f_tr, data["y"][tr], f_va, data["y"][va], p_tr, p_va,
        source_size=src.get("source_images", 0), seed=seed,
    )  # fmt: skip
    values, seconds = {}, {}
    for name in SCORES.names():
        t = time.perf_counter()
        values[name] = score_all(inputs, [name])[name]
        seconds[name] = time.perf_counter() - t
    return {"scores": values, "extract_seconds": extract_s, "score_seconds": seconds}


def finetune(src: dict, data: dict, seed: int, mode: str) -> dict:
    tr, va, te = seed_train(data["splits"], data["y"], seed), data["val"], data["splits"].test
    fit = M.fit_target(
        backbone=BACKBONE,
        init_state=src["trunk"],
        mode=mode,
        num_classes=data["classes"],
        train=(data["x"][tr], data["y"][tr]),
        val=(data["x"][va], data["y"][va]),
        config=M.TrainConfig(seed=seed, num_threads=1, **FINETUNE),
        **GEOMETRY,
    )
    pred = M.predict_proba(fit.model, data["x"][te]).argmax(1)
    test = float((pred == data["y"][te]).mean())
    return {"val": float(fit.best_val_acc), "test": test, "seconds": fit.seconds}


def run(args) -> None:
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too: on a loaded machine its threads thrash (100x slower)
    out = args.out / "results.json"
    res = json.loads(out.read_text()) if out.exists() else {"records": {}, "sources": {}}
    save = lambda: out.write_text(json.dumps(res, indent=1))  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name in CANDIDATES:
        sources[name] = pretrain_source(name, args.out)
        res["sources"][name] = {k: sources[name].get(k) for k in ("images", "seconds")}
        log("source", name, f"{sources[name]['seconds']:.0f}s")
    save()
    for target, (spec, _) in TARGETS.items():
        data = load_target(spec)
        for seed in SEEDS:
            for name, src in sources.items():
                key = f"{target}|{name}|{seed}"
                if f"{key}|scores" not in res["records"]:
                    res["records"][f"{key}|scores"] = scores_for(src, data, seed)
                for mode in MODES:
                    if f"{key}|{mode}" not in res["records"]:
                        res["records"][f"{key}|{mode}"] = finetune(src, data, seed, mode)
                save()
            log(target, "seed", seed, "done")
    res["machine"] = machine_line()
    save()


# ---- statistics ----------------------------------------------------------------------------


def ground_truth(rec: dict, target: str, seeds) -> dict[str, float]:
    """Per candidate: mean test accuracy over `seeds` of the mode best on validation (all seeds)."""
    gt = {}
    for name in CANDIDATES:
        val = {m: np.mean([rec[f"{target}|{name}|{s}|{m}"]["val"] for s in SEEDS]) for m in MODES}
        best = max(MODES, key=lambda m: val[m])
        gt[name] = float(np.mean([rec[f"{target}|{name}|{s}|{best}"]["test"] for s in seeds]))
    return gt


def rank_metrics(score: dict[str, float | None], gt: dict[str, float]) -> dict[str, float]:
    names = [n for n in CANDIDATES if score.get(n) is not None]
    s = np.array([score[n] for n in names], dtype=float)
    g = np.array([gt[n] for n in names])
    top = s == s.max()  # a tie at the top: the expected regret of a random pick among them
    return {
        "tau": float(stats.weightedtau(s, g).statistic),
        "rho": float(stats.spearmanr(s, g).statistic),
        "regret": 100 * float(g.max() - g[top].mean()),
        "n": len(names),
    }


_MEMO: dict[tuple, dict[str, float]] = {}  # a bootstrap draws the same (seeds, seed) often


def target_metrics(rec: dict, target: str, score: str, seeds: tuple[int, ...], s: int) -> dict:
    key = (id(rec), target, score, tuple(sorted(seeds)), s)
    if key not in _MEMO:
        _MEMO[key] = rank_metrics(rec[f"{target}|*|{s}"][score], ground_truth(rec, target, seeds))
    return _MEMO[key]


def metrics(rec: dict, targets, score: str, draws: list[tuple[str, list[int]]] | None = None):
    """Mean over (target, seed) of each metric; `draws` resamples (target, seeds) pairs."""
    draws = draws or [(t, list(SEEDS)) for t in targets]
    rows = [target_metrics(rec, t, score, tuple(seeds), s) for t, seeds in draws for s in seeds]
    return {m: float(np.mean([r[m] for r in rows])) for m in ("tau", "rho", "regret", "n")}


def bootstrap(rec: dict, targets, score: str, reps: int = 1000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(reps):
        ts = rng.choice(targets, size=len(targets))
        draws = [(str(t), [int(x) for x in rng.choice(SEEDS, size=len(SEEDS))]) for t in ts]
        samples.append(metrics(rec, targets, score, draws))
    return {
        m: np.percentile([x[m] for x in samples], [2.5, 97.5]) for m in ("tau", "rho", "regret")
    }


def by_seed(res: dict, targets=TARGETS) -> dict:
    """`rec` with one extra key per (target, seed): candidate -> score, per score name."""
    rec = dict(res["records"])
    for target in targets:
        for s in SEEDS:
            rec[f"{target}|*|{s}"] = {
                score: {n: rec[f"{target}|{n}|{s}|scores"]["scores"][score] for n in CANDIDATES}
                for score in SCORES.names()
            }
    return rec


def choose_default(rec: dict) -> str:
    selection = [t for t, (_, role) in TARGETS.items() if role == "selection"]
    applies = [
        s
        for s in SCORES.names()
        if all(
            v is not None for t in selection for x in SEEDS for v in rec[f"{t}|*|{x}"][s].values()
        )
    ]
    table = {s: metrics(rec, selection, s) for s in applies}
    return max(table, key=lambda s: (table[s]["tau"], -table[s]["regret"]))


# ---- report --------------------------------------------------------------------------------


def _ci(point: float, ci, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(point)} [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def score_table(rec: dict, targets: list[str], default: str) -> list[str]:
    lines = [
        "| score | weighted τ | Spearman ρ | top-1 regret (points) | candidates scored |",
        "|---|---|---|---|---|",
    ]
    for score in SCORES.names():
        m = metrics(rec, targets, score)
        ci = bootstrap(rec, targets, score)
        name = f"**{score}** (default)" if score == default else score
        lines.append(
            f"| {name} | {_ci(m['tau'], ci['tau'])} | {_ci(m['rho'], ci['rho'])} | "
            f"{_ci(m['regret'], ci['regret'], '{:.1f}')} | {m['n']:.0f} |"
        )
    return lines


def gt_table(rec: dict, res: dict) -> list[str]:
    head = " | ".join(f"{t} ({TARGETS[t][1]})" for t in TARGETS)
    lines = [f"| candidate | pretraining s | {head} |", "|---|---|" + "---|" * len(TARGETS)]
    for name in CANDIDATES:
        cells = []
        for t in TARGETS:
            val = {m: np.mean([rec[f"{t}|{name}|{s}|{m}"]["val"] for s in SEEDS]) for m in MODES}
            best = max(MODES, key=lambda m: val[m])
            acc = np.mean([rec[f"{t}|{name}|{s}|{best}"]["test"] for s in SEEDS])
            cells.append(f"{100 * acc:.1f} ({best})")
        pre = res["sources"][name]["seconds"]
        lines.append(f"| {name} | {pre:.0f} | " + " | ".join(cells) + " |")
    return lines


def compute_table(rec: dict, res: dict, default: str) -> list[str]:
    lines = [
        "| target | fine-tuning s (modes × seeds) | extract s | + default score s | "
        "+ all scores s | default / fine-tuning | all / fine-tuning |",
        "|---|---|---|---|---|---|---|",
    ]
    tot = np.zeros(4)
    for t in TARGETS:
        keys = [f"{t}|{n}|{s}" for n in CANDIDATES for s in SEEDS]
        ft = sum(rec[f"{k}|{m}"]["seconds"] for k in keys for m in MODES)
        ex = sum(rec[f"{k}|scores"]["extract_seconds"] for k in keys)
        one = sum(rec[f"{k}|scores"]["score_seconds"][default] for k in keys)
        every = sum(sum(rec[f"{k}|scores"]["score_seconds"].values()) for k in keys)
        tot += (ft, ex, one, every)
        lines.append(
            f"| {t} | {ft:.0f} | {ex:.1f} | {one:.1f} | {every:.1f} | "
            f"{100 * (ex + one) / ft:.1f}% | {100 * (ex + every) / ft:.1f}% |"
        )
    ft, ex, one, every = tot
    lines.append(
        f"| all | {ft:.0f} | {ex:.1f} | {one:.1f} | {every:.1f} | "
        f"{100 * (ex + one) / ft:.1f}% | {100 * (ex + every) / ft:.1f}% |"
    )
    pre = sum(v["seconds"] for v in res["sources"].values())
    lines.append(f"\nPretraining the {len(CANDIDATES) - 1} dataset sources (once): {pre:.0f} s.")
    return lines


def choose(args) -> None:
    """The default score from the selection targets alone (run before the held-out ones end)."""
    res = json.loads((args.out / "results.json").read_text())
    selection = [t for t, (_, role) in TARGETS.items() if role == "selection"]
    rec = by_seed(res, selection)
    print(f"Default chosen on {', '.join(selection)}: `{choose_default(rec)}`.\n")
    print("\n".join(score_table(rec, selection, choose_default(rec))))


def report(args) -> None:
    res = json.loads((args.out / "results.json").read_text())
    rec = by_seed(res)
    default = choose_default(rec)
    selection = [t for t, (_, role) in TARGETS.items() if role == "selection"]
    held = [t for t, (_, role) in TARGETS.items() if role == "held-out"]
    out = [
        res.get("machine", ""),
        "",
        f"Default chosen on {', '.join(selection)}: `{default}`.",
        "",
    ]
    out += [
        f"Held-out targets ({', '.join(held)}), mean over targets × seeds [95% bootstrap CI]:",
        "",
    ]
    out += score_table(rec, held, default)
    out += ["", f"Selection targets ({', '.join(selection)}):", ""]
    out += score_table(rec, selection, default)
    out += ["", "Ground truth: test accuracy %, mean of 3 seeds, mode best on validation:", ""]
    out += gt_table(rec, res)
    out += ["", "Compute, side by side in one process:", ""]
    out += compute_table(rec, res, default)
    print("\n".join(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["run", "choose", "report"])
    ap.add_argument("--out", type=Path, default=Path("test-output/source_ranking"))
    args = ap.parse_args()
    {"run": run, "choose": choose, "report": report}[args.phase](args)


if __name__ == "__main__":
    main()
