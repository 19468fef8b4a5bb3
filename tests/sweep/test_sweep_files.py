"""Sweep files and the search: every file in sweeps/ is a valid W&B sweep whose agent argv parses to
the intended values, bad files are refused before anything is written, and W&B's engine proposes
reproducibly under the sweep seed (random without replacement on finite spaces, run_cap)."""
import json
import sys

import pytest

from mlp import UsageError
from mlp.cli import parse_train_args
from mlp.sweep.engine import build_command, finite_space, propose
from mlp.sweep.engine import engine as _engine
from mlp.sweep.files import load_sweep_file

from helpers.paths import ROOT
from helpers.sweeps import mlp

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))


# ---- the YAML files ----------------------------------------------------------------------------

def test_every_sweep_file_is_valid_for_wandb():
    assert {p.name for p in SWEEP_FILES} >= {"fashion.yaml", "fashion_random.yaml", "fashion_grid.yaml",
                                             "ce_vs_mse.yaml", "smoke.yaml"}
    for path in SWEEP_FILES:
        config, _ = load_sweep_file(path)
        assert _engine().schema_violations_from_proposed_config(config) == [], path
        assert config["program"] == "train.py" and "${args}" in config["command"]
        expected = "val_r2" if path.name == "autoencoder.yaml" else "val_accuracy"   # what each task logs
        assert config["metric"] == {"name": expected, "goal": "maximize"}


def test_fashion_sweep_covers_the_assignment_space():
    p = load_sweep_file(ROOT / "sweeps" / "fashion.yaml")[0]["parameters"]
    assert p["epochs"]["values"] == [5, 10] and p["num_layers"]["values"] == [3, 4, 5]
    assert p["hidden_size"]["values"] == [32, 64, 128] and p["weight_decay"]["values"] == [0, 0.0005, 0.5]
    assert p["learning_rate"]["min"] == 1e-4 and p["learning_rate"]["max"] == 1e-3
    assert set(p["optimizer"]["values"]) == {"sgd", "momentum", "nag", "rmsprop", "adam", "nadam"}
    assert p["batch_size"]["values"] == [16, 32, 64] and p["weight_init"]["values"] == ["random", "Xavier"]
    assert p["activation"]["values"] == ["sigmoid", "tanh", "ReLU"]


def _examples(spec):
    if "values" in spec:
        return spec["values"]
    if "value" in spec:
        return [spec["value"]]
    return [spec["min"], spec["max"], (spec["min"] * spec["max"]) ** 0.5]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_wandb_agent_argv_parses_to_the_intended_values(path):
    """For every parameter value, the argv wandb's own builder makes parses back in train.py (with
    the sweep's task, which every run of the sweep has)."""
    config, _ = load_sweep_file(path)
    task = {"task": config["parameters"]["task"]["value"]} if "task" in config["parameters"] else {}
    for name, spec in config["parameters"].items():
        for value in _examples(spec):
            argv = build_command(config["command"], {**task, name: value}, "train.py")
            assert argv[:3] == ["/usr/bin/env", sys.executable, "train.py"]
            parsed = parse_train_args(argv[3:])[name]
            if isinstance(value, str) and name != "data_dir":
                assert parsed == value.lower(), (name, value)
            else:
                assert parsed == value, (name, value)


@pytest.mark.parametrize("text,fragment", [
    ("method: grid\nparameters: {epochs: {values: [1]}\n", "not valid YAML at line"),
    ("method: random\nbogus_key: 1\nparameters: {epochs: {values: [1]}}\n", "unknown top-level key"),
    ("method: random\nparameters: {colour: {values: [red]}}\n", "'colour' is not a train.py flag"),
    ("method: grid\nparameters: {learning_rate: {min: 0.001, max: 0.1}}\n", "grid search needs `values`"),
    ("method: random\nmetric: {name: test_accuracy, goal: maximize}\nparameters: {epochs: {values: [1]}}\n",
     "selecting on the test set"),
    ("method: random\nparameters: {activation: {values: [relu, swish]}}\n", "parameter 'activation': value 'swish' is rejected"),
    ("method: bayes\nparameters: {epochs: {values: [1, 2]}}\n", "need `metric"),
    ("method: bayes\nmetric: {name: val_accuracy}\nparameters: {epochs: {values: [1, 2]}}\n",
     "W&B's default goal is minimize"),
])
def test_bad_sweep_files_are_rejected(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[").replace("`", ".")):
        load_sweep_file(path)


def test_bad_sweep_file_via_cli_exits_2_and_creates_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: grid\nparameters: {learning_rate: {min: 0.001, max: 0.1}}\n")
    p = mlp(tmp_path, "sweep", str(path), "--store", str(tmp_path / "s.sqlite"))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    assert not (tmp_path / "s.sqlite").exists()


# ---- the search --------------------------------------------------------------------------------

def _fake_runs(config, seed, n, metric=lambda i: 0.5):
    """n finished runs proposed in sequence, each with a 2-epoch history."""
    runs, histories = [], {}
    for i in range(n):
        params = propose(config, runs, seed, lambda rid: histories[rid])
        rid = f"run{i}"
        histories[rid] = [{"epoch": 1, "val_accuracy": metric(i) - 0.1}, {"epoch": 2, "val_accuracy": metric(i)}]
        runs.append({"id": rid, "state": "finished", "summary": {"val_accuracy": metric(i)},
                     "params": params, "stopped_by": None})
    return [r["params"] for r in runs]


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_same_seed_same_configs(method):
    config = load_sweep_file(ROOT / "sweeps" / "fashion.yaml")[0]
    config = {**config, "method": method}
    metric = lambda i: 0.5 + 0.03 * (i % 5)  # noqa: E731
    a = _fake_runs(config, seed=11, n=6, metric=metric)
    b = _fake_runs(config, seed=11, n=6, metric=metric)
    c = _fake_runs(config, seed=12, n=6, metric=metric)
    assert a == b
    assert a != c
    assert len({json.dumps(p, sort_keys=True) for p in a}) == 6


def test_random_search_on_a_finite_space_never_repeats_a_config():
    """wandb#4682: random over finitely many configs draws without replacement (weights from
    `probabilities`; a value of weight 0 never comes), ends when every config ran, and stays
    reproducible under the seed; a continuous space is left to the engine."""
    config = {"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "parameters": {"optimizer": {"values": ["adam", "nadam", "sgd"], "probabilities": [0.5, 0.5, 0.0]},
                             "num_layers": {"distribution": "int_uniform", "min": 1, "max": 3},
                             "epochs": {"value": 1}}}
    drawn = _fake_runs(config, seed=5, n=6)
    assert drawn == _fake_runs(config, seed=5, n=6) and drawn != _fake_runs(config, seed=6, n=6)
    assert sorted((p["optimizer"], p["num_layers"]) for p in drawn) == \
        sorted((o, n) for o in ("adam", "nadam") for n in (1, 2, 3))
    runs = [{"id": f"r{i}", "state": "finished", "summary": {}, "params": p, "stopped_by": None}
            for i, p in enumerate(drawn)]
    assert propose(config, runs, 5, lambda rid: []) is None          # drawn out: the search is over
    continuous = {**config, "parameters": {**config["parameters"], "learning_rate": {"min": 1e-4, "max": 1e-2}}}
    assert finite_space(config) is not None and finite_space(continuous) is None


def test_run_cap_ends_the_search():
    config = {**load_sweep_file(ROOT / "sweeps" / "smoke.yaml")[0], "run_cap": 3}
    assert len(_fake_runs(config, seed=0, n=3)) == 3
    runs = [{"id": f"r{i}", "state": "finished", "summary": {}, "params": {}, "stopped_by": None} for i in range(3)]
    assert propose(config, runs, 0, lambda rid: []) is None


def test_a_metric_without_a_goal_goes_its_own_way(tmp_path):
    """Grid and random sweeps may leave the goal out: the report ranks by the metric's own
    direction (a loss down), and bayes over a loss may rely on W&B's default (minimize)."""
    from mlp.sweep.files import objective
    assert objective({"metric": {"name": "val_loss"}}) == ("val_loss", "minimize")
    assert objective({"metric": {"name": "val_accuracy"}}) == ("val_accuracy", "maximize")
    assert objective({}) == ("val_accuracy", "maximize")
    path = tmp_path / "loss.yaml"
    path.write_text("method: bayes\nmetric: {name: val_loss}\nparameters: {epochs: {values: [1, 2]}}\n")
    assert load_sweep_file(path)[0]["metric"] == {"name": "val_loss"}
