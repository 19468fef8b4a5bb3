"""The one place that says what the report holds, in page order.

SECTIONS: anchor -> Section(anchor, title, build); `build(data)` returns the section's blocks;
`title` is a string or a function of the data. The page numbers the sections in this order and
builds its table of contents from it.
FIGURES: name -> Fig(name, section, draw, caption, tasks); `draw(data)` returns a matplotlib
Figure (or None when it does not apply), saved as NAME.png; `caption` is a string or a function
of the data; `tasks` (default: both) are the tasks whose sweeps have the figure — a figure of
another task is neither drawn nor shown. A section places its figures with `Figure("name")`;
the ones it does not place are appended at its end, so a new figure needs no change to its section.

Every section is in every report; what depends on the sweep's task (`data.task`: classify or
autoencoder) is said where it differs: a title by `per_task(...)` below, a figure by its
`tasks`, a section's content by its build function (e.g. `sections.best_run`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mlp.report import autoencoder as AE
from mlp.report import figures as F
from mlp.report import sections as S

__all__ = ["Section", "Fig", "SECTIONS", "FIGURES", "TASKS", "CLASSIFY", "AUTOENCODER", "per_task", "title_of",
           "numbered_titles", "caption_of", "figures_for"]

TASKS = ("classify", "autoencoder")      # what a sweep's runs train (mlp.sweep.files.sweep_task)
CLASSIFY, AUTOENCODER = ("classify",), ("autoencoder",)


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str | Callable      # text, or (ReportData) -> text, e.g. per_task(...)
    build: Callable            # (ReportData) -> list of blocks


@dataclass(frozen=True)
class Fig:
    name: str                  # the PNG's file name (without .png) and the block's reference
    section: str               # anchor of the section it belongs to
    draw: Callable             # (ReportData) -> matplotlib Figure | None
    caption: str | Callable    # text, or (ReportData) -> text
    tasks: tuple = TASKS       # the tasks whose reports have it

    def applies(self, task: str) -> bool:
        return task in self.tasks


def per_task(text: str, **by_task: str) -> Callable:
    """A title (or caption) that reads differently for some tasks, as a function of the data:
    `per_task("Validation accuracy of every run", autoencoder="Validation R² of every run")`."""
    unknown = set(by_task) - set(TASKS)
    if unknown:
        raise ValueError(f"per_task: unknown task {', '.join(sorted(unknown))}; tasks are {', '.join(TASKS)}")
    return lambda data: by_task.get(data.task, text)


def _by_key(*items, key="anchor") -> dict:
    out = {}
    for item in items:
        k = getattr(item, key)
        if k in out:
            raise ValueError(f"{k!r} is registered twice")
        out[k] = item
    return out


SECTIONS = _by_key(
    Section("samples", "Sample images", S.samples),
    Section("runs", per_task("Validation accuracy of every run", autoencoder="Validation R² of every run"), S.runs),
    Section("parallel", "Parallel coordinates", S.parallel),
    Section("importance", "Parameter importance", S.importance),
    Section("best", per_task("The best run", autoencoder="The best run and its reconstructions"), S.best_run),
    Section("ce-vs-mse", "Cross-entropy vs squared error", S.ce_vs_mse),
    Section("curves", "Learning curves of the top runs", S.learning_curves),
    Section("baselines", "Baselines", S.baselines),
    Section("observations", "Observations", S.findings),
    Section("rerun", "The top configurations on MNIST", S.rerun),
)

FIGURES = _by_key(
    Fig("samples", "samples", F.samples, F.caption_samples),
    Fig("accuracy_vs_created", "runs", F.accuracy_vs_created, F.caption_accuracy_vs_created),
    Fig("parallel_coordinates", "parallel", F.parallel_coordinates, F.caption_parallel_coordinates),
    Fig("importance", "importance", F.importance, lambda d: f"Importance and correlations of each feature with "
        f"{d.metric}" + ("; † marks features that always moved with another parameter's." if d.confounded else ".")),
    Fig("confusion_matrix", "best", F.confusion, "Left: counts (rows: true class, columns: prediction). Right: each "
        "row divided by the class's number of test images, so the diagonal is the recall. Colours use a "
        "square-root scale so small off-diagonal counts stay visible.", tasks=CLASSIFY),
    Fig("misclassified", "best", F.misclassified, "Test images the model got wrong with the highest confidence, "
        "for the most frequent (true → predicted) confusions.", tasks=CLASSIFY),
    Fig("per_class", "best", F.per_class, "Per-class precision, recall and F1 on the test set.", tasks=CLASSIFY),
    Fig("reconstructions", "best", AE.reconstructions, "One test image of each class (the first in the test file) "
        "above its reconstruction by the best run's model.", tasks=AUTOENCODER),
    Fig("ce_vs_mse", "ce-vs-mse", F.ce_vs_mse, "Left: each loss's accuracies (box: quartiles; dots: runs; grey "
        "lines join the two runs of a pair). Middle and right: per-epoch accuracy, single runs thin, the mean thick.",
        tasks=CLASSIFY),
    Fig("learning_curves", "curves", F.learning_curves, F.caption_learning_curves),
    Fig("by_parameter", "observations", F.by_parameter, lambda d: f"Mean and best {d.metric} per value of each "
        f"categorical parameter."),
    key="name",
)

for _fig in FIGURES.values():
    if _fig.section not in SECTIONS:
        raise ValueError(f"figure {_fig.name!r} names an unknown section {_fig.section!r}")
    if not _fig.tasks or set(_fig.tasks) - set(TASKS):
        raise ValueError(f"figure {_fig.name!r}: tasks {_fig.tasks!r} are not a choice of {TASKS}")


def title_of(section: Section, data) -> str:
    return section.title(data) if callable(section.title) else section.title


def numbered_titles(data) -> dict:
    """anchor -> "N. Title" for the report of `data`, in page order (the headings and the table of
    contents)."""
    return {anchor: f"{i}. {title_of(s, data)}" for i, (anchor, s) in enumerate(SECTIONS.items(), 1)}


def figures_for(task: str) -> list[str]:
    """The names of the figures a report of a sweep of `task` has, in registry order."""
    return [name for name, fig in FIGURES.items() if fig.applies(task)]


def caption_of(name: str, data) -> str:
    caption = FIGURES[name].caption
    return caption(data) if callable(caption) else caption
