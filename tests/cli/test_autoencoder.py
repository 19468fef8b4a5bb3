"""The autoencoder task (issue 15): R² against scikit-learn, the config rules of `--task`, a run on
the committed subset (metrics, model file, the addressable bottleneck), sweep files that fit the
task, and bad input."""
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import r2_score as sk_r2

from mlp import config as C
from mlp.cli import train_main
from mlp.core.layers import from_spec
from mlp.core.metrics import r2_score
from mlp.core.model_file import load_model
from mlp.core.network import Network
from mlp.errors import UsageError
from mlp.runs import autoencoder
from mlp.runs.data import load_dataset
from mlp.runs.experiment import build, train
from mlp.sweep.files import load_sweep_file, objective, sweep_task, validate_sweep_config
from helpers.paths import DATA, ROOT

AE = ["--task", "autoencoder", "--data_dir", str(DATA), "--hidden_sizes", "[64, 16, 64]", "-e", "2", "-b", "32",
      "-o", "adam", "-lr", "2e-3", "--wandb_mode", "disabled"]


# ---- R² --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r2_is_scikit_learns_variance_weighted_r2(seed):
    rng = np.random.default_rng(seed)
    y = rng.random((300, 50))
    y[:, 7] = 0.0                       # constant outputs (a border pixel black in every image) ...
    y[:, 8] = 0.25
    pred = y + rng.normal(0, 0.2, y.shape)
    pred[:, 7] = 0.3                     # ... mispredicted: scikit-learn leaves them out, so do we
    assert r2_score(y, pred) == pytest.approx(sk_r2(y, pred, multioutput="variance_weighted"), abs=1e-12)
    assert r2_score(y, y) == 1.0
    mean = np.broadcast_to(y.mean(axis=0), y.shape)
    assert r2_score(y, mean) == pytest.approx(0.0, abs=1e-12)
    assert r2_score(y.astype(np.float32), pred.astype(np.float32)) == pytest.approx(r2_score(y, pred), abs=1e-6)


def test_r2_edge_cases_follow_scikit_learn():
    c = np.zeros((10, 3))
    off = c + np.array([0.0, 1.0, 0.0])
    for pred in (c, off):   # every output constant: 1 if exact else 0, averaged
        assert r2_score(c, pred) == pytest.approx(sk_r2(c, pred, multioutput="variance_weighted"))
    assert np.isnan(r2_score(np.ones((1, 4)), np.ones((1, 4))))
    with pytest.raises(ValueError, match="shape"):
        r2_score(np.ones((4, 2)), np.ones((4, 3)))


# ---- config --------------------------------------------------------------------------------------

def test_the_loss_and_the_output_follow_the_task():
    ae = C.resolve({"task": "autoencoder"})
    assert (ae["loss"], ae["output_activation"]) == ("regression_squared_error", "sigmoid")
    assert C.resolve({"task": "autoencoder", "output_activation": "identity"})["output_activation"] == "identity"
    back = C.resolve({"task": "classify"}, base=ae)         # a sweep over task takes each task's defaults
    assert (back["loss"], back["output_activation"]) == ("cross_entropy", None)
    assert C.resolve({})["task"] == "classify" and C.resolve({})["output_activation"] is None
    assert C.run_name(ae).startswith("ae_hl_")


@pytest.mark.parametrize("values,fragment", [
    ({"task": "autoencoder", "loss": "cross_entropy"}, "leave --loss out"),
    ({"task": "autoencoder", "loss": "mse"}, "not mean_squared_error"),
    ({"loss": "regression_squared_error"}, "is a regression loss"),
    ({"output_activation": "identity"}, "autoencoder only"),
    ({"task": "autoencoder", "augment_flip": True}, "augment_flip"),
    ({"task": "autoencoder", "augment_shift": 2}, "augment_shift"),
    ({"task": "autoencoder", "label_smoothing": 0.1}, "label_smoothing"),
    ({"task": "autoencoder", "output_activation": "relu"}, "invalid choice"),
    ({"task": "regress"}, "invalid choice"),
])
def test_combinations_that_do_not_fit_the_task_are_refused(values, fragment):
    with pytest.raises(UsageError, match=fragment):
        C.resolve(values)


def test_bad_task_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (["--task", "autoencoder", "-l", "cross_entropy"], ["--task", "classify", "--output_activation", "sigmoid"],
                 ["--task", "autoencoder", "--preset", "best"]):
        assert train_main([*AE, *argv, "--store", str(tmp_path / "s.sqlite"), "--save_model", "m.npz"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


# ---- the network ---------------------------------------------------------------------------------------

def test_the_autoencoder_network_and_its_tagged_bottleneck():
    config = C.resolve({"task": "autoencoder", "hidden_sizes": [64, 16, 32], "batch_norm": True, "dropout": 0.1})
    net, _ = build(config, 784, 10)
    assert net.input_shape == (784,) and net.n_outputs == 784 and not net.is_classifier
    kinds = [layer.spec()["type"] for layer in net.layers]
    assert kinds[-2:] == ["dense", "activation"] and net.layers[-1].name == "sigmoid"
    assert net.layers[-1].tag == autoencoder.RECONSTRUCTION
    b = autoencoder.bottleneck_index(net)
    assert net.layers[b].spec()["type"] == "activation" and net.spec()["layers"][b]["tag"] == "bottleneck"
    h = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    for layer in net.layers[:b + 1]:
        h = layer.forward(h, training=False)
    assert h.shape == (5, 16)                                 # the narrowest hidden layer
    identity = C.resolve({"task": "autoencoder", "hidden_sizes": [32], "output_activation": "identity"})
    net, _ = build(identity, 784, 10)
    assert net.layers[-1].spec() == {"type": "dense", "units": 784, "bias": True} and net.layers[-1].tag == "reconstruction"
    flat, _ = build(C.resolve({"task": "autoencoder", "num_layers": 0}), 784, 10)
    assert autoencoder.bottleneck_index(flat) is None


def test_layer_tags_are_checked_and_unique():
    assert from_spec({"type": "dense", "units": 3, "tag": "code"}).tag == "code"
    for tag in ("", "12", 5, "a:b", " x", "x" * 65):
        with pytest.raises(UsageError, match="tag"):
            from_spec({"type": "dense", "units": 3, "tag": tag})
    with pytest.raises(UsageError, match="unique"):
        Network([{"type": "dense", "units": 3, "tag": "a"}, {"type": "dense", "units": 2, "tag": "a"}], (4,))


# ---- a run on the committed subset --------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ae")
    code = train_main([*AE, "--store", str(tmp / "s.sqlite"), "--save_model", str(tmp / "ae.npz"),
                       "--summary_json", str(tmp / "summary.json")])
    assert code == 0
    return tmp


def test_a_run_logs_r2_and_no_accuracy(run):
    summary = json.loads((run / "summary.json").read_text())["summary"]
    assert {"train_loss", "val_loss", "val_r2", "best_val_r2", "test_loss", "test_r2"} <= set(summary)
    assert not any("accuracy" in key for key in summary) and "confusion_matrix" not in summary
    assert 0.3 < summary["test_r2"] < 1 and summary["epochs_run"] == 2
    db = sqlite3.connect(run / "s.sqlite")
    history = [json.loads(m) for (m,) in db.execute("SELECT metrics_json FROM history ORDER BY epoch")]
    assert len(history) == 2 and all(set(h) == {"train_loss", "val_loss", "val_r2", "epoch_seconds"} for h in history)
    assert history[-1]["val_r2"] == summary["val_r2"]


def test_test_r2_and_test_loss_are_those_of_the_saved_model(run):
    summary = json.loads((run / "summary.json").read_text())["summary"]
    net = load_model(run / "ae.npz")
    data = load_dataset("fashion_mnist", data_dir=DATA)
    out = net.predict(data.x_test)
    assert out.shape == data.x_test.shape and out.min() >= 0 and out.max() <= 1      # a sigmoid output
    assert summary["test_r2"] == pytest.approx(sk_r2(data.x_test, out, multioutput="variance_weighted"), abs=1e-6)
    per_image = np.square(out.astype(np.float64) - data.x_test).sum(axis=1)          # Σ over the 784 pixels
    assert summary["test_loss"] == pytest.approx(per_image.mean(), rel=1e-5)           # then the mean over images
    assert net.spec()["layers"][autoencoder.bottleneck_index(net)]["tag"] == "bottleneck"
    assert net.extra["config"]["task"] == "autoencoder"


def test_the_bottleneck_feeds_a_classifier_by_default_and_by_tag(run, tmp_path, monkeypatch, capsys):
    """`--features ae.npz` (default layer) and `--features ae.npz:bottleneck` both train the head
    on the 16 bottleneck values; the head learns (chance is 0.10)."""
    monkeypatch.chdir(tmp_path)
    index = autoencoder.bottleneck_index(load_model(run / "ae.npz"))
    accuracies = []
    for features in (f"{run / 'ae.npz'}", f"{run / 'ae.npz'}:bottleneck"):
        capsys.readouterr()
        assert train_main(["--data_dir", str(DATA), "-e", "3", "-b", "32", "--hidden_sizes", "[32]",
                           "--wandb_mode", "disabled", "--store", "s.sqlite", "--features", features,
                           "--summary_json", "f.json"]) == 0
        assert f"features: layer {index} (bottleneck, 16 values)" in capsys.readouterr().err
        accuracies.append(json.loads(Path("f.json").read_text())["summary"]["test_accuracy"])
    assert accuracies[0] == accuracies[1] and accuracies[0] > 0.25     # measured 0.35-0.50 over seeds 0-3, 1-2 threads
    with pytest.raises(UsageError, match="bottleneck"):          # the error lists the tags it has
        from mlp.runs.features import load_frozen
        load_frozen(f"{run / 'ae.npz'}:nosuchlayer")


def test_early_stopping_watches_val_r2(tmp_path):
    data = load_dataset("fashion_mnist", data_dir=DATA)
    config = C.resolve({"task": "autoencoder", "hidden_sizes": [32], "epochs": 4, "early_stopping": 1,
                        "learning_rate": 5e-3, "optimizer": "adam", "batch_size": 64})
    net, history = train(config, data, progress=False)
    best = max(history, key=lambda row: row["val_r2"])
    assert r2_score(data.x_val, net.predict(data.x_val)) == pytest.approx(best["val_r2"], abs=1e-9)


# ---- sweep files --------------------------------------------------------------------------------------

def sweep(metric="val_r2", goal="maximize", **params):
    return {"program": "train.py", "method": "random", "metric": {"name": metric, "goal": goal},
            "parameters": {"task": {"value": "autoencoder"}, "learning_rate": {"values": [1e-3, 2e-3]}, **params},
            "command": ["${env}", "${interpreter}", "${program}", "${args}"]}


def test_an_autoencoder_sweep_optimises_val_r2_or_val_loss():
    validate_sweep_config(sweep())
    validate_sweep_config(sweep("val_loss", "minimize", output_activation={"values": ["sigmoid", "identity"]}))
    assert sweep_task(sweep()) == "autoencoder"
    assert sweep_task({"parameters": {"epochs": {"value": 1}}}) == "classify"
    assert sweep_task({"parameters": {"task": {"values": ["autoencoder"]}}}) == "autoencoder"
    assert sweep_task({"parameters": {"configuration": {"values": [{"task": "autoencoder", "epochs": 1}]}}}) == \
        "autoencoder"
    config, _ = load_sweep_file(ROOT / "sweeps" / "autoencoder.yaml")
    assert sweep_task(config) == "autoencoder" and config["metric"] == {"name": "val_r2", "goal": "maximize"}


def test_a_sweep_without_a_metric_is_judged_by_its_tasks_validation_metric():
    """What report, rerun, baselines and the agent rank by when a (grid or random) sweep names no
    metric: val_r2 for autoencoders, val_accuracy otherwise; a named metric is kept."""
    assert objective({"parameters": {"task": {"value": "autoencoder"}}}) == ("val_r2", "maximize")
    assert objective({"parameters": {"epochs": {"value": 1}}}) == ("val_accuracy", "maximize")
    assert objective({"metric": {"name": "val_loss", "goal": "minimize"},
                      "parameters": {"task": {"value": "autoencoder"}}}) == ("val_loss", "minimize")
    assert objective({"parameters": {"task": {"distribution": "uniform"}}}) == ("val_accuracy", "maximize")


@pytest.mark.parametrize("config,fragment", [
    (sweep("val_accuracy"), "autoencoder logs no accuracy"),
    (sweep("train_accuracy"), "autoencoder logs no accuracy"),
    (sweep("test_r2"), "test set"),
    (sweep("val_r2", "minimize"), "goal: maximize"),
    (sweep("val_loss", "maximize"), "goal: minimize"),
    (sweep(loss={"values": ["cross_entropy"]}), "does not fit task autoencoder"),
    (sweep(augment_flip={"values": [True, False]}), "does not fit task autoencoder"),
    (sweep(task={"values": ["classify", "autoencoder"]}), "one task"),
    (sweep(task={"distribution": "uniform", "min": 0, "max": 1}), "takes `value`"),
    ({**sweep(), "parameters": {"learning_rate": {"value": 1e-3}}, "metric": {"name": "val_r2", "goal": "maximize"}},
     "val_r2 is logged by --task autoencoder"),
    ({**sweep(), "parameters": {"learning_rate": {"value": 1e-3}, "output_activation": {"value": "sigmoid"}},
      "metric": {"name": "val_loss", "goal": "minimize"}}, "does not fit task classify"),
    ({**sweep(), "command": ["${env}", "${interpreter}", "${program}", "--task", "autoencoder", "${args}"]},
     "the command sets --task"),
])
def test_sweeps_whose_metric_or_values_do_not_fit_the_task_are_refused(config, fragment):
    with pytest.raises(UsageError, match=fragment):
        validate_sweep_config(config)


# ---- real data -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_documented_autoencoder_on_full_fashion_mnist(tmp_path):
    """The README's command, shortened to 4 epochs (its 10 epochs reach test R² 0.926): at epoch
    4 it measured validation R² 0.9007 with one BLAS thread; the bar sits 2 points under that."""
    import os
    import subprocess
    import sys
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() and \
            not os.environ.get("MLP_DATA_DIR"):
        pytest.skip("real Fashion-MNIST absent: apt-get install dataset-fashion-mnist (CI installs it)")
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--task", "autoencoder", "--hidden_sizes",
                        "[512, 128, 512]", "-o", "adam", "-lr", "1e-3", "-b", "128", "-e", "4", "--wandb_mode",
                        "disabled", "--store", str(tmp_path / "r.sqlite"), "--summary_json", "s.json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert s["val_r2"] >= 0.88 and s["test_r2"] >= 0.88, s
