"""An interrupted run continues from its checkpoint (issue 21, item 7): SIGTERM after an epoch keeps
the state at the end of that epoch — network, optimizer, the network's generator (dropout), the loop's
generator (shuffling, augmentation), schedule step, weight averaging — and `train.py --resume RUN_ID`
finishes the run bit for bit as if it had never been interrupted (one BLAS thread, as a run is
reproducible only under the same threads)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
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
        checkpoint.mkdir()                                           # a folder in its place: named, not "no checkpoint"
        one_line_error(train(cwd, "--resume", killed, "--store", "s.sqlite"), "has a folder where its checkpoint")
        checkpoint.rmdir()
        os.mkfifo(checkpoint)                                        # a FIFO: refused, never opened (it would block)
        one_line_error(train(cwd, "--resume", killed, "--store", "s.sqlite"), "has a named pipe (FIFO) where")
        checkpoint.unlink()
    finally:
        checkpoint.write_bytes(saved)
    assert store_contents(cwd / "s.sqlite") == before                # nothing written by any of them


# ---- a damaged checkpoint is refused before the run's row is reopened ----------------------------------------

def _rewrite(path, meta_fn=None, arrays_fn=None, meta_text=None):
    """Rewrite a checkpoint with its JSON header and/or arrays changed (as a hostile or damaged file)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        found = {k: z[k] for k in z.files if k != "__meta__"}
    meta = meta_fn(meta) if meta_fn else meta
    found = arrays_fn(found) if arrays_fn else found
    with zipfile.ZipFile(path, "w") as out:
        with out.open("__meta__.npy", "w") as f:
            np.lib.format.write_array(f, np.array(meta_text if meta_text is not None else json.dumps(meta)))
        for key, value in found.items():
            with out.open(f"{key}.npy", "w") as f:
                if isinstance(value, bytes):             # a raw member (a header that lies)
                    f.write(value)
                else:
                    np.lib.format.write_array(f, value, allow_pickle=True)


def _set(path_keys, value):
    def change(meta):
        target = meta
        for key in path_keys[:-1]:
            target = target[key]
        target[path_keys[-1]] = value(target[path_keys[-1]]) if callable(value) else value
        return meta
    return change


def _drop(prefix, every=False):
    def change(arrays):
        keys = [k for k in arrays if k.startswith(prefix)]
        for key in keys if every else keys[:1]:
            del arrays[key]
        return arrays
    return change


def _shrink(prefix):
    def change(arrays):
        key = next(k for k in arrays if k.startswith(prefix) and arrays[k].ndim)
        arrays[key] = arrays[key][:1]
        return arrays
    return change


def _lying_header(arrays):
    key = next(k for k in arrays if k.startswith("net/"))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 11,)})
    arrays[key] = np.lib.format.magic(1, 0) + header.getvalue()[8:] + b"\0" * 16
    return arrays


DAMAGE = {
    "history of numbers": dict(meta_fn=_set(["fit", "history"], [1, 2, 3])),
    "history rows without epoch": dict(meta_fn=_set(["fit", "history"], lambda h: [{} for _ in h])),
    "history one row short": dict(meta_fn=_set(["fit", "history"], lambda h: h[:-1])),
    "history with text": dict(meta_fn=_set(["fit", "history"], lambda h: [{**r, "val_loss": "x"} for r in h])),
    "loop generator a string": dict(meta_fn=_set(["fit", "rng"], "garbage")),
    "loop generator of another kind": dict(meta_fn=_set(["fit", "rng"], {"bit_generator": "MT19937", "state": {}})),
    "network generator a number": dict(meta_fn=_set(["net_rng"], 5)),
    "optimizer of another kind": dict(meta_fn=_set(["optimizer", "optimizer"], "sgd")),
    "optimizer without its step": dict(meta_fn=lambda m: (m["optimizer"].pop("step"), m)[1]),
    "averaging missing": dict(meta_fn=_set(["averager"], None)),
    "negative epoch": dict(meta_fn=_set(["fit", "epoch"], -1)),
    "best epoch out of range": dict(meta_fn=_set(["fit", "best"], [0.5, 99])),
    "header a list": dict(meta_text="[]"),
    "header not JSON": dict(meta_text="{not json"),
    "header deeply nested": dict(meta_text="[" * 100_000 + "]" * 100_000),
    "another format": dict(meta_fn=_set(["format"], "something-else")),
    "another version": dict(meta_fn=_set(["version"], 99)),
    "network array missing": dict(arrays_fn=_drop("net/")),
    "network array of another shape": dict(arrays_fn=_shrink("net/")),
    "network array unexpected": dict(arrays_fn=lambda a: {**a, "net/99.W": np.zeros(3, np.float32)}),
    "optimizer arrays missing": dict(arrays_fn=_drop("opt/", every=True)),
    "optimizer array of another shape": dict(arrays_fn=_shrink("opt/")),
    "header declaring 400 GB": dict(arrays_fn=_lying_header),
    "an object array": dict(arrays_fn=lambda a: {**a, next(iter(a)): np.array([None], dtype=object)}),
}


@pytest.fixture
def copy_of(interrupted, tmp_path, monkeypatch):
    """The interrupted run's store and checkpoint, copied into a fresh folder (the cwd)."""
    cwd, killed, _ = interrupted
    shutil.copytree(cwd, tmp_path / "c")
    for key in [k for k in os.environ if k.startswith("WANDB_")] + ["MLP_DATA_DIR", "MLP_STORE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path / "c")
    return tmp_path / "c", killed


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_before_the_row_is_reopened(copy_of, capsys, damage):
    from mlp.cli import train_main
    cwd, killed = copy_of
    checkpoint = cwd / "mlp-checkpoints" / f"{killed}.npz"
    _rewrite(checkpoint, **DAMAGE[damage])
    before, files = store_contents(cwd / "s.sqlite"), sorted(p.name for p in cwd.rglob("*"))
    code = train_main(["--resume", killed, "--store", "s.sqlite", "--data_dir", str(DATA)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "checkpoint" in err, err
    assert store_contents(cwd / "s.sqlite") == before and sorted(p.name for p in cwd.rglob("*")) == files
    assert before[0][0]["state"] == "killed" or any(r["state"] == "killed" for r in before[0])


def _smaller_copy(dst: Path) -> Path:
    """Every other training image of the subset (all classes kept), its own checksum manifest."""
    from mlp.runs.data import MANIFEST_NAME, encode_idx, read_idx
    (dst / "fashion_mnist").mkdir(parents=True)
    sums = []
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        data = read_idx(DATA / "fashion_mnist" / f"{name}.gz")
        raw = encode_idx(data[::2] if name.startswith("train") else data)
        (dst / "fashion_mnist" / name).write_bytes(raw)
        sums.append(f"{hashlib.sha256(raw).hexdigest()}  {name}\n")
    (dst / "fashion_mnist" / MANIFEST_NAME).write_text("".join(sums))
    return dst


def test_a_resumed_run_trains_on_the_data_it_was_interrupted_on(copy_of, capsys, tmp_path):
    """Without --data_dir it continues on the folder its checkpoint names (not the default
    data); with another folder it is refused, before anything is reopened."""
    from mlp.cli import train_main
    cwd, killed = copy_of
    before = store_contents(cwd / "s.sqlite")
    other = _smaller_copy(tmp_path / "other")
    assert train_main(["--resume", killed, "--store", "s.sqlite", "--data_dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "other data" in err and err.count("\n") == 1, err
    assert store_contents(cwd / "s.sqlite") == before
    assert train_main(["--resume", killed, "--store", "s.sqlite", "--wandb_mode", "disabled"]) == 0
    err = capsys.readouterr().err
    assert f"from {DATA / 'fashion_mnist'} (--data_dir)" in err, err
