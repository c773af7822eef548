"""The reports show their data: lines with the right points, labelled axes, titles,
legends; pretraining histories (``loss``/``acc``, GAN ``d_loss``/``g_loss``) as well as
fine-tuning ones; captioned artifact images; the label-efficiency page and its table rows; one
confusion count behind the model card, the figure and batch prediction."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from warmstart.errors import DataError
from warmstart.reports import model_card, plots, predict, sweep


def _lines(ax) -> dict[str, tuple[list, list]]:
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines}


def test_supervised_pretraining_curves_show_loss_and_accuracy():
    hist = [
        {"epoch": e, "loss": 2.0 / e, "acc": 0.3 * e, "lr": 0.1, "images": 64} for e in (1, 2, 3)
    ]
    fig = plots.learning_curves_figure({"supervised": hist}, title="pretrain-source[supervised]")
    ax_loss, ax_acc = fig.axes
    assert _lines(ax_loss) == {"train": ([1, 2, 3], [2.0, 1.0, 2.0 / 3])}
    assert _lines(ax_acc) == {"train": ([1, 2, 3], pytest.approx([0.3, 0.6, 0.9]))}
    assert (ax_loss.get_xlabel(), ax_loss.get_ylabel(), ax_loss.get_title()) == (
        "epoch",
        "loss",
        "loss",
    )
    assert ax_acc.get_ylabel() == "accuracy (fraction)" and ax_acc.get_legend() is not None
    assert fig.get_suptitle() == "pretrain-source[supervised]"
    assert plots.figure_png(fig).startswith(b"\x89PNG")


def test_autoencoder_curve_is_one_loss_panel():
    hist = [{"epoch": 1, "loss": 0.09, "lr": 1e-3}, {"epoch": 2, "loss": 0.05, "lr": 1e-3}]
    fig = plots.learning_curves_figure({"autoencoder": hist})
    (ax,) = fig.axes
    assert _lines(ax) == {"train": ([1, 2], [0.09, 0.05])}
    assert ax.get_ylabel() == "loss" and fig.get_suptitle() == "autoencoder"
    lo, hi = ax.get_ylim()
    assert lo < 0.05 and hi > 0.09 and hi < 0.2  # scaled to the data, not an empty 0-1 plot


def test_gan_curves_show_discriminator_and_generator_not_their_sum():
    hist = [{"epoch": e, "loss": 3.0, "d_loss": 1.0, "g_loss": 2.0, "d_real": 0.6} for e in (1, 2)]
    (ax,) = plots.learning_curves_figure({"gan": hist}).axes
    assert _lines(ax) == {"discriminator": ([1, 2], [1.0, 1.0]), "generator": ([1, 2], [2.0, 2.0])}


def test_finetune_curves_per_arm_and_split():
    hist = {
        "gan/lp_ft": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "train_acc": 0.8, "val_acc": 0.7},
        ],
        "scratch": [{"train_loss": 1.2, "val_accuracy": 0.3}],
    }
    ax_loss, ax_acc = plots.learning_curves_figure(hist).axes
    assert _lines(ax_loss) == {
        "gan/lp_ft (train)": ([1, 2], [1.0, 0.5]),
        "gan/lp_ft (val)": ([1, 2], [1.1, 0.7]),
        "scratch (train)": ([1], [1.2]),
    }
    assert _lines(ax_acc) == {
        "gan/lp_ft (train)": ([1, 2], [0.5, 0.8]),
        "gan/lp_ft (val)": ([1, 2], [0.4, 0.7]),
        "scratch (val)": ([1], [0.3]),
    }
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax_loss.lines}
    assert styles["gan/lp_ft (train)"] == "--" and styles["gan/lp_ft (val)"] == "-"


def test_history_without_loss_or_accuracy_is_refused():
    with pytest.raises(DataError, match="loss or accuracy"):
        plots.learning_curves_figure({"x": [{"epoch": 1, "lr": 0.1}]})
    with pytest.raises(DataError):
        plots.learning_curves_figure({})


def test_artifact_png_is_larger_and_captioned():
    grid = np.zeros((70, 274, 3), dtype=np.uint8)
    grid[10:20, 10:20] = 255
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    png = plots.artifact_png("gan_samples", buf.getvalue(), label="pretraining: gan")
    w, h = Image.open(io.BytesIO(png)).size
    assert w >= 480 and h > 70
    fig = plots.captioned_image_figure(grid, plots.ARTIFACT_CAPTIONS["ae_reconstructions"])
    (ax,) = fig.axes
    assert "odd rows" in ax.get_title() and "even rows: their reconstructions" in ax.get_title()
    assert ax.images[0].get_array().shape == (70, 274, 3)
    with pytest.raises(DataError, match="H×W×3"):
        plots.captioned_image_figure(grid[..., 0], "x")


def test_label_efficiency_page_and_table_artifact_rows():
    rows = [
        {"k": 1, "arm": "scratch", "seeds": 2, "val_acc": 0.5, "test_acc": 0.123456,
         "ci_low": 0.1, "ci_high": 0.15, "train_seconds": 1.23456, "histories": [[[1, 0.5, 2.0]]]},
        {"k": 5, "arm": "scratch", "seeds": 2, "val_acc": 0.6, "test_acc": 0.25,
         "ci_low": 0.2, "ci_high": 0.3, "train_seconds": 2.0, "histories": []},
    ]  # fmt: skip
    md = sweep.markdown(rows)
    assert md.splitlines() == [
        "| arm | k=1 | k=5 |",
        "|---|---|---|",
        "| scratch | 12.3 [10.0, 15.0] | 25.0 [20.0, 30.0] |",
    ]
    assert sweep.page_markdown("digits", md) == "# digits\n\n" + md
    captioned = sweep.page_markdown("digits", md, caption=True)
    assert captioned == "# digits\n\nTest accuracy %, mean [95% CI] over seeds.\n\n" + md
    cells = sweep.table_artifact_rows(rows)
    assert cells[0] == {
        "k": 1, "arm": "scratch", "seeds": 2, "val_acc": 0.5, "test_acc": 0.1235,
        "ci_low": 0.1, "ci_high": 0.15, "train_seconds": 1.2346,
    }  # fmt: skip
    assert "histories" in rows[0]  # the rows themselves are left as they were


def test_one_confusion_count_behind_the_card_the_figure_and_batch_prediction():
    y, pred = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    expected = [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert plots.confusion_matrix(np.array(y), np.array(pred), 3).tolist() == expected
    assert model_card.confusion(y, pred, 3) == expected
    files = [f"{c}/{i}.png" for i, c in enumerate("aabccc")]
    scored = predict.evaluate(files, ["a", "b", "c"], np.array(pred))
    assert scored["confusion"].drop(columns="true").values.tolist() == expected
    # a prediction outside the classes is refused, not wrapped round into another cell
    with pytest.raises(DataError, match=r"outside 0\.\.2"):
        model_card.confusion([0, 1], [0, -1], 3)
