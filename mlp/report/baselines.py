"""The report's Baselines section: what the MLP buys — the rows `mlp baselines` (mlp.sweep.baselines)
kept in the store for exactly this sweep's split, beside the published numbers.

A row belongs to a sweep's split when its digest of the validation rows (`Dataset.val_rows_sha256`)
is the sweep's. `PUBLISHED` holds the
Fashion-MNIST paper's rows for settings like ours (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747,
Table 3: the mean test accuracy of 5 runs trained on all 60,000 training images), cited as
published, not re-measured.
"""
from __future__ import annotations

from mlp import config as C
from mlp.report import analysis as A
from mlp.report.blocks import Paragraph, Table
from mlp.report.text import num
from mlp.runs.baseline_models import MODELS

__all__ = ["PUBLISHED", "latest", "report_blocks", "draw_reference_lines"]

# Xiao et al. 2017 (arXiv:1708.07747), Table 3, for the settings closest to ours: (setting, Fashion-MNIST, MNIST)
PUBLISHED = {
    "logistic_regression": ("LogisticRegression C=1, multi_class=ovr, penalty=l1", 0.842, 0.917),
    "knn": ("KNeighborsClassifier n_neighbors=5, p=2, weights=distance", 0.852, 0.945),
    "random_forest": ("RandomForestClassifier n_estimators=100, criterion=entropy, max_depth=100", 0.873, 0.970),
    "sklearn_mlp": ("MLPClassifier activation=relu, hidden_layer_sizes=[100]", 0.871, 0.972),
}
PAPER = "Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747, Table 3"


# ---- in the report ---------------------------------------------------------------------------------------------

def latest(store, dataset) -> list[dict]:
    """The newest baseline row of each model trained on exactly `dataset`'s validation rows (a
    loaded Dataset), in MODELS order."""
    digest = getattr(dataset, "val_rows_sha256", None)
    if digest is None:
        return []
    newest = {}
    for row in store.list_baselines(dataset=dataset.name, val_rows_sha256=digest):
        newest[row["model"]] = row            # oldest first: the last one wins
    order = list(MODELS)
    return sorted(newest.values(), key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))


def _command(data) -> str:
    """The `mlp baselines` command for this sweep's split (its dataset, split and validation share)."""
    config = data.best["config"] if data.best else {}
    words = [f"mlp baselines -d {data.dataset_name}"]
    split = config.get("split", "standard")
    if split != "standard":
        words.append(f"--split {split}")
    elif config.get("val_fraction", 0.1) != 0.1:
        words.append(f"--val_fraction {A.fmt_value(config['val_fraction'])}")
    return " ".join(words)


def report_blocks(data) -> list:
    """The report's "Baselines" section (typed blocks) for ReportData `data` with `.baselines`
    (rows of `latest`) and `.task`."""
    if data.task == "autoencoder":
        return [Paragraph("Baselines are classifiers (`mlp baselines`); an autoencoder sweep is compared through "
                          "its features instead: a classifier trained on the frozen encoder's bottleneck (see the "
                          "[best run](#best)).")]
    rows = list(data.baselines or [])
    if not rows:
        return [Paragraph(f"Not run yet: `{_command(data)}` trains logistic regression, k-nearest neighbours, a "
                          f"random forest, scikit-learn's MLP and, with PyTorch installed, the PyTorch twin of "
                          f"train.py's defaults (of this sweep's best run with `--sweep {data.sweep_id}`) on exactly "
                          f"this split; this section then shows them next to the sweep's runs.")]
    best = data.best
    blocks = [Paragraph(f"Trained by `mlp baselines` on exactly the training and validation rows of this sweep's "
                        f"runs ({rows[0]['n_train']} / {rows[0]['n_val']} / {rows[0]['n_test']} images; nothing "
                        f"selected on the test set). The sweep's best run {best['id']} has validation accuracy "
                        f"{num(A.metric_of(best, 'val_accuracy'))} and test accuracy "
                        f"{num(A.metric_of(best, 'test_accuracy'))}"
                        + ("; the dashed lines in [the accuracy of every run](#runs) are these baselines' "
                           "validation accuracies." if data.metric == "val_accuracy" else "."))]
    blocks.append(Table(["model", "val accuracy", "test accuracy", "train seconds", "settings", "library"],
                        [[r["label"], num(r["val_accuracy"]), num(r["test_accuracy"]), f"{r['train_seconds']:.1f}",
                          _settings(r), r["library"] or "–"] for r in rows]))
    if data.dataset_name in ("fashion_mnist", "mnist"):
        column = 1 if data.dataset_name == "fashion_mnist" else 2
        blocks.append(Paragraph(f"Published for comparison ({PAPER}: mean test accuracy of 5 runs trained on all "
                                f"60,000 training images; not re-measured here):"))
        blocks.append(Table(["model", "published setting", "published test accuracy"],
                            [[MODELS[m][0], PUBLISHED[m][0], f"{PUBLISHED[m][column]:.3f}"] for m in PUBLISHED]))
    return blocks


def _settings(row) -> str:
    settings = dict(row.get("settings") or {})
    config = settings.pop("config", None)
    text = ", ".join(f"{k}={A.fmt_value(v)}" for k, v in settings.items())
    if config:
        text = (f"{C.run_name(config)}, lr {A.fmt_value(config.get('learning_rate'))}, {config.get('epochs')} "
                f"epochs" + (f"; {text}" if text else ""))
    return text


def draw_reference_lines(ax, data) -> None:
    """Dashed horizontal lines at the baselines' validation accuracies on an axis whose y is the
    sweep's val_accuracy (the "accuracy vs created" figure); nothing for other metrics."""
    rows = data.baselines or []
    if data.metric != "val_accuracy" or not rows:
        return
    colours = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd"]
    for k, row in enumerate(rows):
        if row["val_accuracy"] is None:
            continue
        ax.axhline(row["val_accuracy"], color=colours[k % len(colours)], linestyle="--", linewidth=1.1, zorder=1,
                   label=f"baseline {row['label'][:40]}: {row['val_accuracy']:.4f}", gid=f"baseline:{row['model']}")
