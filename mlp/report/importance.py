"""Parameter importance the way W&B's panel computes it, plus a rank correlation.

W&B fits a random forest that predicts the metric from the run configs and reports the
forest's feature importances next to the (linear, Pearson) correlation of each parameter with
the metric; categorical parameters are one-hot encoded, one feature per value. A parameter
searched on a log scale (the learning rate) has a skewed raw distribution, so its linear
correlation understates a monotone effect: the Spearman (rank) correlation is added for that.

Pure functions on plain data: a list of parameter dicts and a list of metric values.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["encode", "importance", "by_parameter", "pearson", "spearman"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def encode(param_dicts: Sequence[Mapping], names: Iterable[str] | None = None):
    """One-hot encode categorical parameters, keep numeric ones as they are.

    Returns (features, X): features is a list of (feature_name, parameter, level) with level
    None for numeric columns; X is a float array (runs × features). A parameter is numeric when
    every value it takes is a number; parameters with a single value carry no information and
    are left out. Missing values of a numeric column become the column's median.
    """
    if names is None:
        seen: dict[str, None] = {}
        for d in param_dicts:
            for key in d:
                seen.setdefault(key, None)
        names = list(seen)
    features, columns = [], []
    for name in names:
        values = [d.get(name) for d in param_dicts]
        present = [v for v in values if v is not None]
        distinct = list(dict.fromkeys(_key(v) for v in present))
        if len(distinct) < 2:
            continue
        if all(_is_number(v) for v in present):
            column = np.array([float(v) if v is not None else np.nan for v in values])
            column[np.isnan(column)] = np.nanmedian(column)
            features.append((name, name, None))
            columns.append(column)
        else:
            for level in distinct:
                features.append((f"{name}={level}", name, level))
                columns.append(np.array([1.0 if v is not None and _key(v) == level else 0.0
                                         for v in values]))
    X = np.column_stack(columns) if columns else np.zeros((len(param_dicts), 0))
    return features, X


def _key(value):
    """A hashable, printable level for a parameter value (lists such as hidden_sizes too)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if _is_number(value):
        return value
    return str(value)


def pearson(x, y) -> float:
    """Linear correlation; NaN when either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denom if denom > 0 else math.nan


def _ranks(x) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Rank correlation: the Pearson correlation of the (tie-averaged) ranks."""
    return pearson(_ranks(x), _ranks(y))


def importance(param_dicts: Sequence[Mapping], metric: Sequence[float],
               names: Iterable[str] | None = None, seed: int = 0,
               n_estimators: int = 300) -> list[dict]:
    """One row per feature, most important first:
    {feature, parameter, level, importance, pearson, spearman}.

    importance: a seeded scikit-learn RandomForestRegressor's impurity-based feature
    importances (they sum to 1 over the features); pearson/spearman: correlation of the
    feature column with the metric (NaN for a constant column). Runs whose metric is not a
    finite number must be left out by the caller.
    """
    from sklearn.ensemble import RandomForestRegressor

    y = np.asarray(metric, float)
    if len(param_dicts) != len(y):
        raise ValueError("one metric value per parameter dict is needed")
    if not np.all(np.isfinite(y)):
        raise ValueError("metric values must be finite; leave runs without a metric out")
    features, X = encode(param_dicts, names)
    if not features or len(y) < 2:
        return []
    if np.ptp(y) > 0:
        forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1)
        forest.fit(X, y)
        weights = forest.feature_importances_
    else:                                  # nothing to explain
        weights = np.zeros(len(features))
    rows = []
    for (feature, parameter, level), column, weight in zip(features, X.T, weights):
        rows.append({"feature": feature, "parameter": parameter, "level": level,
                     "importance": float(weight), "pearson": pearson(column, y),
                     "spearman": spearman(column, y)})
    rows.sort(key=lambda r: (-r["importance"], r["feature"]))
    return rows


def by_parameter(rows: Sequence[Mapping]) -> list[dict]:
    """Collapse one-hot features back to parameters, most important first:
    {parameter, importance (sum over its features), pearson, spearman (the feature with the
    largest |value|, so a categorical's strongest level speaks for it), feature (that level)}."""
    out: dict[str, dict] = {}
    for r in rows:
        agg = out.setdefault(r["parameter"], {"parameter": r["parameter"], "importance": 0.0,
                                              "pearson": math.nan, "spearman": math.nan,
                                              "feature": r["feature"]})
        agg["importance"] += r["importance"]
        for key in ("pearson", "spearman"):
            value = r[key]
            if not math.isnan(value) and (math.isnan(agg[key]) or abs(value) > abs(agg[key])):
                agg[key] = value
                if key == "spearman":
                    agg["feature"] = r["feature"]
    return sorted(out.values(), key=lambda a: (-a["importance"], a["parameter"]))
