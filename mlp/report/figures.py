"""The report's figures: each is a function (ReportData) -> matplotlib Figure, or None when the
figure does not apply (e.g. no CE-vs-MSE sweep). They only draw; `registry.FIGURES` names them,
puts each in its section with its caption (a string, or a `caption_*` function below it when
the caption needs numbers) and says which tasks each applies to (the confusion figures are a
classifier's; an autoencoder's reconstructions are drawn in mlp.report.autoencoder), and `build`
saves them as NAME.png. Every figure has a title and
labelled axes; matplotlib runs headless (Agg). Artists the tests look for carry a gid.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mlp.report import analysis as A  # noqa: E402
from mlp.report import baselines as B  # noqa: E402
from mlp.report.importance import MIN_RUNS  # noqa: E402
from mlp.report.text import agree, p_value, plural  # noqa: E402

__all__ = ["STYLE", "samples", "accuracy_vs_created", "parallel_coordinates", "metric_axis", "importance",
           "confusion", "misclassified", "per_class", "ce_vs_mse", "learning_curves", "by_parameter"]

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 13,
         "axes.spines.top": False, "axes.spines.right": False}
LOSS_COLOURS = {"cross_entropy": "#1f77b4", "mean_squared_error": "#d62728"}
STATE_STYLE = {  # how a run is drawn in "accuracy vs created"
    "full": dict(marker="o", color="#1f77b4", label="finished"),
    "stopped": dict(marker="v", color="#ff7f0e", label="stopped by hyperband"),
    "diverged": dict(marker="X", color="#d62728", label="diverged"),
    "other": dict(marker="s", color="#7f7f7f", label="failed / killed / crashed"),
}


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# ---- 1. sample images -------------------------------------------------------------------------------

def samples(data):
    ds = data.dataset
    n = len(data.class_names)
    cols = 5
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.25 * rows), layout="constrained")
    for c, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if c >= n:
            continue
        idx = np.flatnonzero(ds.y_train == c)
        if len(idx):
            ax.imshow(ds.x_train[idx[0]].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{c}: {data.class_names[c]}")
    fig.suptitle(f"One training image per class ({data.dataset_name})")
    return fig


# ---- 2. accuracy of every run in creation order ---------------------------------------------------

def _kind(run) -> str:
    if A.is_full_run(run):
        return "full"
    if A.was_stopped(run):
        return "stopped"
    if run["state"] == "diverged":
        return "diverged"
    return "other"


def _ended(data) -> list:
    return [r for r in data.runs if r["state"] not in ("pending", "running")]


def accuracy_vs_created(data):
    fig, ax = plt.subplots(figsize=(11.5, 4.8), layout="constrained")
    runs = _ended(data)
    xs = np.arange(1, len(runs) + 1)
    values = [A.metric_of(r, data.metric) for r in runs]
    for kind, style in STATE_STYLE.items():
        pts = [(x, v if v is not None else 0.0) for x, v, r in zip(xs, values, runs) if _kind(r) == kind]
        if pts:
            px, py = zip(*pts)
            ax.scatter(px, py, s=36, marker=style["marker"], color=style["color"],
                       label=f"{style['label']} ({len(pts)})", zorder=3, edgecolor="white", linewidth=0.5,
                       gid=f"runs:{kind}")
    better = max if data.goal == "maximize" else min
    best_so_far, running = [], None
    for v in values:
        if v is not None:
            running = v if running is None else better(running, v)
        best_so_far.append(np.nan if running is None else running)
    ax.step(xs, best_so_far, where="post", color="black", linewidth=1.5, label="best so far", zorder=2,
            gid="best-so-far")
    B.draw_reference_lines(ax, data)        # dashed: the `mlp baselines` of this split, when there are any
    best = data.best
    if best is not None and best in runs:      # ringed, and named in the legend: no label box over the points
        by = A.metric_of(best, data.metric)
        ax.scatter([runs.index(best) + 1], [by], s=160, facecolor="none", edgecolor="black", linewidth=1.5,
                   zorder=4, label=f"best: {by:.4f}, run {best['id']}", gid="best-run")
    ax.set_xlabel("run, in order of creation")
    ax.set_ylabel(f"{data.metric} (last epoch)")
    ax.set_title(f"{data.metric} of every run of sweep {data.sweep_id} in creation order "
                 f"(runs without a value drawn at 0)")
    ax.set_xlim(0.3, max(len(runs), 1) + 0.7)
    ax.grid(alpha=0.3)
    # outside the axes, right of the plot: inside, any corner can hold a run's point
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", framealpha=0.9)
    return fig


def caption_accuracy_vs_created(data) -> str:
    kinds = {"full": 0, "stopped": 0, "other": 0}
    for r in _ended(data):
        kinds["full" if A.is_full_run(r) else "stopped" if A.was_stopped(r) else "other"] += 1
    return (f"{data.metric} of each run when it ended, in the order the runs were created (W&B's “accuracy vs "
            f"created”), with the best value so far. {plural(kinds['full'], 'run')} trained all their epochs, "
            f"{kinds['stopped']} {agree(kinds['stopped'], 'was', 'were')} stopped early by hyperband (their value "
            f"is from fewer epochs), {kinds['other']} ended otherwise."
            + (" Dashed lines: the validation accuracies of the [baselines](#baselines)."
               if data.baselines and data.metric == "val_accuracy" else ""))


# ---- 3. parallel coordinates ----------------------------------------------------------------------------

CLIPPED_Y = -0.09      # where runs below the metric axis' range are drawn (the bottom edge)


def _span(values) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"at {lo:.3f}" if f"{lo:.3f}" == f"{hi:.3f}" else f"{lo:.3f}–{hi:.3f}"


def metric_axis(values, goal: str = "maximize") -> dict:
    """The range of the metric axis of the parallel coordinates: zoomed on the informative runs.

    A few runs that never learned (at chance, 0.10) would stretch the axis from 0.10 to 0.89 and
    squash every useful run into a thin band. So the axis spans the runs inside the lower Tukey
    fence (Q1 − 1.5·IQR; for a metric to minimise, the upper fence Q3 + 1.5·IQR), and the runs
    beyond it are `clipped`: drawn at the bottom edge and counted in the caption. Nothing is
    clipped when that would leave fewer than two distinct values on the axis.
    Returns {"lo", "hi", "clipped" (bool array, per value)}."""
    v = np.asarray(values, dtype=float)
    lo, hi = float(v.min()), float(v.max())
    clipped = np.zeros(len(v), dtype=bool)
    if len(v) >= 4:
        q1, q3 = np.quantile(v, [0.25, 0.75])
        iqr = q3 - q1
        out = v < q1 - 1.5 * iqr if goal == "maximize" else v > q3 + 1.5 * iqr
        kept = v[~out]
        if out.any() and len(kept) >= 2 and kept.max() > kept.min():
            clipped, lo, hi = out, float(kept.min()), float(kept.max())
    return {"lo": lo, "hi": hi, "clipped": clipped}


def _axis(data, name, values):
    """(positions in [0, 1] for `values`, tick positions, tick labels, is_log) for one parameter axis."""
    spec = data.specs.get(name, {})
    if "values" in spec:
        levels = [A.level(v) for v in spec["values"]]
        for v in values:
            if A.level(v) not in levels:
                levels.append(A.level(v))
        span = max(len(levels) - 1, 1)
        pos = {lv: i / span for i, lv in enumerate(levels)}
        return ([pos.get(A.level(v), np.nan) for v in values], list(pos.values()),
                [A.fmt_value(lv) for lv in levels], False)
    nums = np.array([float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                     for v in values])
    log = name in data.log_params
    lo = spec.get("min", np.nanmin(nums) if np.isfinite(nums).any() else 0.0)
    hi = spec.get("max", np.nanmax(nums) if np.isfinite(nums).any() else 1.0)
    lo, hi = min(lo, np.nanmin(nums)), max(hi, np.nanmax(nums))
    if log and lo > 0:
        f = np.log10
        ticks = np.logspace(math.log10(lo), math.log10(hi), 5)
    else:
        log = False
        f = np.asarray
        ticks = np.linspace(lo, hi, 5)
    a, b = float(f(lo)), float(f(hi))
    scale = (b - a) or 1.0
    return (list((f(nums) - a) / scale), list((f(ticks) - a) / scale), [A.fmt_value(float(t)) for t in ticks], log)


def _parallel_runs(data):
    return [r for r in data.runs if A.metric_of(r, data.metric) is not None]


def parallel_coordinates(data):
    runs = _parallel_runs(data)
    names = list(data.names)
    if not runs or not names:
        return None
    params = [A.params_of(r, names) for r in runs]
    metric = np.array([A.metric_of(r, data.metric) for r in runs])
    columns, ticks = [], []
    for name in names:
        pos, tpos, tlab, log = _axis(data, name, [p.get(name) for p in params])
        columns.append(pos)
        ticks.append((tpos, tlab, f"{name}\n(log scale)" if log else name))
    # the metric axis: zoomed on the informative runs, better always up (a metric to minimise is inverted)
    axis = metric_axis(metric, data.goal)
    lo, hi, clipped = axis["lo"], axis["hi"], axis["clipped"]
    span = (hi - lo) or 1.0
    up = (lambda y: y) if data.goal == "maximize" else (lambda y: 1.0 - y)
    shade = np.clip(up((metric - lo) / span), 0.0, 1.0)           # 0 worst on the axis, 1 best
    columns.append(list(np.where(clipped, CLIPPED_Y, up((metric - lo) / span))))
    mt = np.linspace(lo, hi, 5)
    ticks.append((list(up((mt - lo) / span)), [f"{t:.3f}" for t in mt],
                  data.metric + ("" if data.goal == "maximize" else "\n(inverted: lower is better)")))
    Y = np.array(columns, dtype=float).T                      # runs × axes
    # a little seeded jitter on categorical axes, so runs sharing a value fan out and can be counted
    jitter = np.random.default_rng(0).uniform(-0.018, 0.018, size=Y.shape)
    for j, name in enumerate(names):
        if "values" in data.specs.get(name, {}):
            Y[:, j] = np.clip(Y[:, j] + jitter[:, j], -0.02, 1.02)
    n_axes = Y.shape[1]
    fig, ax = plt.subplots(figsize=(max(12, 1.45 * n_axes + 2), 6.5), layout="constrained")
    cmap = plt.get_cmap("viridis")
    xs = np.arange(n_axes)
    for i in np.argsort(shade + np.where(clipped, -2.0, 0.0)):     # clipped first, best runs last, on top
        if clipped[i]:
            ax.plot(xs, Y[i], color="#9a9a9a", alpha=0.8, linewidth=1.0, linestyle=(0, (4, 2)),
                    gid=f"run:{runs[i]['id']}")
        else:
            ax.plot(xs, Y[i], color=cmap(shade[i]), alpha=0.75, linewidth=1.4, gid=f"run:{runs[i]['id']}")
    for x, (tpos, tlab, label) in zip(xs, ticks):
        metric_column = x == n_axes - 1
        ax.axvline(x, color="black", linewidth=0.8, zorder=1)
        for t, text in zip(tpos, tlab):
            ax.plot([x - 0.03, x], [t, t], color="black", linewidth=0.8)
            ax.text(x - 0.05, t, text, ha="right", va="center", fontsize=8,
                    gid="metric-tick" if metric_column else None,
                    bbox=dict(boxstyle="round,pad=0.12", facecolor="white", edgecolor="none", alpha=0.8), zorder=5)
        ax.text(x, 1.045, label, ha="center", va="bottom", fontsize=9, fontweight="bold")
    if clipped.any():
        x = n_axes - 1
        far = metric[clipped]
        worse = "below" if data.goal == "maximize" else "above"
        ax.plot([x - 0.08, x + 0.08], [CLIPPED_Y + 0.035] * 2, color="black", linewidth=0.8, linestyle=":")
        ax.text(x + 0.06, CLIPPED_Y, f"{plural(int(clipped.sum()), 'run')} {worse} the axis\n"
                f"({_span(far)}), drawn here", ha="left", va="center", fontsize=8,
                color="#555555", gid="metric-clipped", zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="#bbbbbb"))
    ax.set_xlim(-0.75, n_axes - 0.6 + (0.5 if clipped.any() else 0.0))
    ax.set_ylim(CLIPPED_Y - 0.05 if clipped.any() else -0.04, 1.13)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    norm = matplotlib.colors.Normalize(lo, hi)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap if data.goal == "maximize" else cmap.reversed())
    bar = fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01)
    bar.set_label(data.metric + (" (grey dashed: runs outside the axis)" if clipped.any() else ""))
    ax.set_title(f"Parallel coordinates: {plural(len(runs), 'run')} of sweep {data.sweep_id}, coloured by "
                 f"{data.metric} (categorical values in YAML order, bottom to top, slightly jittered)", pad=12)
    return fig


def caption_parallel_coordinates(data) -> str:
    runs = _parallel_runs(data)
    logs = ", ".join(sorted(data.log_params)) or "none"
    text = (f"One line per run with a {data.metric} ({plural(len(runs), 'run')}): categorical axes list their "
            f"values as ticks in YAML order, log-scaled parameters ({logs}) have log axes; colour = {data.metric}.")
    if not runs:
        return text
    axis = metric_axis([A.metric_of(r, data.metric) for r in runs], data.goal)
    k = int(axis["clipped"].sum())
    if k:
        far = [A.metric_of(r, data.metric) for r, c in zip(runs, axis["clipped"]) if c]
        side = "below the lower" if data.goal == "maximize" else "above the upper"
        text += (f" The {data.metric} axis is zoomed on {axis['lo']:.3f}–{axis['hi']:.3f}, where "
                 f"{plural(len(runs) - k, 'run')} {agree(len(runs) - k, 'lies', 'lie')}; {plural(k, 'run')} more "
                 f"than 1.5 interquartile ranges {side} quartile ({_span(far)}, e.g. runs at "
                 f"chance level) {agree(k, 'is', 'are')} drawn grey and dashed at the axis' bottom edge, so "
                 f"{agree(k, 'it does', 'they do')} not squash the others into a thin band.")
    return text


# ---- 4. parameter importance -----------------------------------------------------------------------------

def importance(data):
    rows = data.importance[:20]
    if not rows:
        return None
    linked = {f for group in data.confounded for f in group}
    labels = [r["feature"] + (" †" if r["feature"] in linked else "") for r in rows][::-1]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.5 + 0.34 * len(rows)), sharey=True, layout="constrained")
    imp = [r["importance"] for r in rows][::-1]
    axes[0].barh(y, imp, color="#4c72b0")
    axes[0].set_title("random-forest importance")
    axes[0].set_xlabel("share of impurity reduction")
    axes[0].set_yticks(y, labels)
    for ax, key, title, xlabel in ((axes[1], "pearson", "correlation (Pearson r)", "r with " + data.metric),
                                   (axes[2], "spearman", "rank correlation (Spearman ρ)", "ρ with " + data.metric)):
        vals = np.array([r[key] for r in rows][::-1], dtype=float)
        colours = ["#2ca02c" if v >= 0 else "#d62728" for v in np.nan_to_num(vals)]
        ax.barh(y, np.nan_to_num(vals), color=colours)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlim(-1, 1)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    axes[0].grid(axis="x", alpha=0.3)
    n = data.importance_runs
    notes = []
    if n < MIN_RUNS:
        notes.append(f"only {plural(n, 'run')}: below {MIN_RUNS} the ranking is unreliable")
    if linked:
        notes.append("†: moved together with another parameter, effects cannot be separated")
    fig.suptitle(f"Parameter importance for {data.metric} ({plural(n, 'run')}; categoricals one-hot)"
                 + ("\n" + "; ".join(notes) if notes else ""))
    return fig


# ---- 5. the best run ---------------------------------------------------------------------------------------

def confusion(data):
    ca = data.best_eval["confusion"]
    names = data.class_names
    n = len(names)
    fig, axes = plt.subplots(1, 2, figsize=(15, 7.4), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.15)
    for ax, matrix, title, fmt in ((axes[0], ca["counts"], "counts", "d"),
                                   (axes[1], ca["normalised"] * 100, "row-normalised (% of the true class)", ".0f")):
        shown = matrix.astype(float)
        im = ax.imshow(shown, cmap="Blues", norm=matplotlib.colors.PowerNorm(0.5, vmin=0, vmax=shown.max() or 1))
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                if value == 0:
                    continue
                text = format(int(value), "d") if fmt == "d" else format(value, ".1f" if value < 1 else fmt)
                dark = shown[i, j] > 0.45 * (shown.max() or 1)
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(n), names, rotation=40, ha="right")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label("test images" if fmt == "d" else "% of the true class")
    fig.suptitle(f"Confusion matrix of the best run {data.best['id']} on the test set "
                 f"(accuracy {ca['accuracy']:.4f}, {ca['errors']} {agree(ca['errors'], 'error')} of {ca['total']})")
    return fig


def misclassified(data, per_pair=6, n_pairs=4):
    ca = data.best_eval["confusion"]
    ds, proba, pred = data.dataset, data.best_eval["proba"], data.best_eval["pred"]
    chosen = []
    for d in ca["confused"][:n_pairs]:
        idx = np.flatnonzero((ds.y_test == d["true_index"]) & (pred == d["pred_index"]))
        idx = idx[np.argsort(-proba[idx, d["pred_index"]], kind="mergesort")][:per_pair]
        chosen.append((d, idx))
    if not chosen:
        return None
    fig, axes = plt.subplots(len(chosen), per_pair, figsize=(1.75 * per_pair + 1.8, 2.05 * len(chosen)),
                             layout="constrained", squeeze=False)
    for row, (d, idx) in enumerate(chosen):
        for col in range(per_pair):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if col < len(idx):
                i = idx[col]
                ax.imshow(ds.x_test[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(f"p={proba[i, d['pred_index']]:.2f}", fontsize=9)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"{d['true']}\n→ {d['pred']}\n({d['count']}×)", rotation=0, ha="right",
                                va="center", fontsize=9, labelpad=8)
    fig.suptitle(f"Most confident mistakes of run {data.best['id']} for its most confused class pairs "
                 f"(true → predicted; p = predicted probability)")
    return fig


def per_class(data):
    rows = data.best_eval["confusion"]["per_class"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4.6), layout="constrained")
    w = 0.27
    for k, (key, colour) in enumerate((("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"))):
        ax.bar(x + (k - 1) * w, [r[key] for r in rows], w, label=key if key != "f1" else "F1", color=colour)
    low = min(min(r[k] for r in rows for k in ("precision", "recall", "f1")), 1.0)
    ax.set_ylim(max(0.0, math.floor((low - 0.05) * 10) / 10), 1.0)
    ax.set_xticks(x, [r["class"] for r in rows], rotation=20, ha="right")
    ax.set_xlabel("class")
    ax.set_ylabel("score on the test set")
    ax.set_title(f"Per-class precision, recall and F1 of the best run {data.best['id']}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---- 6. cross-entropy vs squared error ------------------------------------------------------------------------

def _curve(history, key):
    xs = [row["epoch"] for row in history if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
    ys = [row[key] for row in history if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
    return xs, ys


def ce_vs_mse(data):
    cmp = data.compare
    if not cmp or not cmp["summary"]["n"]:
        return None
    pairs, hist = cmp["pairs"], cmp["histories"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), layout="constrained")
    ax = axes[0]
    for k, metric in enumerate((data.metric, "test_accuracy")):
        for p in pairs:
            a, b = A.metric_of(p["cross_entropy"], metric), A.metric_of(p["mean_squared_error"], metric)
            if a is not None and b is not None:
                ax.plot([2 * k, 2 * k + 1], [a, b], color="#999999", linewidth=0.8, zorder=1)
        for j, loss in enumerate(A.LOSS_LEVELS):
            vals = [A.metric_of(p[loss], metric) for p in pairs]
            vals = [v for v in vals if v is not None]
            if vals:
                ax.boxplot([vals], positions=[2 * k + j], widths=0.5, showfliers=False,
                           medianprops=dict(color=LOSS_COLOURS[loss]))
                ax.scatter([2 * k + j] * len(vals), vals, color=LOSS_COLOURS[loss], s=22, zorder=3)
    ax.set_xticks(range(4), ["val\nCE", "val\nMSE", "test\nCE", "test\nMSE"])
    ax.set_ylabel("accuracy")
    ax.set_xlabel("metric and loss (grey lines join the runs of a pair)")
    ax.set_title(f"Accuracy of {plural(cmp['summary']['n'], 'pair')} of runs")
    ax.grid(axis="y", alpha=0.3)
    for ax, key, label in ((axes[1], "val_accuracy", "validation accuracy"),
                           (axes[2], "train_accuracy", "training accuracy")):
        for loss in A.LOSS_LEVELS:
            curves = [_curve(hist.get(p[loss]["id"], []), key) for p in pairs]
            for xs, ys in curves:
                ax.plot(xs, ys, color=LOSS_COLOURS[loss], alpha=0.25, linewidth=1)
            longest = max((len(c[0]) for c in curves), default=0)
            if longest:
                mean = [np.mean([ys[e] for xs, ys in curves if len(ys) > e]) for e in range(longest)]
                ax.plot(range(1, longest + 1), mean, color=LOSS_COLOURS[loss], linewidth=2.5, marker="o",
                        markersize=4, label=f"{loss} (mean of {len(curves)})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label.capitalize()} per epoch (thin: single runs)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    s = cmp["summary"]
    fig.suptitle(f"Cross-entropy vs squared error (sweep {cmp['sweep']['id']}): paired gap in {data.metric} "
                 f"CE − MSE = {s['mean']:+.4f} ± {s['std']:.4f} (mean ± standard deviation)\nCE better in "
                 f"{s['wins']} of {plural(s['n'], 'pair')}; paired t-test {p_value(s.get('t_p'))}, Wilcoxon "
                 f"signed-rank {p_value(s.get('wilcoxon_p'))}")
    return fig


# ---- 7. learning curves of the top runs -------------------------------------------------------------------------

def learning_curves(data):
    top = data.top
    if not top:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    r2 = data.task == "autoencoder"         # R², on validation only (the fit loop logs no training R²)
    for k, run in enumerate(top):
        hist = data.histories.get(run["id"], [])
        c = colours[k % len(colours)]
        label = f"#{k + 1} {run['id']} ({A.metric_of(run, data.metric):.4f})"
        axes[0].plot(*_curve(hist, data.val_metric), color=c, marker="o", markersize=3, label=label + " val")
        if not r2:
            axes[0].plot(*_curve(hist, "train_accuracy"), color=c, linestyle="--", alpha=0.7)
        axes[1].plot(*_curve(hist, "val_loss"), color=c, marker="o", markersize=3, label=label)
        axes[1].plot(*_curve(hist, "train_loss"), color=c, linestyle="--", alpha=0.7)
    for ax, what in ((axes[0], "validation R²" if r2 else "accuracy"), (axes[1], "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].set_title("R² over all validation pixels" if r2 else "Accuracy (solid: validation, dashed: training)")
    axes[1].set_title("Loss (solid: validation, dashed: training)")
    handles = [Line2D([], [], color=colours[k % len(colours)], marker="o", markersize=4,
                      label=f"#{k + 1} run {r['id']}: {data.metric} {A.metric_of(r, data.metric):.4f}")
               for k, r in enumerate(top)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), framealpha=0.9)
    best = "best run" if len(top) == 1 else f"{len(top)} best runs"
    fig.suptitle(f"Learning curves of the {best} of sweep {data.sweep_id} by {data.metric}")
    return fig


# ---- 8. observations: the metric per value of each categorical parameter --------------------------------------

def by_parameter(data):
    names = [n for n in data.categorical if len(data.groups.get(n) or []) > 1]
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows), layout="constrained", squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        groups = data.groups[name]
        x = np.arange(len(groups))
        ax.bar(x, [g["mean"] for g in groups], color="#4c72b0")
        ax.scatter(x, [g["max"] for g in groups], color="black", marker="_", s=200, zorder=3)
        for xi, g in zip(x, groups):
            ax.text(xi, g["mean"] / 2, f"n={g['n']}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xticks(x, [A.fmt_value(g["level"]) for g in groups], rotation=0 if len(groups) < 5 else 30,
                      ha="center" if len(groups) < 5 else "right")
        ax.set_ylim(min(0.0, *(g["min"] for g in groups)), 1)       # an R² can be below 0
        ax.set_xlabel(name)
        ax.set_ylabel(f"{data.metric}")
        ax.set_title(f"{data.metric} by {name}")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Mean (bar) and best (black tick) {data.metric} per parameter value, over all runs with a value")
    return fig


# ---- captions that need numbers (the registry names them next to their figure) -------------------------------

def caption_samples(data) -> str:
    source = getattr(data.dataset, "source", None)
    return (f"The first training image of each of the {plural(len(data.class_names), 'class', 'classes')}"
            + (f" ({source})." if source else "."))


def caption_learning_curves(data) -> str:
    n = len(data.top)
    which = "the best run" if n == 1 else f"the {n} best runs"
    what = "validation R²" if data.task == "autoencoder" else "accuracy"
    return f"Per-epoch {what} and loss of {which} that trained all their epochs."
