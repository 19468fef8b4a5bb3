#!/usr/bin/env python3
"""Offline sweep throughput: the same runs through one new Python process per run, each with a W&B
service of its own (what `wandb agent` does: `mlp agent --fresh_process` with WANDB_SERVICE set
empty), through a new Python per run sharing the agent's W&B service (`--fresh_process`), and
through warm runs forked from the agent (`mlp agent`'s default, which shares the service too),
side by side, W&B offline.

    python benchmarks/sweep_throughput.py                       # 10 runs per mode, 2 rounds each
    python benchmarks/sweep_throughput.py --runs 10 --rounds 3 --out benchmarks/sweep_results.md
    python benchmarks/sweep_throughput.py --quick               # tests/data, 2 runs: smoke test only
    python benchmarks/sweep_throughput.py --tests-data --runs 8 --modes warm --load 2   # under load

`--load N` keeps N other processes busy for the whole measurement — each a single-threaded NumPy
training loop, what `make test`'s two pytest workers put on a 2-core machine — so the fixed cost is
measured as a loaded machine sees it, not only a quiet one. `--tests-data` runs 1-epoch runs on the
committed subset (tests/data) instead of the full Fashion-MNIST.

The runs: a fixed grid over the assignment's space (depth, width, optimizer, activation, batch
size) with 2-5 epochs on the full Fashion-MNIST, one agent (`--jobs 1`). Each round runs the
whole grid in a fresh store; modes alternate round by round, so load from other processes hits
both alike. Per run: fixed cost = the run's wall time in the agent (claim to settled) minus its
training time (the `seconds` the run records: its epochs); the table shows medians over all runs,
and runs/hour from each round's wall time.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cold_start import wandb_environment  # noqa: E402  (this folder)
from mlp.runs.store import Store  # noqa: E402

GRID = {
    "num_layers": [3, 4, 5], "hidden_size": [32, 64, 128], "optimizer": ["nadam", "adam", "momentum", "rmsprop"],
    "activation": ["ReLU", "tanh"], "batch_size": [64, 128], "epochs": [2, 3, 4, 5],
}
TARGETS = {"fixed_cost_s": 0.2, "runs_per_hour_ratio": 1.6, "fixed_cost_under_load_s": 0.25}
# one busy process of the load: a single-threaded training-like loop (matrix products and updates)
LOAD = ("import numpy as np\n"
        "rng = np.random.default_rng(0); w = rng.standard_normal((784, 256), dtype=np.float32)\n"
        "x = rng.standard_normal((128, 784), dtype=np.float32)\n"
        "while True:\n    h = np.maximum(x @ w, 0); w -= 1e-6 * (x.T @ h)\n")


def start_load(n: int) -> list:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", LOAD], env=env) for _ in range(n)]


def stop_load(procs: list) -> None:
    for p in procs:
        p.kill()
        p.wait()


def sweep_file(folder: Path, runs: int, quick: bool) -> Path:
    """A grid sweep file whose first `runs` points are a spread of the assignment's space."""
    import itertools
    points = list(itertools.product(*GRID.values()))
    step = max(1, len(points) // runs)
    chosen = [dict(zip(GRID, p)) for p in points[::step][:runs]]
    params = {"configuration": {"values": [{**c, **({"epochs": 1, "data_dir": str(ROOT / "tests/data")}
                                                    if quick else {})} for c in chosen]}}
    config = {"program": "train.py", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "parameters": params, "command": ["${env}", "${interpreter}", "${program}"]}
    path = folder / "throughput.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_round(mode: str, sweep: Path, runs: int, folder: Path) -> dict:
    store = folder / f"{mode}-{time.monotonic_ns()}.sqlite"
    # "own": WANDB_SERVICE set empty, no shared service: every run starts its own
    env = wandb_environment("offline", folder, **({"WANDB_SERVICE": ""} if mode == "own" else {}))
    argv = [sys.executable, "-m", "mlp", "sweep", str(sweep), "--count", str(runs), "--seed", "0",
            "--store", str(store)] + (["--fresh_process"] if mode in ("own", "process") else [])
    started = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if p.returncode != 0:
        raise SystemExit(f"{mode} round failed:\n{p.stdout}\n{p.stderr}")
    with Store(store) as s:
        rows = s.list_runs()
    fixed = [(r["finished_at"] - r["created_at"]) - r["summary"]["seconds"] for r in rows]
    assert len(rows) == runs and all(r["state"] == "finished" for r in rows), [r["state"] for r in rows]
    return {"wall": wall, "fixed": fixed, "training": [r["summary"]["seconds"] for r in rows],
            "accuracy": [r["summary"]["val_accuracy"] for r in rows]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tests-data", action="store_true", help="1-epoch runs on tests/data (not the full data)")
    ap.add_argument("--modes", default="own,process,warm", help="comma-separated subset of own, process, warm")
    ap.add_argument("--load", type=int, default=0, help="this many busy processes beside the agent")
    ap.add_argument("--out", help="also write the table (Markdown) here")
    args = ap.parse_args(argv)
    runs = 2 if args.quick else args.runs
    rounds = 1 if args.quick else args.rounds
    modes = tuple(m for m in ("own", "process", "warm") if m in args.modes.split(","))
    results = {mode: [] for mode in modes}
    load = start_load(args.load)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sweep = sweep_file(folder, runs, args.quick or args.tests_data)
            for r in range(rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    results[mode].append(one_round(mode, sweep, runs, folder))
                    print(f"round {r + 1} {mode}: {results[mode][-1]['wall']:.1f} s", file=sys.stderr, flush=True)
    finally:
        stop_load(load)
    rows = {}
    for mode, rs in results.items():
        fixed = [f for x in rs for f in x["fixed"]]
        rows[mode] = {"fixed": statistics.median(fixed), "training": statistics.median(t for x in rs for t in x["training"]),
                      "per_hour": statistics.median(runs * 3600 / x["wall"] for x in rs)}
    first = results[modes[0]][0]["accuracy"]
    assert all(results[m][0]["accuracy"] == first for m in modes), "the modes trained different numbers"
    where = ("tests/data, 1 epoch" + (" — QUICK: smoke test only" if args.quick else "")
             if args.quick or args.tests_data else "full Fashion-MNIST, 2-5 epochs")
    lines = [f"Offline sweep throughput, {datetime.date.today()}, {platform.node()} ({os.cpu_count()} cores), "
             f"{runs} runs × {rounds} rounds per mode, alternated, W&B offline, one agent, {where}"
             + (f", with {args.load} busy processes beside it (make test's load)" if args.load else ", quiet"), "",
             "| mode | fixed cost per run (median) | training per run (median) | runs/hour |",
             "|---|---:|---:|---:|"]
    for mode, label in (("own", "a new Python and W&B service per run (as `wandb agent`)"),
                        ("process", "a new Python per run, shared W&B service (`--fresh_process`)"),
                        ("warm", "warm runs forked from the agent, shared W&B service (default)")):
        if mode in rows:
            r = rows[mode]
            lines.append(f"| {label} | {r['fixed']:.2f} s | {r['training']:.2f} s | {r['per_hour']:.0f} |")
    lines.append("")
    if "own" in rows and "warm" in rows:
        lines.append(f"Warm runs / a process and service per run, runs per hour: **{rows['warm']['per_hour'] / rows['own']['per_hour']:.2f}×** "
                     f"(target ≥ {TARGETS['runs_per_hour_ratio']}×).")
    if "warm" in rows:
        target = TARGETS["fixed_cost_under_load_s"] if args.load else TARGETS["fixed_cost_s"]
        lines.append(f"Warm fixed cost {rows['warm']['fixed']:.2f} s (target ≤ {target} s"
                     + (" under load" if args.load else "") + "). All modes trained identical numbers (checked).")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
