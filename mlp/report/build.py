"""`mlp report ID`: collect, draw every registered figure, assemble the page, write it twice."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from mlp import paths
from mlp.errors import UsageError
from mlp.report import registry
from mlp.report.collect import check_out_dir, collect, comparison_sweep
from mlp.report.figures import STYLE
from mlp.report.page import build_blocks, write_html, write_markdown

__all__ = ["make_report", "check_inputs", "default_out", "render_figures"]

DPI = 100


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def default_out(sweep_id: str) -> Path:
    return Path("reports") / sweep_id


def render_figures(data, out, log: Callable[[str], None] | None = None) -> dict:
    """Draw every registered figure that applies — to the sweep's task (its registry entry's
    `tasks`) and to its data (`draw` returns None otherwise) — and save it as out/NAME.png; returns
    {name: path} (also kept in data.figures). A figure that no longer applies must not linger from
    an earlier report, so its old PNG is removed (make_report removes it from the published folder)."""
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


def check_inputs(store, sweep_id: str, out=None, compare: str | None = None) -> Path:
    """What `make_report` checks before any slow step, for a caller to run first (the sweep and the
    comparison sweep, the output folder, nothing written): returns the output folder."""
    store.get_sweep(sweep_id)
    comparison_sweep(store, sweep_id, compare)
    return check_out_dir(out if out is not None else default_out(sweep_id), create=False)


def _new_folders(out: Path) -> list[Path]:
    """The folders that writing to `out` creates: `out` and its missing parents, deepest first."""
    missing, folder = [], out.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:          # not empty (another process wrote there), or already gone
            return


def make_report(store, sweep_id: str, out=None, compare: str | None = None, data_dir: str | None = None,
                log: Callable[[str], None] = _log) -> dict:
    """Write the report of `sweep_id` (a store id; `compare`: the store id of the loss comparison)
    into `out`; returns {"out", "html", "markdown", "figures", "data"}. It only reads the store, the
    dataset and the best run's model file: a W&B sweep is imported, and the best model fetched or
    retrained, before (`mlp report` does both: mlp.sweep.bridge.resolve, mlp.sweep.models)."""
    out = check_inputs(store, sweep_id, out, compare)     # a UsageError before anything is written
    data = collect(store, sweep_id, compare=compare, data_dir=data_dir, log=log)
    new_folders = _new_folders(out)
    check_out_dir(out)
    try:
        with paths.staged_folder(out) as stage:    # all files complete, or none replaced
            staged = render_figures(data, stage, log)
            blocks = build_blocks(data)
            write_markdown(blocks, staged, stage / "report.md")
            write_html(blocks, staged, stage / "index.html")     # the page appears last
    except BaseException as e:
        _remove_if_empty(new_folders)            # Ctrl-C or a full disk: no empty report folder left behind
        if isinstance(e, OSError):
            raise UsageError(f"cannot write the report to {out}: {e.strerror or e}; free space or pass --out with "
                             f"another folder") from None
        raise
    for name in registry.FIGURES:                # a figure that no longer applies must not linger
        if name not in staged:
            (out / f"{name}.png").unlink(missing_ok=True)
    figures = data.figures = {name: out / Path(path).name for name, path in staged.items()}
    html_path, md_path = out / "index.html", out / "report.md"
    log(f"report of sweep {sweep_id}: {html_path} ({len(figures)} figures) and {md_path}")
    return {"out": out, "html": html_path, "markdown": md_path, "figures": figures, "data": data}
