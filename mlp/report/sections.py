"""The report's sections: each is a function (ReportData) -> list of blocks, pure on the data.
`registry.SECTIONS` puts them in page order with their anchor and title (the page numbers them
and builds the table of contents). A section places one of its registered figures with
`Figure("name")` (caption from the registry); figures it does not place go at its end. Where an
autoencoder sweep's section differs, the function says so (R² for accuracy via `data.test_metric`;
`best_run` hands over to mlp.report.autoencoder).
"""
from __future__ import annotations

from pathlib import Path

from mlp.report import analysis as A
from mlp.report import autoencoder as AE
from mlp.report import baselines as B
from mlp.report.blocks import Bullets, Figure, Paragraph, Table
from mlp.report.observations import importance_caveats, observations, paired_gap_words, paired_test_words
from mlp.report.text import agree, join_and, metric_words, num, number_word, plural, signed

__all__ = ["intro", "samples", "runs", "parallel", "importance", "best_run", "ce_vs_mse", "learning_curves",
           "baselines", "findings", "rerun"]


def intro(data) -> list:
    """The paragraph under the title (before the table of contents)."""
    s, m = data.sweep, data.metric
    counts = ", ".join(f"{k} {v}" for k, v in s["run_counts"].items() if v)
    origin = (f" Imported from W&B (`{s['wandb_path']}`)." if s.get("origin") == "wandb" and s.get("wandb_path")
              else "")
    return [Paragraph(f"Method {s['config'].get('method')}, optimising {m} ({data.goal}) on {data.dataset_name}; "
                      f"{plural(s['n_runs'], 'run')} ({counts}). Searched: {', '.join(data.names) or 'nothing'}."
                      f"{origin} Generated offline from the local store `{Path(data.store_path).name}` by "
                      f"`mlp report {s['id']}`; every number below is computed from that store.")]


def samples(data) -> list:
    return [Figure("samples")]


def runs(data) -> list:
    return [Figure("accuracy_vs_created")]


def parallel(data) -> list:
    return [Figure("parallel_coordinates")]


def importance(data) -> list:
    m, n = data.metric, data.importance_runs
    blocks = [Paragraph(f"As W&B's parameter-importance panel: a random forest (scikit-learn, 300 trees, seed 0) "
                        f"predicts {m} from the parameters of {plural(n, 'run')} (categoricals one-hot, one feature "
                        f"per value); importance is its impurity-based feature importance. Correlation is Pearson's "
                        f"r of each feature with {m}; Spearman's ρ (rank correlation) is added because a parameter "
                        f"searched on a log scale hides a monotone effect from a linear correlation.")]
    caveats = importance_caveats(n, data.importance, data.confounded)
    if caveats:
        blocks.append(Paragraph("Read with care. " + " ".join(caveats)))
    blocks.append(Figure("importance"))
    moves_with = {}
    for group in data.confounded:
        for f in group:
            moves_with[f] = join_and(g for g in group if g != f and g.split("=")[0] != f.split("=")[0])
    blocks.append(Table(["feature", "RF importance", "Pearson r", "Spearman ρ", "always moved with"],
                        [[r["feature"], f"{r['importance']:.3f}", signed(r["pearson"]), signed(r["spearman"]),
                          moves_with.get(r["feature"], "")] for r in data.importance]))
    return blocks


def best_run(data) -> list:
    if data.task == "autoencoder":
        return AE.best_blocks(data)
    m, best, ev = data.metric, data.best, data.best_eval
    ca = ev["confusion"]
    per = ca["per_class"]
    return [
        Paragraph(f"Run {best['id']} (#{best['seq']}) has the best {m}: {num(A.metric_of(best, m))}; its test "
                  f"accuracy is {num(A.metric_of(best, 'test_accuracy'))} (as recorded when it ran). Model for the "
                  f"analysis below: {ev['source']}" + (f" ({ev['note']})" if ev["note"] else "")
                  + f"; it scores {ev['val_accuracy']:.4f} on validation and {ev['test_accuracy']:.4f} on test"
                  + (", with a confusion matrix identical to the one the run logged when it ran."
                     if ev["matches_store"] else
                     " — the figures and tables below are computed from this model, so they can differ slightly "
                     "from the numbers the run recorded (a retrain is bit-identical only under the same BLAS "
                     "thread count: float32 sums depend on it)." if ev.get("logged_confusion") else
                     "; the run logged no confusion matrix to check it against.")),
        Table(["parameter", "value"], [[k, A.fmt_value(v)] for k, v in A.params_of(best).items() if k != "data_dir"]),
        Figure("confusion_matrix"),
        Paragraph(f"The most confused class pairs ({plural(ca['errors'], 'test error')} in all):"),
        Table(["class pair", "errors (both ways)", "a → b", "b → a", "share of all errors"],
              [[f"{p['a']} ↔ {p['b']}", p["total"], p["a_as_b"], p["b_as_a"],
                f"{p['total'] / max(ca['errors'], 1):.1%}"] for p in ca["pairs"]]),
        Figure("misclassified"),
        Table(["class", "precision", "recall", "F1", "test images"],
              [[c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
               for c in per]
              + [["macro average", f"{sum(c['precision'] for c in per) / len(per):.3f}",
                  f"{sum(c['recall'] for c in per) / len(per):.3f}", f"{ca['macro_f1']:.3f}", ca["total"]]]),
        Figure("per_class"),
    ]


def ce_vs_mse(data) -> list:
    m, cmp = data.metric, data.comparison
    if cmp is None:
        return [Paragraph(data.compare_note or "No comparison sweep.")]
    sm, st = cmp["summary"], cmp["test_summary"]
    text = (f"Sweep {cmp['sweep']['id']} ({cmp['sweep']['name']}) trains pairs of runs identical in every parameter "
            f"but the loss. Over {plural(sm['n'], 'complete pair')}: mean {m} {sm['ce_mean']:.4f} with cross-entropy "
            f"vs {sm['mse_mean']:.4f} with squared error; {paired_gap_words(sm)}. Whether the gap is more than "
            f"noise — {paired_test_words(sm)}.")
    if st.get("n"):
        text += f" Test accuracy: {st['ce_mean']:.4f} vs {st['mse_mean']:.4f}, gap {st['mean']:+.4f}."
    if sm["incomplete"]:
        text += f" {plural(sm['incomplete'], 'pair')} {agree(sm['incomplete'], 'lacks', 'lack')} a value on one side."
    varying = [k for k in cmp["pairs"][0]["params"]
               if len({repr(A.level(p["params"].get(k))) for p in cmp["pairs"]}) > 1]
    rows = []
    for p in cmp["pairs"]:
        ce, mse = p["cross_entropy"], p["mean_squared_error"]
        a, c = A.metric_of(ce, m), A.metric_of(mse, m)
        rows.append([A.describe(p["params"], varying) or "(one pair)", f"{ce['id']} / {mse['id']}", num(a), num(c),
                     signed(a - c) if a is not None and c is not None else "–",
                     num(A.metric_of(ce, "test_accuracy")), num(A.metric_of(mse, "test_accuracy"))])
    return [Paragraph(text), Figure("ce_vs_mse"),
            Table(["pair", "runs (CE / MSE)", f"{m} CE", f"{m} MSE", "gap", "test CE", "test MSE"], rows)]


def learning_curves(data) -> list:
    m, test = data.metric, data.test_metric
    return [Figure("learning_curves"),
            Table(["rank", "run", m, metric_words(test), "epochs", "network", "parameters"],
                  [[i, r["id"], num(A.metric_of(r, m)), num(A.metric_of(r, test)),
                    r["summary"].get("epochs_run", "–"), A.architecture(r), A.describe(A.params_of(r), data.names)]
                   for i, r in enumerate(data.top, 1)])]


def baselines(data) -> list:
    return B.report_blocks(data)


def _target(data) -> str:
    return "MNIST" if data.dataset_name != "mnist" else "another dataset"


def _rerun_flag(data) -> str:
    return "mnist" if data.dataset_name != "mnist" else "fashion_mnist"


def findings(data) -> list:
    m = data.metric
    blocks: list = [Bullets(observations(data))]
    for name in data.categorical:
        groups = data.groups.get(name) or []
        if len(groups) > 1:
            blocks.append(Table([name, "runs", f"mean {m}", f"best {m}", f"worst {m}"],
                                [[A.fmt_value(g["level"]), g["n"], f"{g['mean']:.4f}", f"{g['max']:.4f}",
                                  f"{g['min']:.4f}"] for g in groups]))
    blocks.append(Figure("by_parameter"))
    chosen = data.recommended
    k = len(chosen)
    what = ("The configuration recommended" if k == 1 else f"The {number_word(k)} configurations recommended")
    if data.reruns:
        tail = f"{agree(k, 'it was', 'they were')} rerun on {_target(data)} (next section):"
    else:
        tail = (f"`mlp rerun {data.sweep_id} --top {k} --dataset {_rerun_flag(data)}` reruns "
                f"{agree(k, 'it', 'them')} there (next section):")
    blocks.append(Paragraph(f"{what} for {_target(data)} — the best validation "
                            f"{agree(k, 'configuration', 'configurations')} of this sweep; {tail}"))
    blocks.append(Table(["#", "run", m, metric_words(data.test_metric), "network", "configuration"],
                        [[i, r["id"], num(A.metric_of(r, m)), num(A.metric_of(r, data.test_metric)), A.architecture(r),
                          A.describe(A.params_of(r), data.names)] for i, r in enumerate(chosen, 1)]))
    return blocks


def rerun(data) -> list:
    if not data.reruns:
        k = len(data.recommended)
        best = "best validation configuration" if k == 1 else f"{number_word(k)} best validation configurations"
        return [Paragraph(f"Not run yet: `mlp rerun {data.sweep_id} --top {k} --dataset {_rerun_flag(data)}` reruns "
                          f"the {best} on {_target(data)} as a linked sweep; this section then shows "
                          f"{agree(k, 'its', 'their')} {metric_words(data.test_metric)} there next to the "
                          f"{data.dataset_name} numbers.")]
    blocks = []
    for one in data.reruns:
        child, plan = one["sweep"], one["sweep"]["rerun"]
        k = len(plan.source_runs)
        best = "best validation configuration" if k == 1 else f"{number_word(k)} best validation configurations"
        epochs = f"for {plural(plan.epochs, 'epoch')}" if plan.epochs else "with their own epochs"
        blocks.append(Paragraph(f"Sweep {child['id']} ({child['name']}) reran the {best} on {plan.dataset} {epochs} "
                                f"(`{plan.command()}`). Its state: {child['state']}."))
        ds, target = data.dataset_name, plan.dataset
        blocks.append(Table(["#", "configuration", f"{ds} val", f"{ds} test", f"{target} val", f"{target} test",
                             f"{target} run", "state"],
                            [[row["rank"], row["params"], num(row["source_val"]), num(row["source_test"]),
                              num(row["target_val"]), num(row["target_test"]), row["run"] or "–", row["state"]]
                             for row in one["rows"]]))
    return blocks
