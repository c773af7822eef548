"""Checkpoints: a directory with `epoch-NNN.safetensors` (weights), `epoch-NNN.state.safetensors`
(optimiser tensors and RNG states of the latest epoch) and `meta.json` (config, epoch, history,
scalar optimiser/scheduler state, python/numpy RNG). Loading never unpickles.

Only the latest and the best epoch's weight files are kept; meta.json is replaced atomically last,
so a crash mid-write leaves the previous checkpoint intact."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT = "warmstart.models.checkpoint/1"
META = "meta.json"
_EPOCH_FILE = re.compile(r"^epoch-(\d{3,})\.(safetensors|state\.safetensors)$")


@dataclass
class Checkpoint:
    """One loaded epoch: its metadata, weights and (latest epoch only) optimiser/RNG tensors."""

    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]
    path: Path


def weights_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}.safetensors"


def state_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}.state.safetensors"


def meta_file(meta: Mapping[str, Any], key: str, where: Path | str) -> str:
    """``meta[key]`` when it names one of a checkpoint's own files (``epoch-NNN…``): a meta.json
    is data, and a name such as ``../x`` must never lead out of its folder."""
    name = meta.get(key)
    if not isinstance(name, str) or not _EPOCH_FILE.match(name):
        raise CheckpointError(
            f"{where}: {key} {str(name)[:80]!r} in {META} is not an epoch-NNN.safetensors name; "
            "the meta.json was altered: write the checkpoint again"
        )
    return name


def meta_epoch(meta: Mapping[str, Any], key: str, where: Path | str) -> int:
    """``meta[key]`` when it is an epoch number (an int >= 0)."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(
            f"{where}: {key} {str(value)[:80]!r} in {META} is not an epoch number; the "
            "meta.json was altered: write the checkpoint again"
        )
    return value


def has_checkpoint(directory: Path | str | None) -> bool:
    """True when `directory` holds a meta.json written by save_checkpoint."""
    return directory is not None and (Path(directory) / META).is_file()


def read_meta(directory: Path | str) -> dict[str, Any]:
    """The checkpoint's meta.json; CheckpointError when missing or not ours."""
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {directory}: {META} is missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"unreadable {path}: {e}; delete the folder to start over") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint; use an empty checkpoint_dir")
    return meta


def _contiguous(t: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in t.items()}


def save_checkpoint(
    directory: Path | str,
    *,
    epoch: int,
    weights: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    state: Mapping[str, torch.Tensor] | None = None,
    keep: Iterable[int] = (),
) -> Path:
    """Write epoch `epoch` and prune other epochs' files except those in `keep` (e.g. the best).
    Returns the weights file's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    wpath = d / weights_name(epoch)
    save_file(_contiguous(weights), str(wpath), metadata={"format": FORMAT, "epoch": str(epoch)})
    if state:
        save_file(_contiguous(state), str(d / state_name(epoch)), metadata={"format": FORMAT})
    full = {**meta, "format": FORMAT, "epoch": epoch, "weights": wpath.name}
    full["state"] = state_name(epoch) if state else None
    tmp = d / (META + ".tmp")
    tmp.write_text(json.dumps(full, indent=1, default=_json_default))
    os.replace(tmp, d / META)
    keep_w = {epoch, *keep}
    for f in d.iterdir():
        m = _EPOCH_FILE.match(f.name)
        if not m:
            continue
        e, kind = int(m.group(1)), m.group(2)
        if (kind == "safetensors" and e not in keep_w) or (kind != "safetensors" and e != epoch):
            f.unlink(missing_ok=True)
    return wpath


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple | set):
        return list(o)
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable in checkpoint meta: {type(o).__name__}")


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint file {path} is missing; delete the folder to start over"
        ) from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"corrupt checkpoint file {path}: {e}; delete it to start over"
        ) from None


def check_compatible(meta: Mapping[str, Any], expect: Mapping[str, Any], where: Path | str) -> None:
    """CheckpointError naming both sides when any expected field differs from the checkpoint's."""
    diff = {k: (meta.get(k), v) for k, v in expect.items() if _norm(meta.get(k)) != _norm(v)}
    if diff:
        theirs = ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items())
        ours = ", ".join(f"{k}={b!r}" for k, (_, b) in diff.items())
        raise CheckpointError(
            f"incompatible checkpoint in {where}: it has {theirs} but this run has {ours}; "
            "use another checkpoint_dir or matching settings"
        )


def _norm(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def load_checkpoint(
    directory: Path | str,
    *,
    epoch: int | None = None,
    which: str = "latest",
    expect: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Load the latest (or `which="best"`, or a given `epoch`) checkpoint from `directory`.
    `expect` (e.g. backbone, in_channels, num_classes) must match the checkpoint's meta."""
    d = Path(directory)
    meta = read_meta(d)
    if expect:
        check_compatible(meta, expect, d)
    last = meta_epoch(meta, "epoch", d)
    if epoch is None:
        best = meta_epoch(meta, "best_epoch", d) if meta.get("best_epoch") else None
        epoch = last if which == "latest" else best or last
    weights = _load(d / weights_name(epoch))
    state = _load(d / meta_file(meta, "state", d)) if meta.get("state") and epoch == last else {}
    return Checkpoint(meta=meta, weights=weights, state=state, path=d / weights_name(epoch))


# ---- optimiser / RNG state <-> (tensors, JSON) -------------------------------------------------


def optimizer_state(
    opt: torch.optim.Optimizer, prefix: str
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state_dict into tensors (for safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {
        "param_groups": sd["param_groups"],
        "scalars": scalars,
        "ids": list(sd["state"]),
    }


def load_optimizer_state(
    opt: torch.optim.Optimizer, prefix: str, tensors: Mapping[str, torch.Tensor], js: Mapping
) -> None:
    """Inverse of optimizer_state."""
    state: dict[int, dict[str, Any]] = {}
    for pid in js["ids"]:
        st = dict(js["scalars"].get(str(pid), {}))
        head = f"{prefix}.{pid}."
        st.update({k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)})
        state[int(pid)] = st
    groups = []
    for g in js["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_state(gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states: torch (CPU, CUDA) and the data generator as tensors; python, numpy as JSON."""
    t = {"rng.torch": torch.get_rng_state(), "rng.data": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            t[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    js = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            *[int(x) if i < 2 else float(x) for i, x in enumerate(np_state[2:])],
        ],
    }
    return t, js


def load_rng_state(
    gen: torch.Generator, t: Mapping[str, torch.Tensor], js: Mapping[str, Any]
) -> None:
    """Inverse of rng_state."""
    torch.set_rng_state(t["rng.torch"])
    gen.set_state(t["rng.data"])
    cuda = [t[k] for k in sorted(t) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = js["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), int(n[2]), int(n[3]), float(n[4])))


def fingerprint(*arrays: Any) -> str:
    """Short sha256 over arrays / state dicts: ties a checkpoint to its data and initial weights."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
        elif isinstance(a, Mapping):
            for k in sorted(a):
                h.update(k.encode())
                h.update(a[k].detach().cpu().contiguous().numpy().tobytes())
        elif torch.is_tensor(a):
            h.update(a.detach().cpu().contiguous().numpy().tobytes())
        else:
            arr = np.ascontiguousarray(a)
            h.update(str(arr.shape).encode() + str(arr.dtype).encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]
