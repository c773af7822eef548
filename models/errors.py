"""Errors of the models layer. Plain exceptions (models/ imports nothing from warmstart); the
pipeline maps them to its own types. Messages name the input and the fix, in one line."""

from __future__ import annotations

from collections.abc import Iterable


class ModelError(ValueError):
    """Bad input to a model function: unknown name, wrong shape, inconsistent arguments."""


class UnknownNameError(ModelError):
    """A backbone, strategy or transfer mode name that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid = list(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")
        self.kind, self.name, self.valid = kind, name, valid


class CheckpointError(ModelError):
    """A checkpoint that is missing, corrupt or written by an incompatible run."""


class TrainingError(ModelError):
    """Training diverged (non-finite loss); the last good checkpoint is kept."""
