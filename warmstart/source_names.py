"""Short names of source specs, for the arm labels of a run with several sources
(``RunPlan.labels``: ``<name>:<label>``). Pure string work: the contracts import it."""

from __future__ import annotations

import re


def source_names(specs: list[str]) -> list[str]:
    """Short, distinct names of source specs for arm labels: the dataset's or model's name
    (``builtin:shapes?n=…`` → ``shapes``, ``mlflow:models:/m/3`` → ``m-3``); a name taken
    already gets the source's position (``shapes-2``), none at all ``source-<i>``."""
    names = []
    for i, spec in enumerate(specs, 1):
        parts = [p for p in re.split(r"[:/]", spec.split("?")[0]) if p and p != "ckpt"]
        tail = parts[-2:] if len(parts) > 2 and parts[-1].isdigit() else parts[-1:]
        name = re.sub(r"[^\w.-]+", "-", "-".join(tail).removesuffix(".safetensors")).strip("-")
        while not name or name in names:
            name = f"{name or 'source'}-{i}"
        names.append(name)
    return names
