"""What a reader of `mlp report` sees, checked on synthetic runs (no store, no dataset, no
training): the legend of "accuracy vs created" covers no point, the parallel coordinates zoom on
the informative runs, counts agree with their nouns, the rerun command is the one that was run,
the CE-vs-MSE gap comes with a named paired test, and the importance ranking warns about few
runs and parameters that always moved together."""

import matplotlib
import numpy as np
import pytest
from scipy import stats

from mlp.report import analysis as A
from mlp.report import figures as F
from mlp.report import sections as S
from mlp.report.blocks import Bullets, Figure, Heading, Paragraph, Table
from mlp.report.collect import prepare
from mlp.report.importance import confounded
from mlp.report.observations import observations
from mlp.report.page import build_blocks, write_markdown
from mlp.report.text import plural, share
from mlp.runs.store import RerunPlan
from helpers.report_runs import SPECS, good_and_chance, run, sweep


# ---- "accuracy vs created": the legend covers no data -------------------------------------------------------

def _data_points(fig):
    """Display coordinates of every scattered point and every vertex of the best-so-far line."""
    ax = fig.axes[0]
    points = [ax.transData.transform(c.get_offsets()) for c in ax.collections]
    points += [ax.transData.transform(np.column_stack(line.get_data())) for line in ax.lines]
    pts = np.vstack(points)
    return pts[np.isfinite(pts).all(axis=1)]


def _legend_boxes(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the figure has a legend"
    renderer = fig.canvas.get_renderer()
    return [legend.get_window_extent(renderer) for legend in legends]


@pytest.mark.parametrize("shape", ["rising", "falling", "corners"])
def test_accuracy_vs_created_legend_covers_no_point(shape):
    n = 40
    if shape == "rising":       # the best runs come last
        accs = np.linspace(0.1, 0.9, n)
    elif shape == "falling":
        accs = np.linspace(0.9, 0.1, n)
    else:                       # a point in every corner of the axes
        accs = np.full(n, 0.5)
        accs[[0, 1, -2, -1]] = [0.1, 0.9, 0.9, 0.1]
    runs = [run(i + 1, float(a), learning_rate=1e-3 * (i + 1), optimizer="adam", hidden_size=16,
                activation="tanh") for i, a in enumerate(accs)]
    runs[5]["state"], runs[5]["summary"] = "diverged", {"epochs_run": 1, "diverged_epoch": 1}
    data = prepare(sweep(), runs)
    fig = F.accuracy_vs_created(data)
    fig.canvas.draw()
    boxes = _legend_boxes(fig)
    points = _data_points(fig)
    assert len(points) >= n
    for box in boxes:
        inside = [tuple(p) for p in points if box.contains(*p)]
        assert not inside, f"legend {box} covers data points at {inside[:3]}"
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(t.startswith(f"best: {max(accs):.4f}, run ") for t in labels)
    matplotlib.pyplot.close(fig)


# ---- parallel coordinates: the metric axis zooms on the runs that learned ---------------------------------------

def test_metric_axis_clips_a_few_chance_runs():
    values = [0.80 + 0.09 * k / 39 for k in range(40)] + [0.10, 0.10, 0.11]
    axis = F.metric_axis(values)
    assert axis["lo"] == pytest.approx(0.80) and axis["hi"] == pytest.approx(0.89)
    assert axis["clipped"].tolist() == [False] * 40 + [True] * 3
    # a smooth spread is left alone; so is a loss to minimise, where the bad runs are the high ones
    assert not F.metric_axis(np.linspace(0.1, 0.9, 30))["clipped"].any()
    loss = F.metric_axis([0.3 + 0.01 * k for k in range(20)] + [2.3], goal="minimize")
    assert loss["clipped"].tolist() == [False] * 20 + [True] and loss["hi"] == pytest.approx(0.49)


def test_parallel_coordinates_zoom_on_the_informative_runs():
    runs = good_and_chance()
    data = prepare(sweep(), runs)
    fig = F.parallel_coordinates(data)
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = [float(t.get_text()) for t in ax.texts if t.get_gid() == "metric-tick"]
    assert len(ticks) == 5
    assert min(ticks) > 0.10 + 0.5 and max(ticks) == pytest.approx(max(r["summary"]["val_accuracy"] for r in runs),
                                                                   abs=1e-3)
    # each run's line ends on the metric axis: good runs spread over the axis, chance runs below it
    end = {line.get_gid()[4:]: line.get_ydata()[-1] for line in ax.lines if (line.get_gid() or "").startswith("run:")}
    assert len(end) == len(runs)
    good = [end[r["id"]] for r in runs if r["summary"]["val_accuracy"] > 0.5]
    chance = [end[r["id"]] for r in runs if r["summary"]["val_accuracy"] <= 0.5]
    assert len(chance) == 3 and max(chance) < 0 <= min(good)
    assert max(good) - min(good) > 0.9                  # the axis runs 0..1: the good runs fill it
    assert any(t.get_gid() == "metric-clipped" and "3 runs below the axis" in t.get_text() for t in ax.texts)
    caption = F.caption_parallel_coordinates(data)
    assert "zoomed on" in caption and "3 runs more than 1.5 interquartile ranges below" in caption
    assert "drawn grey and dashed at the axis' bottom edge" in caption
    matplotlib.pyplot.close(fig)


# ---- grammar ----------------------------------------------------------------------------------------------------

def test_plural_and_share():
    assert plural(1, "run") == "1 run" and plural(0, "run") == "0 runs" and plural(2, "run") == "2 runs"
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == "3 classes"
    assert share(1, 6, "run") == "1 of 6 runs (17%)" and share(1, 1, "run") == "1 of 1 run (100%)"


def test_one_run_reads_as_one_run():
    runs = [run(1, 0.85, learning_rate=1e-3, optimizer="adam", hidden_size=16, activation="tanh")]
    data = prepare(sweep(), runs)
    text = " ".join(observations(data)) + F.caption_accuracy_vs_created(data) + F.caption_parallel_coordinates(data)
    assert "The sweep has 1 run (1 finished)" in text
    assert "1 runs" not in text and " 1 epochs" not in text and "1 pairs" not in text


def test_diverged_epoch_comes_from_the_summary_not_the_message():
    runs = good_and_chance(12, 0)
    runs[3]["state"] = "diverged"
    runs[3]["summary"] = {"epochs_run": 1, "diverged_epoch": 2, "diverged_batch": 7}
    runs[3]["error"] = "loss became nan somewhere"          # no "at epoch N" to parse
    data = prepare(sweep(), runs)
    line = next(o for o in observations(data) if " diverged: " in o)
    assert line.startswith("1 of 12 runs (8%) diverged: loss became nan (1), in epoch 2 (1)")


# ---- reruns: the command that was run, the number that was recommended ----------------------------------------

def _with_rerun(top, epochs, data_dir=None):
    runs = good_and_chance(10, 0)
    data = prepare(sweep(), runs)
    chosen = data.ranked[:top]
    configs = [{**r["config"], "dataset": "mnist", **({"epochs": epochs} if epochs else {}),
                **({"data_dir": data_dir} if data_dir else {})} for r in chosen]
    plan = RerunPlan(parent="sw1", source_runs=[r["id"] for r in chosen], configs=configs, dataset="mnist",
                     epochs=epochs, top=top)
    child = {"id": "ch1", "name": "synthetic-top2-mnist", "state": "finished", "rerun": plan, "parent_sweep_id": "sw1"}
    child_runs = [{**run(100 + i, 0.97, **c), "params": c} for i, c in enumerate(configs)]
    data.reruns = [{"sweep": child, "rows": A.rerun_rows({r["id"]: r for r in runs}, child, child_runs, data.names)}]
    return data


def test_rerun_command_is_the_one_that_ran():
    plan = RerunPlan(parent="p1", source_runs=["a", "b"], configs=[{"data_dir": "/data/my mnist"}] * 2,
                     dataset="mnist", epochs=1, top=2)
    assert plan.command() == "mlp rerun p1 --top 2 --dataset mnist --epochs 1 --data_dir '/data/my mnist'"
    plan = RerunPlan(parent="p1", source_runs=["a", "b", "c"], configs=[{}, {}, {}], dataset="mnist", top=3)
    assert plan.command() == "mlp rerun p1 --top 3 --dataset mnist"


def test_rerun_section_quotes_the_command_and_counts_right():
    data = _with_rerun(top=2, epochs=1, data_dir="/data/mnist")
    text = "\n".join(b.text for b in S.rerun(data) if isinstance(b, Paragraph))
    assert "reran the two best validation configurations on mnist for 1 epoch " in text
    assert "(`mlp rerun sw1 --top 2 --dataset mnist --epochs 1 --data_dir /data/mnist`)" in text
    findings = S.findings(data)
    paragraph = next(b.text for b in findings if isinstance(b, Paragraph) and "recommended" in b.text)
    assert paragraph.startswith("The two configurations recommended for MNIST")
    assert "three" not in paragraph
    table = [b for b in findings if isinstance(b, Table) and b.header[0] == "#"][-1]
    assert [row[1] for row in table.rows] == data.reruns[0]["sweep"]["rerun"].source_runs
    assert any(o.startswith("Recommended for MNIST (the two best validation configurations here)")
               for o in observations(data))


def test_rerun_with_its_own_epochs_says_so():
    data = _with_rerun(top=3, epochs=None)
    text = " ".join(b.text for b in S.rerun(data) if isinstance(b, Paragraph))
    assert "with their own epochs (`mlp rerun sw1 --top 3 --dataset mnist`)" in text


# ---- cross-entropy vs squared error: a named paired test --------------------------------------------------------

def test_ce_vs_mse_names_the_spread_and_the_paired_test():
    ce = [0.85, 0.84, 0.86, 0.83, 0.88, 0.87]
    mse = [0.83, 0.835, 0.84, 0.80, 0.86, 0.875]
    runs = []
    for seed, (a, b) in enumerate(zip(ce, mse)):
        runs.append(run(2 * seed + 1, a, loss="cross_entropy", seed=seed))
        runs.append(run(2 * seed + 2, b, loss="mean_squared_error", seed=seed))
    params = {"loss": {"values": ["cross_entropy", "mean_squared_error"]}, "seed": {"values": list(range(6))}}
    data = prepare(sweep(params, method="grid"), runs)
    pairs = A.pair_runs(runs)
    data.compare = {"sweep": data.sweep, "runs": runs, "histories": {}, "pairs": pairs,
                    "summary": A.pair_summary(pairs), "test_summary": A.pair_summary(pairs, "test_accuracy")}
    t = stats.ttest_rel(ce, mse)
    w = stats.wilcoxon(np.subtract(ce, mse))
    text = next(b.text for b in S.ce_vs_mse(data) if isinstance(b, Paragraph))
    assert "± " in text and "(mean ± standard deviation of the differences;" in text
    assert (f"paired t-test on the differences t = {t.statistic:.2f}, p = {t.pvalue:.3g} (n = 6 pairs, "
            f"two-sided)") in text
    assert f"Wilcoxon signed-rank test p = {w.pvalue:.3g}" in text
    line = next(o for o in observations(data) if o.startswith("Cross-entropy vs squared error"))
    assert "over 6 pairs of runs" in line and "standard deviation" in line and "paired t-test" in line


def test_two_pairs_are_too_few_for_the_wilcoxon_test_and_it_says_so():
    s = A.pair_summary([{"cross_entropy": run(1, 0.9), "mean_squared_error": run(2, 0.8)},
                        {"cross_entropy": run(3, 0.85), "mean_squared_error": run(4, 0.8)}])
    from mlp.report.observations import paired_test_words
    words = paired_test_words(s)
    assert "Wilcoxon signed-rank test p = 0.5 (with 2 non-zero pairs it cannot go below 0.5" in words


# ---- parameter importance: few runs, confounded parameters ------------------------------------------------------

def test_importance_warns_when_runs_are_few():
    few = prepare(sweep(), good_and_chance(8, 0))
    text = " ".join(observations(few))
    assert "Only 8 runs went into this ranking: below 20 runs" in text and "unreliable" in text
    section = " ".join(b.text for b in S.importance(few) if isinstance(b, Paragraph))
    assert "Only 8 runs went into this ranking" in section
    many = prepare(sweep(), good_and_chance(40, 0))
    assert "went into this ranking" not in " ".join(observations(many))


def test_confounded_parameters_are_reported_as_a_group():
    """optimizer and activation always changed together (adam with tanh, sgd with ReLU) and drive
    the metric: no ranking may put one of them first on its own."""
    rng = np.random.default_rng(1)
    runs = []
    for i in range(30):
        opt = str(rng.choice(["sgd", "adam"]))
        act = {"adam": "tanh", "sgd": "ReLU"}[opt]
        params = {"learning_rate": float(10 ** rng.uniform(-4, -1)), "optimizer": opt,
                  "hidden_size": int(rng.choice([16, 32, 64])), "activation": act}
        runs.append(run(i + 1, 0.88 if opt == "adam" else 0.70 + rng.normal(0, 0.005), **params))
    specs = {**SPECS, "optimizer": {"values": ["sgd", "adam"]}}
    data = prepare(sweep(specs), runs)
    assert len(data.confounded) == 1
    assert {f.split("=")[0] for f in data.confounded[0]} == {"optimizer", "activation"}
    text = " ".join(observations(data))
    assert "optimizer and activation always changed together in these runs; their effects cannot be separated" in text
    assert "ranks optimizer and activation together first" in text
    assert "ranks optimizer first" not in text and "ranks activation first" not in text
    table = next(b for b in S.importance(data) if isinstance(b, Table))
    linked = {row[0]: row[4] for row in table.rows}
    assert linked["optimizer=adam"] in ("activation=ReLU and activation=tanh", "activation=tanh and activation=ReLU")
    assert linked["learning_rate"] == ""


def test_partly_confounded_levels_are_named_by_level():
    params = [{"optimizer": o, "activation": a} for o, a in
              [("adam", "tanh"), ("sgd", "ReLU"), ("nadam", "ReLU"), ("sgd", "ReLU"), ("nadam", "ReLU"),
               ("adam", "tanh")]]
    groups = confounded(params)
    assert [sorted(g) for g in groups] == [sorted(["optimizer=adam", "activation=tanh", "activation=ReLU"])]
    # continuous parameters that rose together are found too
    lin = [{"learning_rate": 1e-4 * k, "batch_size": 16 * k, "seed": s}
           for k, s in zip(range(1, 9), [3, 1, 4, 1, 5, 9, 2, 6])]
    assert confounded(lin) == [["learning_rate", "batch_size"]]


# ---- the registry ---------------------------------------------------------------------------------------------

def test_a_new_figure_is_one_function_and_one_registry_line(monkeypatch, tmp_path):
    """Register a figure for the "runs" section: it is drawn, saved and shown at the end of its
    section with its caption, with no other change."""
    from mlp.report import registry
    from mlp.report.build import render_figures

    def histogram(data):
        fig, ax = matplotlib.pyplot.subplots()
        ax.hist([A.metric_of(r, data.metric) for r in data.runs])
        ax.set_xlabel(data.metric)
        ax.set_title("histogram")
        return fig

    # the rest of the page needs the dataset and the best model: this test keeps only the "runs" section
    runs_figures = {k: f for k, f in registry.FIGURES.items() if f.section == "runs"}
    monkeypatch.setattr(registry, "FIGURES", {**runs_figures,
                                              "histogram": registry.Fig("histogram", "runs", histogram,
                                                                        "How the metric spreads.")})
    monkeypatch.setattr(registry, "SECTIONS", {"runs": registry.SECTIONS["runs"]})
    data = prepare(sweep(), good_and_chance(10, 0))
    figures = render_figures(data, tmp_path)
    assert list(figures) == ["accuracy_vs_created", "histogram"]
    assert (tmp_path / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    blocks = build_blocks(data)
    assert isinstance(blocks[0], Heading) and isinstance(blocks[1], Paragraph) and isinstance(blocks[2], Bullets)
    runs_section = blocks[blocks.index(next(b for b in blocks if isinstance(b, Heading) and b.anchor == "runs")):]
    assert [b.name for b in runs_section if isinstance(b, Figure)] == ["accuracy_vs_created", "histogram"]
    md = write_markdown(blocks, figures, tmp_path / "report.md").read_text()
    assert "## 1. Validation accuracy of every run" in md
    assert "![histogram](histogram.png)\n\n*How the metric spreads.*" in md
