#!/usr/bin/env python3
"""Cold start: how long `python train.py -e 1` takes from the moment it is launched to its first
training batch — what every run launched by `wandb agent` (a new Python per run) pays — and
where that time goes.

    python benchmarks/cold_start.py                          # W&B offline and disabled, 5 rounds
    python benchmarks/cold_start.py --rounds 7 --out benchmarks/cold_start.md
    python benchmarks/cold_start.py --quick                  # tests/data, 1 round: smoke test only

Each round launches a fresh `python benchmarks/cold_start.py --child ...`, which runs train.py's
own entry point (`mlp.cli.train_main`) exactly as train.py does, with timestamps taken at the
boundaries of the phases:

    python      launch → the child's first line (interpreter start-up, site-packages)
    imports     import of train.py's entry point (NumPy, the mlp package)
    W&B import  train.py's flags read, then `import wandb` (train.py imports it while checking the
                WANDB_* variables with wandb's own settings, early in the next phase; done first
                here; with W&B disabled there is no import, only the flags)
    prepare     config checked, network built, output paths checked, data loaded (split cache)
    store       the local store opened and the run's row created
    W&B init    `wandb.init` (offline: it starts W&B's service process), config read back
    samples     one sample image per class logged to W&B (W&B imports pandas here if installed)
    to batch    the rest up to the first training batch (fit's set-up)

Phases are measured back to back from one clock (time.time(); the child's perf counter is not
comparable with the parent's), so they sum to the total. The split cache is warmed by one run
before the rounds start (its first build is a one-off per dataset, reported separately). W&B modes
alternate round by round; the table shows medians.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("python", "imports", "W&B import", "prepare", "store", "W&B init", "samples", "to batch")
TARGET_S = 0.6


def child(stamp_file: str, launched: float, args: list[str]) -> int:
    """One train.py run with timestamps at the phase boundaries, written to `stamp_file`."""
    stamps = {"launch": launched, "python": time.time()}
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from mlp.cli import train_main
    stamps["imports"] = time.time()
    from mlp.core.network import Network
    from mlp.runs import experiment, tracking

    def after(name, fn):
        def timed(*a, **k):
            result = fn(*a, **k)
            stamps.setdefault(name, time.time())
            return result
        return timed

    prepare = after("prepare", experiment.prepare)

    def import_then_prepare(config, context):
        if os.environ.get("WANDB_MODE") != "disabled":
            import wandb  # noqa: F401
        stamps["W&B import"] = time.time()
        return prepare(config, context)
    experiment.prepare = import_then_prepare
    experiment.open_run = after("W&B init", experiment.open_run)
    tracking.StoreTracker.claim = staticmethod(after("store", tracking.StoreTracker.claim))
    tracking.WandbTracker.log_samples = after("samples", tracking.WandbTracker.log_samples)
    train_pass = Network.train_pass

    def first_batch(self, *a, **k):
        stamps.setdefault("to batch", time.time())
        return train_pass(self, *a, **k)
    Network.train_pass = first_batch
    code = train_main(args)
    stamps.setdefault("samples", stamps["W&B init"])       # W&B disabled: no samples
    Path(stamp_file).write_text(json.dumps(stamps))
    return code


def wandb_environment(mode: str, folder: Path, **extra) -> dict:
    """The environment of a benchmarked run: W&B in `mode`, quiet, writing under `folder`, without
    what an agent sets for its runs (a run id, a sweep, a shared W&B service); then `extra`."""
    env = {**os.environ, "WANDB_MODE": mode, "WANDB_SILENT": "true", "WANDB_DIR": str(folder)}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_SERVICE"):
        env.pop(key, None)
    return {**env, **extra}


def one_round(mode: str, args: list[str], folder: Path) -> dict:
    stamp_file = folder / f"stamps-{time.monotonic_ns()}.json"
    env = wandb_environment(mode, folder, MLP_STORE=str(folder / "cold.sqlite"))
    launched = time.time()
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(stamp_file), repr(launched),
                        *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{p.stdout}\n{p.stderr}")
    stamps = json.loads(stamp_file.read_text())
    out, previous = {}, stamps["launch"]
    for phase in PHASES:
        out[phase] = stamps[phase] - previous
        previous = stamps[phase]
    out["total"] = stamps["to batch"] - stamps["launch"]
    return out


def table(results: dict, rounds: int, note: str) -> str:
    lines = [f"`python train.py -e 1` launch to first batch, {datetime.date.today()}, {platform.node()} "
             f"({os.cpu_count()} cores), medians of {rounds} rounds, modes alternated; {note}", "",
             "| W&B | " + " | ".join(PHASES) + " | **total** |", "|---|" + "---:|" * (len(PHASES) + 1)]
    for mode, rows in results.items():
        cells = [f"{statistics.median(r[p] for r in rows):.3f} s" for p in PHASES]
        total = statistics.median(r["total"] for r in rows)
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | **{total:.3f} s** |")
    import importlib.util
    pandas = importlib.util.find_spec("pandas") is not None
    lines += ["", f"Target (issue 16): ≤ {TARGET_S} s with the split cache warm.", "",
              "This install has pandas (the dev extra): W&B imports it at the first logged image, in "
              "\"samples\"; `make run`'s install has none." if pandas else
              "This install has no pandas (as `make run`'s): W&B imports pandas at the first logged image "
              "where it is installed (the dev extra), about 0.3 s more in \"samples\"."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="offline,disabled", help="W&B modes to time (comma-separated)")
    ap.add_argument("--quick", action="store_true", help="tests/data, one round: checks that it runs")
    ap.add_argument("--data_dir", help="Fashion-MNIST IDX files from here (default: mlp's usual sources)")
    ap.add_argument("--out", help="also write the Markdown table here")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    modes = [m for m in a.modes.split(",") if m]
    if not modes or any(m not in ("offline", "disabled") for m in modes):
        ap.error("--modes takes offline and/or disabled")
    data_dir = str(ROOT / "tests/data") if a.quick else a.data_dir
    args = ["-e", "1"] + (["--data_dir", data_dir] if data_dir else [])
    rounds = 1 if a.quick else a.rounds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = one_round("disabled", args, folder)         # builds the split cache if it is missing
        print(f"warm-up run (builds the split cache on a first use): {warm['total']:.3f} s to first batch",
              flush=True)
        results = {m: [] for m in modes}
        for i in range(rounds):
            for mode in (modes if i % 2 == 0 else modes[::-1]):
                results[mode].append(one_round(mode, args, folder))
                print(f"round {i + 1} {mode}: {results[mode][-1]['total']:.3f} s", flush=True)
    text = table(results, rounds, "full Fashion-MNIST" if not a.quick else "tests/data (smoke test)")
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
    sys.exit(main())
