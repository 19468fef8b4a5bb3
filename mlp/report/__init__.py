"""`mlp report` and `mlp rerun`: every figure of a sweep's report, offline, from the local store.

    make_report(store, sweep_id, out)   -> writes out/index.html, out/report.md and one PNG per figure
    rerun(store, sweep_id, top, dataset) -> reruns the top-K validation configs as a linked sweep

One file per concept: collect (store + data -> ReportData), model (the best run's model),
importance (random forest + correlations), analysis (findings, pure functions), figures (the
PNG registry), page (HTML and Markdown writers), rerun (the linked sweep on another dataset).
"""
from mlp.report.build import make_report
from mlp.report.rerun import rerun

__all__ = ["make_report", "rerun"]
