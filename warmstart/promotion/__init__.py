"""Promotion: the pure policy (candidate on validation, the two-way interval against scratch on
confirmation seeds, the champion condition), ``recompute_verdict`` on a run's predictions, and
registering the served model with ``champion`` moved as a compare-and-set under a per-model lock.
The results table and the gate report are ``warmstart.reports``' (``table``, ``gate``)."""

from warmstart.promotion.lock import lock_name, prefect_lock
from warmstart.promotion.policy import (
    NOT_PROMOTED,
    PROMOTED,
    Champion,
    Decision,
    decide,
    select_candidate,
    served_index,
)
from warmstart.promotion.recompute import recompute_verdict
from warmstart.promotion.registry import (
    Promotion,
    promote,
    provenance_tags,
    served_result,
    test_set_scorer,
)
from warmstart.promotion.stats import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    accuracy_ci,
    class_balanced_weights,
    paired_bootstrap,
    two_way_interval,
)

__all__ = [
    "ALPHA",
    "BOOT_SEED",
    "N_BOOT",
    "NOT_PROMOTED",
    "PROMOTED",
    "Champion",
    "Decision",
    "Promotion",
    "accuracy_ci",
    "class_balanced_weights",
    "decide",
    "lock_name",
    "paired_bootstrap",
    "prefect_lock",
    "promote",
    "provenance_tags",
    "recompute_verdict",
    "select_candidate",
    "served_index",
    "served_result",
    "test_set_scorer",
    "two_way_interval",
]
