"""An interrupted run continues from its checkpoint (issue 21, item 7): SIGTERM after an epoch keeps
the state at the end of that epoch — network, optimizer, the network's generator (dropout), the loop's
generator (shuffling, augmentation), schedule step, weight averaging — and `train.py --resume RUN_ID`
finishes the run bit for bit as if it had never been interrupted (one BLAS thread, as a run is
reproducible only under the same threads)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlp.errors import UsageError
from mlp.runs.store import Store
from helpers.paths import DATA, ROOT
from helpers.promises import one_line_error
from helpers.waiting import wait_for

# everything that draws from a generator or carries state across epochs
RECIPE = ["-e", "8", "--hidden_sizes", "[256, 256]", "--dropout", "0.2", "--batch_norm", "--lr_schedule", "onecycle",
          "--augment_flip", "--augment_shift", "1", "--weight_averaging", "ema", "-o", "nadam", "--seed", "4",
          "--data_dir", str(DATA), "--wandb_mode", "disabled"]


def env():
    out = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "MLP_STORE"}
    out.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return out


def train(cwd, *args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def interrupt_after_an_epoch(cwd, *args):
    """Start train.py, SIGTERM it once its first epoch is in the store; (returncode, stderr)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = Path(cwd) / "s.sqlite"

    def an_epoch():
        assert proc.poll() is None, "the run ended before it could be signalled"
        try:
            with Store(store, create=False) as s:
                return any(s.history(r["id"]) for r in s.list_runs())
        except UsageError:           # the run has not made the store yet
            return False
    wait_for(an_epoch, what="the run's first epoch in the store", every=0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


def test_an_interrupted_run_resumes_bit_identically(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert train(whole, *RECIPE, "--store", "s.sqlite", "--save_model", "m.npz").returncode == 0

    code, err = interrupt_after_an_epoch(cut, *RECIPE, "--store", "s.sqlite", "--save_model", "m.npz")
    assert code == 130 and "Traceback" not in err, err
    with Store(cut / "s.sqlite", create=False) as store:
        (run,) = store.list_runs()
        done = len(store.history(run["id"]))
    assert run["state"] == "killed" and 1 <= done < 8 and not (cut / "m.npz").exists()
    checkpoint = cut / "mlp-checkpoints" / f"{run['id']}.npz"
    assert checkpoint.is_file() and f"--resume {run['id']}" in err

    proc = train(cut, "--resume", run["id"], "--store", "s.sqlite", "--save_model", "m.npz", "--data_dir", DATA)
    assert proc.returncode == 0, proc.stderr
    assert f"continuing from its checkpoint after epoch {done}" in proc.stderr
    a, b = arrays(whole / "m.npz"), arrays(cut / "m.npz")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)      # bit for bit
    with Store(whole / "s.sqlite", create=False) as s1, Store(cut / "s.sqlite", create=False) as s2:
        (first,), resumed = s1.list_runs(), s2.get_run(run["id"])
        h1 = [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in s1.history(first["id"])]
        h2 = [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in s2.history(run["id"])]
    assert h1 == h2 and len(h2) == 8
    assert resumed["state"] == "finished" and resumed["summary"]["epochs_run"] == 8
    assert resumed["summary"]["test_accuracy"] == first["summary"]["test_accuracy"]
    assert not checkpoint.exists()                    # a finished run keeps no checkpoint


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A store with one interrupted run (its checkpoint kept) and one finished run."""
    cwd = tmp_path_factory.mktemp("resume")
    code, err = interrupt_after_an_epoch(cwd, *RECIPE, "--store", "s.sqlite")
    assert code == 130, err
    assert train(cwd, "-e", "1", "-nhl", "1", "-sz", "8", "--data_dir", DATA, "--wandb_mode", "disabled",
                 "--store", "s.sqlite").returncode == 0
    with Store(cwd / "s.sqlite", create=False) as store:
        runs = {r["state"]: r["id"] for r in store.list_runs()}
    return cwd, runs["killed"], runs["finished"]


def store_contents(path):
    with Store(path, create=False) as store:
        runs = store.list_runs()
        return runs, {r["id"]: store.history(r["id"]) for r in runs}


def test_resume_says_what_it_cannot_continue(interrupted, tmp_path):
    cwd, killed, finished = interrupted
    before = store_contents(cwd / "s.sqlite")
    one_line_error(train(cwd, "--resume", "nosuch12", "--store", "s.sqlite"), "nosuch12", "not in store")
    one_line_error(train(cwd, "--resume", finished, "--store", "s.sqlite"), "is finished")
    one_line_error(train(cwd, "--resume", killed, "--store", "s.sqlite", "-lr", "0.5"), "own config", "--learning_rate")
    one_line_error(train(cwd, "--resume", killed, "--store", "nowhere.sqlite"), "does not exist")
    one_line_error(train(cwd, "--resume", "../etc", "--store", "s.sqlite"), "run id")
    checkpoint = cwd / "mlp-checkpoints" / f"{killed}.npz"
    saved = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(saved[: len(saved) // 2])             # truncated
        one_line_error(train(cwd, "--resume", killed, "--store", "s.sqlite", "--data_dir", DATA), "checkpoint")
        checkpoint.unlink()                                          # gone
        one_line_error(train(cwd, "--resume", killed, "--store", "s.sqlite"), "left no checkpoint")
    finally:
        checkpoint.write_bytes(saved)
    assert store_contents(cwd / "s.sqlite") == before                # nothing written by any of them
