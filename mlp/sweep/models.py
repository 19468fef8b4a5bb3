"""The best run's model, made available before a report is written (the report only reads it).

A run's model file comes from, in order:

1. **the run** — a sweep's run keeps its model beside the store (`mlp-models/SWEEP/RUN.npz`),
   under `mlp agent` and `wandb agent` alike (store column `model_source` = "run");
2. **its W&B artifact** — every run that logs to W&B logs its model file as an artifact of type
   `model` (mlp.runs.tracking); importing a W&B sweep downloads the best runs' artifacts beside the
   store (`download_models`; "artifact", with the artifact's name in `model_artifact`), so the
   confusion matrix of a run from another machine is its own model's;
3. **a retrain** of the run's exact config through the one training path train.py uses — only for a
   run that has neither (W&B disabled, or a run from before model artifacts): "retrain", with the
   reason kept in the model file (`retrained_because`) for the report to say.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from mlp.core.model_file import load_model
from mlp.errors import UsageError
from mlp.runs import results as R
from mlp.runs.data import CLASS_NAMES, load_dataset
from mlp.runs.experiment import train
from mlp.runs.store import model_path_for
from mlp.runs.wandb_api import WandbUnreachable
from mlp.sweep import bridge
from mlp.sweep.files import objective

__all__ = ["ensure_best_model", "ensure_model", "usable_model", "retrain"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def expected_outputs(config: dict) -> int:
    """What the run's network outputs: one score per class, or (an autoencoder) every pixel."""
    if config.get("task") == "autoencoder":
        return 784
    return len(CLASS_NAMES.get(config.get("dataset", "fashion_mnist"), range(10)))


def usable_model(run: dict) -> str | None:
    """Why the run's recorded model file cannot be used, or None when it can."""
    path = run.get("model_path")
    if not path:
        return "no model file is recorded for it"
    if not Path(path).is_file():
        return f"its model file {path} is gone"
    try:
        net = load_model(path)
    except UsageError as e:
        return f"its model file could not be loaded ({e})"
    if net.n_outputs != expected_outputs(run.get("config") or {}):
        return f"its model file {path} does not match its config ({net.n_outputs} outputs)"
    return None


def retrain(config: dict, data, log: Callable[[str], None] = _log):
    """Train `config` (a run's full effective config) on `data` exactly as train.py does — through
    the same `experiment.train`, with one BLAS thread (float32 sums depend on how BLAS splits
    them; one thread is the same everywhere, and what parallel agents train with)."""
    from threadpoolctl import threadpool_limits
    log(f"retraining: {config['epochs']} epoch{'s' if config['epochs'] != 1 else ''} of {config['optimizer']} on "
        f"{len(data.x_train)} images, one BLAS thread (progress below)")
    with threadpool_limits(limits=1):
        net, _ = train(config, data, progress=True)
    return net


def ensure_model(store, sweep: dict, run: dict, data_dir: str | None = None,
                 log: Callable[[str], None] = _log) -> dict:
    """Make `run`'s model file usable: keep it, else download its W&B artifact, else retrain its
    config (saved beside the store, recorded in the run). Returns the run as the store now holds it."""
    why = usable_model(run)
    if why is None:
        return run
    log(f"run {run['id']}: {why}")
    missing = "it logged no model artifact to W&B"
    if run.get("wandb_project"):
        try:
            if bridge.download_model(store, bridge.connection(), sweep["id"], run, log) is not None:
                return store.get_run(run["id"])
        except WandbUnreachable as e:
            missing = f"W&B, which may hold its model artifact, cannot be reached ({e})"
            log(f"run {run['id']}: {missing}")
    reason = f"{why}, and {missing}"
    config = run["config"]
    where = data_dir or R.sweep_data_dir(sweep, run)
    data = load_dataset(config.get("dataset", "fashion_mnist"), data_dir=where, split=config.get("split", "standard"),
                        val_fraction=config.get("val_fraction", 0.1), progress=log)
    net = retrain(config, data, log)
    target = model_path_for(store.path, sweep["id"], run["id"])
    try:
        net.save(target, extra={"config": config, "run_id": run["id"], "saved_by": "mlp report",
                                "retrained_because": reason})
        store.update_run(run["id"], model_path=str(target), model_source="retrain", model_artifact=None)
        log(f"run {run['id']}: retrained model saved to {target} and recorded in the store")
    except OSError as e:
        raise UsageError(f"could not keep the retrained model of run {run['id']} in {target} "
                         f"({e.strerror or e}); pass --store with a writable folder") from None
    return store.get_run(run["id"])


def ensure_best_model(store, sweep_id: str, data_dir: str | None = None,
                      log: Callable[[str], None] = _log) -> dict | None:
    """`ensure_model` for the sweep's best run by its own metric (what the report analyses);
    None when no run has the metric (the report then says why)."""
    sweep = store.get_sweep(sweep_id)
    metric, goal = objective(sweep["config"])
    best = R.best_first(store.list_runs(sweep_id), metric, goal)
    if not best:
        return None
    return ensure_model(store, sweep, best[0], data_dir, log)
