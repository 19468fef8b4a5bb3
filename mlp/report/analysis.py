"""What the report says about a sweep: pure functions on plain data (store run dicts, lists,
arrays), so each finding can be tested without a store, a dataset or a figure. What a run
reports and the ranking of runs live one layer down (mlp.runs.results, shared with the sweep
layer) and are re-exported here, where the report reads them as `A.metric_of`, `A.best_first`, ...

A run here is a store run dict: ``state``, ``summary`` (val_accuracy, test_accuracy, ...),
``params`` (what the sweep proposed) and ``stopped_by`` (why it stopped early, if it did).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from mlp.runs.results import (REPORTED_METRICS, best_first, describe, fmt_value, is_full_run, metric_of,  # noqa: F401
                               params_of, ranked, rerun_rows, searched_parameters, was_stopped)

__all__ = [
    "REPORTED_METRICS", "best_first", "metric_of", "params_of", "searched_parameters", "is_log_scaled", "is_full_run",
    "was_stopped", "ranked", "fmt_value", "describe", "level", "group_table", "confusion_analysis", "diverged_epoch",
    "find_comparison", "pair_runs", "pair_summary", "paired_tests", "failure_analysis", "rerun_rows", "architecture",
]


# ---- parameters (what runs report and the best of them: mlp.runs.results) ------------------------------

def is_log_scaled(spec: Mapping) -> bool:
    """True for W&B's log distributions (log_uniform, log_uniform_values, q_log_uniform...)."""
    return "log" in str((spec or {}).get("distribution", ""))


def architecture(run: Mapping) -> str:
    """The network of a run in a few words, from its effective config: "MLP 5×128",
    "CNN [32, 64] k3 same, max pool → [256]", "MLP [512] on features of m.npz:flatten_1"."""
    config = run.get("config") or {}
    widths = list(config.get("hidden_sizes") or []) or [config.get("hidden_size", 128)] * int(config.get("num_layers", 0) or 0)
    head = (f"{len(widths)}×{widths[0]}" if widths and len(set(widths)) == 1 else fmt_value(widths)) if widths else "no hidden layer"
    if config.get("conv_filters"):
        pool = config.get("pool", "max")
        return (f"CNN {fmt_value(config['conv_filters'])} k{config.get('kernel_size', 3)} {config.get('padding', 'same')}, "
                f"{'global average pooling' if pool == 'global' else 'no pooling' if pool == 'none' else pool + ' pool'}"
                f" → {head}")
    if config.get("features"):
        return f"MLP {head} on features of {config['features']}"
    return f"{'autoencoder' if config.get('task') == 'autoencoder' else 'MLP'} {head}"


def level(value):
    """A hashable group label for a parameter value."""
    if isinstance(value, (list, tuple)):
        return fmt_value(list(value))
    return value


def group_table(runs: Sequence[Mapping], parameter: str, metric: str = "val_accuracy",
                order: Sequence | None = None) -> list[dict]:
    """Mean / max / count of the metric per value of a parameter, over runs with the metric.
    Rows follow `order` (e.g. the YAML's values) when given, else best mean first."""
    groups: dict = {}
    for r in runs:
        value = metric_of(r, metric)
        if value is None:
            continue
        groups.setdefault(level(params_of(r).get(parameter)), []).append(value)
    rows = [{"level": k, "n": len(v), "mean": float(np.mean(v)), "max": float(np.max(v)),
             "min": float(np.min(v))} for k, v in groups.items()]
    if order is not None:
        position = {level(v): i for i, v in enumerate(order)}
        rows.sort(key=lambda row: position.get(row["level"], len(position)))
    else:
        rows.sort(key=lambda row: -row["mean"])
    return rows


# ---- the best model -------------------------------------------------------------------------------

def confusion_analysis(cm, class_names: Sequence[str], top: int = 5) -> dict:
    """Counts (rows = true class, columns = prediction) -> row-normalised matrix, the most
    confused class pairs, per-class precision / recall / F1 and the overall accuracy."""
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    diag = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(support[:, None] > 0, cm / np.maximum(support[:, None], 1), 0.0)
        precision = np.where(predicted > 0, diag / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, diag / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    per_class = [{"class": class_names[c], "index": c, "precision": float(precision[c]),
                  "recall": float(recall[c]), "f1": float(f1[c]), "support": int(support[c])}
                 for c in range(n)]
    directed = [{"true": class_names[i], "pred": class_names[j], "true_index": i, "pred_index": j,
                 "count": int(cm[i, j]), "rate": float(normalised[i, j])}
                for i in range(n) for j in range(n) if i != j and cm[i, j] > 0]
    directed.sort(key=lambda d: (-d["count"], d["true_index"], d["pred_index"]))
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            total = int(cm[i, j] + cm[j, i])
            if total:
                pairs.append({"a": class_names[i], "b": class_names[j], "a_index": i, "b_index": j,
                              "total": total, "a_as_b": int(cm[i, j]), "b_as_a": int(cm[j, i])})
    pairs.sort(key=lambda p: (-p["total"], p["a_index"], p["b_index"]))
    total = int(cm.sum())
    return {"counts": cm, "normalised": normalised, "per_class": per_class,
            "confused": directed[:top], "pairs": pairs[:top],
            "accuracy": float(diag.sum() / total) if total else math.nan,
            "macro_f1": float(np.mean(f1)) if n else math.nan,
            "errors": total - int(diag.sum()), "total": total}


# ---- cross-entropy vs squared error ---------------------------------------------------------------

LOSS_LEVELS = ("cross_entropy", "mean_squared_error")


def _loss_name(value) -> str:
    key = str(value).strip().lower()
    return {"ce": "cross_entropy", "mse": "mean_squared_error"}.get(key, key)


def varies_loss(sweep_config: Mapping) -> bool:
    """A sweep that searches the loss over both cross-entropy and squared error."""
    spec = (sweep_config.get("parameters") or {}).get("loss") or {}
    values = {_loss_name(v) for v in spec.get("values") or []}
    return set(LOSS_LEVELS) <= values


def find_comparison(sweeps: Sequence[Mapping], sweep_id: str) -> Mapping | None:
    """The CE-vs-MSE sweep to report next to `sweep_id`: the sweep itself when it searches the
    loss over both values, else the newest other such sweep with finished runs (else newest)."""
    candidates = [s for s in sweeps if varies_loss(s.get("config") or {})]
    for s in candidates:
        if s["id"] == sweep_id:
            return s
    others = [s for s in candidates if s["id"] != sweep_id]
    with_runs = [s for s in others if (s.get("run_counts") or {}).get("finished")]
    pool = with_runs or others
    return pool[-1] if pool else None


def pair_runs(runs: Sequence[Mapping], metric: str = "val_accuracy", key: str = "loss") -> list[dict]:
    """Pairs of runs identical in every sweep parameter except `key` (the loss):
    [{"params": shared params, "cross_entropy": run, "mean_squared_error": run}], in creation
    order of the shared configuration. A configuration run twice with the same loss keeps the
    later run. Both runs of a pair are present; either may lack the metric (diverged)."""
    groups: dict = {}
    for r in runs:
        params = params_of(r)
        if key not in params:
            continue
        shared = {k: v for k, v in params.items() if k != key}
        ident = tuple(sorted((k, repr(level(v))) for k, v in shared.items()))
        slot = groups.setdefault(ident, {"params": shared})
        slot[_loss_name(params[key])] = r
    return [g for g in groups.values() if all(lv in g for lv in LOSS_LEVELS)]


def pair_summary(pairs: Sequence[Mapping], metric: str = "val_accuracy") -> dict:
    """Paired differences cross-entropy − squared error of `metric` over pairs where both runs
    have it: n, mean, std (the sample standard deviation of the differences, ddof=1), min, max,
    wins (CE better), each loss's mean, and the paired tests of `paired_tests`."""
    a, b = LOSS_LEVELS
    diffs, ce, mse = [], [], []
    for p in pairs:
        x, y = metric_of(p[a], metric), metric_of(p[b], metric)
        if x is None or y is None:
            continue
        diffs.append(x - y)
        ce.append(x)
        mse.append(y)
    if not diffs:
        return {"metric": metric, "n": 0, "incomplete": len(pairs)}
    d = np.array(diffs)
    return {"metric": metric, "n": len(d), "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "min": float(d.min()), "max": float(d.max()), "wins": int((d > 0).sum()),
            "ties": int((d == 0).sum()), "ce_mean": float(np.mean(ce)), "mse_mean": float(np.mean(mse)),
            "incomplete": len(pairs) - len(d), **paired_tests(d)}


def paired_tests(diffs) -> dict:
    """Two-sided tests that the paired differences are centred on zero (scipy.stats):
    the paired t-test (`t`, `t_p`, `t_df`; assumes roughly normal differences) and the Wilcoxon
    signed-rank test (`wilcoxon_p`; ranks only, zero differences dropped). Each p is None when the
    test is undefined: fewer than 2 pairs, every difference equal (t), or all zero (Wilcoxon).
    `wilcoxon_min_p` is the smallest p the exact test can give with this many non-zero pairs
    (2 / 2^n): with 5 pairs or fewer it can never reach 0.05."""
    import warnings

    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    out = {"t": None, "t_p": None, "t_df": max(len(d) - 1, 0), "wilcoxon_p": None,
           "wilcoxon_n": int(np.count_nonzero(d)), "wilcoxon_min_p": None}
    if len(d) < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # scipy warns on the degenerate cases checked below
        if np.ptp(d) > 0:
            t = stats.ttest_1samp(d, 0.0)                 # = ttest_rel(ce, mse): a t-test of the differences
            out["t"], out["t_p"] = float(t.statistic), float(t.pvalue)
        if out["wilcoxon_n"] >= 1:
            w = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
            if math.isfinite(w.pvalue):
                out["wilcoxon_p"] = float(w.pvalue)
                out["wilcoxon_min_p"] = min(1.0, 2.0 / 2 ** out["wilcoxon_n"])
    return out


# ---- failures ---------------------------------------------------------------------------------------

def _reason(error: str | None) -> str:
    if not error:
        return "no error recorded"
    m = re.match(r"loss became (\S+)", error)
    if m:
        return f"loss became {m.group(1)}"
    return re.sub(r"\d+(\.\d+)?", "N", error.split(";")[0]).strip()[:120]


def diverged_epoch(run: Mapping) -> int | None:
    """The epoch in which the run's loss became NaN/inf, as the run recorded it (None if unknown)."""
    value = (run.get("summary") or {}).get("diverged_epoch")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _profile(subset: Sequence[Mapping], everyone: Sequence[Mapping], names: Sequence[str],
             categorical: Sequence[str], top: int = 3) -> list[str]:
    """Why these runs failed, as far as the parameters tell: the values (taken by ≥ 2 runs) whose
    runs mostly ended in `subset` — highest failure rate first — and, for a numeric parameter,
    a subset median at least twice or half the overall one."""
    ids = {r["id"] for r in subset}
    rates = []
    for name in categorical:
        counts = Counter(level(params_of(r).get(name)) for r in everyone)
        fails = Counter(level(params_of(r).get(name)) for r in subset)
        for value, k_all in counts.items():
            k = fails.get(value, 0)
            if k_all >= 2 and k / k_all >= 0.5 and k / k_all > len(subset) / len(everyone):
                rates.append((k / k_all, k, name, value, k_all))
    rates.sort(key=lambda t: (-t[0], -t[1], t[2]))
    notes = [f"{name}={fmt_value(value)}: {k} of its {k_all} runs" for _, k, name, value, k_all in rates[:top]]
    for name in names:
        if name in categorical:
            continue
        sub = [params_of(r).get(name) for r in subset]
        allv = [params_of(r).get(name) for r in everyone if r["id"] not in ids]
        sub = [float(v) for v in sub if isinstance(v, (int, float)) and not isinstance(v, bool)]
        allv = [float(v) for v in allv if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if sub and allv:
            ms, ma = float(np.median(sub)), float(np.median(allv))
            if ma > 0 and ms > 0 and (ms / ma >= 2 or ms / ma <= 0.5):
                notes.append(f"median {name} {fmt_value(ms)} vs {fmt_value(ma)} in the other runs")
    return notes


def failure_analysis(runs: Sequence[Mapping], n_classes: int, names: Sequence[str],
                     categorical: Sequence[str], metric: str = "val_accuracy", chance: float | None = None) -> dict:
    """Diverged runs (with the reason and the parameter values they share), runs that trained
    but stayed at chance level (metric ≤ `chance`: by default 1/classes + 0.02, an accuracy's; an
    autoencoder's R² passes 0.0, the mean image's; NaN: the metric has no such level), failed and
    crashed runs."""
    n = len(runs)
    states = Counter(r["state"] for r in runs)
    diverged = [r for r in runs if r["state"] == "diverged"]
    chance = 1.0 / n_classes + 0.02 if chance is None else chance
    stuck = [r for r in runs if r["state"] != "diverged" and metric_of(r, metric) is not None
             and metric_of(r, metric) <= chance]
    broken = [r for r in runs if r["state"] in ("failed", "crashed")]
    return {
        "n": n, "states": dict(states),
        "stopped": sum(1 for r in runs if was_stopped(r)),
        "diverged": {"runs": [r["id"] for r in diverged],
                     "reasons": Counter(_reason(r.get("error")) for r in diverged).most_common(),
                     "epochs": sorted(Counter(diverged_epoch(r) for r in diverged).items(),
                                      key=lambda kv: (kv[0] is None, kv[0] or 0)),
                     "profile": _profile(diverged, runs, names, categorical) if diverged else []},
        "chance": {"runs": [r["id"] for r in stuck], "threshold": chance,
                   "profile": _profile(stuck, runs, names, categorical) if stuck else []},
        "broken": {"runs": [r["id"] for r in broken],
                   "reasons": Counter(_reason(r.get("error")) for r in broken).most_common()},
    }
