"""`mlp baselines`: what the MLP buys — scikit-learn models and the PyTorch twin of a sweep's best
run, trained on exactly the split train.py uses, their accuracies in the store and the report.

The data is `load_dataset(dataset, data_dir, split, val_fraction)`, the very call a run makes, so
the training rows are the run's training rows and the validation rows its validation rows (the
store keeps their digest, `Dataset.val_rows_sha256`, with every row). Each model is trained once
on the training rows with the fixed settings below — nothing is selected, on validation or on
test — then scored on validation and, last, on the test set.

Settings (MODELS), chosen after the Fashion-MNIST paper's scikit-learn benchmark (Xiao, Rasul &
Vollgraf 2017, arXiv:1708.07747, Table 3: the mean test accuracy of 5 runs trained on all 60,000
training images; `PUBLISHED` holds its rows for these settings, cited as published, not
re-measured):

* logistic regression — `LogisticRegression(C=1.0, solver="lbfgs", max_iter=200)`: multinomial,
  L2 (the paper's best row is one-vs-rest L1 with liblinear, which takes far longer);
* k-nearest neighbours — `KNeighborsClassifier(n_neighbors=5, weights="distance", p=2)`:
  Euclidean distance (matrix products; the paper's best row uses p=1);
* random forest — `RandomForestClassifier(n_estimators=100, criterion="entropy", max_depth=100,
  random_state=0)`: the paper's best row;
* scikit-learn MLP — `MLPClassifier(hidden_layer_sizes=(100,), activation="relu",
  max_iter=50, random_state=0)`: the paper's best row, stopped after 50 epochs (its default is
  200; training loss has flattened by then);
* PyTorch twin — the best run of `--sweep` (by the sweep's metric), else train.py's defaults,
  rebuilt layer by layer in `torch.nn` from the same initial weights, trained with the torch
  twin of its optimizer on the same mini-batch order, schedule and augmentation; only when
  torch is importable (the `torch` extra). Eve and weight averaging have no torch twin.

`--jobs` sets n_jobs of k-NN and the random forest and PyTorch's threads (default 1: on a shared
machine, spinning OpenMP threads of a twin that waits for a descheduled peer cost it minutes);
training seconds are wall-clock seconds of
`fit` (the twin: its epochs); the seconds spent predicting validation and test are kept in a
scikit-learn row's settings (`predict_seconds`: k-NN's real cost, its fit only stores the data).
"""
from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from typing import Callable

import numpy as np

from mlp import config as C
from mlp.core import augment as augmentation
from mlp.core import schedules
from mlp.errors import UsageError
from mlp.report import analysis as A
from mlp.report.blocks import Paragraph, Table
from mlp.report.text import num
from mlp.runs.data import load_dataset
from mlp.runs.experiment import build
from mlp.runs.store import Store, default_store_path
from mlp.runs.training import batches
from mlp.sweep.bridge import open_store, resolve
from mlp.sweep.files import objective, sweep_task

__all__ = ["MODELS", "PUBLISHED", "run_baselines", "parse_models", "latest", "report_blocks",
           "draw_reference_lines", "TWIN"]

TWIN = "torch_twin"
# name -> (label, module, class, settings)
MODELS = {
    "logistic_regression": ("logistic regression", "sklearn.linear_model", "LogisticRegression",
                            {"C": 1.0, "solver": "lbfgs", "max_iter": 200}),
    "knn": ("k-nearest neighbours", "sklearn.neighbors", "KNeighborsClassifier",
            {"n_neighbors": 5, "weights": "distance", "p": 2}),
    "random_forest": ("random forest", "sklearn.ensemble", "RandomForestClassifier",
                      {"n_estimators": 100, "criterion": "entropy", "max_depth": 100, "random_state": 0}),
    "sklearn_mlp": ("scikit-learn MLP", "sklearn.neural_network", "MLPClassifier",
                    {"hidden_layer_sizes": [100], "activation": "relu", "max_iter": 50, "random_state": 0}),
    TWIN: ("PyTorch twin", None, None, {}),
}
PARALLEL = ("knn", "random_forest")     # the models that take n_jobs
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


def parse_models(text: str | None) -> list[str]:
    """`logistic_regression,knn` -> the models in MODELS order; None: all of them."""
    if not text:
        return list(MODELS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise UsageError(f"--models: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from "
                         f"{', '.join(MODELS)}")
    return [m for m in MODELS if m in names]


def torch_available() -> bool:
    try:
        importlib.import_module("torch")
        return True
    except ImportError:
        return False


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


# ---- training ----------------------------------------------------------------------------------------------

def _sklearn(name: str, jobs: int):
    label, module, cls, settings = MODELS[name]
    kwargs = dict(settings)
    if "hidden_layer_sizes" in kwargs:
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
    if name in PARALLEL:
        kwargs["n_jobs"] = jobs
    return getattr(importlib.import_module(module), cls)(**kwargs)


def _fit_sklearn(name, data, jobs):
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    model = _sklearn(name, jobs)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data.x_train, data.y_train)
    seconds = time.perf_counter() - started
    settings = dict(MODELS[name][3])
    if name in PARALLEL:
        settings["n_jobs"] = jobs
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        settings["converged"] = False         # stopped at max_iter: said, not hidden
    started = time.perf_counter()
    val = float(np.mean(model.predict(data.x_val) == data.y_val)) if len(data.y_val) else None
    test = float(np.mean(model.predict(data.x_test) == data.y_test))
    settings["predict_seconds"] = round(time.perf_counter() - started, 2)   # k-NN's work happens here
    return {"label": MODELS[name][0], "settings": settings, "val_accuracy": val, "test_accuracy": test,
            "train_seconds": seconds, "library": f"scikit-learn {sklearn.__version__}"}


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


_TORCH_ACTIVATIONS = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU",
                      "gelu": "GELU", "elu": "ELU"}


def _torch_model(net, torch):
    """`net`'s layers as a torch.nn.Sequential holding the same weights."""
    nn = torch.nn
    modules, shape = [], net.input_shape[0]
    for layer in net.layers:
        kind = layer.spec()["type"]
        if kind == "dense":
            m = nn.Linear(shape, layer.units, bias=layer.bias)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params["W"].T)))
                if layer.bias:
                    m.bias.copy_(torch.from_numpy(layer.params["b"]))
            shape = layer.units
        elif kind == "batch_norm":
            m = nn.BatchNorm1d(shape, eps=layer.eps, momentum=layer.momentum)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                m.bias.copy_(torch.from_numpy(layer.params["beta"]))
        elif kind == "dropout":
            m = nn.Dropout(layer.p)
        elif kind == "activation":
            m = nn.LeakyReLU(0.01) if layer.name == "leaky_relu" else getattr(nn, _TORCH_ACTIVATIONS[layer.name])()
        else:
            raise UsageError(f"no PyTorch twin for a {kind} layer")
        modules.append(m)
    return nn.Sequential(*modules)


def _torch_optimizer(config, params, torch):
    o, lr = config["optimizer"], config["learning_rate"]
    if o == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if o in ("momentum", "nag"):
        return torch.optim.SGD(params, lr=lr, momentum=config["momentum"], nesterov=o == "nag")
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=config["beta"], eps=config["epsilon"])
    if o == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(config["beta1"], config["beta2"]), eps=config["epsilon"])
    if o == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=(config["beta1"], config["beta2"]), eps=config["epsilon"])
    return None


def twin_unsupported(config) -> str | None:
    """Why this config has no PyTorch twin, or None."""
    if config["optimizer"] not in ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam"):
        return f"optimizer {config['optimizer']} has no torch.optim twin"
    if config["weight_averaging"] != "none":
        return f"weight averaging ({config['weight_averaging']}) is not twinned"
    return None


def _fit_twin(config, data, log, jobs=1):
    """Train the torch twin of `config` with `jobs` threads; accuracies like _fit_sklearn's."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(jobs)
    try:
        return _train_twin(config, data, torch)
    finally:
        torch.set_num_threads(threads)


def _train_twin(config, data, torch):
    torch.manual_seed(config["seed"])
    net, _ = build(config, data.x_train.shape[1], len(data.class_names))
    model = _torch_model(net, torch)
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    optimizer = _torch_optimizer(config, model.parameters(), torch)
    rng = np.random.default_rng([config["seed"], 1])            # the fit loop's stream: same batch order
    n, size = len(data.x_train), config["batch_size"]
    steps = max(1, math.ceil(n / size))
    schedule = schedules.build(config["lr_schedule"], config["learning_rate"], config["epochs"] * steps, steps,
                               warmup_steps=round(min(config["warmup_epochs"], config["epochs"]) * steps))
    augment = augmentation.augmenter(config["augment_shift"], config["augment_flip"])
    lam, smoothing = config["weight_decay"], config["label_smoothing"]
    x_val, x_test = torch.from_numpy(data.x_val), torch.from_numpy(data.x_test)

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(x[i:i + 4096]).argmax(1) for i in range(0, len(x), 4096)]).numpy() \
                if len(x) else np.zeros(0, int)
        model.train()
        return float(np.mean(pred == y)) if len(y) else None

    best, step, patience = None, 0, config["early_stopping"]
    started = time.perf_counter()
    model.train()
    for epoch in range(1, config["epochs"] + 1):
        for idx in batches(n, size, rng):
            xb = data.x_train[idx]
            if augment is not None:
                xb = augment(xb, rng)
            xb, yb = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(data.y_train[idx])
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            z = model(xb)
            if config["loss"] == "cross_entropy":
                loss = torch.nn.functional.cross_entropy(z, yb, label_smoothing=smoothing)
            else:                                   # mean_squared_error on the softmax, summed over classes
                onehot = torch.nn.functional.one_hot(yb, z.shape[1]).to(z.dtype)
                loss = ((torch.softmax(z, 1) - onehot) ** 2).sum(1).mean()
            if lam:
                loss = loss + 0.5 * lam * sum((w * w).sum() for w in weights)
            if not torch.isfinite(loss):
                raise UsageError(f"the PyTorch twin diverged at epoch {epoch} (loss {loss.item()})")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if patience:
            val = accuracy(x_val, data.y_val)
            if best is None or val > best[0]:
                best = (val, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            if epoch - best[1] >= patience:
                break
    if best is not None:
        model.load_state_dict(best[2])
    seconds = time.perf_counter() - started
    settings = {"config": C.hyperparameters(config), "torch_threads": torch.get_num_threads()}
    return {"settings": settings, "val_accuracy": accuracy(x_val, data.y_val),
            "test_accuracy": accuracy(x_test, data.y_test), "train_seconds": seconds,
            "library": f"torch {torch.__version__}"}


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
                result = _fit_twin(twin[0], data, log, jobs)
                result.update(label=label, sweep_id=twin[1], run_id=twin[2])
            else:
                result = _fit_sklearn(name, data, jobs)
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
