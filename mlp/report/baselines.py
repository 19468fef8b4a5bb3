"""`mlp baselines`: what the MLP buys — the baseline models of `mlp.runs.baselines` (scikit-learn
classifiers, the PyTorch twin of a sweep's best run) trained on exactly the split train.py uses,
their accuracies in the store and the report's Baselines section.

The data is `load_dataset(dataset, data_dir, split, val_fraction)`, the very call a run makes, so
the training rows are the run's training rows and the validation rows its validation rows (the
store keeps their digest, `Dataset.val_rows_sha256`, with every row). The twin's network is the
best run of `--sweep` (by the sweep's metric), else train.py's defaults. `PUBLISHED` holds the
Fashion-MNIST paper's rows for settings like ours (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747,
Table 3: the mean test accuracy of 5 runs trained on all 60,000 training images), cited as
published, not re-measured.

`--jobs` sets n_jobs of k-NN and the random forest and PyTorch's threads (default 1: on a shared
machine, spinning OpenMP threads of a twin that waits for a descheduled peer cost it minutes).
"""
from __future__ import annotations

import math
import sys
import threading
from typing import Callable

from mlp import config as C
from mlp.errors import UsageError
from mlp.report import analysis as A
from mlp.report.blocks import Paragraph, Table
from mlp.report.text import num
from mlp.runs.baselines import MODELS, TWIN, fit_sklearn, fit_twin, torch_available, twin_unsupported
from mlp.runs.data import load_dataset
from mlp.runs.store import Store, default_store_path
from mlp.sweep.bridge import open_store, resolve
from mlp.sweep.files import objective, sweep_task

__all__ = ["PUBLISHED", "run_baselines", "latest", "report_blocks", "draw_reference_lines"]

# Xiao et al. 2017 (arXiv:1708.07747), Table 3, for the settings closest to ours: (setting, Fashion-MNIST, MNIST)
PUBLISHED = {
    "logistic_regression": ("LogisticRegression C=1, multi_class=ovr, penalty=l1", 0.842, 0.917),
    "knn": ("KNeighborsClassifier n_neighbors=5, p=2, weights=distance", 0.852, 0.945),
    "random_forest": ("RandomForestClassifier n_estimators=100, criterion=entropy, max_depth=100", 0.873, 0.970),
    "sklearn_mlp": ("MLPClassifier activation=relu, hidden_layer_sizes=[100]", 0.871, 0.972),
}
PAPER = "Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747, Table 3"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---- progress ------------------------------------------------------------------------------------------

class _Progress:
    """One line per model on stderr; on a terminal also a live bar with the seconds running."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.log, self.done = total, log, 0
        self.bar = self.ticker = None
        self.stop = threading.Event()
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, leave=False, unit="model",
                            bar_format="{desc} [{n_fmt}/{total_fmt} models, {elapsed}]")

    def start(self, label: str) -> None:
        self.log(f"baseline {self.done + 1}/{self.total}: {label} ...")
        if self.bar is not None:
            self.bar.set_description_str(f"training {label}")
            self.stop.clear()
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            self.bar.refresh()

    def end(self, line: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.stop.set()
            self.ticker.join()
            self.bar.update(1)
        self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.stop.set()
            self.bar.close()


# ---- which network to twin -------------------------------------------------------------------------------------

def twin_config(store, sweep_ref: str | None, data, val_fraction, log) -> tuple[dict, str | None, str | None]:
    """(config, sweep id, run id) of the network to twin: the sweep's best run, else the defaults;
    its data settings made those of the baselines."""
    sweep_id = run_id = None
    if sweep_ref:
        sweep_id = resolve(store, sweep_ref, log=log)
        sweep = store.get_sweep(sweep_id)
        if sweep_task(sweep["config"]) != "classify":
            raise UsageError(f"sweep {sweep_id} trains autoencoders; baselines compare classifiers — give a classifier "
                             f"sweep to --sweep")
        metric, goal = objective(sweep["config"])
        runs = store.list_runs(sweep_id)
        best = A.best_first(runs, metric, goal)
        if not best:
            raise UsageError(f"sweep {sweep_id} has no finished run with a {metric} yet; run it first (`mlp agent "
                             f"{sweep_id}`)")
        base, run_id = best[0]["config"], best[0]["id"]
    else:
        base = C.DEFAULTS
    config = C.resolve({"dataset": data.name, "split": data.split, "val_fraction": val_fraction}, base=base,
                       source="the twin's config")
    return config, sweep_id, run_id


def run_baselines(store_path, dataset: str, data_dir=None, split: str = "standard", val_fraction: float = 0.1,
                  models=None, sweep: str | None = None, jobs: int = 1,
                  log: Callable[[str], None] = _log) -> list[dict]:
    """Train the baselines on the split train.py uses, record each in the store (`store_path`,
    default MLP_STORE or ./mlp-runs.sqlite) as it finishes; returns the stored rows in training
    order. Bad input (data, sweep, models) raises UsageError before anything is trained or
    written: the store is created only once the data has loaded, and must exist for `sweep`."""
    models = list(models or MODELS)
    if sweep and TWIN not in models:
        raise UsageError("--sweep names the network for the PyTorch twin; add torch_twin to --models")
    data = load_dataset(dataset, data_dir=data_dir, split=split, val_fraction=val_fraction, progress=log)
    store = open_store(store_path, sweep) if sweep else None
    try:
        return _run(store, store_path, data, models, sweep, val_fraction, jobs, log)
    finally:
        if store is not None:
            store.close()


def _run(store, store_path, data, models, sweep, val_fraction, jobs, log):
    twin = None
    if TWIN in models:
        config, sweep_id, run_id = twin_config(store, sweep, data, val_fraction, log)
        why = "PyTorch is not installed (the `torch` extra)" if not torch_available() else twin_unsupported(config)
        if why and models == [TWIN]:
            raise UsageError(f"no PyTorch twin: {why}")
        if why:
            log(f"no PyTorch twin: {why}")
            models.remove(TWIN)
        else:
            source = f"run {run_id} of sweep {sweep_id}" if run_id else "train.py's defaults"
            twin = (config, sweep_id, run_id, f"PyTorch twin of {source} ({C.run_name(config)})")
    if store is None:
        store = Store(store_path or default_store_path(), create=True)
        opened = store
    else:
        opened = None
    log(f"{data.name} from {data.source}: {len(data.x_train)} train / {len(data.x_val)} val / "
        f"{len(data.x_test)} test images (the split train.py uses); the test set is scored once, after training")
    progress, rows = _Progress(len(models), log), []
    try:
        for name in models:
            label = twin[3] if name == TWIN else MODELS[name][0]
            progress.start(label)
            if name == TWIN:
                result = fit_twin(twin[0], data, jobs)
                result.update(label=label, sweep_id=twin[1], run_id=twin[2])
            else:
                result = fit_sklearn(name, data, jobs)
                result.update(sweep_id=None, run_id=None)
            row = {"model": name, **result, "dataset": data.name, "split": data.split,
                   "val_fraction": val_fraction if data.split == "standard" else None,
                   "val_rows_sha256": data.val_rows_sha256, "n_train": len(data.x_train), "n_val": len(data.x_val),
                   "n_test": len(data.x_test)}
            row["id"] = store.add_baseline(**{k: row[k] for k in row if k != "id"})
            rows.append(row)
            progress.end(f"  {label}: val {_pct(row['val_accuracy'])}, test {_pct(row['test_accuracy'])}, "
                         f"{row['train_seconds']:.1f} s")
    finally:
        progress.close()
        if opened is not None:
            opened.close()
    return rows


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2%}"


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
