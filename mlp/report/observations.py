"""What the report concludes: one small function per finding, each (ReportData) -> sentences
(a function yields nothing when its finding does not apply). OBSERVATIONS lists them in the order
they are read; adding a finding = one function + one entry. Every number is computed from the data.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable

import numpy as np

from mlp.report import analysis as A
from mlp.report import autoencoder as AE
from mlp.report.importance import MIN_RUNS, by_parameter, group_names
from mlp.report.text import agree, join_and, metric_words, number_word, p_value, plural, share

__all__ = ["OBSERVATIONS", "observations", "importance_caveats", "strongest"]

STATES = ("finished", "killed", "diverged", "failed", "crashed", "running", "pending")


def run_counts(data) -> Iterable[str]:
    n = len(data.runs)
    states = data.failures["states"]
    parts = [f"{states[s]} {s}" for s in STATES if states.get(s)]
    stopped = Counter(r.get("stopped_by") for r in data.runs if A.was_stopped(r))
    how = ", ".join(f"{k} by {why}" for why, k in stopped.items()) if stopped else "none"
    reporting = sum(1 for r in data.runs if A.metric_of(r, data.metric) is not None)
    yield (f"The sweep has {plural(n, 'run')} ({', '.join(parts)}); stopped early: {how}; {reporting} "
           f"{agree(reporting, 'reports', 'report')} {data.metric}.")


def best_run(data) -> Iterable[str]:
    best = data.best
    if best is None:
        return
    line = f"Best {data.metric}: {A.metric_of(best, data.metric):.4f} (run {best['id']}: " \
           f"{A.describe(A.params_of(best), data.names)})"
    test = A.metric_of(best, data.test_metric)
    if test is not None:
        line += f", {metric_words(data.test_metric)} {test:.4f}"
    yield line + "."


def spread(data) -> Iterable[str]:
    values = np.array([v for v in (A.metric_of(r, data.metric) for r in data.runs) if v is not None])
    if not len(values):
        return
    best = values.max() if data.goal == "maximize" else values.min()
    near = int((np.abs(values - best) <= 0.01).sum())
    yield (f"{data.metric} across runs: median {np.median(values):.4f}, upper quartile "
           f"{np.quantile(values, 0.75):.4f}; {plural(near, 'run')} {agree(near, 'is', 'are')} within 0.01 of "
           f"the best.")


def by_category(data) -> Iterable[str]:
    for name in data.categorical:
        rows = data.groups.get(name) or []
        if len(rows) < 2:
            continue
        by_mean = sorted(rows, key=lambda r: -r["mean"])
        listing = "; ".join(f"{A.fmt_value(r['level'])} {r['mean']:.4f} (n={r['n']})" for r in by_mean)
        yield (f"Mean {data.metric} by {name}: {listing}. Best on average: {A.fmt_value(by_mean[0]['level'])}; "
               f"worst: {A.fmt_value(by_mean[-1]['level'])} (a gap of "
               f"{by_mean[0]['mean'] - by_mean[-1]['mean']:.4f}).")


def diverged(data) -> Iterable[str]:
    n, div = len(data.runs), data.failures["diverged"]
    if not div["runs"]:
        yield f"No run diverged (0 of {n})."
        return
    k = len(div["runs"])
    reasons = ", ".join(f"{why} ({count})" for why, count in div["reasons"])
    when = ", ".join(f"epoch {e} ({count})" for e, count in div["epochs"] if e is not None)
    line = f"{share(k, n, 'run')} diverged: {reasons}" + (f", in {when}" if when else "")
    if div["profile"]:
        line += ". Where they concentrate: " + "; ".join(div["profile"])
    yield line + "."


def chance_level(data) -> Iterable[str]:
    stuck = data.failures["chance"]
    if not stuck["runs"]:
        return
    k = len(stuck["runs"])
    worth = "no better than predicting the mean image" if data.task == "autoencoder" else "no better than guessing"
    line = (f"{share(k, len(data.runs), 'run')} trained without diverging but stayed at chance level "
            f"({data.metric} ≤ {stuck['threshold']:.2f}, {worth})")
    if stuck["profile"]:
        line += ". Where they concentrate: " + "; ".join(stuck["profile"])
    yield line + "."


def broken(data) -> Iterable[str]:
    bad = data.failures["broken"]
    if bad["runs"]:
        reasons = ", ".join(f"{why} ({k})" for why, k in bad["reasons"])
        yield f"{share(len(bad['runs']), len(data.runs), 'run')} failed or crashed: {reasons}."


def strongest(params) -> str:
    """The parameter (unit) with the largest |Spearman ρ|, in words."""
    rho = sorted((p for p in params if not math.isnan(p["spearman"])), key=lambda p: -abs(p["spearman"]))
    if not rho:
        return "undefined (constant columns)"
    return f"{rho[0]['feature']} (Spearman ρ = {rho[0]['spearman']:+.2f})"


def importance_caveats(n: int, rows, groups) -> list[str]:
    """The warnings that go with a ranking: too few runs, parameters that moved together."""
    out = []
    if n < MIN_RUNS:
        out.append(f"Only {plural(n, 'run')} went into this ranking: below {MIN_RUNS} runs a random forest mostly "
                   f"fits noise, so the order of the parameters is unreliable — read it as a hint, not a finding.")
    features = [r["feature"] for r in rows]
    for group in groups:
        out.append(f"{join_and(group_names(group, features))} always changed together in these runs; their "
                   f"effects cannot be separated, so they are ranked as one.")
    return out


def _ranking(rows, groups) -> str:
    params = by_parameter(rows, groups)
    top = params[0]
    first = (f"{join_and(top['parameters'])} together" if len(top["parameters"]) > 1 else top["parameter"])
    line = (f"ranks {first} first ({top['importance']:.2f} of the total"
            + (f", strongest level {top['feature']}" if top["feature"] != top["parameter"] else "") + ")")
    if len(params) > 1:
        line += f", then {params[1]['parameter']} ({params[1]['importance']:.2f})"
    return line + f"; the strongest rank correlation is {strongest(params)}"


def importance_ranking(data) -> Iterable[str]:
    if not data.importance:
        return
    ranking = _ranking(data.importance, data.confounded)
    yield f"Random-forest importance ({plural(data.importance_runs, 'run')}) {ranking}."
    yield from importance_caveats(data.importance_runs, data.importance, data.confounded)


def rank_vs_linear(data) -> Iterable[str]:
    for p in by_parameter(data.importance, data.confounded):
        if p["feature"] == p["parameter"] and not (math.isnan(p["pearson"]) or math.isnan(p["spearman"])) \
                and abs(p["spearman"]) - abs(p["pearson"]) >= 0.1:
            yield (f"{p['parameter']}: the rank correlation ρ = {p['spearman']:+.2f} is stronger than the linear "
                   f"r = {p['pearson']:+.2f}: a monotone association that a straight line misses (a log-like scale, "
                   f"or a few outlying runs).")


def importance_without_chance(data) -> Iterable[str]:
    learned = data.learned_importance
    if not learned or not learned["rows"]:
        return
    yield (f"Leaving out the {plural(learned['left_out'], 'chance-level run')} ({learned['n']} remain), "
           f"random-forest importance {_ranking(learned['rows'], learned['confounded'])}.")
    if learned["n"] < MIN_RUNS:
        yield (f"That ranking rests on {plural(learned['n'], 'run')}, fewer than {MIN_RUNS}: unreliable.")


def best_model(data) -> Iterable[str]:
    if not data.best_eval:
        return
    ca = data.best_eval["confusion"]
    worst = min(ca["per_class"], key=lambda c: c["f1"])
    pair = ca["pairs"][0] if ca["pairs"] else None
    line = (f"The best model's test accuracy is {ca['accuracy']:.4f} (macro F1 {ca['macro_f1']:.4f}); its weakest "
            f"class is {worst['class']} (F1 {worst['f1']:.3f})")
    if pair:
        line += (f"; the most confused pair is {pair['a']} ↔ {pair['b']} ({pair['total']} of "
                 f"{plural(ca['errors'], 'error')})")
    yield line + "."


def paired_test_words(s) -> str:
    """`paired t-test t = 2.10, p = 0.081 (n = 6 pairs); Wilcoxon signed-rank p = 0.094`."""
    n = s["n"]
    if s.get("t_p") is not None:
        t = (f"paired t-test on the differences t = {s['t']:.2f}, {p_value(s['t_p'])} "
             f"(n = {plural(n, 'pair')}, two-sided)")
    else:
        t = f"paired t-test undefined (n = {plural(n, 'pair')}" + (", every difference equal)" if n > 1 else ")")
    if s.get("wilcoxon_p") is not None:
        w = f"Wilcoxon signed-rank test {p_value(s['wilcoxon_p'])}"
        if s["wilcoxon_min_p"] > 0.05:
            w += (f" (with {plural(s['wilcoxon_n'], 'non-zero pair')} it cannot go below "
                  f"{s['wilcoxon_min_p']:.3g}: too few pairs for significance)")
    else:
        w = "Wilcoxon signed-rank test undefined"
    return f"{t}; {w}"


def paired_gap_words(s) -> str:
    """The CE − MSE gap of a comparison summary: mean ± std, range, wins (finding and section alike)."""
    return (f"paired gap CE − MSE {s['mean']:+.4f} ± {s['std']:.4f} (mean ± standard deviation of the "
            f"{agree(s['n'], 'difference')}; range {s['min']:+.4f} … {s['max']:+.4f}); cross-entropy is better in "
            f"{s['wins']} of {plural(s['n'], 'pair')}")


def ce_vs_mse(data) -> Iterable[str]:
    cmp = data.comparison
    if cmp is None:
        return
    s, t = cmp["summary"], cmp["test_summary"]
    line = (f"Cross-entropy vs squared error over {plural(s['n'], 'pair')} of runs (sweep "
            f"{cmp['sweep']['id']}): mean {s['metric']} {s['ce_mean']:.4f} vs {s['mse_mean']:.4f}, "
            f"{paired_gap_words(s)}; {paired_test_words(s)}")
    if t.get("n"):
        line += f"; test accuracy gap {t['mean']:+.4f}"
    yield line + "."


def recommended(data) -> Iterable[str]:
    chosen = data.recommended
    if not chosen:
        return
    target = "MNIST" if data.dataset_name != "mnist" else "another dataset"
    items = [f"({i}) {A.describe(A.params_of(r), data.names)} — {data.metric} {A.metric_of(r, data.metric):.4f}"
             for i, r in enumerate(chosen, 1)]
    which = "best validation configuration" if len(chosen) == 1 else \
        f"{number_word(len(chosen))} best validation configurations"
    yield f"Recommended for {target} (the {which} here): " + "; ".join(items) + "."


def reruns(data) -> Iterable[str]:
    test = metric_words(data.test_metric)
    for rerun in data.reruns:
        for row in rerun["rows"]:
            if row.get("target_test") is not None:
                yield (f"Rerun of {row['source_run']} on {row['target_dataset']}: {test} "
                       f"{row['target_test']:.4f} (its {row['source_dataset']} {test} was "
                       f"{A.fmt_value(row['source_test'])}).")


OBSERVATIONS: list[Callable] = [
    run_counts, best_run, spread, by_category, diverged, chance_level, broken, importance_ranking,
    rank_vs_linear, importance_without_chance, best_model, AE.reconstruction_quality, ce_vs_mse, recommended, reruns,
]


def observations(data) -> list[str]:
    """Every finding's sentences, in the order of OBSERVATIONS."""
    return [line for finding in OBSERVATIONS for line in finding(data)]
