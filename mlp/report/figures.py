"""The report's figures: a registry name -> function(ReportData) -> PNG path (or None when the
figure does not apply, e.g. no CE-vs-MSE sweep). Adding a figure = one function + one line in
FIGURES. Every figure has a title and labelled axes; matplotlib runs headless (Agg).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mlp.report import analysis as A  # noqa: E402
from mlp.report import autoencoder as AE  # noqa: E402
from mlp.report import baselines as B  # noqa: E402

__all__ = ["FIGURES", "render_all", "FIGURE_TASKS", "applies"]

DPI = 100
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


def _save(fig, data, name) -> Path:
    path = Path(data.out) / f"{name}.png"
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


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
    return _save(fig, data, "samples")


# ---- 2. accuracy of every run in creation order ---------------------------------------------------

def _kind(run) -> str:
    if A.is_full_run(run):
        return "full"
    if A.was_stopped(run):
        return "stopped"
    if run["state"] == "diverged":
        return "diverged"
    return "other"


def accuracy_vs_created(data):
    fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
    runs = [r for r in data.runs if r["state"] not in ("pending", "running")]
    xs = np.arange(1, len(runs) + 1)
    values = [A.metric_of(r, data.metric) for r in runs]
    for kind, style in STATE_STYLE.items():
        pts = [(x, v if v is not None else 0.0) for x, v, r in zip(xs, values, runs) if _kind(r) == kind]
        if pts:
            px, py = zip(*pts)
            ax.scatter(px, py, s=36, marker=style["marker"], color=style["color"], label=f"{style['label']} ({len(pts)})",
                       zorder=3, edgecolor="white", linewidth=0.5)
    better = max if data.goal == "maximize" else min
    best_so_far, running = [], None
    for v in values:
        if v is not None:
            running = v if running is None else better(running, v)
        best_so_far.append(np.nan if running is None else running)
    ax.step(xs, best_so_far, where="post", color="black", linewidth=1.5, label="best so far", zorder=2)
    B.draw_reference_lines(ax, data)            # `mlp baselines` of this split, when there are any
    best = data.best
    if best is not None and best in runs:
        bx = runs.index(best) + 1
        by = A.metric_of(best, data.metric)
        ax.annotate(f"best: {by:.4f}\nrun {best['id']}", (bx, by), xytext=(14, -55), textcoords="offset points",
                    arrowprops=dict(arrowstyle="->", color="black"), fontsize=9, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="#999999"))
    ax.set_xlabel("run, in order of creation")
    ax.set_ylabel(f"{data.metric} (last epoch)")
    ax.set_title(f"{data.metric} of every run of sweep {data.sweep_id} in creation order "
                 f"(runs without a value drawn at 0)")
    ax.set_xlim(0.3, max(len(runs), 1) + 0.7)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", framealpha=0.9)
    return _save(fig, data, "accuracy_vs_created")


# ---- 3. parallel coordinates ----------------------------------------------------------------------------

def _axis(data, name, values):
    """(positions in [0, 1] for `values`, tick positions, tick labels, is_log) for one axis."""
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
    log = name in data.log_params or name == "__metric_log__"
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


def parallel_coordinates(data):
    runs = [r for r in data.runs if A.metric_of(r, data.metric) is not None]
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
    lo, hi = float(metric.min()), float(metric.max())
    span = (hi - lo) or 1.0
    columns.append(list((metric - lo) / span))
    mt = np.linspace(lo, hi, 5)
    ticks.append((list((mt - lo) / span), [f"{t:.3f}" for t in mt], data.metric))
    Y = np.array(columns, dtype=float).T                      # runs × axes
    # a little seeded jitter on categorical axes, so runs sharing a value fan out and can be counted
    jitter = np.random.default_rng(0).uniform(-0.018, 0.018, size=Y.shape)
    for j, name in enumerate(names):
        if "values" in data.specs.get(name, {}):
            Y[:, j] = np.clip(Y[:, j] + jitter[:, j], -0.02, 1.02)
    n_axes = Y.shape[1]
    fig, ax = plt.subplots(figsize=(max(12, 1.45 * n_axes + 2), 6.5), layout="constrained")
    cmap = plt.get_cmap("viridis")
    # colour from the lower quartile up: a few failed runs would otherwise squeeze every good run
    # into one colour; runs below it share the darkest colour (the metric axis keeps true values)
    c_lo = float(np.quantile(metric, 0.25))
    clipped = bool((metric < c_lo).any()) and c_lo < hi
    norm = matplotlib.colors.Normalize(c_lo if clipped else lo, hi, clip=True)
    xs = np.arange(n_axes)
    order = np.argsort(metric) if data.goal == "maximize" else np.argsort(-metric)
    for i in order:                                            # best runs drawn last, on top
        ax.plot(xs, Y[i], color=cmap(norm(metric[i])), alpha=0.75, linewidth=1.4)
    for x, (tpos, tlab, label) in zip(xs, ticks):
        ax.axvline(x, color="black", linewidth=0.8, zorder=1)
        for t, text in zip(tpos, tlab):
            ax.plot([x - 0.03, x], [t, t], color="black", linewidth=0.8)
            ax.text(x - 0.05, t, text, ha="right", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.12", facecolor="white", edgecolor="none", alpha=0.8), zorder=5)
        ax.text(x, 1.045, label, ha="center", va="bottom", fontsize=9, fontweight="bold")
    ax.set_xlim(-0.75, n_axes - 0.6)
    ax.set_ylim(-0.04, 1.13)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, extend="min" if clipped else "neither")
    bar.set_label(f"{data.metric}" + (f" (below {c_lo:.3f}, the lower quartile: darkest)" if clipped else ""))
    ax.set_title(f"Parallel coordinates: {len(runs)} runs of sweep {data.sweep_id}, coloured by {data.metric} "
                 f"(categorical values in YAML order, bottom to top, slightly jittered)", pad=12)
    return _save(fig, data, "parallel_coordinates")


# ---- 4. parameter importance -----------------------------------------------------------------------------

def importance(data):
    rows = data.importance[:20]
    if not rows:
        return None
    labels = [r["feature"] for r in rows][::-1]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.34 * len(rows)), sharey=True, layout="constrained")
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
    fig.suptitle(f"Parameter importance for {data.metric} ({data.importance_runs} runs; categoricals one-hot)")
    return _save(fig, data, "importance")


# ---- 5. the best run ---------------------------------------------------------------------------------------

def confusion(data):
    if data.best_eval is None:
        return None
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
                 f"(accuracy {ca['accuracy']:.4f}, {ca['errors']} errors of {ca['total']})")
    return _save(fig, data, "confusion_matrix")


def misclassified(data, per_pair=6, n_pairs=4):
    if data.best_eval is None:
        return None
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
    return _save(fig, data, "misclassified")


def per_class(data):
    if data.best_eval is None:
        return None
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
    return _save(fig, data, "per_class")


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
    ax.set_title(f"Accuracy of the {cmp['summary']['n']} pairs of runs")
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
                ax.plot(range(1, longest + 1), mean, color=LOSS_COLOURS[loss], linewidth=2.5,
                        label=f"{loss} (mean of {len(curves)})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label.capitalize()} per epoch (thin: single runs)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    s = cmp["summary"]
    fig.suptitle(f"Cross-entropy vs squared error (sweep {cmp['sweep']['id']}): paired gap in {data.metric} "
                 f"CE − MSE = {s['mean']:+.4f} ± {s['std']:.4f}, CE better in {s['wins']} of {s['n']} pairs")
    return _save(fig, data, "ce_vs_mse")


# ---- 7. learning curves of the top runs -------------------------------------------------------------------------

def learning_curves(data):
    top = data.top
    if not top:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    r2 = getattr(data, "task", "classify") == "autoencoder"      # R² (validation only) instead of accuracy
    for k, run in enumerate(top):
        hist = data.histories.get(run["id"], [])
        c = colours[k % len(colours)]
        label = f"#{k + 1} {run['id']} ({A.metric_of(run, data.metric):.4f})"
        axes[0].plot(*_curve(hist, "val_r2" if r2 else "val_accuracy"), color=c, marker="o", markersize=3,
                     label=label + " val")
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
    fig.suptitle(f"Learning curves of the {len(top)} best runs of sweep {data.sweep_id} by {data.metric}")
    return _save(fig, data, "learning_curves")


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
        ax.set_ylim(min(0.0, *(g["min"] for g in groups)), 1)     # R² can be negative
        ax.set_xlabel(name)
        ax.set_ylabel(f"{data.metric}")
        ax.set_title(f"{data.metric} by {name}")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Mean (bar) and best (black tick) {data.metric} per parameter value, over all runs with a value")
    return _save(fig, data, "by_parameter")


FIGURES = {
    "samples": samples,
    "accuracy_vs_created": accuracy_vs_created,
    "parallel_coordinates": parallel_coordinates,
    "importance": importance,
    "confusion_matrix": confusion,
    "misclassified": misclassified,
    "per_class": per_class,
    "ce_vs_mse": ce_vs_mse,
    "learning_curves": learning_curves,
    "by_parameter": by_parameter,
    "reconstructions": AE.reconstructions,
}
# Figures that apply to one task only (the others apply to both); render_all skips the rest.
FIGURE_TASKS = {
    "confusion_matrix": ("classify",), "misclassified": ("classify",), "per_class": ("classify",),
    "ce_vs_mse": ("classify",), "reconstructions": ("autoencoder",),
}


def applies(name: str, task: str) -> bool:
    return task in FIGURE_TASKS.get(name, (task,))


def render_all(data, log=None) -> dict:
    """Draw every registered figure; returns {name: path} for those that apply."""
    with plt.rc_context(STYLE):
        for name, draw in FIGURES.items():
            if not applies(name, getattr(data, "task", "classify")):
                continue
            if log:
                log(f"figure {name} ...")
            path = draw(data)
            if path is not None:
                data.figures[name] = Path(path)
    return data.figures
