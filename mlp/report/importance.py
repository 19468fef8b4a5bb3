"""Parameter importance the way W&B's panel computes it, plus a rank correlation.

W&B fits a random forest that predicts the metric from the run configs and reports the
forest's feature importances next to the (linear, Pearson) correlation of each parameter with
the metric; categorical parameters are one-hot encoded, one feature per value. A parameter
searched on a log scale (the learning rate) has a skewed raw distribution, so its linear
correlation understates a monotone effect: the Spearman (rank) correlation is added for that.

Two limits are made explicit rather than hidden in a ranking: with few runs (below MIN_RUNS) a
forest mostly fits noise, and two features that always moved together across the runs (the same
order of runs, or exactly the reverse: adam always with tanh, a learning rate that rose with the
batch size) give a forest interchangeable splits, so which one it credits is arbitrary.
`confounded` finds such groups and `by_parameter` ranks linked parameters as one unit.

Pure functions on plain data: a list of parameter dicts and a list of metric values.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["encode", "importance", "by_parameter", "confounded", "group_names", "pearson", "spearman", "MIN_RUNS"]

MIN_RUNS = 20   # below this many runs the importance ranking is reported as unreliable


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


def confounded(param_dicts: Sequence[Mapping], names: Iterable[str] | None = None) -> list[list[str]]:
    """Groups of features, from two or more parameters, that always moved together across these
    runs: their columns order the runs identically, or exactly in reverse (ties included). A tree
    splits such columns into the same two sets of runs, so their effects cannot be separated.
    Each group is a list of feature names (as `encode` names them), in feature order; groups are
    in the order of their first feature."""
    features, X = encode(param_dicts, names)
    n = len(features)
    ranks = [_ranks(column) for column in X.T]
    top = X.shape[0] + 1
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if features[i][1] == features[j][1]:
                continue                       # two levels of one parameter are linked by construction
            if np.array_equal(ranks[i], ranks[j]) or np.array_equal(ranks[i], top - ranks[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        if len({features[i][1] for i in members}) > 1:
            out.append([features[i][0] for i in members])
    return out


def _parameter_of(feature: str) -> str:
    return feature.split("=", 1)[0]


def group_names(group: Sequence[str], features: Iterable[str]) -> list[str]:
    """What to call a confounded group: its parameters when every feature of them is in the group
    (each value of one always came with one value of the other), else the features themselves."""
    params = list(dict.fromkeys(_parameter_of(f) for f in group))
    whole = all(f in group for f in features if _parameter_of(f) in params)
    return params if whole else list(group)


def by_parameter(rows: Sequence[Mapping], groups: Sequence[Sequence[str]] = ()) -> list[dict]:
    """Collapse one-hot features back to parameters, most important first:
    {parameter, parameters, importance (sum over its features), pearson, spearman (the feature
    with the largest |value|, so a categorical's strongest level speaks for it), feature (that
    level), confounded (the `groups` that link its parameters)}.

    Parameters linked by a confounded group (see `confounded`) form one unit: `parameters` lists
    them (in the groups' order) and `parameter` joins them with " + "; the forest's split between
    them is arbitrary, so only their summed importance means something."""
    unit: dict[str, list[str]] = {}             # parameter -> the parameters it is ranked with
    for group in groups:
        linked: list[str] = []
        for feature in group:
            for name in unit.get(_parameter_of(feature), [_parameter_of(feature)]):
                if name not in linked:
                    linked.append(name)
        for name in linked:
            unit[name] = linked
    out: dict[str, dict] = {}
    for r in rows:
        members = unit.get(r["parameter"], [r["parameter"]])
        label = " + ".join(members)
        agg = out.setdefault(label, {"parameter": label, "parameters": members, "importance": 0.0,
                                     "pearson": math.nan, "spearman": math.nan, "feature": r["feature"],
                                     "confounded": [g for g in groups if _parameter_of(g[0]) in members]})
        agg["importance"] += r["importance"]
        for stat in ("pearson", "spearman"):
            value = r[stat]
            if not math.isnan(value) and (math.isnan(agg[stat]) or abs(value) > abs(agg[stat])):
                agg[stat] = value
                if stat == "spearman":
                    agg["feature"] = r["feature"]
    return sorted(out.values(), key=lambda a: (-a["importance"], a["parameter"]))
