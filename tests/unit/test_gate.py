"""The promotion gate: bootstrap statistics and decisions (pure numpy, no services)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest

from warmstart import gate, reports
from warmstart.errors import DataError


def _correct(rng: np.random.Generator, p: float, seeds: int = 3, n: int = 800) -> np.ndarray:
    return rng.random((seeds, n)) < p


def test_bootstrap_ci_covers_true_difference_in_simulation():
    """Known effect: the candidate fixes 5% of examples the baseline gets wrong, keeping the rest.

    Over 40 independent simulated test sets the 95% CI must contain the true difference in most
    of them (nominal 38/40) and never be wildly off."""
    rng = np.random.default_rng(123)
    true_diff = 0.05
    covered = 0
    widths = []
    for trial in range(40):
        n = 600
        # per-example difficulty shared by both arms (that is what pairing exploits)
        base = rng.random((3, n)) < 0.80
        flip = (rng.random((3, n)) < true_diff / 0.20) & ~base  # wrong → right w.p. 0.25
        cand = base | flip
        res = gate.paired_bootstrap(cand, base, n_boot=1000, seed=trial)
        assert res["ci_low"] <= res["mean_diff"] <= res["ci_high"]
        covered += res["ci_low"] <= true_diff <= res["ci_high"]
        widths.append(res["ci_high"] - res["ci_low"])
    assert covered >= 34, covered
    # paired: the interval is a few points wide, not the ~9 points of two unpaired 95% CIs
    assert 0.01 < float(np.mean(widths)) < 0.05


def test_bootstrap_numbers_on_a_hand_checked_case():
    cand = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    base = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)
    res = gate.paired_bootstrap(cand, base, n_boot=500, seed=1)
    assert res["mean_diff"] == pytest.approx(0.25)
    assert res["candidate_accuracy"] == pytest.approx(5 / 8)
    assert res["baseline_accuracy"] == pytest.approx(3 / 8)
    assert res["n"] == 4 and res["seeds"] == 2
    # differences are 0 or +1 here, so every resample lies in [0, 1]
    assert 0.0 <= res["ci_low"] <= 0.25 <= res["ci_high"] <= 1.0


def test_identical_arrays_give_zero_ci_and_do_not_pass():
    rng = np.random.default_rng(0)
    same = _correct(rng, 0.9)
    res = gate.paired_bootstrap(same, same.copy())
    assert (res["mean_diff"], res["ci_low"], res["ci_high"]) == (0.0, 0.0, 0.0)
    d = gate.decide("gan/finetune", same, same.copy(), champion_correct=None, margin=0.0)
    assert not d.passed
    assert d.verdict == "not promoted"
    assert "+0.0" in d.reason and "margin" in d.reason


def test_clearly_better_candidate_passes_and_reason_has_numbers():
    rng = np.random.default_rng(1)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.5)  # fixes about half of scratch's errors
    d = gate.decide("autoencoder/lp_ft", cand, scratch, champion_correct=None)
    assert d.passed and d.verdict == "promoted"
    delta = d.delta_vs_scratch
    assert delta["ci_low"] > 0.05
    assert f"{100 * delta['mean_diff']:+.1f}" in d.reason
    assert "no champion" in d.reason
    assert d.vs_champion is None


def test_worse_candidate_fails():
    rng = np.random.default_rng(2)
    scratch = _correct(rng, 0.90)
    cand = scratch & (rng.random(scratch.shape) < 0.9)  # breaks 10% of scratch's right answers
    d = gate.decide("gan/finetune", cand, scratch, champion_correct=None)
    assert not d.passed
    assert d.delta_vs_scratch["ci_high"] < 0
    assert d.reason.startswith("Not promoted")


def test_margin_is_respected():
    rng = np.random.default_rng(3)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.15)  # about +3 points
    low = gate.paired_bootstrap(cand, scratch)["ci_low"]
    assert 0 < low < 0.05
    assert gate.decide("s/m", cand, scratch, champion_correct=None, margin=0.0).passed
    assert not gate.decide("s/m", cand, scratch, champion_correct=None, margin=0.05).passed


def test_champion_blocks_candidate_better_than_scratch_but_worse_than_champion():
    rng = np.random.default_rng(4)
    scratch = _correct(rng, 0.70)
    cand = scratch | (rng.random(scratch.shape) < 0.5)  # ~85%
    champion = (cand | (rng.random(cand.shape) < 0.5))[:1]  # a single model, ~92%
    d = gate.decide(
        "supervised/finetune", cand, scratch, champion_correct=champion, champion_version=7
    )
    assert d.delta_vs_scratch["ci_low"] > 0  # the scratch condition alone would pass
    assert not d.passed
    assert d.vs_champion is not None and d.vs_champion["mean_diff"] < 0
    assert d.vs_champion["version"] == "7"
    assert "champion v7" in d.reason and "worse than the champion" in d.reason
    # the same candidate against a weaker champion passes
    weak = scratch[:1]
    assert gate.decide("supervised/finetune", cand, scratch, champion_correct=weak).passed


def test_champion_tie_is_not_worse():
    rng = np.random.default_rng(5)
    scratch = _correct(rng, 0.70, seeds=1)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    d = gate.decide("a/b", cand, scratch, champion_correct=cand.copy())
    assert d.vs_champion["mean_diff"] == 0.0
    assert d.passed


def test_served_row_is_used_for_champion_comparison():
    rng = np.random.default_rng(6)
    scratch = _correct(rng, 0.70)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    worst = cand[np.argmin(cand.mean(axis=1))][None]
    champion = worst | (rng.random(worst.shape) < 0.02)  # slightly above the worst seed
    d_served = gate.decide(
        "a/b", cand, scratch, champion_correct=champion, candidate_served_correct=worst
    )
    assert d_served.vs_champion["candidate_accuracy"] == pytest.approx(worst.mean())
    assert not d_served.passed
    # judged by the mean over seeds instead, the same candidate would pass
    assert gate.decide("a/b", cand, scratch, champion_correct=champion).passed


def test_deterministic_given_seed_and_varies_with_seed():
    rng = np.random.default_rng(7)
    a, b = _correct(rng, 0.85), _correct(rng, 0.83)
    r1 = gate.paired_bootstrap(a, b, seed=11)
    r2 = gate.paired_bootstrap(a, b, seed=11)
    r3 = gate.paired_bootstrap(a, b, seed=12)
    assert r1 == r2
    assert (r1["ci_low"], r1["ci_high"]) != (r3["ci_low"], r3["ci_high"])
    d1 = gate.decide("x/y", a, b, champion_correct=None, seed=3).to_dict()
    d2 = gate.decide("x/y", a, b, champion_correct=None, seed=3).to_dict()
    assert d1 == d2


def test_shape_mismatches_are_data_errors():
    with pytest.raises(DataError, match="same test split"):
        gate.paired_bootstrap(np.ones((2, 5), bool), np.ones((2, 6), bool))
    with pytest.raises(DataError, match="seeds"):
        gate.paired_bootstrap(np.ones((2, 5), bool), np.ones((3, 5), bool))
    with pytest.raises(DataError, match="0/1"):
        gate.paired_bootstrap(np.full((1, 3), 0.5), np.ones((1, 3), bool))


class NoTestAccess(dict):
    """A result dict that fails the test if anything reads a test-split field."""

    def _check(self, key):
        if isinstance(key, str) and key.startswith("test"):
            raise AssertionError(f"select_candidate read {key!r}")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key):
        self._check(key)
        return super().__contains__(key)

    def keys(self):  # iteration over keys would expose test fields too
        raise AssertionError("select_candidate iterated over the keys")


def _res(strategy, mode, val, **extra) -> Mapping:
    return NoTestAccess(
        strategy=strategy,
        transfer_mode=mode,
        val_accuracy=val,
        test_accuracy=1.0 - float(np.mean(val)),  # inverse of val: reading it flips the pick
        test_correct="poison",
        **extra,
    )


def test_select_candidate_uses_validation_only():
    results = [
        _res("gan", "finetune", 0.80),
        _res("autoencoder", "lp_ft", [0.90, 0.92, 0.91]),  # mean 0.91: best on validation
        _res("supervised", "finetune", 0.905),
        _res("scratch", "scratch", 0.99),  # the baseline is never a candidate
        _res("supervised", "linear_probe", 0.995, control=True),  # nor a control
    ]
    best = gate.select_candidate(results)
    assert (best["strategy"], best["transfer_mode"]) == ("autoencoder", "lp_ft")


def test_select_candidate_without_test_keys_and_tie_breaks():
    results = [
        {"strategy": "gan", "mode": "lp_ft", "val_acc": 0.9, "n_params": 1000},
        {"strategy": "supervised", "mode": "finetune", "val_acc": 0.9, "n_params": 1000},
        {"strategy": "autoencoder", "mode": "finetune", "val_acc": 0.9, "n_params": 5000},
    ]
    assert gate.select_candidate(results)["strategy"] == "supervised"  # fewer params, simpler mode
    with pytest.raises(DataError, match="no transfer candidates"):
        gate.select_candidate([{"strategy": "scratch", "val_acc": 1.0}])
    with pytest.raises(DataError, match="val_accuracy"):
        gate.select_candidate([{"strategy": "gan", "mode": "finetune"}])


def test_summary_table_rows_and_numbers():
    rng = np.random.default_rng(8)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    rows = gate.summary_table(
        [
            {
                "strategy": "scratch",
                "transfer_mode": "—",
                "val_accuracy": 0.8,
                "test_correct": scratch,
                "finetune_seconds": 3.21,
            },
            {
                "strategy": "gan",
                "transfer_mode": "lp_ft",
                "val_accuracy": [0.9, 0.88],
                "test_correct": cand,
                "pretrain_seconds": 12.0,
                "finetune_seconds": 4.0,
            },
        ],
        scratch_correct=scratch,
    )
    assert [r["strategy"] for r in rows] == ["scratch", "gan"]
    assert rows[0]["Δ vs scratch pts [95% CI]"] == "—"
    assert rows[0]["pretrain s"] == "—" and rows[0]["fine-tune s"] == "3.2"
    assert rows[1]["val acc %"] == "89.0"
    expected = gate.paired_bootstrap(cand, scratch)
    assert rows[1]["Δ vs scratch pts [95% CI]"] == (
        f"{100 * expected['mean_diff']:+.1f} [{100 * expected['ci_low']:+.1f}, "
        f"{100 * expected['ci_high']:+.1f}]"
    )
    assert rows[1]["test acc % [95% CI]"].startswith(f"{100 * cand.mean():.1f} [")
    md = reports.table_markdown(rows)
    assert md.count("\n") == 4 and "| gan | lp_ft | 89.0 |" in md


def test_decision_serialises_and_renders():
    rng = np.random.default_rng(9)
    scratch = _correct(rng, 0.8)
    cand = scratch | (rng.random(scratch.shape) < 0.4)
    d = gate.decide("gan/lp_ft", cand, scratch, champion_correct=scratch[:1], champion_version=2)
    as_json, as_md = reports.gate_report(d, [{"strategy": "gan"}], context={"target": "digits"})
    payload = json.loads(as_json)
    assert payload["decision"]["verdict"] == "promoted"
    assert payload["decision"]["vs_champion"]["version"] == "2"
    assert payload["context"] == {"target": "digits"}
    assert "**promoted**" in as_md and "vs champion (v2)" in as_md and "| gan |" in as_md


def test_figures_render_to_png():
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 1, 1, 2, 1, 2])
    cm = reports.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 2, 0], [0, 1, 1]]
    png = reports.figure_png(reports.confusion_matrix_figure(y, p, ["a", "b", "c"]))
    assert png.startswith(b"\x89PNG")
    hist = {
        "gan/lp_ft": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "train_acc": 0.8, "val_acc": 0.7},
        ],
        "scratch": [{"train_loss": 1.2, "val_accuracy": 0.3}],
    }
    fig = reports.learning_curves_figure(hist)
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 3 and len(ax_acc.lines) == 3
    assert reports.figure_png(fig).startswith(b"\x89PNG")
    grid = reports.image_grid(np.random.default_rng(0).random((5, 1, 4, 4)), columns=3)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1) and grid.dtype == np.uint8
