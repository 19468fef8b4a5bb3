"""What a sweep's runs report, read from their store dicts: each run's final metric, the runs best
first, what the sweep proposed for a run, and a rerun's runs matched to the configurations they
reran. Pure functions on plain data, used by the sweep layer (rerun, baselines, models) and the
report alike.

A run is a store run dict: ``state``, ``summary`` (val_accuracy, test_accuracy, ...), ``params``
(what the sweep proposed), ``config`` (its effective config) and ``stopped_by`` (why it stopped
early, if it did).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["REPORTED_METRICS", "best_first", "metric_of", "params_of", "is_full_run", "was_stopped", "ranked",
           "fmt_value", "describe", "rerun_rows", "searched_parameters", "sweep_data_dir"]


REPORTED_METRICS = {    # task -> (what its runs report on validation, on the test set)
    "classify": ("val_accuracy", "test_accuracy"),
    "autoencoder": ("val_r2", "test_r2"),
}


def best_first(runs: Sequence[Mapping], metric: str, goal: str) -> list[Mapping]:
    """`ranked` runs that trained all their epochs; when none did, every run with the metric."""
    return ranked(runs, metric, goal, full_only=True) or ranked(runs, metric, goal, full_only=False)


def metric_of(run: Mapping, metric: str = "val_accuracy") -> float | None:
    """The run's final metric as a finite float, else None (failed, diverged, never logged)."""
    value = (run.get("summary") or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def params_of(run: Mapping, names: Sequence[str] | None = None) -> dict:
    """The parameters the sweep proposed for this run (as written in the YAML, e.g. "ReLU");
    runs created outside an agent fall back to their effective config."""
    params = run.get("params")
    if not params:
        params = run.get("config") or {}
    if names is None:
        return dict(params)
    return {k: params.get(k, (run.get("config") or {}).get(k)) for k in names}


def is_full_run(run: Mapping) -> bool:
    """Trained for all its epochs: finished (a run hyperband stopped in time is killed; one
    that finished before the stop landed is a complete run)."""
    if run.get("state") != "finished":
        return False
    ran, planned = (run.get("summary") or {}).get("epochs_run"), (run.get("config") or {}).get("epochs")
    return ran is None or planned is None or ran >= planned


def was_stopped(run: Mapping) -> bool:
    """Stopped early by hyperband (or another early-termination rule) before its last epoch."""
    return bool(run.get("stopped_by")) and not is_full_run(run)


def ranked(runs: Sequence[Mapping], metric: str = "val_accuracy", goal: str = "maximize",
           full_only: bool = True) -> list[Mapping]:
    """Runs with a finite metric, best first (ties: earlier run first)."""
    pool = [r for r in runs if metric_of(r, metric) is not None and (is_full_run(r) or not full_only)]
    sign = -1.0 if goal == "maximize" else 1.0
    return sorted(pool, key=lambda r: (sign * metric_of(r, metric), r.get("seq") or 0))


def fmt_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-2 or abs(value) >= 1e4:
            return f"{value:.2e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return str(value)


def describe(params: Mapping, names: Sequence[str] | None = None) -> str:
    """`optimizer=nadam, learning_rate=3.77e-04, ...` for the given (or all) parameters."""
    keys = list(names) if names is not None else list(params)
    return ", ".join(f"{k}={fmt_value(params.get(k))}" for k in keys if k in params)


def rerun_rows(source_runs: Mapping[str, Mapping], child: Mapping, child_runs: Sequence[Mapping],
               names: Sequence[str], source_dataset: str = "fashion_mnist", val_metric: str = "val_accuracy",
               test_metric: str = "test_accuracy") -> list[dict]:
    """One row per configuration of a rerun sweep: the source run's val/test next to the rerun's
    (`val_metric`/`test_metric`: accuracy, or an autoencoder's val_r2/test_r2).

    `child["rerun"]` (a RerunPlan) holds the source run ids and the configs proposed, in order;
    each child run is matched to its config by its proposed parameters."""
    plan = child.get("rerun")
    info = {"configs": plan.configs, "source_runs": plan.source_runs, "dataset": plan.dataset} if plan else {}
    configs = info.get("configs") or []
    sources = info.get("source_runs") or []
    target = info.get("dataset", "")
    by_index: dict[int, Mapping] = {}
    for r in child_runs:
        proposed = r.get("params")
        for i, c in enumerate(configs):
            if proposed == c:
                if i not in by_index or r["state"] == "finished":
                    by_index[i] = r
                break
    rows = []
    for i, source_id in enumerate(sources):
        src = source_runs.get(source_id) or {}
        run = by_index.get(i)
        rows.append({"rank": i + 1, "source_run": source_id, "params": describe(params_of(src), names) if src else "",
                     "source_dataset": source_dataset, "target_dataset": target,
                     "source_val": metric_of(src, val_metric) if src else None,
                     "source_test": metric_of(src, test_metric) if src else None,
                     "run": run["id"] if run else None, "state": run["state"] if run else "not run",
                     "epochs": (run.get("summary") or {}).get("epochs_run") if run else None,
                     "target_val": metric_of(run, val_metric) if run else None,
                     "target_test": metric_of(run, test_metric) if run else None})
    return rows


def searched_parameters(sweep_config: Mapping) -> list[str]:
    """Parameters the sweep actually searches: a distribution, or more than one value."""
    out = []
    for name, spec in (sweep_config.get("parameters") or {}).items():
        if not isinstance(spec, Mapping):
            continue
        if "values" in spec:
            if len(spec["values"]) > 1:
                out.append(name)
        elif "value" not in spec:
            out.append(name)
    return out


def sweep_data_dir(sweep: dict, run: dict) -> str | None:
    """The data_dir a run was trained with, if the sweep set one (relative to the sweep's folder)."""
    value = (run.get("params") or {}).get("data_dir") or (run.get("config") or {}).get("data_dir")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = Path(sweep.get("workdir") or os.getcwd()) / path
    return str(path)
