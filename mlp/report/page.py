"""The report as a document: a list of blocks built once from ReportData, written twice —
`index.html` (self-contained: PNGs embedded as base64 data URIs, inline CSS, opens from disk)
and `report.md` (references the PNG files next to it).

Blocks: ("h1"|"h2"|"p", text), ("list", [text]), ("table", header, rows),
("figure", name, caption). In text, `backticks` mark code.
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from mlp.report import analysis as A
from mlp.report import autoencoder as AE
from mlp.report import baselines as B

__all__ = ["build_blocks", "write_html", "write_markdown", "SECTIONS", "section_titles"]

SECTIONS = {  # anchor -> heading, in page order
    "samples": "1. Sample images",
    "runs": "2. Validation accuracy of every run",
    "parallel": "3. Parallel coordinates",
    "importance": "4. Parameter importance",
    "best": "5. The best run",
    "ce-vs-mse": "6. Cross-entropy vs squared error",
    "curves": "7. Learning curves of the top runs",
    "observations": "8. Observations",
    "rerun": "9. The top configurations on MNIST",
    "baselines": "10. Baselines",
}
# An autoencoder sweep's report: R² where a classifier's has accuracy (same anchors, same order).
AUTOENCODER_TITLES = {
    "runs": "2. Validation R² of every run",
    "best": "5. The best run and its reconstructions",
}


def section_titles(task: str = "classify") -> dict:
    """Anchor -> heading for a sweep of this task, in page order."""
    return {**SECTIONS, **(AUTOENCODER_TITLES if task == "autoencoder" else {})}


def _num(value, spec=".4f"):
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, spec)
    return str(value)


def _signed(value):
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


def _section(blocks, key, task="classify"):
    blocks.append(("h2", section_titles(task)[key], key))


def build_blocks(data) -> list:
    s, m = data.sweep, data.metric
    task = getattr(data, "task", "classify")
    test_metric = getattr(data, "test_metric", "test_accuracy")
    test_words = "test R²" if test_metric == "test_r2" else "test accuracy"
    b: list = []
    counts = ", ".join(f"{k} {v}" for k, v in s["run_counts"].items() if v)
    b.append(("h1", f"Sweep report: {s['name'] or s['id']} ({s['id']})"))
    b.append(("p", f"Method {s['config'].get('method')}, optimising {m} ({data.goal}) on {data.dataset_name}; "
                   f"{s['n_runs']} runs ({counts}). Searched: {', '.join(data.names) or 'nothing'}. "
                   f"Generated offline from the local store `{Path(data.store_path).name}` by "
                   f"`mlp report {s['id']}`; every number below is computed from that store."))
    b.append(("list", [f"[{title}](#{key})" for key, title in section_titles(task).items()]))

    _section(b, "samples")
    b.append(("figure", "samples", f"The first training image of each of the {len(data.class_names)} classes "
                                   f"({data.dataset.source})."))

    _section(b, "runs", task)
    kinds = {"full": 0, "stopped": 0, "other": 0}
    for r in data.runs:
        kinds["full" if A.is_full_run(r) else "stopped" if A.was_stopped(r) else "other"] += 1
    b.append(("figure", "accuracy_vs_created",
              f"{m} of each run when it ended, in the order the runs were created (W&B's “accuracy vs created”), "
              f"with the best value so far. {kinds['full']} runs trained all their epochs, {kinds['stopped']} were "
              f"stopped early by hyperband (their value is from fewer epochs), {kinds['other']} ended otherwise."))

    _section(b, "parallel")
    b.append(("figure", "parallel_coordinates",
              f"One line per run with a {m} ({data.importance_runs} runs): categorical axes list their values "
              f"as ticks in YAML order, log-scaled parameters ({', '.join(sorted(data.log_params)) or 'none'}) "
              f"have log axes; colour = {m}, scaled from its lower quartile up (runs below it share the darkest "
              f"colour; the {m} axis shows every value)."))

    _section(b, "importance")
    b.append(("p", f"As W&B's parameter-importance panel: a random forest (scikit-learn, 300 trees, seed 0) "
                   f"predicts {m} from the parameters of {data.importance_runs} runs (categoricals one-hot, one "
                   f"feature per value); importance is its impurity-based feature importance. Correlation is "
                   f"Pearson's r of each feature with {m}; Spearman's ρ (rank correlation) is added because a "
                   f"parameter searched on a log scale hides a monotone effect from a linear correlation."))
    b.append(("figure", "importance", f"Importance and correlations of each feature with {m}."))
    b.append(("table", ["feature", "RF importance", "Pearson r", "Spearman ρ"],
              [[r["feature"], f"{r['importance']:.3f}", _signed(r["pearson"]), _signed(r["spearman"])]
               for r in data.importance]))

    _section(b, "best", task)
    b += AE.best_blocks(data) if task == "autoencoder" else _best_classifier(data)

    _section(b, "ce-vs-mse")
    cmp = data.compare
    if cmp and cmp["summary"]["n"]:
        sm, st = cmp["summary"], cmp["test_summary"]
        b.append(("p", f"Sweep {cmp['sweep']['id']} ({cmp['sweep']['name']}) trains pairs of runs identical in "
                       f"every parameter but the loss. Over {sm['n']} complete pairs: mean {m} "
                       f"{sm['ce_mean']:.4f} with cross-entropy vs {sm['mse_mean']:.4f} with squared error; "
                       f"paired gap CE − MSE {sm['mean']:+.4f} ± {sm['std']:.4f} (min {sm['min']:+.4f}, max "
                       f"{sm['max']:+.4f}); cross-entropy is better in {sm['wins']} of {sm['n']} pairs."
                       + (f" Test accuracy: {st['ce_mean']:.4f} vs {st['mse_mean']:.4f}, gap {st['mean']:+.4f}."
                          if st.get("n") else "")
                       + (f" {sm['incomplete']} pair(s) lack a value on one side." if sm["incomplete"] else "")))
        b.append(("figure", "ce_vs_mse", "Left: each loss's accuracies (box: quartiles; dots: runs; grey lines "
                                         "join the two runs of a pair). Middle and right: per-epoch accuracy, "
                                         "single runs thin, the mean thick."))
        varying = [k for k in cmp["pairs"][0]["params"]
                   if len({repr(A.level(p["params"].get(k))) for p in cmp["pairs"]}) > 1]
        rows = []
        for p in cmp["pairs"]:
            ce, mse = p["cross_entropy"], p["mean_squared_error"]
            a, c = A.metric_of(ce, m), A.metric_of(mse, m)
            rows.append([A.describe(p["params"], varying) or "(one pair)", f"{ce['id']} / {mse['id']}", _num(a), _num(c),
                         _signed(a - c) if a is not None and c is not None else "–",
                         _num(A.metric_of(ce, "test_accuracy")), _num(A.metric_of(mse, "test_accuracy"))])
        b.append(("table", ["pair", "runs (CE / MSE)", f"{m} CE", f"{m} MSE", "gap", "test CE", "test MSE"], rows))
    else:
        b.append(("p", data.compare_note or "No comparison sweep."))

    _section(b, "curves")
    b.append(("figure", "learning_curves", f"Per-epoch {'R²' if task == 'autoencoder' else 'accuracy'} and loss of "
                                           f"the {len(data.top)} best runs that trained all their epochs."))
    b.append(("table", ["rank", "run", m, test_words, "epochs", "parameters"],
              [[i, r["id"], _num(A.metric_of(r, m)), _num(A.metric_of(r, test_metric)),
                r["summary"].get("epochs_run", "–"), A.describe(A.params_of(r), data.names)]
               for i, r in enumerate(data.top, 1)]))

    _section(b, "observations")
    b.append(("list", list(data.observations)))
    for name in data.categorical:
        groups = data.groups.get(name) or []
        if len(groups) > 1:
            b.append(("table", [name, "runs", f"mean {m}", f"best {m}", f"worst {m}"],
                      [[A.fmt_value(g["level"]), g["n"], f"{g['mean']:.4f}", f"{g['max']:.4f}", f"{g['min']:.4f}"]
                       for g in groups]))
    b.append(("figure", "by_parameter", f"Mean and best {m} per value of each categorical parameter."))
    b.append(("p", "The three configurations recommended for MNIST — the best validation configurations of this "
                   "sweep, which the next section reruns on MNIST when `mlp rerun` has been run:"))
    b.append(("table", ["#", "run", m, test_words, "configuration"],
              [[i, r["id"], _num(A.metric_of(r, m)), _num(A.metric_of(r, test_metric)),
                A.describe(A.params_of(r), data.names)] for i, r in enumerate(data.recommended, 1)]))

    _section(b, "rerun")
    if data.reruns:
        for rerun in data.reruns:
            child = rerun["sweep"]
            plan = child["rerun"]
            info = {"source_runs": plan.source_runs, "epochs": plan.epochs}
            target = plan.dataset
            b.append(("p", f"Sweep {child['id']} ({child['name']}) reran the top {len(info.get('source_runs', []))} "
                           f"validation configurations on {target}"
                           + (f" for {info['epochs']} epochs" if info.get("epochs") else " with their own epochs")
                           + f" (`mlp rerun {data.sweep_id} --top {len(info.get('source_runs', []))} --dataset "
                             f"{target}`). Its state: {child['state']}."))
            b.append(("table", ["#", "configuration", f"{data.dataset_name} val", f"{data.dataset_name} test",
                                f"{target} val", f"{target} test", f"{target} run", "state"],
                      [[row["rank"], row["params"], _num(row["source_val"]), _num(row["source_test"]),
                        _num(row["target_val"]), _num(row["target_test"]), row["run"] or "–", row["state"]]
                       for row in rerun["rows"]]))
    else:
        b.append(("p", f"Not run yet: `mlp rerun {data.sweep_id} --top 3 --dataset mnist` reruns the three "
                       f"best validation configurations on MNIST as a linked sweep; this section then shows their "
                       f"MNIST {test_words} next to the {data.dataset_name} numbers."))

    _section(b, "baselines", task)
    b += B.report_blocks(data)
    return b


def _best_classifier(data) -> list:
    """Section 5 of a classifier sweep's report (without its heading): the best run, its
    confusion matrix, mistakes and per-class scores."""
    m, b = data.metric, []
    best, ev = data.best, data.best_eval
    ca = ev["confusion"]
    b.append(("p", f"Run {best['id']} (#{best['seq']}) has the best {m}: {_num(A.metric_of(best, m))}; its test "
                   f"accuracy is {_num(A.metric_of(best, 'test_accuracy'))} (as recorded when it ran). Model for "
                   f"the analysis below: {ev['source']}"
                   + (f" ({ev['note']})" if ev["note"] else "")
                   + f"; it scores {ev['val_accuracy']:.4f} on validation and {ev['test_accuracy']:.4f} on test"
                   + (", with a confusion matrix identical to the stored one." if ev["matches_store"] else
                      " — the figures and tables below are computed from this model, so they can differ slightly "
                      "from the numbers the run recorded (a retrain is bit-identical only under the same BLAS "
                      "thread count: float32 sums depend on it).")))
    b.append(("table", ["parameter", "value"],
              [[k, A.fmt_value(v)] for k, v in A.params_of(best).items() if k != "data_dir"]))
    b.append(("figure", "confusion_matrix",
              "Left: counts (rows: true class, columns: prediction). Right: each row divided by the class's "
              "number of test images, so the diagonal is the recall. Colours use a square-root scale so small "
              "off-diagonal counts stay visible."))
    b.append(("p", f"The most confused class pairs ({ca['errors']} test errors in all):"))
    b.append(("table", ["class pair", "errors (both ways)", "a → b", "b → a", "share of all errors"],
              [[f"{p['a']} ↔ {p['b']}", p["total"], p["a_as_b"], p["b_as_a"],
                f"{p['total'] / max(ca['errors'], 1):.1%}"] for p in ca["pairs"]]))
    b.append(("figure", "misclassified", "Test images the model got wrong with the highest confidence, for the "
                                         "most frequent (true → predicted) confusions."))
    b.append(("table", ["class", "precision", "recall", "F1", "test images"],
              [[c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
               for c in ca["per_class"]]
              + [["macro average", f"{sum(c['precision'] for c in ca['per_class']) / len(ca['per_class']):.3f}",
                  f"{sum(c['recall'] for c in ca['per_class']) / len(ca['per_class']):.3f}",
                  f"{ca['macro_f1']:.3f}", ca["total"]]]))
    b.append(("figure", "per_class", "Per-class precision, recall and F1 on the test set."))
    return b


# ---- writers ---------------------------------------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(#([\w-]+)\)")


def _inline_html(text) -> str:
    out = html.escape(str(text))
    out = _CODE.sub(lambda mt: f"<code>{mt.group(1)}</code>", out)
    return _LINK.sub(lambda mt: f'<a href="#{mt.group(2)}">{mt.group(1)}</a>', out)


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.92em;margin-top:.3em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
"""

# Records each image's decoded width on the element, so a headless browser's DOM dump shows
# whether every figure rendered (tests read data-natural-width).
SCRIPT = """
(function(){
  function mark(img){ img.setAttribute('data-natural-width', String(img.naturalWidth)); }
  document.querySelectorAll('img').forEach(function(img){
    if (img.complete) { mark(img); }
    img.addEventListener('load', function(){ mark(img); });
    img.addEventListener('error', function(){ mark(img); });
  });
})();
"""


def write_html(blocks, figures: dict, path) -> Path:
    title = next((b[1] for b in blocks if b[0] == "h1"), "Sweep report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            parts.append(f"<h1>{_inline_html(block[1])}</h1>")
        elif kind == "h2":
            parts.append(f'<h2 id="{block[2]}">{_inline_html(block[1])}</h2>')
        elif kind == "p":
            parts.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            name, caption = block[1], block[2]
            if name not in figures:
                continue
            encoded = base64.b64encode(Path(figures[name]).read_bytes()).decode("ascii")
            parts.append(f'<figure id="fig-{name}"><img src="data:image/png;base64,{encoded}" '
                         f'alt="{html.escape(name)}"><figcaption>{_inline_html(caption)}</figcaption></figure>')
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path = Path(path)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def write_markdown(blocks, figures: dict, path) -> Path:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f'<a id="{block[2]}"></a>', "", f"## {block[1]}", ""]
        elif kind == "p":
            lines += [str(block[1]), ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "figure":
            name, caption = block[1], block[2]
            if name in figures:
                lines += [f"![{name}]({Path(figures[name]).name})", "", f"*{caption}*", ""]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
