"""Synthetic sweeps and runs (store-shaped dicts) for the report's pure tests: no store, no training."""
import math

import numpy as np

SPECS = {
    "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
    "optimizer": {"values": ["sgd", "adam", "nadam"]},
    "hidden_size": {"values": [16, 32, 64]},
    "activation": {"values": ["tanh", "ReLU"]},
}


def sweep(parameters=None, method="random"):
    parameters = SPECS if parameters is None else parameters
    return {"id": "sw1", "name": "synthetic", "state": "finished", "config": {
        "method": method, "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"epochs": {"value": 2}, **parameters}},
        "run_counts": {"finished": 1}, "n_runs": 1, "origin": "local"}


def run(i, acc, state="finished", **params):
    summary = {"epochs_run": 2}
    if acc is not None:
        summary.update(val_accuracy=acc, test_accuracy=acc - 0.01)
    return {"id": f"r{i:03d}", "seq": i, "state": state, "stopped_by": None, "params": params,
            "config": {"epochs": 2, "dataset": "fashion_mnist", **params}, "summary": summary, "error": None}


def good_and_chance(n_good=40, n_chance=3, seed=0):
    """n_good runs that learned (0.80-0.89, rising with the learning rate) and n_chance runs at
    chance (0.10), spread through the sweep."""
    rng = np.random.default_rng(seed)
    n = n_good + n_chance
    chance = set(np.linspace(0, n - 1, n_chance + 2).round().astype(int)[1:-1]) if n_chance else set()
    runs = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        params = {"learning_rate": lr, "optimizer": str(rng.choice(["sgd", "adam", "nadam"])),
                  "hidden_size": int(rng.choice([16, 32, 64])), "activation": str(rng.choice(["tanh", "ReLU"]))}
        acc = 0.10 if i in chance else 0.80 + 0.09 * (math.log10(lr) + 4) / 3
        runs.append(run(i + 1, round(acc, 4), **params))
    assert sum(r["summary"]["val_accuracy"] == 0.10 for r in runs) == n_chance
    return runs
