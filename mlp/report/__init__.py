"""`mlp report`: every figure of a sweep's report, offline, from the local store and model files.

    make_report(store, sweep_id, out)   -> writes out/index.html, out/report.md and one PNG per figure

The report only reads: the store (runs, histories, baselines, reruns), the dataset and the best
run's model file. What writes — importing a W&B sweep, fetching or retraining the best model
(mlp.sweep.models), rerunning on another dataset (mlp.sweep.rerun), training baselines
(mlp.sweep.baselines) — happens in the layers below, before a report is made (`mlp report` on the
command line runs those steps first).

How a report is made (build.make_report): `collect` reads the store and loads the dataset and
the best model into one `ReportData` (the only I/O; `prepare` is its pure part); then every
figure in `registry.FIGURES` is drawn and saved as NAME.png; then `page.build_blocks` runs every
section in `registry.SECTIONS` (page order; numbering and table of contents come from it) and the
writers turn the typed blocks (`blocks.Heading`, `Paragraph`, `Bullets`, `Table`, `Figure`) into
index.html and report.md. Sections, figures and observations are pure functions of ReportData.

To add a figure:
    1. in figures.py, `def my_plot(data)` draws from the ReportData and returns the matplotlib
       Figure (or None when it does not apply to this sweep) — it does not save;
    2. in registry.py, one line in FIGURES:
           Fig("my_plot", "runs", F.my_plot, "What the figure shows."),
       name (= my_plot.png), the anchor of its section, the function, the caption (a string, or
       a function of the data such as `F.caption_my_plot` when it needs numbers).
    It appears at the end of its section; to put it elsewhere, the section returns
    `Figure("my_plot")` where it belongs (the caption still comes from the registry).

To add a section:
    1. in sections.py, `def my_section(data) -> list` returning blocks, e.g.
       `[Paragraph("..."), Table(header, rows), Figure("my_plot")]`;
    2. in registry.py, one line in SECTIONS where it goes in the page:
           Section("my-anchor", "My title", S.my_section),

To add a finding to the Observations: in observations.py, `def my_finding(data)` yielding
sentences, and one entry in OBSERVATIONS.

Files: collect (ReportData), analysis (findings on plain run dicts), importance (random forest,
correlations, confounded parameters), figures, sections, observations, registry, blocks, page
(HTML/Markdown writers), text (plurals, numbers), model (the best run's model file, loaded).
"""
from mlp.report.build import make_report

__all__ = ["make_report"]
