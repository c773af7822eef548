"""The verdict's text: its Markdown (``decision_markdown``: the verdict, the reason, the table of
comparisons, the interval and the protocol), how it words the protocol (the interval, the
seeds, the configurations each side compared and the labels used) and the classes the
candidate serves worse than scratch (``promotion.classes``' rows). Pure formatting of a
``policy.Decision`` and of ``protocol.protocol_record``'s dict; it imports nothing of
``warmstart.promotion`` at run time (the policy imports this module)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warmstart.promotion.policy import Decision


def seed_span(seeds: Sequence[int]) -> str:
    """``1000–1004`` for consecutive seeds, else a comma list; ``none`` when empty."""
    seeds = sorted(seeds)
    if not seeds:
        return "none"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def pts(x: float) -> str:
    """A difference of fractions as signed percentage points (``+3.2``)."""
    return f"{100.0 * x:+.1f}"


def pct(x: float) -> str:
    """A fraction as a percentage (``91.3%``)."""
    return f"{100.0 * x:.1f}%"


METHODS = {
    "two-way": "two-way interval over seeds and test images",
    "seed-t": "seed-level paired t interval",
    "bootstrap": "paired bootstrap over seeds and examples",
}


def method_name(d: dict[str, Any]) -> str:
    """The interval's method in words (``two-way interval over seeds and test images``)."""
    return METHODS[d.get("method", "bootstrap")]


def test_images_text(d: dict[str, Any]) -> str:
    """``359 test examples``: the images the interval was computed on. The spot for the count
    of test images removed for overlap with the source (issue 21 item 3) when there is one."""
    return f"{d['n']} test examples"


def interval_text(d: dict[str, Any]) -> str:
    """The sentence under the verdict's table: the interval's method and what it covers."""
    if d.get("method") == "two-way":
        return (
            f"{d['seeds']} confirmation seeds × {test_images_text(d)}: {method_name(d)} "
            f"(paired; seed variance + test-image variance, t with {d['df']:g} df), so it "
            "covers a new test set as well as new seeds."
        )
    if d.get("method") == "seed-t":
        return (
            f"{d['seeds']} confirmation seeds × {test_images_text(d)}: {method_name(d)} "
            f"({d['df']} df) of the per-seed accuracy differences (seeds only)."
        )
    return (
        f"{d['seeds']} seed(s) × {test_images_text(d)}, {d['n_boot']} paired bootstrap "
        "resamples over seeds and examples."
    )


def labels_text(labels: dict[str, int]) -> str:
    if not labels:
        return ""
    source = labels.get("source", 0)
    learned = (
        f", + {source} the source model was already fine-tuned on (this target's split: the "
        "transfer arm had them, scratch did not)"
        if source
        else ""
    )
    return (
        f"labels used {labels['per_model']} per model ({labels['train']} train = k "
        f"{labels['k_shot']} × {labels['classes']} classes, + {labels['val']} validation"
        f"{learned}), {labels['distinct']} distinct labelled images over all seeds' k-shot draws"
    )


def removed_text(p: dict[str, Any]) -> str:
    """How many validation and test images every arm was evaluated without (the leakage
    guard's flagged overlap; 0 is said too), and the guard's weak-recall notes."""
    removed = p.get("overlap_removed")
    if removed is None:
        return ""
    notes = "".join(f"; {n}" for n in removed.get("notes", ()))
    return (
        f"evaluated without {removed['validation']} validation and {removed['test']} test "
        f"images the leakage guard flagged{notes}"
    )


def protocol_sentence(p: dict[str, Any] | None) -> str:
    """One sentence for the verdict's reason (the CLI prints it)."""
    if not p:
        return ""
    lr, wd = p["scratch_config"]["lr"], p["scratch_config"]["weight_decay"]
    scratch = f"lr {lr:g}, wd {wd:g}" if lr is not None and wd is not None else "defaults"
    parts = [
        f"confirmation seeds {seed_span(p['confirmation_seeds'])}",
        f"chosen on validation from {_n(p['arms_compared'], 'transfer configuration')} over "
        f"selection seeds {seed_span(p['selection_seeds'])} (scratch: best of "
        f"{_n(p['scratch_configs'], 'configuration')}, {scratch})",
    ]
    if p.get("labels"):
        parts.append(labels_text(p["labels"]))
    if p.get("overlap_removed") is not None:
        parts.append(removed_text(p))
    gain = p.get("source_gain")
    if gain:
        parts.append(
            f"gain due to the source (vs pretraining on the target pool only) "
            f"{pts(gain['mean_diff'])} points [{pts(gain['ci_low'])}, {pts(gain['ci_high'])}]"
        )
    return "Protocol: " + "; ".join(parts) + "."


def protocol_lines(p: dict[str, Any] | None) -> list[str]:
    """The verdict's Markdown section on the protocol (empty without one)."""
    if not p:
        return []
    return ["", "### Protocol", "", protocol_sentence(p).removeprefix("Protocol: ")]


def protocol_tags(p: dict[str, Any] | None) -> dict[str, str]:
    """MLflow tags of the protocol (run and model version)."""
    if not p:
        return {}
    tags = {
        "gate_confirmation_seeds": ",".join(str(s) for s in p["confirmation_seeds"]) or "none",
        "gate_arms_compared": str(p["arms_compared"]),
        "gate_scratch_configs": str(p["scratch_configs"]),
    }
    if p.get("labels"):
        tags["gate_labels_used"] = str(p["labels"]["per_model"])
    if p.get("source_gain"):
        tags["gate_source_gain"] = f"{p['source_gain']['mean_diff']:.4f}"
    return tags

    return tags


def champion_row(decision: Decision) -> str:
    """The verdict table's row against the champion (or why there is none to compare)."""
    c, version = decision.vs_champion, decision.champion_version
    if decision.champion_not_applicable:
        why = decision.champion_not_applicable
        return f"| vs champion (v{version}) | — | — | — | — | not applicable: {why} | yes |"
    if c is None and version is not None:
        return f"| vs champion (v{version}) | — | — | — | — | comparable | no |"
    if c is None:
        return "| vs champion | — | — | — | — | no champion yet | yes |"
    return (
        f"| vs champion (v{version}) | {pct(c['candidate_accuracy'])}"
        f" | {pct(c['baseline_accuracy'])} | {pts(c['mean_diff'])}"
        f" | [{pts(c['ci_low'])}, {pts(c['ci_high'])}] | Δ ≥ 0 | "
        f"{'yes' if c['mean_diff'] >= 0 else 'no'} |"
    )


def decision_markdown(decision: Decision, alpha: float) -> str:
    """The verdict as Markdown: heading, reason, the comparisons at the ``1 - alpha`` level, the
    interval's sentence and the protocol's lines (MLflow, Prefect and the model card show it)."""
    d, margin = decision.delta_vs_scratch, decision.margin
    lines = [
        f"## Gate: **{decision.verdict}** — `{decision.candidate}`",
        "",
        decision.reason,
        "",
        "| comparison | candidate acc | other acc | Δ (points) | "
        f"{round(100 * (1 - alpha))}% CI (points) | condition | met |",
        "|---|---|---|---|---|---|---|",
        f"| vs scratch{metric_note(d)} | {pct(d['candidate_accuracy'])}"
        f" | {pct(d['baseline_accuracy'])}"
        f" | {pts(d['mean_diff'])} | [{pts(d['ci_low'])}, {pts(d['ci_high'])}]"
        f" | CI lower bound > {pts(margin)} | {'yes' if d['ci_low'] > margin else 'no'} |",
        champion_row(decision),
        "",
        interval_text(d),
    ]
    lines += protocol_lines(decision.protocol)
    return "\n".join(lines) + "\n"


def metric_note(d: dict[str, Any]) -> str:
    """The vs-scratch row's note when the gate compared balanced accuracy (its columns hold it)."""
    return " (balanced accuracy)" if d.get("metric") == "balanced_accuracy" else ""


def drop_text(row: dict[str, Any]) -> str:
    """``class 7: 62% vs scratch 80% (-18 points, 6 test images)``."""
    return (
        f"class {row['class']}: {100 * row['accuracy']:.0f}% vs scratch "
        f"{100 * row['scratch_accuracy']:.0f}% ({100 * row['diff']:+.0f} points, "
        f"{row['test_images']} test images)"
    )


def drops_sentence(rows: Sequence[dict[str, Any]], drop: float) -> str:
    """The verdict's sentence naming the classes below scratch (``promotion.classes.class_drops``,
    by more than ``drop``, its ``CLASS_DROP``; empty when none)."""
    if not rows:
        return ""
    named = "; ".join(drop_text(r) for r in rows)
    return f"Below scratch by more than {100 * drop:.0f} points: {named}."
