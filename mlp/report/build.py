"""`mlp report ID`: collect, draw every registered figure, assemble the page, write it twice."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from mlp.report import registry
from mlp.report.collect import check_out_dir, collect
from mlp.report.figures import STYLE
from mlp.report.page import build_blocks, write_html, write_markdown
from mlp.sweep.bridge import resolve

__all__ = ["make_report", "default_out", "render_figures"]

DPI = 100


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def default_out(sweep_id: str) -> Path:
    return Path("reports") / sweep_id


def render_figures(data, out, log: Callable[[str], None] | None = None) -> dict:
    """Draw every registered figure that applies — to the sweep's task (its registry entry's
    `tasks`) and to its data (`draw` returns None otherwise) — and save it as out/NAME.png; returns
    {name: path} (also kept in data.figures). A figure that no longer applies must not linger from
    an earlier report, so its old PNG is removed."""
    import matplotlib.pyplot as plt

    out = Path(out)
    with plt.rc_context(STYLE):
        for name, fig in registry.FIGURES.items():
            path = out / f"{name}.png"
            path.unlink(missing_ok=True)
            if not fig.applies(data.task):
                continue
            if log:
                log(f"figure {name} ...")
            drawn = fig.draw(data)
            if drawn is None:
                continue
            try:
                drawn.savefig(path, dpi=DPI, metadata={"Software": None})
            finally:
                plt.close(drawn)
            data.figures[name] = path
    return data.figures


def make_report(store, sweep_id: str, out=None, compare: str | None = None, data_dir: str | None = None,
                log: Callable[[str], None] = _log) -> dict:
    """Write the report of `sweep_id` into `out`; returns {"out", "html", "markdown", "figures", "data"}.
    `sweep_id` may be a W&B sweep (`mlp.sweep.bridge.resolve`: imported first when W&B is reachable)."""
    sweep_id = resolve(store, sweep_id, log=log)  # unknown id: a UsageError before anything is written
    out = check_out_dir(out if out is not None else default_out(sweep_id), create=False)
    data = collect(store, sweep_id, compare=compare, data_dir=data_dir, log=log)
    check_out_dir(out)
    figures = render_figures(data, out, log)
    blocks = build_blocks(data)
    html_path = write_html(blocks, figures, out / "index.html")
    md_path = write_markdown(blocks, figures, out / "report.md")
    log(f"report of sweep {sweep_id}: {html_path} ({len(figures)} figures) and {md_path}")
    return {"out": out, "html": html_path, "markdown": md_path, "figures": figures, "data": data}
