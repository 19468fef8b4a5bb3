"""`mlp report` and `mlp rerun`: every section from a real (smoke) sweep, numbers that match the
store, a page that renders in headless Chromium, importance on synthetic runs, bad input, and a
rerun on the real MNIST."""
import html.parser
import math
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from mlp import config as C
from mlp.cli import main
from mlp.report import analysis as A
from mlp.report import make_report
from mlp.report.importance import by_parameter, encode, importance
from mlp.report.registry import figures_for, numbered_titles

FIGURES = figures_for("classify")      # a classifier sweep's figures (an autoencoder's: tests/test_report_tasks.py)
from mlp.sweep.rerun import rerun_sweep_config
from mlp.runs.store import Store
from mlp.sweep.engine import engine as _engine
from mlp.sweep.files import validate_sweep_config
from helpers.paths import ROOT, SHARED_MNIST

CHROMIUM = Path("/usr/bin/chromium")

CE_TINY = {  # a ce_vs_mse-like grid on the committed subset: 2 losses × 2 seeds
    "name": "ce-tiny", "program": "train.py", "method": "grid",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"data_dir": {"value": "tests/data"}, "loss": {"values": ["cross_entropy", "mean_squared_error"]},
                   "seed": {"values": [0, 1]}, "epochs": {"value": 1}, "num_layers": {"value": 1},
                   "hidden_size": {"value": 16}, "batch_size": {"value": 64}},
    "command": ["${env}", "${interpreter}", "${program}", "${args}"],
}


def mlp(tmp, *args, env=None, timeout=600):
    """`python -m mlp ...` from the repo root, W&B files and the store in tmp."""
    full = {**os.environ, "WANDB_DIR": str(tmp), "WANDB_SILENT": "true", "WANDB_MODE": "offline",
            "MLP_STORE": str(tmp / "s.sqlite"), **(env or {})}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH"):
        full.pop(key, None)
    return subprocess.run([sys.executable, "-m", "mlp", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


def sweep_id_of(proc):
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc.stdout.splitlines()[0].strip()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A 6-run smoke sweep, its report without a loss comparison, then a tiny CE-vs-MSE grid and
    the full report (as a subprocess, like a user would run it)."""
    tmp = tmp_path_factory.mktemp("report")
    smoke = sweep_id_of(mlp(tmp, "sweep", "sweeps/smoke.yaml", "--count", "6", "--seed", "1"))
    with Store(tmp / "s.sqlite") as store:   # the sweep is seeded: these draws are fixed, and the tests need them
        optimizers = {r["params"]["optimizer"] for r in store.list_runs(smoke)}
    assert "adam" in optimizers and len(optimizers) >= 2, f"seed 1 drew optimizers {optimizers}: pick a seed " \
        f"that draws adam and another optimizer"
    with Store(tmp / "s.sqlite") as store:
        bare = make_report(store, smoke, tmp / "bare", log=lambda line: None)
    ce_file = tmp / "ce_tiny.yaml"
    ce_file.write_text(yaml.safe_dump(CE_TINY, sort_keys=False))
    ce = sweep_id_of(mlp(tmp, "sweep", str(ce_file), "--count", "4", "--seed", "1"))
    out = tmp / "out"
    proc = mlp(tmp, "report", smoke, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SimpleNamespace(tmp=tmp, store=tmp / "s.sqlite", smoke=smoke, ce=ce, out=out, proc=proc, bare=bare)


# ---- the report of a smoke sweep ------------------------------------------------------------------------

def test_report_has_every_section_and_figure(env):
    md = (env.out / "report.md").read_text()
    page = (env.out / "index.html").read_text()
    for title in numbered_titles(SimpleNamespace(task="classify")).values():
        assert f"## {title}" in md and title in page, title
    for name in FIGURES:
        png = env.out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name}.png)" in md, name
        assert f'<figure id="fig-{name}"><img src="data:image/png;base64,' in page, name
    # self-contained: nothing is fetched from anywhere
    assert "http://" not in page and "https://" not in page and "file:" not in page
    assert env.proc.stdout.strip() == str(env.out / "index.html")           # stdout: the page, for scripts
    assert "loading fashion_mnist" in env.proc.stderr                        # progress: stderr


def test_report_numbers_match_the_store(env):
    md = (env.out / "report.md").read_text()
    with Store(env.store, create=False) as store:
        runs = store.list_runs(env.smoke)
        best = max((r for r in runs if r["state"] == "finished"), key=lambda r: r["summary"]["val_accuracy"])
        assert store.get_run(best["id"])["model_path"]            # the agent kept the model
        ce_runs = store.list_runs(env.ce)
    assert (f"Run {best['id']} (#{best['seq']}) has the best val_accuracy: {best['summary']['val_accuracy']:.4f}; "
            f"its test accuracy is {best['summary']['test_accuracy']:.4f}") in md
    # the leaderboard is in order
    leaderboard = sorted((r for r in runs if r["state"] == "finished"),
                         key=lambda r: (-r["summary"]["val_accuracy"], r["seq"]))
    assert f"| 1 | {leaderboard[0]['id']} | {leaderboard[0]['summary']['val_accuracy']:.4f} |" in md
    assert f"| 2 | {leaderboard[1]['id']} | {leaderboard[1]['summary']['val_accuracy']:.4f} |" in md
    # the loaded model reproduces the stored confusion matrix
    assert "with a confusion matrix identical to the one the run logged when it ran" in md
    # the CE - MSE gap, paired by seed by hand
    by = {(r["params"]["seed"], r["params"]["loss"]): r["summary"]["val_accuracy"]
          for r in ce_runs}
    gaps = [by[(s, "cross_entropy")] - by[(s, "mean_squared_error")] for s in (0, 1)]
    assert f"paired gap CE − MSE {np.mean(gaps):+.4f} ± {np.std(gaps, ddof=1):.4f}" in md
    assert f"cross-entropy is better in {sum(g > 0 for g in gaps)} of 2 pairs" in md
    assert "(mean ± standard deviation of the differences;" in md and "paired t-test on the differences" in md
    assert "Wilcoxon signed-rank test" in md
    assert f"Sweep {env.ce} (ce-tiny)" in md


def test_report_observations_are_computed(env):
    md = (env.out / "report.md").read_text()
    with Store(env.store, create=False) as store:
        runs = store.list_runs(env.smoke)
    adam = [r["summary"]["val_accuracy"] for r in runs if r["params"]["optimizer"] == "adam"]
    assert adam, "the fixture draws adam runs"
    assert f"adam {np.mean(adam):.4f} (n={len(adam)})" in md
    for optimizer in {r["params"]["optimizer"] for r in runs}:     # every level, not only adam
        values = [r["summary"]["val_accuracy"] for r in runs if r["params"]["optimizer"] == optimizer]
        assert f"{optimizer} {np.mean(values):.4f} (n={len(values)})" in md, optimizer
    assert f"The sweep has {len(runs)} runs" in md
    assert "Recommended for MNIST" in md and "No run diverged (0 of 6)" in md
    assert "Not run yet: `mlp rerun" in md


def test_report_without_a_comparison_sweep_says_how_to_run_one(env):
    md = env.bare["markdown"].read_text()
    assert "No sweep in this store compares the losses" in md
    assert "mlp sweep sweeps/ce_vs_mse.yaml --count 10" in md
    assert "ce_vs_mse" not in env.bare["figures"]
    assert set(env.bare["figures"]) == set(FIGURES) - {"ce_vs_mse"}


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def test_every_image_renders_in_headless_chromium(env, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: install it with `apt-get install -y chromium` (as .ci/run does)")
    argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000", "--dump-dom", (env.out / "index.html").resolve().as_uri()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = _Images()
    parser.feed(proc.stdout)
    assert len(parser.images) == len(FIGURES)
    for img in parser.images:
        assert int(img.get("data-natural-width", "0")) > 0, img.get("alt")


# ---- bad input ----------------------------------------------------------------------------------------------

def test_unknown_sweep_is_one_line_and_exit_2(env, capsys):
    assert main(["report", "nosuchid", "--store", str(env.store), "--out", str(env.tmp / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown sweep id 'nosuchid'") and err.count("\n") == 1
    assert not (env.tmp / "x").exists()


def test_sweep_without_finished_runs_is_a_usage_error(env, capsys):
    with Store(env.store) as store:
        empty = store.create_sweep({"method": "random", "parameters": {"epochs": {"values": [1]}}}, "", name="empty")
    assert main(["report", empty, "--store", str(env.store), "--out", str(env.tmp / "y")]) == 2
    assert "has no finished runs" in capsys.readouterr().err
    assert main(["rerun", empty, "--store", str(env.store)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_unwritable_out_is_a_usage_error(env, capsys):
    blocker = env.tmp / "a-file"
    blocker.write_text("")
    assert main(["report", env.smoke, "--store", str(env.store), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {blocker / 'sub'}: a part of it is a file") and err.count("\n") == 1


def test_a_report_that_cannot_be_written_leaves_no_folder_behind(env):
    """A file-size limit of 200 KiB (the kernel refuses the page, written last, as on a full disk): one
    error line, exit 2, and the new --out folder is not left behind empty; the store is unchanged."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, 200 * 1024))

    out = env.tmp / "new" / "report"
    before = env.store.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "mlp", "report", env.smoke, "--store", str(env.store),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit, env={**os.environ, "WANDB_MODE": "disabled"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"cannot write the report to {out}" in errors[0], errors[0]
    assert not (env.tmp / "new").exists()
    assert env.store.read_bytes() == before


def test_compare_must_vary_the_loss(env, capsys):
    assert main(["report", env.smoke, "--store", str(env.store), "--compare", env.smoke,
                 "--out", str(env.tmp / "z")]) == 2
    assert "does not search loss" in capsys.readouterr().err


# ---- pure parts ----------------------------------------------------------------------------------------------

def _synthetic(n=80, seed=0):
    """Runs whose val_accuracy is driven by log10(learning_rate); the rest is noise."""
    rng = np.random.default_rng(seed)
    params, metric = [], []
    for _ in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        p = {"learning_rate": lr, "optimizer": str(rng.choice(["sgd", "adam", "nadam"])),
             "hidden_size": int(rng.choice([16, 32, 64])), "activation": str(rng.choice(["tanh", "ReLU"]))}
        params.append(p)
        metric.append(0.9 + 0.08 * math.log10(lr) + rng.normal(0, 0.01))
    return params, metric


def test_importance_ranks_the_dominant_parameter_first():
    params, metric = _synthetic()
    rows = importance(params, metric, seed=0)
    assert rows[0]["feature"] == "learning_rate" and rows[0]["importance"] > 0.5
    assert by_parameter(rows)[0]["parameter"] == "learning_rate"
    strongest = max(rows, key=lambda r: abs(r["spearman"]))
    assert strongest["feature"] == "learning_rate" and strongest["spearman"] > 0.9
    lr = next(r for r in rows if r["feature"] == "learning_rate")
    assert lr["spearman"] > lr["pearson"] + 0.05           # a log-scale effect hides from Pearson
    assert importance(params, metric, seed=0) == rows       # seeded: deterministic
    assert abs(sum(r["importance"] for r in rows) - 1) < 1e-9


def test_importance_one_hot_encodes_categoricals():
    params = [{"optimizer": o, "epochs": 5} for o in ["adam", "sgd", "adam", "nadam"] * 10]
    metric = [0.9 if p["optimizer"] == "adam" else 0.5 for p in params]
    features, X = encode(params)
    assert [f[0] for f in features] == ["optimizer=adam", "optimizer=sgd", "optimizer=nadam"]  # epochs is constant
    assert X.shape == (40, 3) and X.sum(axis=1).tolist() == [1.0] * 40
    rows = importance(params, metric)
    assert rows[0]["feature"] == "optimizer=adam" and rows[0]["pearson"] == pytest.approx(1.0)
    assert by_parameter(rows)[0]["parameter"] == "optimizer"


def test_confusion_analysis():
    cm = np.array([[8, 2, 0], [5, 5, 0], [0, 1, 9]])
    ca = A.confusion_analysis(cm, ["a", "b", "c"])
    assert ca["accuracy"] == pytest.approx(22 / 30) and ca["errors"] == 8
    assert ca["pairs"][0] == {"a": "a", "b": "b", "a_index": 0, "b_index": 1, "total": 7, "a_as_b": 2, "b_as_a": 5}
    assert ca["confused"][0]["true"] == "b" and ca["confused"][0]["count"] == 5
    b = ca["per_class"][1]
    assert b["precision"] == pytest.approx(5 / 8) and b["recall"] == pytest.approx(0.5)
    assert ca["normalised"][1].tolist() == [0.5, 0.5, 0.0]


def test_pairs_differ_only_in_the_loss():
    def run(i, loss, seed, lr=1e-3, acc=0.8):
        return {"id": f"r{i}", "state": "finished", "summary": {"val_accuracy": acc},
                "params": {"loss": loss, "seed": seed, "learning_rate": lr}}
    runs = [run(1, "cross_entropy", 0, acc=0.85), run(2, "mean_squared_error", 0, acc=0.80),
            run(3, "cross_entropy", 1, acc=0.84), run(4, "mean_squared_error", 1, lr=1e-2),  # lr differs: no pair
            run(5, "cross_entropy", 2, acc=0.70), run(6, "mean_squared_error", 2, acc=0.75)]
    pairs = A.pair_runs(runs)
    assert [(p["cross_entropy"]["id"], p["mean_squared_error"]["id"]) for p in pairs] == [("r1", "r2"), ("r5", "r6")]
    s = A.pair_summary(pairs)
    assert s["n"] == 2 and s["wins"] == 1 and s["mean"] == pytest.approx(0.0)


def test_rerun_sweep_is_a_valid_wandb_grid():
    parent = {"id": "p1", "name": "fashion-bayes", "config": {"program": "train.py",
                                                              "metric": {"name": "val_accuracy", "goal": "maximize"}}}
    configs = [{"dataset": "mnist", "optimizer": "nadam", "learning_rate": 3e-4, "epochs": 10},
               {"dataset": "mnist", "optimizer": "adam", "learning_rate": 1e-3, "epochs": 10}]
    config = rerun_sweep_config(parent, configs, "mnist")
    assert _engine().schema_violations_from_proposed_config(config) == []
    validate_sweep_config(config)
    assert config["method"] == "grid" and config["run_cap"] == 2
    assert config["parameters"]["dataset"] == {"value": "mnist"}
    # two parameters differ: one grid parameter whose values are the configs, so the grid is exactly
    # these two runs (separate lists would make a 2x2 grid); its values reach train.py through W&B's
    # parameter file, not argv
    assert config["parameters"]["configuration"] == {"values": [{"optimizer": "nadam", "learning_rate": 3e-4},
                                                                {"optimizer": "adam", "learning_rate": 1e-3}]}
    assert "optimizer" not in config["parameters"] and "${args}" not in config["command"]
    runs, proposed = [], []
    while (suggestion := _engine().next_run(config, runs)) is not None:
        runs.append(_engine().SweepRun(name=str(len(runs)), state="finished", config=suggestion.config))
        proposed.append(C.expand_configuration({k: v["value"] for k, v in suggestion.config.items()}))
    assert proposed == configs
    one = rerun_sweep_config(parent, [configs[0], {**configs[0], "learning_rate": 1e-3}], "mnist")
    assert one["parameters"]["learning_rate"] == {"values": [3e-4, 1e-3]} and "configuration" not in one["parameters"]


# ---- rerun on the real MNIST ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_rerun_top_two_on_real_mnist_and_report_the_table(env):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    proc = mlp(env.tmp, "rerun", env.smoke, "--top", "2", "--dataset", "mnist", "--epochs", "1",
               env={"MLP_DATA_DIR": str(SHARED_MNIST.parent)})
    child_id = sweep_id_of(proc)
    with Store(env.store, create=False) as store:
        parent_runs = store.list_runs(env.smoke)
        child = store.get_sweep(child_id)
        child_runs = store.list_runs(child_id)
    assert child["parent_sweep_id"] == env.smoke and child["state"] == "finished"
    config = yaml.safe_load(child["config_yaml"])
    assert _engine().schema_violations_from_proposed_config(config) == [] and config["method"] == "grid"
    top = sorted((r for r in parent_runs if r["state"] == "finished"),
                 key=lambda r: (-r["summary"]["val_accuracy"], r["seq"]))[:2]
    assert child["rerun"].source_runs == [r["id"] for r in top]
    assert [r["state"] for r in child_runs] == ["finished", "finished"]
    for source, run in zip(top, child_runs):
        assert run["config"]["dataset"] == "mnist" and run["config"]["epochs"] == 1
        for key in ("optimizer", "learning_rate", "num_layers", "hidden_size", "activation", "batch_size"):
            assert run["config"][key] == source["config"][key], key
        assert run["summary"]["test_accuracy"] > 0.7           # real digits, not a subset
    # the parent's report shows Fashion val/test next to MNIST test
    with Store(env.store) as store:
        result = make_report(store, env.smoke, env.tmp / "with-rerun", log=lambda line: None)
    md = result["markdown"].read_text()
    for source, run in zip(top, child_runs):
        assert (f"| {source['summary']['val_accuracy']:.4f} | {source['summary']['test_accuracy']:.4f} | "
                f"{run['summary']['val_accuracy']:.4f} | {run['summary']['test_accuracy']:.4f} | {run['id']} | "
                f"finished |") in md
    assert f"Sweep {child_id}" in md and "Not run yet: `mlp rerun" not in md
    # the command quoted is the one that ran, and the counts are the real ones (two, one epoch)
    assert (f"reran the two best validation configurations on mnist for 1 epoch "
            f"(`mlp rerun {env.smoke} --top 2 --dataset mnist --epochs 1`)") in md
    assert "The two configurations recommended for MNIST" in md and "three configurations" not in md
    assert "Recommended for MNIST (the two best validation configurations here)" in md
