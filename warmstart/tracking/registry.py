"""The model registry: registered models, versions, their tags and aliases.

Mechanism only; the policy (which version may become ``champion``, compare-and-set under a lock)
is ``warmstart.promotion``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warmstart.tracking.client import client, error_code, errors
from warmstart.tracking.runs import safe_tags

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


@dataclass(frozen=True)
class VersionRef:
    """One registered model version."""

    name: str
    version: str
    run_id: str | None = None
    source: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _ref(mv: Any) -> VersionRef:
    return VersionRef(mv.name, str(mv.version), mv.run_id, mv.source or "", dict(mv.tags or {}))


def version_by_alias(model_name: str, alias: str = CHAMPION) -> VersionRef | None:
    """The version holding ``alias``, or None (no such registered model or no such alias)."""
    from mlflow.exceptions import MlflowException  # deferred: heavy

    c = client()
    with errors(f"lookup of {model_name}@{alias}"):
        try:
            return _ref(c.get_model_version_by_alias(model_name, alias))
        except MlflowException as exc:
            if error_code(exc) in _ABSENT:
                return None
            raise


def find_versions(model_name: str, tag: str, value: str) -> list[VersionRef]:
    """Versions of ``model_name`` whose tag ``tag`` equals ``value``, oldest first."""
    where = f"name = '{model_name}' and tags.`{tag}` = '{value}'"
    with errors(f"search of {model_name} versions by {tag}"):
        found = client().search_model_versions(filter_string=where)
    return sorted((_ref(mv) for mv in found), key=lambda v: int(v.version))


def ensure_registered_model(model_name: str, description: str = "") -> None:
    """Create the registered model unless it exists (safe under concurrent callers)."""
    from mlflow.exceptions import MlflowException  # deferred: heavy

    c = client()
    with errors(f"creation of registered model {model_name!r}"):
        try:
            c.create_registered_model(model_name, description=description or None)
        except MlflowException as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise


def create_version(
    model_name: str, model_uri: str, *, run_id: str | None, tags: Mapping[str, Any]
) -> VersionRef:
    """Register a logged model (``models:/m-…``) as a new version; ``run_id`` is the run the
    version links to (MLflow accepts any run, not only the one the model was logged in)."""
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    with errors(f"registration of {model_uri} as {model_name!r}"):
        mv = client().create_model_version(
            model_name,
            source=model_uri,
            run_id=run_id,
            tags=safe_tags(tags),
            await_creation_for=60,
            model_id=model_id,
        )
    return _ref(mv)


def set_version_tags(model_name: str, version: str, tags: Mapping[str, Any]) -> None:
    c = client()
    with errors(f"tagging of {model_name} version {version}"):
        for key, value in safe_tags(tags).items():
            c.set_model_version_tag(model_name, version, key, value)


def set_alias(model_name: str, alias: str, version: str) -> None:
    with errors(f"move of {model_name}@{alias} to version {version}"):
        client().set_registered_model_alias(model_name, alias, version)


def aliases(model_name: str) -> dict[str, str]:
    """Alias → version of a registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException  # deferred: heavy

    c = client()
    with errors(f"read of {model_name!r}"):
        try:
            return {k: str(v) for k, v in c.get_registered_model(model_name).aliases.items()}
        except MlflowException as exc:
            if error_code(exc) in _ABSENT:
                return {}
            raise


def delete_alias(model_name: str, alias: str) -> None:
    """Remove ``alias`` from a registered model (the version itself stays)."""
    with errors(f"removal of {model_name}@{alias}"):
        client().delete_registered_model_alias(model_name, alias)


def set_card(model_name: str, version: str, card: str, marker: str) -> None:
    """Put ``card`` in a version's description after its first paragraph(s), replacing an
    earlier card (everything from ``marker`` on)."""
    c = client()
    with errors(f"description of {model_name} version {version}"):
        current = c.get_model_version(model_name, version).description or ""
        head = current.split(marker, 1)[0].rstrip()
        text = f"{head}\n\n{card}" if head else card
        c.update_model_version(model_name, version, description=text)
