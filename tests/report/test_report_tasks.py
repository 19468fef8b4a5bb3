"""The report by task (issue 15), on synthetic runs (no store, no training): an autoencoder sweep
reads in R² in every section, with its reconstructions and none of a classifier's figures; a
classifier sweep shows the `mlp baselines` of its split as a table and as dashed reference lines;
which task a title or a figure belongs to is said in the registry."""
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from mlp.report import baselines as B
from mlp.runs import baseline_models as RB
from mlp.report import figures as F
from mlp.report import registry
from mlp.report import sections as S
from mlp.report.blocks import Figure, Heading, Paragraph, Table
from mlp.report.build import render_figures
from mlp.report.collect import prepare
from mlp.report.observations import observations
from mlp.report.page import build_blocks, write_html, write_markdown
from helpers.report_runs import good_and_chance, sweep

CLASSES = [f"class {c}" for c in range(10)]


# ---- an autoencoder sweep ---------------------------------------------------------------------------------------

def ae_sweep():
    params = {"task": {"value": "autoencoder"}, "hidden_sizes": {"values": [[32], [48, 16, 48]]},
              "activation": {"values": ["relu", "identity"]}, "learning_rate": {"values": [1e-3, 2e-3, 4e-3]}}
    s = sweep(params, method="grid")
    del s["config"]["metric"]                   # the task gives the default: val_r2, maximize
    return s


def ae_run(i, r2, **params):
    summary = {"epochs_run": 2, "val_r2": r2, "test_r2": r2 - 0.01, "val_loss": 30 * (1 - r2),
               "test_loss": 31 * (1 - r2)}
    return {"id": f"a{i:03d}", "seq": i, "state": "finished", "stopped_by": None, "params": params,
            "config": {"epochs": 2, "dataset": "fashion_mnist", "task": "autoencoder", **params},
            "summary": summary, "error": None}


def ae_runs():
    runs, i = [], 0
    for hidden in ([32], [48, 16, 48]):
        for activation in ("relu", "identity"):
            for lr in (1e-3, 2e-3, 4e-3):
                i += 1
                r2 = 0.6 + 0.1 * len(hidden) + (0.05 if activation == "relu" else 0.0) + 10 * lr
                runs.append(ae_run(i, round(r2, 4), hidden_sizes=hidden, activation=activation, learning_rate=lr))
    runs[-1]["summary"].update(val_r2=-0.05, test_r2=-0.06)     # one run no better than the mean image
    return runs


def ae_data():
    """prepare() of the synthetic sweep, plus what collect() would add: a tiny dataset, the best
    model's evaluation (AE.evaluate_best's keys) and per-epoch histories."""
    rng = np.random.default_rng(0)
    data = prepare(ae_sweep(), ae_runs())
    y = np.repeat(np.arange(10), 3)
    data.dataset = SimpleNamespace(x_train=rng.random((30, 784), dtype=np.float32), y_train=y,
                                   x_test=rng.random((30, 784), dtype=np.float32), y_test=y, source="synthetic")
    data.class_names = list(CLASSES)
    picks = [3 * c for c in range(10)]
    data.reconstruction = {
        "source": "the model the agent saved", "note": "", "model_path": "/models/a.npz", "val_loss": 12.0,
        "val_r2": data.best["summary"]["val_r2"], "test_loss": 12.5, "test_r2": data.best["summary"]["test_r2"],
        "per_class": [{"class": name, "n": 3, "r2": 0.8 + 0.01 * c, "pixel_mse": 0.02 - 0.001 * c, "loss": 15.0 - c}
                      for c, name in enumerate(CLASSES)],
        "picks": picks, "originals": data.dataset.x_test[picks], "reconstructions": data.dataset.x_test[picks] * 0.9,
        "matches_store": True, "bottleneck": {"index": 3, "width": 16}, "layers": 7}
    data.histories = {r["id"]: [{"epoch": e, "val_r2": r["summary"]["val_r2"] - 0.1 / e, "val_loss": 20.0 / e,
                                 "train_loss": 21.0 / e} for e in (1, 2)] for r in data.top}
    return data


def test_an_autoencoder_sweep_is_measured_in_r2():
    data = ae_data()
    assert (data.task, data.metric, data.goal, data.test_metric, data.val_metric) == \
        ("autoencoder", "val_r2", "maximize", "test_r2", "val_r2")
    assert data.best["summary"]["val_r2"] == max(r["summary"]["val_r2"] for r in data.runs)
    chance = data.failures["chance"]                  # R² ≤ 0: no better than the mean image
    assert chance["threshold"] == 0.0 and chance["runs"] == [data.runs[-1]["id"]]
    line = next(o for o in observations(data) if "chance level" in o)
    assert "val_r2 ≤ 0.00, no better than predicting the mean image" in line
    assert data.compare_note.startswith("Does not apply: this sweep trains autoencoders")
    # a classifier sweep is unchanged
    classify = prepare(sweep(), good_and_chance(10, 1))
    assert (classify.task, classify.metric, classify.test_metric) == ("classify", "val_accuracy", "test_accuracy")
    assert classify.failures["chance"]["threshold"] == pytest.approx(0.12)


def test_titles_follow_the_task():
    ae, classify = registry.numbered_titles(ae_data()), registry.numbered_titles(prepare(sweep(), good_and_chance(10)))
    assert ae["runs"] == "2. Validation R² of every run" and classify["runs"] == "2. Validation accuracy of every run"
    assert ae["best"] == "5. The best run and its reconstructions" and classify["best"] == "5. The best run"
    assert list(ae) == list(classify) == list(registry.SECTIONS)   # same sections, same order, same numbers
    assert ae["baselines"] == classify["baselines"] == "8. Baselines"
    with pytest.raises(ValueError, match="unknown task"):
        registry.per_task("x", regression="y")


def test_an_autoencoder_page_has_every_section_in_r2_and_only_its_figures(tmp_path):
    data = ae_data()
    figures = render_figures(data, tmp_path)
    assert list(figures) == registry.figures_for("autoencoder")
    assert "reconstructions" in figures and not {"confusion_matrix", "misclassified", "per_class",
                                                  "ce_vs_mse"} & set(figures)
    blocks = build_blocks(data)
    md = write_markdown(blocks, figures, tmp_path / "report.md").read_text()
    page = write_html(blocks, figures, tmp_path / "index.html").read_text()
    for anchor, title in registry.numbered_titles(data).items():
        assert f"## {title}" in md and f'<h2 id="{anchor}">{title}</h2>' in page, title
    assert [b.name for b in blocks if isinstance(b, Figure)] == registry.figures_for("autoencoder")
    best = data.best
    assert (f"Run {best['id']} (#{best['seq']}) has the best val_r2: {best['summary']['val_r2']:.4f}; its test R² is "
            f"{best['summary']['test_r2']:.4f}") in md
    assert "tagged `bottleneck` in the saved model" in md and "python train.py --features /models/a.npz:bottleneck" in md
    assert "| class | R² within the class | mean squared error per pixel |" in md
    assert "| rank | run | val_r2 | test R² | epochs | network | parameters |" in md            # learning curves
    assert "| # | run | val_r2 | test R² | network | configuration |" in md                      # recommended
    assert "Does not apply: this sweep trains autoencoders" in md                    # CE vs MSE
    assert "Baselines are classifiers" in md
    assert "this section then shows their test R² there" in md                       # rerun, not run yet
    assert f"test R² {best['summary']['test_r2']:.4f}." in md                        # the best run's finding
    assert "The best model reconstructs the test set with R² " in md
    assert "test accuracy" not in md and "validation accuracy" not in md.lower()


def test_autoencoder_figures_plot_r2():
    data = ae_data()
    fig = F.learning_curves(data)
    left = fig.axes[0]
    assert left.get_ylabel() == "validation R²" and len(left.lines) == len(data.top)     # no training accuracy
    assert list(left.lines[0].get_ydata()) == [h["val_r2"] for h in data.histories[data.top[0]["id"]]]
    assert "validation R²" in registry.caption_of("learning_curves", data)
    matplotlib.pyplot.close(fig)
    fig = F.by_parameter(data)
    assert min(ax.get_ylim()[0] for ax in fig.axes if ax.get_visible() and ax.has_data()) == pytest.approx(-0.05)
    matplotlib.pyplot.close(fig)
    fig = registry.FIGURES["reconstructions"].draw(data)
    assert len(fig.axes) == 20 and fig.axes[0].get_title() == "class 0"
    matplotlib.pyplot.close(fig)


# ---- which task a figure applies to is its registry entry -------------------------------------------------------

def test_a_figure_of_the_other_task_is_neither_drawn_nor_shown_nor_left_behind(monkeypatch, tmp_path):
    def marker(data):
        fig, ax = matplotlib.pyplot.subplots()
        ax.set_title("autoencoders only")
        return fig

    runs_figures = {k: f for k, f in registry.FIGURES.items() if f.section == "runs"}
    entry = registry.Fig("ae_marker", "runs", marker, "Only for autoencoders.", tasks=registry.AUTOENCODER)
    monkeypatch.setattr(registry, "FIGURES", {**runs_figures, "ae_marker": entry})
    monkeypatch.setattr(registry, "SECTIONS", {"runs": registry.SECTIONS["runs"]})
    (tmp_path / "ae_marker.png").write_bytes(b"stale")
    data = prepare(sweep(), good_and_chance(10, 0))
    figures = render_figures(data, tmp_path)
    assert list(figures) == ["accuracy_vs_created"] and not (tmp_path / "ae_marker.png").exists()
    assert [b.name for b in build_blocks(data) if isinstance(b, Figure)] == ["accuracy_vs_created"]
    ae = prepare(ae_sweep(), ae_runs())
    assert list(render_figures(ae, tmp_path)) == ["accuracy_vs_created", "ae_marker"]
    assert [b.name for b in build_blocks(ae) if isinstance(b, Figure)] == ["accuracy_vs_created", "ae_marker"]


# ---- baselines in a classifier sweep's report -------------------------------------------------------------------

def baseline(model, label, val, test, seconds=1.5):
    return {"model": model, "label": label, "val_accuracy": val, "test_accuracy": test, "train_seconds": seconds,
            "settings": {"n_neighbors": 5}, "library": "scikit-learn 1.5", "n_train": 1800, "n_val": 200,
            "n_test": 500}


def with_baselines():
    data = prepare(sweep(), good_and_chance(30, 2))
    data.baselines = [baseline("logistic_regression", "logistic regression", 0.78, 0.77),
                      baseline("knn", "k-nearest neighbours", 0.95, 0.94)]     # above every run: a line at the top
    return data


def test_baselines_are_dashed_reference_lines_left_of_the_legend():
    data = with_baselines()
    fig = F.accuracy_vs_created(data)
    fig.canvas.draw()
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.lines if (line.get_gid() or "").startswith("baseline:")}
    assert set(lines) == {"baseline:logistic_regression", "baseline:knn"}
    assert all(line.get_linestyle() == "--" for line in lines.values())
    assert list(lines["baseline:knn"].get_ydata()) == [0.95, 0.95] and ax.get_ylim()[1] >= 0.95
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "baseline k-nearest neighbours: 0.9500" in labels and "best so far" in labels
    assert labels.index("best so far") < labels.index("baseline logistic regression: 0.7800")
    renderer = fig.canvas.get_renderer()
    plot = ax.get_window_extent(renderer)
    for legend in fig.legends:                       # the legend stays outside the data, right of the plot
        assert legend.get_window_extent(renderer).x0 >= plot.x1
    assert "Dashed lines: the validation accuracies of the [baselines](#baselines)." in \
        registry.caption_of("accuracy_vs_created", data)
    matplotlib.pyplot.close(fig)
    # another metric than val_accuracy: the lines would be on the wrong scale, so there are none
    data.metric = "val_loss"
    fig, ax = matplotlib.pyplot.subplots()
    B.draw_reference_lines(ax, data)
    assert not ax.lines
    matplotlib.pyplot.close(fig)


def test_the_baselines_section():
    data = with_baselines()
    blocks = S.baselines(data)
    tables = [b for b in blocks if isinstance(b, Table)]
    assert tables[0].rows[1][:4] == ["k-nearest neighbours", "0.9500", "0.9400", "1.5"]
    assert "the dashed lines in [the accuracy of every run](#runs)" in blocks[0].text
    assert "1800 / 200 / 500 images" in blocks[0].text
    assert tables[1].header == ["model", "published setting", "published test accuracy"]
    assert [row[0] for row in tables[1].rows] == [RB.MODELS[m][0] for m in B.PUBLISHED]
    # none yet: the command for this very split
    data.baselines = []
    (text,) = [b.text for b in S.baselines(data) if isinstance(b, Paragraph)]
    assert text.startswith("Not run yet: `mlp baselines -d fashion_mnist` trains")
    for r in data.runs:
        r["config"]["val_fraction"] = 0.2
    assert "`mlp baselines -d fashion_mnist --val_fraction 0.2`" in S.baselines(data)[0].text


def test_a_classifier_page_numbers_the_baselines_and_keeps_rerun_last(monkeypatch):
    data = with_baselines()
    # only the "best" section needs the evaluated model: stubbed here, every other section is real
    stub = registry.Section("best", registry.SECTIONS["best"].title, lambda d: [])
    monkeypatch.setattr(registry, "SECTIONS", {**registry.SECTIONS, "best": stub})
    headings = [b for b in build_blocks(data) if isinstance(b, Heading) and b.level == 2]
    assert [h.anchor for h in headings] == list(registry.SECTIONS)
    assert headings[-3].text == "8. Baselines" and headings[-1].anchor == "rerun"
