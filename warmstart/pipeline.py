"""The pipeline's stages as plain functions. Prefect tasks (``tasks/``) wrap them; tests call them
directly. Every training stage is keyed by the hashes of its inputs and stored in S3, so a rerun
reuses finished work and resumes unfinished work from its last epoch checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from warmstart.errors import ConfigError
from warmstart.params import PipelineParams
from warmstart.runstore import RunStore, run_key

Report = Callable[[int, dict], None]


def _noop(epoch: int, metrics: dict) -> None:
    return None


# ------------------------------------------------------------------ validation


def validate(params: PipelineParams) -> None:
    """Fail before any work starts: unknown names list the valid ones."""
    from warmstart import models

    if params.backbone not in models.list_backbones():
        raise ConfigError(
            f"unknown backbone {params.backbone!r}: choose one of {', '.join(models.list_backbones())}"
        )
    valid = models.list_strategies()
    for s in params.strategies:
        if s not in valid:
            raise ConfigError(f"unknown strategy {s!r}: choose from {', '.join(valid)}")
    base_modes = [m.split("=")[0] for m in models.list_transfer_modes()]
    for mode in params.transfer_modes:
        if mode.split("=")[0] not in base_modes:
            raise ConfigError(
                f"unknown transfer mode {mode!r}: choose from finetune, linear_probe, lp_ft, freeze=<stage>"
            )


# ------------------------------------------------------------------ data


def ingest(spec: str, *, like: dict | None = None) -> dict:
    """Load a source spec, convert it to ``like``'s geometry if given, store it by content hash."""
    from warmstart.data import load_source, parse_spec, store_dataset

    parsed = parse_spec(spec)
    if like is not None:
        changes = {}
        if parsed.size is None:
            changes["size"] = tuple(like["size"])
        if parsed.channels is None:
            changes["channels"] = like["channels"]
        parsed = parsed.with_options(**changes)
    ds = load_source(parsed)
    ref = store_dataset(ds)
    # A class selection is a different task: it gets its own experiment and registered model.
    name = ref.name + ("-" + "-".join(parsed.classes) if parsed.classes else "")
    out = {
        "hash": ref.hash,
        "uri": ref.uri,
        "name": name,
        "spec": parsed.canonical(),
        "num_classes": ref.num_classes,
        "channels": ref.channels,
        "size": list(ref.size),
        "count": ref.count,
        "uploaded": ref.uploaded,
        "classes": list(ds.classes),
        "manifest": ref.manifest,
    }
    return out


def make_target_splits(target: dict, params: PipelineParams) -> dict:
    """One split (seed 0) for the whole run: every arm and seed sees exactly the same examples."""
    from warmstart.data import load_dataset, make_splits, store_splits

    ds = load_dataset(target["hash"])
    splits = make_splits(
        ds,
        seed=0,
        val_fraction=params.val_fraction,
        test_fraction=params.test_fraction,
        k_shot=params.k_shot,
    )
    split_hash = store_splits(splits)
    return {
        "hash": split_hash,
        "train": len(splits.train),
        "val": len(splits.val),
        "test": len(splits.test),
        "unlabelled": len(splits.unlabelled),
        "k_shot": params.k_shot,
    }


def _load(target: dict, split: dict):
    from warmstart.data import load_dataset, load_splits

    return load_dataset(target["hash"]), load_splits(split["hash"])


# ------------------------------------------------------------------ configs


def pretrain_config(params: PipelineParams, strategy: str):
    from warmstart import models

    return models.PretrainConfig(epochs=params.pretrain_epochs, seed=0, device=_device(params))


def train_config(params: PipelineParams, seed: int):
    from warmstart import models

    return models.TrainConfig(epochs=params.finetune_epochs, seed=seed, device=_device(params))


def _device(params: PipelineParams) -> str | None:
    return None if params.device == "auto" else params.device


def _config_dict(cfg) -> dict:
    """What a stage computes from (runtime-only fields such as device and threads excluded)."""
    from warmstart.models.config import RUNTIME_FIELDS

    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}


# ------------------------------------------------------------------ training stages


def _save_state(path: Path, state: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)


def _load_state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def pretrain_source(
    strategy: str,
    source: dict,
    target: dict,
    split: dict,
    params: PipelineParams,
    *,
    report: Report = _noop,
) -> dict:
    """Pretrain a backbone on the source with one strategy (cached by input hashes)."""
    from warmstart import models
    from warmstart.data import load_dataset

    cfg = pretrain_config(params, strategy)
    uses_target = strategy != "supervised" and params.unsupervised_data in ("target_pool", "both")
    uses_source = strategy == "supervised" or params.unsupervised_data in ("source", "both")
    pool = _unlabelled_pool(target, split) if uses_target else None
    inputs = {
        "strategy": strategy,
        "backbone": params.backbone,
        "geometry": [target["channels"], *target["size"]],
        "source": source["hash"] if uses_source else None,
        "target_pool": _index_hash(pool) if pool is not None else None,
        "config": _config_dict(cfg),
    }
    store = RunStore(run_key(f"pretrain-{strategy}", inputs))
    done = store.finished()
    if done is not None:
        return {**done, "reused": True}

    parts_x, labels = [], None
    if uses_source:
        src = load_dataset(source["hash"])
        parts_x.append(src.images)
        labels = src.labels if strategy == "supervised" else None
    if uses_target:
        tgt = load_dataset(target["hash"])
        parts_x.append(tgt.images[pool])
    images = np.concatenate(parts_x) if len(parts_x) > 1 else parts_x[0]

    local = store.pull()
    ckpt_dir = local / "ckpt"

    def on_epoch_end(epoch: int, metrics: dict, path: Path | None) -> None:
        if path is not None:
            store.push_checkpoint_dir(ckpt_dir)
        report(epoch, metrics)

    result = models.pretrain(
        strategy,
        backbone=params.backbone,
        in_channels=target["channels"],
        image_size=tuple(target["size"]),
        images=images,
        labels=labels,
        num_classes=source["num_classes"] if strategy == "supervised" else None,
        config=cfg,
        checkpoint_dir=ckpt_dir,
        on_epoch_end=on_epoch_end,
    )
    weights = local / "backbone.safetensors"
    _save_state(weights, result.backbone_state)
    weights_uri = store.push(weights)
    artifacts = {}
    for name, image in (result.artifacts or {}).items():
        path = local / f"{name}.png"
        _save_png(path, image)
        artifacts[name] = store.push(path)
    return store.finish(
        {
            "key": store.key,
            "kind": "pretrain",
            "strategy": strategy,
            "weights_uri": weights_uri,
            "checkpoint_uri": store.uri,
            "history": result.history,
            "artifacts": artifacts,
            "seconds": result.seconds,
            "images": int(len(images)),
            "resumed_from": result.resumed_from,
            "config": _config_dict(cfg),
            "reused": False,
        }
    )


def _unlabelled_pool(target: dict, split: dict) -> np.ndarray:
    """Every target training image, labels unused (the k-shot images are unlabelled data too).
    It does not depend on k, so one unsupervised pretraining serves every k and seed."""
    from warmstart.data import load_splits

    splits = load_splits(split["hash"])
    return np.union1d(splits.train, splits.unlabelled)


def _index_hash(indices: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:20]


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    Image.fromarray(arr.astype(np.uint8)).save(path)


def pretrained_state(pretrain: dict) -> dict:
    store = RunStore(pretrain["key"])
    local = store.pull()
    return _load_state(local / "backbone.safetensors")


def finetune_target(
    pretrain: dict | None,
    mode: str,
    seed: int,
    target: dict,
    split: dict,
    params: PipelineParams,
    *,
    arm: str,
    report: Report = _noop,
) -> dict:
    """Train on the k-shot target set: a transfer arm (``pretrain`` given) or scratch / control.

    Scratch is ``pretrain=None, mode="finetune"``: the same backbone, epochs, steps, augmentation
    and optimiser as the transfer arms, from random init.
    """
    from warmstart import models

    cfg = train_config(params, seed)
    inputs = {
        "arm": arm,
        "pretrain": pretrain["key"] if pretrain else None,
        "mode": mode,
        "seed": seed,
        "backbone": params.backbone,
        "target": target["hash"],
        "split": split["hash"],
        "config": _config_dict(cfg),
    }
    store = RunStore(run_key("finetune", inputs))
    done = store.finished()
    if done is not None:
        return {**done, "reused": True}
    ds, splits = _load(target, split)
    init_state = pretrained_state(pretrain) if pretrain else None
    local = store.pull()
    ckpt_dir = local / "ckpt"

    def on_epoch_end(epoch: int, metrics: dict, path: Path | None) -> None:
        if path is not None:
            store.push_checkpoint_dir(ckpt_dir)
        report(epoch, metrics)

    fit = models.fit_target(
        backbone=params.backbone,
        init_state=init_state,
        mode=mode,
        in_channels=target["channels"],
        image_size=tuple(target["size"]),
        num_classes=target["num_classes"],
        train=(ds.images[splits.train], ds.labels[splits.train]),
        val=(ds.images[splits.val], ds.labels[splits.val]),
        config=cfg,
        checkpoint_dir=ckpt_dir,
        on_epoch_end=on_epoch_end,
    )
    weights = local / "model.safetensors"
    _save_state(weights, fit.model.state_dict())
    weights_uri = store.push(weights)
    return store.finish(
        {
            "key": store.key,
            "kind": "finetune",
            "arm": arm,
            "strategy": pretrain["strategy"] if pretrain else None,
            "pretrain_key": pretrain["key"] if pretrain else None,
            "mode": mode,
            "seed": seed,
            "weights_uri": weights_uri,
            "checkpoint_uri": store.uri,
            "history": fit.history,
            "best_epoch": fit.best_epoch,
            "val_acc": float(fit.best_val_acc),
            "seconds": float(fit.seconds),
            "images_per_second": float(getattr(fit, "images_per_second", 0.0) or 0.0),
            "resumed_from": fit.resumed_from,
            "config": _config_dict(cfg),
            "reused": False,
        }
    )


def load_arm_model(result: dict, target: dict, params: PipelineParams):
    """Rebuild a trained arm's model from its stored weights (no unpickling)."""
    from warmstart import models

    model = models.get_backbone(
        params.backbone,
        in_channels=target["channels"],
        num_classes=target["num_classes"],
        image_size=tuple(target["size"]),
    )
    local = RunStore(result["key"]).pull()
    model.load_state_dict(_load_state(local / "model.safetensors"))
    return model.eval()


# ------------------------------------------------------------------ evaluation


def evaluate(results: list[dict], target: dict, split: dict, params: PipelineParams) -> dict:
    """Test-split predictions for every arm (the only time the test split is read), plus the
    pixel logistic-regression control. Returns per-arm accuracy and per-example correctness."""
    from warmstart import models

    ds, splits = _load(target, split)
    x_test, y_test = ds.images[splits.test], ds.labels[splits.test]
    arms: dict[str, dict] = {}
    t0 = time.perf_counter()
    for res in results:
        model = load_arm_model(res, target, params)
        proba = models.predict_proba(model, x_test)
        pred = proba.argmax(1)
        entry = arms.setdefault(
            res["arm"],
            {
                "arm": res["arm"],
                "strategy": res["strategy"],
                "mode": res["mode"],
                "seeds": [],
                "val_acc": [],
                "test_acc": [],
                "correct": [],
                "pred": [],
                "proba": [],
                "keys": [],
                "seconds": [],
            },
        )
        entry["seeds"].append(res["seed"])
        entry["val_acc"].append(res["val_acc"])
        entry["test_acc"].append(float((pred == y_test).mean()))
        entry["correct"].append((pred == y_test).tolist())
        entry["pred"].append(pred.tolist())
        entry["proba"].append(proba.max(1).round(4).tolist())
        entry["keys"].append(res["key"])
        entry["seconds"].append(res["seconds"])
    t_lr = time.perf_counter()
    lr = models.pixel_logistic_regression(
        train=(ds.images[splits.train], ds.labels[splits.train]),
        val=(ds.images[splits.val], ds.labels[splits.val]),
        test=(x_test, y_test),
    )
    lr["seconds"] = time.perf_counter() - t_lr
    lr_pred = np.asarray(lr["test_pred"])
    arms["control/pixel-logreg"] = {
        "arm": "control/pixel-logreg",
        "strategy": None,
        "mode": "logistic_regression",
        "seeds": [0],
        "val_acc": [float(lr["val_acc"])],
        "test_acc": [float((lr_pred == y_test).mean())],
        "correct": [(lr_pred == y_test).tolist()],
        "pred": [lr_pred.tolist()],
        "proba": [],
        "keys": [],
        "seconds": [float(lr.get("seconds", 0.0))],
    }
    return {
        "arms": arms,
        "y_test": y_test.tolist(),
        "test_index": splits.test.tolist(),
        "classes": list(ds.classes),
        "seconds": time.perf_counter() - t0,
    }


def summarize(evaluation: dict, pretrains: dict[str, dict]) -> list[dict]:
    """The table: arm × (val acc, test acc ± CI, Δ vs scratch ± CI, pretrain s, fine-tune s)."""
    from warmstart import gate

    arms = evaluation["arms"]
    scratch = np.asarray(arms["scratch"]["correct"], dtype=bool)
    rows = []
    for name, arm in arms.items():
        correct = np.asarray(arm["correct"], dtype=bool)
        acc = gate.accuracy_ci(correct)
        if name == "scratch":
            delta = {"mean_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
        elif correct.shape == scratch.shape:
            delta = gate.paired_bootstrap(correct, scratch)
        else:  # single-seed control vs multi-seed scratch: compare with scratch's seed mean
            delta = gate.paired_bootstrap(
                np.repeat(correct, scratch.shape[0], axis=0)[: scratch.shape[0]], scratch
            )
        pre = pretrains.get(arm["strategy"] or "", {})
        rows.append(
            {
                "arm": name,
                "strategy": arm["strategy"] or "-",
                "mode": arm["mode"],
                "seeds": len(arm["seeds"]),
                "val_acc": float(np.mean(arm["val_acc"])),
                "test_acc": float(acc["accuracy"]),
                "test_ci": [float(acc["ci_low"]), float(acc["ci_high"])],
                "delta_vs_scratch": float(delta["mean_diff"]),
                "delta_ci": [float(delta["ci_low"]), float(delta["ci_high"])],
                "pretrain_seconds": float(pre.get("seconds", 0.0)),
                "finetune_seconds": float(np.sum(arm["seconds"])),
            }
        )
    return rows


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
