"""`mlp baselines` (issue 15): the validation rows are exactly train.py's, rows land in the store,
bad input is one line and writes nothing, and the PyTorch twin starts from the same network."""
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from mlp import config as C
from mlp.cli import main
from mlp.report import baselines as B
from mlp.sweep import baselines as SB
from mlp.runs import baselines as RB
from mlp.runs.context import RunContext
from mlp.runs.data import read_idx
from mlp.runs.experiment import build, prepare
from mlp.runs.store import Store
from helpers.paths import DATA

QUICK = "logistic_regression,knn"


def test_the_baselines_validate_on_exactly_train_pys_rows(tmp_path):
    rows = SB.run_baselines(tmp_path / "s.sqlite", "fashion_mnist", data_dir=DATA, models=["knn"],
                           log=lambda line: None)
    # what a train.py run loads (the same prepare step, before anything is written)
    run = prepare(C.resolve({"data_dir": str(DATA), "wandb_mode": "disabled"}), RunContext())
    raw = read_idx(DATA / "fashion_mnist" / "train-images-idx3-ubyte.gz").reshape(-1, 784) / np.float32(255)
    assert np.array_equal(run.data.x_val, raw[run.data.val_index])          # the index names the rows used
    assert rows[0]["val_rows_sha256"] == run.data.val_rows_sha256
    assert (rows[0]["n_train"], rows[0]["n_val"]) == (len(run.data.x_train), len(run.data.x_val))
    with Store(tmp_path / "s.sqlite") as store:
        stored = store.list_baselines(val_rows_sha256=run.data.val_rows_sha256)
        assert [r["model"] for r in stored] == ["knn"] and stored[0]["val_accuracy"] == rows[0]["val_accuracy"]
        assert B.latest(store, run.data)[0]["id"] == stored[0]["id"]
    other = prepare(C.resolve({"data_dir": str(DATA), "wandb_mode": "disabled", "val_fraction": 0.2}),
                    RunContext())
    assert other.data.val_rows_sha256 != run.data.val_rows_sha256             # another split: another digest


def test_mlp_baselines_prints_stores_and_reports_progress(tmp_path):
    env = {**os.environ, "MLP_STORE": str(tmp_path / "s.sqlite")}
    proc = subprocess.run([sys.executable, "-m", "mlp", "baselines", "--data_dir", str(DATA), "--models", QUICK,
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["model"] for r in rows] == ["logistic_regression", "knn"]
    for r in rows:
        assert 0.5 < r["val_accuracy"] <= 1 and 0.5 < r["test_accuracy"] <= 1 and r["train_seconds"] >= 0
        assert r["library"].startswith("scikit-learn") and r["settings"]
    assert "baseline 1/2: logistic regression" in proc.stderr and "baseline 2/2: k-nearest" in proc.stderr
    db = sqlite3.connect(tmp_path / "s.sqlite")
    assert db.execute("SELECT count(*) FROM baselines").fetchone()[0] == 2
    proc = subprocess.run([sys.executable, "-m", "mlp", "baselines", "--data_dir", str(DATA), "--models", "knn"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[0].split() == ["MODEL", "VAL_ACC", "TEST_ACC", "TRAIN_S", "LIBRARY"]


@pytest.mark.parametrize("argv,fragment", [
    (["--models", "svm"], "unknown 'svm'"),
    (["--models", ","], "empty list"),
    (["--data_dir", "{tmp}/nowhere"], "nowhere"),
    (["--sweep", "nosuchid", "--models", "torch_twin"], "no mlp-sweeps store"),
    (["--sweep", "nosuchid", "--models", "knn"], "add torch_twin"),
    (["--split", "70-30"], "invalid choice"),
    (["--val_fraction", "1"], "out of range"),
    (["--jobs", "0"], "out of range"),
    (["-d", "cifar"], "invalid choice"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLP_STORE", str(tmp_path / "s.sqlite"))
    code = main(["baselines", "--data_dir", str(DATA), *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_autoencoder_sweep_has_no_twin(tmp_path, capsys):
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        sweep = store.create_sweep({"method": "grid", "metric": {"name": "val_r2", "goal": "maximize"},
                                    "parameters": {"task": {"value": "autoencoder"}}}, "", name="ae")
    assert main(["baselines", "--data_dir", str(DATA), "--store", str(store_path), "--sweep", sweep,
                 "--models", "torch_twin"]) == 2
    assert "baselines compare classifiers" in capsys.readouterr().err
    with Store(store_path) as store:
        assert store.list_baselines() == []


def test_the_twin_of_eve_or_averaging_is_refused_with_the_reason():
    assert "eve" in RB.twin_unsupported(C.resolve({"optimizer": "eve"}))
    assert "swa" in RB.twin_unsupported(C.resolve({"weight_averaging": "swa"}))
    assert RB.twin_unsupported(C.resolve({"preset": "best"})) is None


@pytest.mark.torch
def test_the_twin_scores_with_the_same_test_time_views():
    torch = pytest.importorskip("torch", reason="the live comparison needs torch (pip install '.[torch]')")
    config = C.resolve({"hidden_sizes": [32], "augment_shift": 1, "augment_flip": True, "augment_test": True})
    net, _ = build(config, 784, 10)
    model = RB.torch_model(net, torch)
    x = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    plain = RB.torch_predict(model, torch.from_numpy(x), torch)
    viewed = RB.torch_predict(model, torch.from_numpy(x), torch, (1, True))
    np.testing.assert_array_equal(plain, net.predict(x))
    net.set_test_views(1, True)
    np.testing.assert_array_equal(viewed, net.predict(x))
    assert (viewed != plain).any()


@pytest.mark.torch
@pytest.mark.parametrize("values", [
    {"optimizer": "adam", "weight_decay": 0.01},
    {"optimizer": "nag", "batch_norm": True, "loss": "mean_squared_error"},
    {"optimizer": "nadam", "activation": "tanh"},   # (Adam-like steps turn float32 noise in ~0 gradients into ±lr)
    {"optimizer": "momentum", "label_smoothing": 0.1, "activation": "gelu"},
])
def test_the_torch_twin_is_the_same_network_and_step(values):
    torch = pytest.importorskip("torch", reason="the live comparison needs torch (pip install '.[torch]')")
    config = C.resolve({"hidden_sizes": [32, 16], "learning_rate": 1e-2, **values})
    net, optimizer = build(config, 784, 10)
    model = RB.torch_model(net, torch).double()
    rng = np.random.default_rng(0)
    x = rng.random((16, 784), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    ours = net.predict_outputs(x)
    model.eval()
    theirs = model(torch.from_numpy(x).double()).detach().numpy()
    assert np.allclose(ours, theirs, atol=1e-4)                               # same weights, same layers
    # one training step: same loss, same updated first-layer weights
    model.train()
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    opt = RB.torch_optimizer(config, model.parameters(), torch)
    z = model(torch.from_numpy(x).double())
    if config["loss"] == "cross_entropy":
        loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(y), label_smoothing=config["label_smoothing"])
    else:
        onehot = torch.nn.functional.one_hot(torch.from_numpy(y), 10).double()
        loss = ((torch.softmax(z, 1) - onehot) ** 2).sum(1).mean()
    loss = loss + 0.5 * config["weight_decay"] * sum((w * w).sum() for w in weights)
    opt.zero_grad()
    loss.backward()
    grad = weights[0].grad.detach().numpy().T.copy()
    opt.step()
    step = net.train_pass(x, y)
    assert step.data_loss + step.l2 == pytest.approx(loss.item(), rel=1e-4)
    optimizer.step(net.params, step.grads, loss=step.data_loss + step.l2)
    ours, theirs = net.layers[0].params["W"], weights[0].detach().numpy().T
    # Adam-like steps are ±lr·g/(|g|+ε): where |g| is float32 noise near ε (pixels that are 0 in
    # every image of the batch) the two step by different fractions of lr, so those are compared
    # within one step; every weight with a real gradient must match
    real = np.abs(grad) > 1e-5
    assert real.mean() > 0.5 and np.allclose(ours[real], theirs[real], atol=1e-5)
    assert np.abs(ours - theirs).max() <= config["learning_rate"]
