"""The promotion policy, its statistics and the results table (pure numpy, no services)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from warmstart import promotion
from warmstart.contracts import (
    SCRATCH,
    ArmScores,
    Evaluation,
    SourceModel,
    StageRecord,
    TableRow,
)
from warmstart.errors import DataError
from warmstart.promotion import Champion
from warmstart.reports import gate, plots, table


def _correct(rng: np.random.Generator, p: float, seeds: int = 3, n: int = 800) -> np.ndarray:
    return rng.random((seeds, n)) < p


def _arm(name: str, correct: np.ndarray, val=None, mode: str = "finetune", strategy=None):
    correct = np.atleast_2d(np.asarray(correct, dtype=bool))
    seeds = list(range(correct.shape[0]))
    if val is None:
        val = [0.5] * len(seeds)
    val = list(np.atleast_1d(val).astype(float))
    if strategy is None and name != SCRATCH and "/" in name:
        strategy = name.split("/")[0]
    return ArmScores(
        arm=name,
        strategy=strategy,
        mode=mode,
        seeds=seeds,
        val_acc=val,
        test_acc=[float(r.mean()) for r in correct],
        correct=correct.tolist(),
        pred=[[0] * correct.shape[1]] * len(seeds),
        keys=[f"{name}-{s}" for s in seeds],
        seconds=[1.0] * len(seeds),
    )


def _decide(name, cand, scratch, champion=None, **kw):
    return promotion.decide(_arm(name, cand), _arm(SCRATCH, scratch), champion=champion, **kw)


# ------------------------------------------------------------------ statistics


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
        res = promotion.paired_bootstrap(cand, base, n_boot=1000, seed=trial)
        assert res["ci_low"] <= res["mean_diff"] <= res["ci_high"]
        covered += res["ci_low"] <= true_diff <= res["ci_high"]
        widths.append(res["ci_high"] - res["ci_low"])
    assert covered >= 34, covered
    # paired: the interval is a few points wide, not the ~9 points of two unpaired 95% CIs
    assert 0.01 < float(np.mean(widths)) < 0.05


def test_bootstrap_numbers_on_a_hand_checked_case():
    cand = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    base = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)
    res = promotion.paired_bootstrap(cand, base, n_boot=500, seed=1)
    assert res["mean_diff"] == pytest.approx(0.25)
    assert res["candidate_accuracy"] == pytest.approx(5 / 8)
    assert res["baseline_accuracy"] == pytest.approx(3 / 8)
    assert res["n"] == 4 and res["seeds"] == 2
    # differences are 0 or +1 here, so every resample lies in [0, 1]
    assert 0.0 <= res["ci_low"] <= 0.25 <= res["ci_high"] <= 1.0


def test_statistics_defaults_are_pinned():
    """The gate's numbers must not drift: same seed, resamples and level as always."""
    assert (promotion.N_BOOT, promotion.BOOT_SEED, promotion.ALPHA) == (2000, 0, 0.05)
    rng = np.random.default_rng(42)
    a, b = _correct(rng, 0.9), _correct(rng, 0.85)
    res = promotion.paired_bootstrap(a, b)
    assert res == promotion.paired_bootstrap(a, b, n_boot=2000, seed=0, alpha=0.05)
    assert res["mean_diff"] == pytest.approx(float(a.mean() - b.mean()))


def test_identical_arrays_give_zero_ci_and_do_not_pass():
    rng = np.random.default_rng(0)
    same = _correct(rng, 0.9)
    res = promotion.paired_bootstrap(same, same.copy())
    assert (res["mean_diff"], res["ci_low"], res["ci_high"]) == (0.0, 0.0, 0.0)
    d = _decide("gan/finetune", same, same.copy(), margin=0.0)
    assert not d.passed
    assert d.verdict == "not promoted" and d.rule == "below-margin"
    assert "+0.0" in d.reason and "margin" in d.reason


def test_clearly_better_candidate_passes_and_reason_has_numbers():
    rng = np.random.default_rng(1)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.5)  # fixes about half of scratch's errors
    d = _decide("autoencoder/lp_ft", cand, scratch)
    assert d.passed and d.verdict == "promoted" and d.rule == "promoted"
    delta = d.delta_vs_scratch
    assert delta["ci_low"] > 0.05
    assert f"{100 * delta['mean_diff']:+.1f}" in d.reason
    assert "no champion" in d.reason
    assert d.vs_champion is None and d.champion_version is None


def test_reason_does_not_repeat_the_verdict():
    """The CLI prints ``verdict: reason``; the reason must not start with the verdict again."""
    rng = np.random.default_rng(2)
    scratch = _correct(rng, 0.90)
    worse = scratch & (rng.random(scratch.shape) < 0.9)
    better = scratch | (rng.random(scratch.shape) < 0.5)
    for d in (_decide("gan/finetune", worse, scratch), _decide("gan/finetune", better, scratch)):
        line = f"{d.verdict}: {d.reason}"
        assert line.lower().count("promoted") == 1, line
        assert d.reason.startswith("gan/finetune vs scratch")


def test_worse_candidate_fails():
    rng = np.random.default_rng(2)
    scratch = _correct(rng, 0.90)
    cand = scratch & (rng.random(scratch.shape) < 0.9)  # breaks 10% of scratch's right answers
    d = _decide("gan/finetune", cand, scratch)
    assert not d.passed and d.verdict == "not promoted"
    assert d.delta_vs_scratch["ci_high"] < 0


def test_margin_is_respected():
    rng = np.random.default_rng(3)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.15)  # about +3 points
    low = promotion.paired_bootstrap(cand, scratch)["ci_low"]
    assert 0 < low < 0.05
    assert _decide("s/m", cand, scratch, margin=0.0).passed
    assert not _decide("s/m", cand, scratch, margin=0.05).passed


def test_champion_blocks_candidate_better_than_scratch_but_worse_than_champion():
    rng = np.random.default_rng(4)
    scratch = _correct(rng, 0.70)
    cand = scratch | (rng.random(scratch.shape) < 0.5)  # ~85%
    champion = (cand | (rng.random(cand.shape) < 0.5))[0]  # a single model, ~92%
    d = _decide("supervised/finetune", cand, scratch, Champion("7", correct=champion))
    assert d.delta_vs_scratch["ci_low"] > 0  # the scratch condition alone would pass
    assert not d.passed and d.rule == "worse-than-champion"
    assert d.vs_champion is not None and d.vs_champion["mean_diff"] < 0
    assert d.vs_champion["version"] == "7" and d.champion_version == "7"
    assert "champion v7" in d.reason and "worse than the champion" in d.reason
    # the same candidate against a weaker champion passes
    weak = Champion("6", correct=scratch[0])
    assert _decide("supervised/finetune", cand, scratch, weak).passed


def test_champion_tie_is_not_worse():
    rng = np.random.default_rng(5)
    scratch = _correct(rng, 0.70, seeds=1)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    d = _decide("a/b", cand, scratch, Champion("1", correct=cand[0].copy()))
    assert d.vs_champion["mean_diff"] == 0.0
    assert d.passed


def test_incomparable_champion_blocks_promotion_inside_the_decision():
    rng = np.random.default_rng(5)
    scratch = _correct(rng, 0.70)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    champion = Champion("4", error="expects input (1, 28, 28)")
    d = _decide("a/b", cand, scratch, champion)
    assert d.delta_vs_scratch["ci_low"] > 0  # would pass on scratch alone
    assert not d.passed and d.rule == "champion-incomparable"
    assert "champion v4 cannot be compared" in d.reason and "(1, 28, 28)" in d.reason
    assert d.vs_champion is None and d.champion_version == "4"
    assert "| vs champion (v4) |" in d.to_markdown()


def test_served_row_is_the_best_validation_seed_and_used_for_the_champion():
    rng = np.random.default_rng(6)
    scratch = _correct(rng, 0.70)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    worst_i = int(np.argmin(cand.mean(axis=1)))
    worst = cand[worst_i]
    champion = Champion("2", correct=worst | (rng.random(worst.shape) < 0.02))
    val = [0.5, 0.5, 0.5]
    val[worst_i] = 0.9  # the worst test seed is the best on validation: it is served
    arm = _arm("a/b", cand, val=val)
    assert promotion.served_index(arm) == worst_i
    d = promotion.decide(arm, _arm(SCRATCH, scratch), champion=champion)
    assert d.served_seed == worst_i
    assert d.vs_champion["candidate_accuracy"] == pytest.approx(worst.mean())
    assert not d.passed
    # with the best test seed served instead, the same arm would pass
    val = [0.5, 0.5, 0.5]
    val[int(np.argmax(cand.mean(axis=1)))] = 0.9
    assert promotion.decide(
        _arm("a/b", cand, val=val), _arm(SCRATCH, scratch), champion=champion
    ).passed


def test_deterministic_given_seed_and_varies_with_seed():
    rng = np.random.default_rng(7)
    a, b = _correct(rng, 0.85), _correct(rng, 0.83)
    r1 = promotion.paired_bootstrap(a, b, seed=11)
    r2 = promotion.paired_bootstrap(a, b, seed=11)
    r3 = promotion.paired_bootstrap(a, b, seed=12)
    assert r1 == r2
    assert (r1["ci_low"], r1["ci_high"]) != (r3["ci_low"], r3["ci_high"])
    d1 = _decide("x/y", a, b, seed=3).to_dict()
    d2 = _decide("x/y", a, b, seed=3).to_dict()
    assert d1 == d2


def test_shape_mismatches_are_data_errors():
    with pytest.raises(DataError, match="same test split"):
        promotion.paired_bootstrap(np.ones((2, 5), bool), np.ones((2, 6), bool))
    with pytest.raises(DataError, match="seeds"):
        promotion.paired_bootstrap(np.ones((2, 5), bool), np.ones((3, 5), bool))
    with pytest.raises(DataError, match="0/1"):
        promotion.paired_bootstrap(np.full((1, 3), 0.5), np.ones((1, 3), bool))
    with pytest.raises(DataError, match="baseline, not a candidate"):
        promotion.decide(_arm(SCRATCH, np.ones((1, 3))), _arm(SCRATCH, np.ones((1, 3))))


# ------------------------------------------------------------------ selection


class ValidationOnly(ArmScores):
    """An arm that fails the test if selection reads anything computed on the test split."""

    def __getattribute__(self, name):
        if name in ("test_acc", "correct", "pred"):
            raise AssertionError(f"select_candidate read {name!r}")
        return super().__getattribute__(name)


def _val_only(name, mode, val) -> ArmScores:
    val = list(np.atleast_1d(val).astype(float))
    inverse = [[1.0 - v] for v in val]  # reading test would flip the pick
    return ValidationOnly(
        name, name.split("/")[0], mode, list(range(len(val))), val, [], inverse, []
    )


def _evaluation(*arms: ArmScores) -> Evaluation:
    return Evaluation(arms={a.arm: a for a in arms}, y_test=[], test_index=[], classes=[])


def test_select_candidate_uses_validation_only():
    ev = _evaluation(
        _val_only("gan/finetune", "finetune", 0.80),
        _val_only("autoencoder/lp_ft", "lp_ft", [0.90, 0.92, 0.91]),  # mean 0.91: best
        _val_only("supervised/finetune", "finetune", 0.905),
        _val_only(SCRATCH, "finetune", 0.99),  # the baseline is never a candidate
        _val_only("control/random-init-frozen", "linear_probe", 0.995),  # nor a control
    )
    assert promotion.select_candidate(ev).arm == "autoencoder/lp_ft"


def test_select_candidate_tie_breaks_and_errors():
    ev = _evaluation(
        _val_only("gan/lp_ft", "lp_ft", 0.9),
        _val_only("supervised/finetune", "finetune", 0.9),
        _val_only("autoencoder/finetune", "finetune", 0.9),
        _val_only("autoencoder/linear_probe", "linear_probe", 0.9 - 1e-12),  # a tie within 1e-9
    )
    assert promotion.select_candidate(ev).arm == "autoencoder/linear_probe"  # simplest mode
    with pytest.raises(DataError, match="no transfer candidates"):
        promotion.select_candidate(_evaluation(_val_only(SCRATCH, "finetune", 1.0)))
    with pytest.raises(DataError, match="finite numbers"):
        promotion.select_candidate(_evaluation(_val_only("gan/finetune", "finetune", [])))


# ------------------------------------------------------------------ the results table


def _source(label: str, seconds: float) -> SourceModel:
    stage = StageRecord(
        key="k", checkpoint_uri="s3://b/c", seconds=seconds, history=({"epoch": 1}, {"epoch": 2})
    )
    return SourceModel(
        label, "pretrain", "convnet-s", "s3://b/w", 1, (8, 8), images=1500, stage=stage
    )


def test_summarize_numbers_and_the_one_formatter():
    rng = np.random.default_rng(8)
    scratch = _correct(rng, 0.80)
    cand = scratch | (rng.random(scratch.shape) < 0.5)
    control = _correct(rng, 0.6, seeds=1)
    ev = _evaluation(
        _arm("supervised/finetune", cand, val=[0.99, 0.98, 1.0]),
        _arm(SCRATCH, scratch, val=[0.8, 0.8, 0.8]),
        _arm("control/pixel-logreg", control, val=[0.6], mode="logistic_regression"),
    )
    rows = table.summarize(ev, {"supervised": _source("supervised", 6.84)})
    assert [r.arm for r in rows] == ["supervised/finetune", SCRATCH, "control/pixel-logreg"]
    sup, scr, ctl = rows
    acc = promotion.accuracy_ci(cand)
    delta = promotion.paired_bootstrap(cand, scratch)
    assert sup.test_acc == acc["accuracy"] and sup.test_ci == (acc["ci_low"], acc["ci_high"])
    assert sup.delta_vs_scratch == delta["mean_diff"]
    assert sup.delta_ci == (delta["ci_low"], delta["ci_high"])
    assert sup.val_acc == pytest.approx(0.99) and sup.pretrain_seconds == 6.84
    assert sup.finetune_seconds == 3.0 and sup.seeds == 3 and sup.strategy == "supervised"
    assert (scr.delta_vs_scratch, scr.delta_ci, scr.strategy) == (0.0, (0.0, 0.0), "-")
    # a single-seed control is compared with every scratch seed
    assert (
        ctl.delta_vs_scratch
        == promotion.paired_bootstrap(np.repeat(control, 3, 0), scratch)["mean_diff"]
    )

    cells = table.table_cells(rows)
    assert list(cells[0]) == list(table.COLUMNS)
    assert cells[0]["val acc"] == "99.0%" and cells[0]["seeds"] == "3"
    assert cells[0]["test acc (95% CI)"] == (
        f"{100 * acc['accuracy']:.1f}% [{100 * acc['ci_low']:.1f}, {100 * acc['ci_high']:.1f}]"
    )
    assert cells[0]["Δ vs scratch (95% CI)"] == (
        f"{100 * delta['mean_diff']:+.1f} [{100 * delta['ci_low']:+.1f}, "
        f"{100 * delta['ci_high']:+.1f}]"
    )
    assert cells[0]["pretrain s"] == "6.8" and cells[0]["fine-tune s"] == "3.0"
    assert sup.pretrain_images == 3000 and cells[0]["pretrain images"] == "3,000"  # 2 epochs
    assert scr.pretrain_images == 0 and cells[1]["pretrain images"] == "0"
    md = table.table_markdown(rows)
    assert md.count("\n") == 7 and md.endswith(f"\n\n{table.NOTE}.\n")
    assert "rows marked (confirm): the gate's two-way interval" in md
    assert md.splitlines()[0] == "| " + " | ".join(table.COLUMNS) + " |"
    assert "| scratch | 3 | 80.0% |" in md and "| +0.0 [+0.0, +0.0] | 0.0 | 3.0 | 0 |" in md


def test_table_cells_render_the_demo_row_exactly():
    row = table.table_cells(
        [
            TableRow(
                arm="supervised/finetune",
                strategy="supervised",
                mode="finetune",
                seeds=3,
                val_acc=0.99,
                test_acc=0.9822,
                test_ci=(0.9681, 0.9944),
                delta_vs_scratch=0.0426,
                delta_ci=(0.0204, 0.0662),
                pretrain_seconds=6.81,
                finetune_seconds=8.24,
                pretrain_images=15000,
                balanced_acc=0.9731,
            )
        ]
    )
    md = table.markdown(row)
    assert md.splitlines()[2] == (
        "| supervised/finetune | 3 | 99.0% | 98.2% [96.8, 99.4] | 97.3% | +4.3 [+2.0, +6.6] | 6.8 "
        "| 8.2 | 15,000 |"
    )


def test_the_table_shows_balanced_accuracy_beside_accuracy():
    """Three classes, the last rare: an arm that never predicts it keeps its accuracy high and
    loses a third of its balanced accuracy; scratch's is the mean of its seeds' per-class means."""
    y = np.array([0] * 10 + [1] * 10 + [2] * 2)
    drops_rare = np.where(y == 2, 0, y)  # every common image right, both rare ones wrong
    right = y.copy()
    half = np.where(np.arange(22) % 2 == 0, y, (y + 1) % 3)  # 5, 5 and 1 right of 10, 10, 2
    arm = _arm("supervised/finetune", np.stack([drops_rare == y] * 2))
    arm = dataclasses.replace(arm, pred=[drops_rare.tolist()] * 2)
    scratch = _arm(SCRATCH, np.stack([right == y, half == y]))
    scratch = dataclasses.replace(scratch, pred=[right.tolist(), half.tolist()])
    ev = Evaluation({arm.arm: arm, SCRATCH: scratch}, y.tolist(), list(range(22)), list("abc"))
    sup, scr = table.summarize(ev, {})
    assert sup.test_acc == pytest.approx(20 / 22) and sup.balanced_acc == pytest.approx(2 / 3)
    assert scr.balanced_acc == pytest.approx((1.0 + 0.5) / 2)
    cells = table.table_cells([sup, scr])
    assert [c["balanced acc"] for c in cells] == ["66.7%", "75.0%"]
    assert "| 90.9% [" in table.table_markdown([sup]) and "| 66.7% |" in table.table_markdown([sup])


def test_gate_report_json_and_markdown():
    rng = np.random.default_rng(9)
    scratch = _correct(rng, 0.8)
    cand = scratch | (rng.random(scratch.shape) < 0.4)
    d = _decide("gan/lp_ft", cand, scratch, Champion("2", correct=scratch[0]))
    ev = _evaluation(_arm("gan/lp_ft", cand), _arm(SCRATCH, scratch))
    rows = table.summarize(ev, {})
    as_json, as_md = gate.gate_report(d, rows, context={"target": "digits"})
    payload = json.loads(as_json)
    assert payload["decision"]["verdict"] == "promoted"
    assert payload["decision"]["vs_champion"]["version"] == "2"
    assert payload["context"] == {"target": "digits"}
    assert payload["table"][0]["arm"] == "gan/lp_ft" and payload["promotion"] is None
    assert "**promoted**" in as_md and "vs champion (v2)" in as_md and "| gan/lp_ft |" in as_md
    tags = d.tags()
    assert tags["gate_verdict"] == "promoted" and tags["gate_champion_version"] == "2"
    assert float(tags["gate_delta_ci_low"]) == pytest.approx(d.delta_vs_scratch["ci_low"], 1e-3)


def test_figures_render_to_png():
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 1, 1, 2, 1, 2])
    cm = plots.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 2, 0], [0, 1, 1]]
    png = plots.figure_png(plots.confusion_matrix_figure(y, p, ["a", "b", "c"]))
    assert png.startswith(b"\x89PNG")
    hist = {
        "gan/lp_ft": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "train_acc": 0.8, "val_acc": 0.7},
        ],
        "scratch": [{"train_loss": 1.2, "val_accuracy": 0.3}],
    }
    fig = plots.learning_curves_figure(hist)
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 3 and len(ax_acc.lines) == 3
    assert plots.figure_png(fig).startswith(b"\x89PNG")
