"""The best run's model: load the file the agent saved, or retrain its exact config (`best_model`),
then predict the test set for the confusion analysis (`best_model_predictions`; an autoencoder's
evaluation is in mlp.report.autoencoder).

A retrained model is saved next to the store (mlp-models/SWEEP/RUN.npz, where agents put
theirs) and its path recorded in the run, so the next report loads it instead of retraining.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from mlp.core.network import load_model
from mlp.errors import UsageError
from mlp.report.text import plural
from mlp.runs.experiment import train
from mlp.runs.store import model_path_for

__all__ = ["best_model", "best_model_predictions", "retrain", "model_target"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def model_target(store_path: str, sweep_id: str, run_id: str) -> Path:
    """Where a sweep's runs keep their models (mlp.runs.store.model_path_for)."""
    return model_path_for(store_path, sweep_id, run_id)


def retrain(config: dict, data, log: Callable[[str], None] = _log):
    """Train `config` (a run's full effective config) on `data` exactly as train.py does — through
    the same `experiment.train`. Returns the network."""
    from threadpoolctl import threadpool_limits
    log(f"retraining: {plural(config['epochs'], 'epoch')} of {config['optimizer']} on {len(data.x_train)} images, "
        f"one BLAS thread (progress below)")
    # float32 sums depend on how BLAS splits them over threads; one thread is the same everywhere
    # and is what parallel agents (`--jobs 2` on two cores) trained with
    with threadpool_limits(limits=1):
        net, _ = train(config, data, progress=True)
    return net


def best_model(store, sweep_id: str, run: dict, data, n_outputs: int | None = None,
               log: Callable[[str], None] = _log) -> tuple:
    """The run's network: the model file it saved, else a retrain of its exact config (kept beside
    the store, so the next report loads it). `n_outputs`: what the network must output for `data`
    (default one score per class; an autoencoder's is the number of pixels).
    Returns (net, source in words, note on a fallback or "", model path or None)."""
    n_outputs = len(data.class_names) if n_outputs is None else n_outputs
    net, note, source = None, "", "the model the agent saved"
    path = run.get("model_path")
    if path and Path(path).is_file():
        try:
            net = load_model(path)
            log(f"best run {run['id']}: loaded its model from {path}")
            if (getattr(net, "extra", None) or {}).get("saved_by") == "mlp report":
                source = "the retrain of its exact config that an earlier `mlp report` saved"
                note = "the run's own model was not kept"
        except UsageError as e:
            note = f"its saved model could not be loaded ({e})"
            log(f"best run {run['id']}: {note}")
    elif path:
        note = f"its saved model {path} is gone"
    else:
        note = "the run's own model was not kept: it predates model saving"
    if net is not None and net.n_outputs != n_outputs:
        note = f"its saved model {path} does not match the dataset"
        net = None
    if net is None:
        log(f"best run {run['id']}: {note}")
        net = retrain(run["config"], data, log)
        source = "a retrain of its exact config"
        target = model_target(store.path, sweep_id, run["id"])
        try:
            net.save(target, extra={"config": run["config"], "run_id": run["id"], "saved_by": "mlp report"})
            store.update_run(run["id"], model_path=str(target))
            path = str(target)
            log(f"best run {run['id']}: model saved to {target} and recorded in the store")
        except Exception as e:  # a read-only store or folder: the report still works
            log(f"best run {run['id']}: could not keep the retrained model ({e})")
            path = None
    return net, source, note, path


def best_model_predictions(store, sweep_id: str, run: dict, data,
                           log: Callable[[str], None] = _log) -> dict:
    """Predictions of the run's model (`best_model`) on the test and validation sets.

    Returns {"proba", "pred", "val_accuracy", "test_accuracy", "source" (saved or retrained, in
    words), "model_path", "note"}; note explains a fallback (e.g. an unreadable file)."""
    net, source, note, path = best_model(store, sweep_id, run, data, log=log)
    proba = net.predict_proba(data.x_test)
    pred = proba.argmax(axis=1)
    val_pred = net.predict(data.x_val) if len(data.x_val) else np.zeros(0, dtype=int)
    return {"proba": proba, "pred": pred, "source": source, "model_path": path, "note": note,
            "test_accuracy": float(np.mean(pred == data.y_test)),
            "val_accuracy": float(np.mean(val_pred == data.y_val)) if len(data.y_val) else float("nan")}
