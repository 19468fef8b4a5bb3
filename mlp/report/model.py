"""The best run's model, read from its file (`best_model`), and its predictions on the test set for
the confusion analysis (`best_model_predictions`; an autoencoder's evaluation is in
mlp.report.autoencoder).

The report only reads: the file is the one the store records for the run, made available before
the report by mlp.sweep.models (the run's own file, its W&B artifact, or a retrain), and the
store's `model_source` says which — the report says it in words.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from mlp.core.model_file import load_model
from mlp.errors import UsageError

__all__ = ["best_model", "best_model_predictions", "model_source_words"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def model_source_words(run: dict, net) -> tuple[str, str]:
    """(where the model comes from, a note on why) in words, from the store's `model_source`."""
    extra = getattr(net, "extra", None) or {}
    source = run.get("model_source")
    if source == "retrain" or (source in (None, "run") and extra.get("saved_by") == "mlp report"):
        why = extra.get("retrained_because") or "its run's own model was not kept"
        return "a retrain of its exact config", why
    if source == "artifact":
        return f"its own model, downloaded from W&B (artifact {run.get('model_artifact')})", ""
    return "the model its run saved", ""


def best_model(run: dict, n_outputs: int, log: Callable[[str], None] = _log) -> tuple:
    """The run's network from the model file the store records for it. Returns (net, source in
    words, note, model path). A missing or unusable file is a one-line UsageError saying how to get
    it (`mlp report` on the command line fetches or retrains it first)."""
    path = run.get("model_path")
    fix = ("`mlp report` fetches its W&B model artifact or retrains its config before writing the report "
           "(mlp.sweep.models.ensure_best_model)")
    if not path:
        raise UsageError(f"best run {run['id']} has no model file in the store; {fix}")
    net = load_model(path)
    if net.n_outputs != n_outputs:
        raise UsageError(f"best run {run['id']}: model file {path} outputs {net.n_outputs} values, its data needs "
                         f"{n_outputs}; {fix}")
    log(f"best run {run['id']}: loaded its model from {path}")
    source, note = model_source_words(run, net)
    return net, source, note, path


def best_model_predictions(run: dict, data, log: Callable[[str], None] = _log) -> dict:
    """Predictions of the run's model (`best_model`) on the test and validation sets.

    Returns {"proba", "pred", "val_accuracy", "test_accuracy", "source" (in words), "model_path",
    "note"}."""
    net, source, note, path = best_model(run, len(data.class_names), log=log)
    proba = net.predict_proba(data.x_test)
    pred = proba.argmax(axis=1)
    val_pred = net.predict(data.x_val) if len(data.x_val) else np.zeros(0, dtype=int)
    return {"proba": proba, "pred": pred, "source": source, "model_path": path, "note": note,
            "test_accuracy": float(np.mean(pred == data.y_test)),
            "val_accuracy": float(np.mean(val_pred == data.y_val)) if len(data.y_val) else float("nan")}
