"""Everything a report shows, in one object: `collect` reads the store and loads the dataset and
the best model (the only place that does I/O); `prepare` derives what the runs alone tell (the
task, ranking, importance, failures, groups) as a pure function, so sections, figures and
observations — and the tests — work on a ready `ReportData`.

The sweep's task (`classify` or `autoencoder`, from its file) decides the metrics (analysis.REPORTED_METRICS:
accuracy or R²) and what `collect` evaluates: a classifier's best model gets the confusion
analysis, the `mlp baselines` of its split and the loss comparison; an autoencoder's best model
its reconstructions (mlp.report.autoencoder).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlp import paths
from mlp.errors import UsageError
from mlp.report import analysis as A
from mlp.report import autoencoder as AE
from mlp.report import baselines as B
from mlp.report.importance import confounded, importance
from mlp.report.model import best_model_predictions
from mlp.report.text import plural
from mlp.runs.data import CLASS_NAMES, load_dataset
from mlp.runs.results import sweep_data_dir
from mlp.core.metrics import confusion_matrix
from mlp.sweep.files import objective, task_of

__all__ = ["ReportData", "collect", "prepare", "check_out_dir", "comparison_sweep", "TOP_RUNS", "RECOMMENDED"]

TOP_RUNS = 5          # learning curves of this many best runs
RECOMMENDED = 3       # configurations recommended for another dataset, until a rerun says how many


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class ReportData:
    sweep: dict
    runs: list
    histories: dict = field(default_factory=dict)   # run id -> per-epoch rows
    store_path: str = ""
    metric: str = "val_accuracy"
    goal: str = "maximize"
    specs: dict = field(default_factory=dict)       # parameter name -> YAML spec
    names: list = field(default_factory=list)       # searched parameters, YAML order
    categorical: list = field(default_factory=list)  # searched parameters with a `values` list
    log_params: set = field(default_factory=set)
    dataset_name: str = "fashion_mnist"
    class_names: list = field(default_factory=list)
    dataset: Any = None                              # mlp.runs.data.Dataset of the best run
    best: dict | None = None
    best_eval: dict | None = None                   # model predictions + confusion analysis
    ranked: list = field(default_factory=list)       # full-length runs with the metric, best first
    importance: list = field(default_factory=list)
    importance_runs: int = 0
    confounded: list = field(default_factory=list)   # groups of features that always moved together
    learned_importance: dict | None = None          # the same without chance-level runs
    groups: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    compare: dict | None = None
    compare_note: str = ""
    reruns: list = field(default_factory=list)       # [{"sweep": child sweep, "rows": [...]}], oldest first
    figures: dict = field(default_factory=dict)      # name -> PNG path of the figures drawn
    task: str = "classify"                           # what the sweep's runs train: classify or autoencoder
    test_metric: str = "test_accuracy"               # what they report on the test set (test_r2)
    reconstruction: dict | None = None              # autoencoder: the best model's evaluation (AE.evaluate_best)
    baselines: list = field(default_factory=list)    # classify: `mlp baselines` rows of exactly this split

    @property
    def val_metric(self) -> str:
        """What the runs report on validation (val_accuracy or val_r2), whatever the sweep optimises."""
        return A.REPORTED_METRICS[self.task][0]

    @property
    def sweep_id(self) -> str:
        return self.sweep["id"]

    @property
    def top(self) -> list:
        return self.ranked[:TOP_RUNS]

    @property
    def recommended(self) -> list:
        """The configurations recommended for another dataset: those the latest rerun actually
        reran (`mlp rerun --top K`), else the RECOMMENDED best by validation."""
        if self.reruns:
            by_id = {r["id"]: r for r in self.runs}
            plan = self.reruns[-1]["sweep"]["rerun"]
            return [by_id[i] for i in plan.source_runs if i in by_id]
        return self.ranked[:RECOMMENDED]

    @property
    def comparison(self) -> dict | None:
        """The CE-vs-MSE comparison when it has at least one complete pair, else None."""
        return self.compare if self.compare and self.compare["summary"]["n"] else None


def check_out_dir(out, create: bool = True) -> Path:
    """Prove the output folder can be written, or raise a one-line UsageError. With
    create=False nothing is made yet: the nearest existing ancestor must be a writable folder."""
    out = paths.expand(out, "--out")
    if paths.under_kernel_interface(out):
        raise UsageError(f"cannot write the report to {out}: it is inside a kernel interface (/proc, /sys, /dev), "
                         f"not a place for files; pass --out with another folder")
    for name in ("index.html", "report.md"):     # what the report replaces must be plain files
        target = out / name
        if target.exists() and not target.is_file():
            raise UsageError(f"cannot write the report to {out}: {target} is {paths.kind_of(target.stat().st_mode)}; "
                             f"move it or pass --out with another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write the report to {out}: it is {paths.kind_of(out.stat().st_mode)}, not a folder; "
                         f"pass --out with a folder")
    if not create:
        probe = out.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            what = "is not a folder" if not probe.is_dir() else "is not writable"
            raise UsageError(f"cannot write the report to {out}: {probe} {what}; pass --out with a writable folder")
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mlp-report-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write the report to {out}: {e.strerror or e}; pass --out with a writable "
                         f"folder") from None
    return out


def prepare(sweep: dict, runs: list, histories: dict | None = None, store_path: str = "") -> ReportData:
    """What the runs alone tell, without the store or the dataset: the task and its metrics, the
    searched parameters, the ranking, parameter importance (and which parameters always moved
    together), the groups per categorical value and the failures. Raises UsageError when no run
    has a finite metric."""

    task = task_of(sweep["config"])
    metric, goal = objective(sweep["config"])
    data = ReportData(sweep=sweep, runs=list(runs), histories=dict(histories or {}), store_path=str(store_path),
                      metric=metric, goal=goal, task=task, test_metric=A.REPORTED_METRICS[task][1])
    data.specs = dict(sweep["config"].get("parameters") or {})
    data.names = [n for n in A.searched_parameters(sweep["config"]) if n != "data_dir"]
    data.categorical = [n for n in data.names if "values" in data.specs[n]]
    data.log_params = {n for n in data.names if A.is_log_scaled(data.specs[n])}

    data.ranked = A.best_first(runs, data.metric, data.goal)
    if not data.ranked:
        raise UsageError(f"sweep {sweep['id']} has no run with a finite {data.metric}; nothing to report")
    data.best = data.ranked[0]
    data.dataset_name = data.best["config"].get("dataset", "fashion_mnist")
    data.class_names = list(CLASS_NAMES.get(data.dataset_name, [str(i) for i in range(10)]))

    usable = [r for r in runs if A.metric_of(r, data.metric) is not None]
    data.importance_runs = len(usable)
    params = [A.params_of(r, data.names) for r in usable]
    data.importance = importance(params, [A.metric_of(r, data.metric) for r in usable], names=data.names, seed=0)
    data.confounded = confounded(params, names=data.names)
    data.groups = {n: A.group_table(runs, n, data.metric, order=data.specs[n].get("values"))
                   for n in data.categorical}
    if task == "autoencoder":    # R² at or below the mean image's (0) is "chance"; a loss has no such level
        chance = AE.CHANCE_R2 if data.metric == "val_r2" else math.nan
        data.compare_note = ("Does not apply: this sweep trains autoencoders, and the study compares the two "
                             "classification losses (cross-entropy and squared error on the softmax).")
    else:
        chance = None           # 1/classes + 0.02
    data.failures = A.failure_analysis(runs, len(data.class_names), data.names, data.categorical, data.metric,
                                       chance=chance)
    stuck = set(data.failures["chance"]["runs"])
    learned = [r for r in usable if r["id"] not in stuck]
    if stuck and len(learned) >= 5:     # what matters once the runs that never learned are left aside
        params = [A.params_of(r, data.names) for r in learned]
        data.learned_importance = {
            "n": len(learned), "left_out": len(usable) - len(learned),
            "rows": importance(params, [A.metric_of(r, data.metric) for r in learned], names=data.names, seed=0),
            "confounded": confounded(params, names=data.names)}
    return data


def _runs_and_histories(store, sweep_id):
    runs = store.list_runs(sweep_id)
    return runs, {r["id"]: store.history(r["id"]) for r in runs}


def collect(store, sweep_id: str, compare: str | None = None, data_dir: str | None = None,
            log: Callable[[str], None] = _log) -> ReportData:
    """Read the sweep, its runs, the comparison sweep and reruns from the store, load the dataset
    and the best run's model, and return the ReportData every section and figure draws from."""

    sweep = store.get_sweep(sweep_id)
    task = task_of(sweep["config"])
    runs, histories = _runs_and_histories(store, sweep_id)
    if not any(r["state"] == "finished" for r in runs):
        raise UsageError(f"sweep {sweep_id} has no finished runs yet ({plural(sweep['n_runs'], 'run')}); run some with "
                         f"`mlp agent {sweep_id} --count N` and report again")
    target = comparison_sweep(store, sweep_id, compare)      # checked before any slow step
    sweeps = store.list_sweeps()

    log("computing parameter importance ...")
    data = prepare(sweep, runs, histories, store.path)

    # --- data and the best model
    best_config = data.best["config"]
    where = data_dir or sweep_data_dir(sweep, data.best)
    log(f"loading {data.dataset_name}" + (f" from {where}" if where else "") + " ...")
    data.dataset = load_dataset(data.dataset_name, data_dir=where, split=best_config.get("split", "standard"),
                                val_fraction=best_config.get("val_fraction", 0.1), progress=log)
    data.class_names = list(data.dataset.class_names)
    if task == "autoencoder":
        data.reconstruction = AE.evaluate_best(data.best, data.dataset, log)
    else:
        _collect_classifier(data, store, sweep_id, target, runs, histories, log)

    # --- reruns on another dataset (children of this sweep)
    by_id = {r["id"]: r for r in runs}
    for child in sweeps:
        if child.get("parent_sweep_id") == sweep_id and child.get("rerun"):
            rows = A.rerun_rows(by_id, child, store.list_runs(child["id"]), data.names, data.dataset_name,
                                val_metric=data.val_metric, test_metric=data.test_metric)
            data.reruns.append({"sweep": child, "rows": rows})
    return data


def comparison_sweep(store, sweep_id: str, compare: str | None = None) -> dict | None:
    """The sweep that compares cross-entropy with squared error for this sweep's report: `compare`
    (a store id) when given — it must search the loss over both — else one found in the store;
    None for an autoencoder sweep (the study compares classification losses)."""
    if task_of(store.get_sweep(sweep_id)["config"]) == "autoencoder":
        if compare:
            raise UsageError(f"--compare: sweep {sweep_id} trains autoencoders; the cross-entropy vs squared-error "
                             f"study compares classification losses")
        return None
    if compare:
        target = store.get_sweep(compare)
        if not A.varies_loss(target["config"]):
            raise UsageError(f"--compare {compare}: that sweep does not search loss over cross_entropy and "
                             f"mean_squared_error (see sweeps/ce_vs_mse.yaml)")
        return target
    return A.find_comparison(store.list_sweeps(), sweep_id)


def _collect_classifier(data: ReportData, store, sweep_id: str, target: dict | None, runs, histories, log) -> None:
    """What only a classifier sweep's report holds: the `mlp baselines` trained on exactly its split,
    the best model's confusion analysis and the cross-entropy vs squared-error comparison."""
    data.baselines = B.latest(store, data.dataset)
    ev = best_model_predictions(data.best, data.dataset, log)
    cm = confusion_matrix(data.dataset.y_test, ev["pred"], len(data.class_names))
    ev["confusion"] = A.confusion_analysis(cm, data.class_names)
    stored_cm = data.best["summary"].get("confusion_matrix")
    ev["logged_confusion"] = stored_cm is not None           # what the run recorded (imported from W&B too)
    ev["matches_store"] = stored_cm is not None and np.array_equal(np.asarray(stored_cm), cm)
    data.best_eval = ev

    # --- cross-entropy vs squared error
    if target is None:
        data.compare_note = ("No sweep in this store compares the losses. Run the paired sweep with "
                             "`mlp sweep sweeps/ce_vs_mse.yaml --count 10` (same --store), then report again "
                             "(or pass --compare SWEEP_ID).")
    else:
        c_runs, c_hist = (runs, histories) if target["id"] == sweep_id else _runs_and_histories(store, target["id"])
        pairs = A.pair_runs(c_runs, data.metric)
        data.compare = {"sweep": target, "runs": c_runs, "histories": c_hist, "pairs": pairs,
                        "summary": A.pair_summary(pairs, data.metric),
                        "test_summary": A.pair_summary(pairs, "test_accuracy")}
        if not data.compare["summary"]["n"]:
            data.compare_note = (f"Sweep {target['id']} ({target['name']}) has no complete pair yet "
                                 f"({plural(len(c_runs), 'run')}): run more with `mlp agent {target['id']}`.")
