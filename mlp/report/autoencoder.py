"""The report of an autoencoder sweep (`task: autoencoder`): R² where a classifier's report shows
accuracy, and what the best model regenerates.

The pieces, each registered where its kind goes:

* `evaluate_best(run, data, log)` — the best run's model (the file the store records for it, as
  for a classifier) scored on validation and test: loss, R²,
  R² and per-pixel squared error per class, one test image per class with its reconstruction
  (`collect` calls it for an autoencoder sweep and keeps the result in `ReportData.reconstruction`);
* `reconstructions(data)` — the figure (registry.FIGURES, autoencoders only): originals over
  reconstructions, one per class;
* `best_blocks(data)` — the "best" section's blocks for an autoencoder (sections.best_run);
* `reconstruction_quality(data)` — a finding of the Observations (observations.OBSERVATIONS).
"""
from __future__ import annotations

import math
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlp.core.metrics import r2_score  # noqa: E402
from mlp.report import analysis as A  # noqa: E402
from mlp.report.blocks import Figure, Paragraph, Table  # noqa: E402
from mlp.report.model import best_model  # noqa: E402
from mlp.report.text import num  # noqa: E402
from mlp.runs import autoencoder as ae  # noqa: E402

__all__ = ["evaluate_best", "reconstructions", "best_blocks", "reconstruction_quality", "CHANCE_R2"]

CHANCE_R2 = 0.0     # a run at or below this R² does no better than predicting the mean image


def evaluate_best(run: dict, data, log: Callable[[str], None]) -> dict:
    """The run's model (mlp.report.model.best_model) on `data` (a loaded Dataset): validation and
    test loss and R², R² and squared error per class, the first test image of each class and its
    reconstruction, the bottleneck layer, and whether the test R² is the one the run recorded."""
    net, source, note, path = best_model(run, data.x_test.shape[1], log=log)
    val_loss, val_r2, _ = ae.evaluate(net, data.x_val) if len(data.x_val) else (math.nan, math.nan, None)
    test_loss, test_r2, out = ae.evaluate(net, data.x_test)
    per_class = []
    for c, name in enumerate(data.class_names):
        rows = data.y_test == c
        if rows.any():
            err = np.square(out[rows].astype(np.float64) - data.x_test[rows])
            per_class.append({"class": name, "n": int(rows.sum()), "r2": r2_score(data.x_test[rows], out[rows]),
                              "pixel_mse": float(err.mean()), "loss": float(err.sum(axis=1).mean())})
    picks = [int(np.flatnonzero(data.y_test == c)[0]) for c in range(len(data.class_names)) if (data.y_test == c).any()]
    stored = A.metric_of(run, "test_r2")
    b = ae.bottleneck_index(net)
    return {"source": source, "note": note, "model_path": path, "val_loss": val_loss, "val_r2": val_r2,
            "test_loss": test_loss, "test_r2": test_r2, "per_class": per_class, "picks": picks,
            "originals": data.x_test[picks], "reconstructions": out[picks],
            "matches_store": stored is not None and abs(stored - test_r2) < 1e-6,
            "bottleneck": None if b is None else {"index": b, "width": _width(net, b)},
            "layers": len(net.layers)}


def _width(net, index: int) -> int:
    shape = net.input_shape
    for layer in net.layers[:index + 1]:
        shape = layer.shapes(shape)[0]
    return int(np.prod(shape))


def reconstructions(data):
    """Originals (top row) over the best model's reconstructions (bottom row), the first test
    image of each class; None without an evaluated autoencoder."""
    rec = data.reconstruction
    if not rec or not rec["picks"]:
        return None
    n = len(rec["picks"])
    side = int(round(math.sqrt(rec["originals"].shape[1])))
    fig, axes = plt.subplots(2, n, figsize=(1.55 * n + 1.4, 3.9), layout="constrained", squeeze=False)
    for k, i in enumerate(rec["picks"]):
        for row, images in enumerate((rec["originals"], rec["reconstructions"])):
            ax = axes[row, k]
            ax.imshow(np.clip(images[k].reshape(side, side), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
        axes[0, k].set_title(data.class_names[int(data.dataset.y_test[i])], fontsize=9)
    axes[0, 0].set_ylabel("original", fontsize=9)
    axes[1, 0].set_ylabel("reconstruction", fontsize=9)
    fig.suptitle(f"Test images (top) and the reconstructions of the best run {data.best['id']} (bottom): "
                 f"test R² {rec['test_r2']:.4f}")
    return fig


def best_blocks(data) -> list:
    """The "best" section of an autoencoder sweep's report: the best run, the model evaluated, its
    bottleneck, its reconstructions and R² per class."""
    best, rec, m = data.best, data.reconstruction, data.metric
    blocks = [
        Paragraph(f"Run {best['id']} (#{best['seq']}) has the best {m}: {num(A.metric_of(best, m))}; its test R² is "
                  f"{num(A.metric_of(best, 'test_r2'))} and its test loss {num(A.metric_of(best, 'test_loss'))} (as "
                  f"recorded when it ran). Model for the figures below: {rec['source']}"
                  + (f" ({rec['note']})" if rec["note"] else "")
                  + f"; it scores R² {num(rec['val_r2'])} on validation and {num(rec['test_r2'])} on test"
                  + (", as recorded." if rec["matches_store"] else
                     " — computed from this model, so it can differ slightly from what the run recorded (a retrain "
                     "is bit-identical only under the same BLAS thread count).")
                  + " R² is 1 − SSE/SST over all pixels of the set (scikit-learn's variance-weighted `r2_score`); "
                    "the loss is the mean over images of the summed squared error of their pixels."),
        Table(["parameter", "value"], [[k, A.fmt_value(v)] for k, v in A.params_of(best).items() if k != "data_dir"]),
    ]
    if rec.get("bottleneck"):
        bn, model = rec["bottleneck"], rec["model_path"] or "MODEL.npz"
        blocks.append(Paragraph(
            f"Its bottleneck is layer {bn['index']} of {rec['layers']} ({bn['width']} values per image, tagged "
            f"`bottleneck` in the saved model): `python train.py --features {model}:bottleneck --hidden_sizes "
            f"\"[256]\"` trains a small classifier on those features as a run."))
    blocks += [
        Figure("reconstructions"),
        Table(["class", "R² within the class", "mean squared error per pixel", "loss (per image)", "test images"],
              [[c["class"], f"{c['r2']:.4f}", f"{c['pixel_mse']:.5f}", f"{c['loss']:.3f}", c["n"]]
               for c in rec["per_class"]]),
    ]
    return blocks


def reconstruction_quality(data):
    """How well the best model reconstructs the test set, and its hardest class (a finding)."""
    rec = data.reconstruction
    if not rec or not rec["per_class"]:
        return
    worst = min(rec["per_class"], key=lambda c: c["r2"])
    hardest = max(rec["per_class"], key=lambda c: c["pixel_mse"])
    yield (f"The best model reconstructs the test set with R² {rec['test_r2']:.4f} (loss {rec['test_loss']:.3f} per "
           f"image); within a class R² is lowest for {worst['class']} ({worst['r2']:.4f}), and the squared error per "
           f"pixel is highest for {hardest['class']} ({hardest['pixel_mse']:.5f}).")
