"""`mlp baselines`: what the MLP buys — the baseline models of `mlp.runs.baselines` (scikit-learn
classifiers, the PyTorch twin of a sweep's best run) trained on exactly the split train.py uses,
each row kept in the store as it finishes (the report's Baselines section reads them:
mlp.report.baselines).

The data is `load_dataset(dataset, data_dir, split, val_fraction)`, the very call a run makes, so
the training rows are the run's training rows and the validation rows its validation rows (the
store keeps their digest, `Dataset.val_rows_sha256`, with every row). The twin's network is the
best run of `--sweep` (by the sweep's metric), else train.py's defaults.

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
from mlp.runs import results as R
from mlp.runs.baseline_models import MODELS, TWIN
from mlp.runs.baselines import fit_sklearn, fit_twin, torch_available, twin_unsupported
from mlp.runs.data import load_dataset
from mlp.runs.store import Store
from mlp.sweep.bridge import open_store, resolve
from mlp.sweep.files import objective, sweep_task

__all__ = ["run_baselines", "twin_config"]


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
        best = R.best_first(runs, metric, goal)
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
    the CLI's --store, else MLP_STORE, else ./mlp-runs.sqlite) as it finishes; returns the stored rows in training
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
        store = Store(store_path, create=True)
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
