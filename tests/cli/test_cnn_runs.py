"""CNNs and frozen features end to end: train.py flags, saved models, `mlp evaluate`,
`train.py --features`, `mlp features`, bad combinations, the preset, a CNN sweep and its report —
all on the committed subset (tests/data), with tiny networks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlp import config as C
from mlp.cli import main as mlp_main
from mlp.cli import parse_train_args, train_main
from mlp.core.model_file import load_model
from mlp.core.network import MLP
from mlp.runs.data import load_dataset
from mlp.runs.store import Store

from helpers.promises import check_promise, files_in
from helpers.paths import DATA, ROOT

TINY_CNN = ["--data_dir", str(DATA), "-e", "1", "--conv_filters", "[4, 8]", "--hidden_sizes", "16",
            "--wandb_mode", "disabled", "-o", "adam", "-lr", "0.003"]


def summary(path):
    return json.loads(Path(path).read_text())


def test_flags_and_defaults():
    c = parse_train_args(["--conv_filters=[32, 64]", "--kernel_size=5", "--padding=VALID", "--pool=Global"])
    assert (c["conv_filters"], c["kernel_size"], c["padding"], c["pool"]) == ([32, 64], 5, "valid", "global")
    for empty in ("[]", "", "none"):        # empty = today's MLP
        assert parse_train_args(["--conv_filters", empty])["conv_filters"] is None
    d = C.resolve({})
    assert d["conv_filters"] is None and d["features"] is None and C.run_name(d).startswith("hl_")
    assert C.run_name(C.resolve({"conv_filters": [8, 16], "pool": "avg"})).startswith("cf_8-16_k_3_same_avg_hl_5")
    p = C.resolve({"preset": "cnn"})
    assert p["conv_filters"] and p["augment_flip"] and p["batch_norm"]
    assert p["augment_test"] and p["epochs"] == 30
    on_mnist = C.resolve({"preset": "cnn", "dataset": "mnist"})      # no flips, so no flipped test views
    assert on_mnist["augment_flip"] is False and on_mnist["augment_test"] is False
    assert C.resolve({"preset": "cnn", "epochs": 2})["epochs"] == 2


def test_a_cnn_trains_saves_and_evaluates(work, capsys):
    code = train_main([*TINY_CNN, "--batch_norm", "--dropout", "0.1", "--save_model", "cnn.npz",
                       "--summary_json", "s.json"])
    assert code == 0, capsys.readouterr()
    s = summary(work / "s.json")
    assert s["config"]["conv_filters"] == [4, 8] and s["config"]["pool"] == "max"
    assert s["summary"]["test_accuracy"] > 0.4          # 1 epoch on 1,800 images: well above chance
    net = load_model(work / "cnn.npz")
    assert [n for n in net.layer_names() if n.startswith("conv")] == ["conv2d_1", "conv2d_2"]
    assert net.layers[1].params["W"].shape == (4, 1, 3, 3)
    capsys.readouterr()
    assert mlp_main(["evaluate", "cnn.npz", "--data_dir", str(DATA), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == s["summary"]["test_accuracy"]
    with Store(work / "s.sqlite") as store:
        run = store.get_run(s["run_id"])
        assert run["config"]["conv_filters"] == [4, 8] and run["name"].startswith("cf_4-8_")


def test_features_run_and_command(work, capsys):
    assert train_main([*TINY_CNN, "--save_model", "cnn.npz"]) == 0
    capsys.readouterr()
    # the MLP head on the frozen conv features: logged like any run, saved as one network on pixels
    code = train_main(["--data_dir", str(DATA), "-e", "2", "--hidden_sizes", "32", "--wandb_mode", "disabled",
                       "--features", "cnn.npz:flatten_1", "--save_model", "head.npz", "--summary_json", "f.json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "features: layer 7 (flatten_1, 392 values)" in err
    s = summary(work / "f.json")
    assert s["config"]["features"] == "cnn.npz:flatten_1" and s["summary"]["epochs_run"] == 2
    stacked = load_model(work / "head.npz")
    assert stacked.input_shape == (784,) and stacked.extra["features"]["layer"] == "flatten_1"
    assert mlp_main(["evaluate", "head.npz", "--data_dir", str(DATA), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == pytest.approx(s["summary"]["test_accuracy"],
                                                                                 abs=0.002)
    # an MLP's penultimate layer works the same way (the default layer)
    assert train_main(["--data_dir", str(DATA), "-e", "1", "-nhl", "2", "-sz", "24", "--wandb_mode", "disabled",
                       "--save_model", "mlp.npz"]) == 0
    assert train_main(["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled",
                       "--features", "mlp.npz", "--summary_json", "p.json"]) == 0
    assert "layer 3 (activation_2, 24 values)" in capsys.readouterr().err
    # mlp features: the table, then the arrays
    assert mlp_main(["features", "cnn.npz", "--list"]) == 0
    table = capsys.readouterr().out
    assert "max_pool2d_2" in table and "8×7×7" in table and "default features layer: 9 (activation_3)" in table
    assert mlp_main(["features", "cnn.npz", "--layer", "max_pool2d_2", "--data_dir", str(DATA),
                     "--out", "f.npz"]) == 0
    with np.load(work / "f.npz") as f:
        meta = json.loads(str(f["__meta__"]))
        assert f["x_train"].shape == (1800, 8, 7, 7) and f["x_test"].shape == (500, 8, 7, 7)
        assert f["x_train"].dtype == np.float32 and len(f["y_val"]) == 200
        assert meta["layer"] == "max_pool2d_2" and meta["index"] == 6 and meta["dataset"] == "fashion_mnist"
        net = load_model(work / "cnn.npz")
        x_test = load_dataset("fashion_mnist", data_dir=DATA).x_test[:5]
        np.testing.assert_allclose(f["x_test"][:5], net.features(x_test, 6), rtol=1e-5, atol=1e-6)
    assert mlp_main(["features", "cnn.npz:-3", "--data_dir", str(DATA)]) == 0   # by index from the end
    with np.load(work / "cnn.dense_1.features.npz") as f:
        assert json.loads(str(f["__meta__"]))["layer"] == "dense_1" and f["x_test"].shape[0] == 500


BAD = [
    (["--kernel_size", "4"], "even kernel"),
    (["--kernel_size", "2", "--padding", "same"], "even kernel"),
    (["--conv_filters", "[4, 4, 4, 4, 4]"], "smaller than the 2×2 kernel"),
    (["--kernel_size", "9", "--padding", "valid", "--conv_filters", "[4, 4, 4]"], "smaller than the 9×9 kernel"),
    (["--kernel_size", "29"], "kernel_size"),
    (["--pool", "min"], "invalid choice"),
    (["--padding", "full"], "invalid choice"),
    (["--conv_filters", "[5000]"], "at most 4096"),
    (["--conv_filters", "[4096, 4096, 4096]", "--pool", "none", "-b", "4096"], "GiB"),
    (["--features", "cnn.npz"], "takes no --conv_filters"),
]


@pytest.mark.parametrize("argv,match", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_cnn_combinations_are_one_line_and_write_nothing(work, capsys, argv, match):
    before = files_in(work)
    code = train_main([*TINY_CNN, *argv])
    out, err = capsys.readouterr()
    assert code == 2 and match in err, err
    check_promise(code, out, err, work, before)


def _bad_features(work):
    np.savez(work / "junk.npz", a=np.zeros(3))
    (work / "big.npz").write_bytes(b"")
    return [
        (["--features", "missing.npz"], "does not exist"),
        (["--features", "junk.npz"], "metadata"),
        (["--features", "cnn.npz:conv2d_7"], "no layer named 'conv2d_7'"),
        (["--features", "cnn.npz:40"], "does not exist"),
        (["--features", "cnn.npz:"], "names no layer"),
        (["--features", "cnn.npz", "--augment_flip"], "--augment_shift/--augment_flip"),
        (["--features", "cnn.npz", "--augment_shift", "2"], "--augment_shift/--augment_flip"),
        (["--features", "cnn.npz:conv2d_1", "-sz", "100000000", "-nhl", "2"], "GiB"),
        (["--features", "head.npz"], "takes inputs of shape (392,)"),
    ]


def test_bad_features_are_one_line_and_write_nothing(work, capsys):
    assert train_main([*TINY_CNN, "--save_model", "cnn.npz", "--store", "other.sqlite"]) == 0
    MLP([392, 4, 10]).save(work / "head.npz")
    cases = _bad_features(work)
    capsys.readouterr()
    for argv, match in cases:
        before = files_in(work)
        code = train_main(["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled",
                           *argv])
        out, err = capsys.readouterr()
        assert code == 2 and match in err, (argv, err)
        check_promise(code, out, err, work, before)
    for argv, match in ((["features", "cnn.npz", "--layer", "x"], "no layer named"),
                        (["features", "cnn.npz:1", "--layer", "2"], "given twice"),
                        (["features", "missing.npz"], "does not exist"),
                        (["features", "cnn.npz", "--out", "adir/"], "names a folder"),
                        (["features", "cnn.npz", "--out", "adir"], "is a folder"),
                        (["features", "cnn.npz", "--data_dir", str(work / "nowhere")], "")):
        (work / "adir").mkdir(exist_ok=True)
        before = files_in(work)
        assert mlp_main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert match in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert files_in(work) == before


CNN_TINY = {  # a bayes sweep over CNN architectures on the committed subset
    "name": "cnn-tiny", "program": "train.py", "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 1},
                   "conv_filters": {"values": [[4, 8], [4, 4], []]}, "pool": {"values": ["max", "avg", "global"]},
                   "kernel_size": {"values": [3, 5]}, "hidden_sizes": {"value": [16]}, "batch_size": {"value": 64},
                   "optimizer": {"value": "adam"}},
    "command": ["${env}", "${interpreter}", "${program}", "${args}"],
}


def test_cnn_sweep_runs_lists_and_reports(tmp_path):
    """conv_filters, kernel_size and pool as sweep parameters (an empty filter list is an MLP),
    their columns in `mlp runs`, their axes in the report."""
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "WANDB_MODE": "offline",
           "MLP_STORE": str(tmp_path / "s.sqlite")}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH"):
        env.pop(key, None)

    def mlp(*args):
        return subprocess.run([sys.executable, "-m", "mlp", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)

    spec = tmp_path / "cnn_tiny.yaml"
    spec.write_text(yaml.safe_dump(CNN_TINY, sort_keys=False))
    proc = mlp("sweep", str(spec), "--count", "4", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = proc.stdout.splitlines()[0].strip()
    runs = json.loads(mlp("runs", sweep, "--json").stdout)
    assert len(runs) == 4 and {r["state"] for r in runs} == {"finished"}, runs
    table = mlp("runs", sweep).stdout
    assert "conv_filters" in table.splitlines()[0] and "pool" in table.splitlines()[0]
    proc = mlp("report", sweep, "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "conv_filters" in md and "pool" in md
    assert "| network |" in md and ("CNN [4, " in md or "MLP 1×16" in md)   # the run tables name the network
    assert (tmp_path / "report" / "parallel_coordinates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "parallel_coordinates.png" in md


def test_sweep_file_cnn_yaml_is_valid():
    from mlp.sweep.agent import prepare_sweep
    config = prepare_sweep(ROOT / "sweeps" / "cnn.yaml")[0]
    params = config["parameters"]
    assert {"conv_filters", "kernel_size", "pool", "weight_init"} <= set(params)
    assert config["metric"]["name"] == "val_accuracy" and config["early_terminate"]["type"] == "hyperband"
    for filters in params["conv_filters"]["values"]:
        for k in params["kernel_size"]["values"]:
            for pool in params["pool"]["values"]:
                C.resolve({"conv_filters": filters, "kernel_size": k, "pool": pool, "padding": "same"})


def test_architecture_in_words():
    from mlp.report.analysis import architecture
    assert architecture({"config": C.resolve({})}) == "MLP 5×128"
    assert architecture({"config": C.resolve({"conv_filters": [32, 64], "hidden_sizes": [256]})}) == \
        "CNN [32, 64] k3 same, max pool → 1×256"
    assert architecture({"config": C.resolve({"conv_filters": [8], "pool": "global", "hidden_sizes": [16, 8]})}) == \
        "CNN [8] k3 same, global average pooling → [16, 8]"
    assert architecture({"config": C.resolve({"features": "m.npz:flatten_1", "num_layers": 0})}) == \
        "MLP no hidden layer on features of m.npz:flatten_1"


@pytest.mark.slow
def test_a_small_cnn_beats_the_same_size_mlp_after_one_epoch():
    """One epoch on the real Fashion-MNIST: conv [8, 16] (3×3, max pool) + a 32-unit head (26,698
    parameters) against an MLP 784-32-10 (25,450), same optimizer, batch, initialisation and seed.
    Measured on the 2-core machine, seeds 0-2 × 1 and 2 BLAS threads: CNN test 0.8572-0.8681
    (validation 0.8612-0.8742), MLP test 0.8185-0.8316 (validation 0.8253-0.8363); the CNN led
    by 2.7-3.9 points of test accuracy in every pair. The bar — a lead of 1 point on both sets —
    sits well under that, while a broken conv layer (which would train no better than a 784-d
    linear readout of noise) still fails it."""
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() \
            and not os.environ.get("MLP_DATA_DIR"):
        pytest.skip("real Fashion-MNIST absent: apt-get install dataset-fashion-mnist (CI installs it)")
    from mlp.runs.experiment import train
    data = load_dataset("fashion_mnist")
    common = {"epochs": 1, "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64, "weight_init": "he",
              "hidden_sizes": [32], "seed": 0}
    scores = {}
    for kind, extra in (("cnn", {"conv_filters": [8, 16]}), ("mlp", {})):
        net, history = train(C.resolve({**common, **extra}), data, progress=False)
        scores[kind] = (history[-1]["val_accuracy"], net.evaluate(data.x_test, data.y_test)[1],
                        sum(p.size for p in net.params))
    (cnn_val, cnn_test, cnn_size), (mlp_val, mlp_test, mlp_size) = scores["cnn"], scores["mlp"]
    assert abs(cnn_size - mlp_size) / mlp_size < 0.06, scores      # the same size
    assert cnn_val - mlp_val >= 0.01 and cnn_test - mlp_test >= 0.01, scores
    assert cnn_test >= 0.84, scores
