"""The README's "Extending" recipes run as written: each snippet is taken out of README.md,
executed in the namespace of the file it belongs in, registered the way its registry line does,
and then used — trained, gradient-checked, saved, rendered."""
import re

import numpy as np
import pytest

from mlp.cli import train_main
from mlp.core import activations, layers, optimizers
from mlp.core.model_file import load_model
from mlp.core.network import Network
from helpers.gradients import check_network
from helpers.paths import DATA, ROOT
from helpers.report_runs import good_and_chance, sweep



def snippet(kind):
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- extending: {kind} -->\n```python\n(.*?)```", text, flags=re.S)
    assert match, f"README has no '{kind}' snippet"
    return match.group(1)


@pytest.fixture
def registries(monkeypatch):
    """Copies of the registries, so what a test registers is gone afterwards."""
    monkeypatch.setattr(activations, "ACTIVATIONS", dict(activations.ACTIVATIONS))
    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(optimizers.OPTIMIZERS))
    monkeypatch.setattr(layers, "LAYERS", dict(layers.LAYERS))


@pytest.fixture
def quiet(tmp_path, monkeypatch):
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "MLP_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLP_STORE", str(tmp_path / "s.sqlite"))
    monkeypatch.chdir(tmp_path)


def test_a_new_activation(registries, quiet, capsys):
    exec(snippet("activation"), vars(activations))
    from mlp import MLP
    net = MLP([5, 7, 4], activation="softplus", seed=1, dtype="float64")
    rng = np.random.default_rng(0)
    check_network(net, rng.standard_normal((6, 5)), rng.integers(0, 4, 6))
    assert train_main(["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "-a", "Softplus",
                       "--wandb_mode", "disabled"]) == 0, capsys.readouterr().err


def test_a_new_optimizer(registries, quiet, capsys):
    exec(snippet("optimizer"), vars(optimizers))
    opt = optimizers.get("adagrad", learning_rate=0.1)
    p = np.array([1.0, -2.0])
    for g in ([0.5, 1.0], [0.5, -1.0]):
        opt.step([p], [np.array(g)])
    # by hand: G = 0.25 → p0 = 1 − 0.1·0.5/0.5 = 0.9; G = 0.5 → p0 = 0.9 − 0.1·0.5/√0.5
    np.testing.assert_allclose(p, [0.9 - 0.05 / np.sqrt(0.5), -2.1 + 0.1 / np.sqrt(2.0)])
    state = opt.state_dict()                       # checkpointing comes with the base class
    assert state["optimizer"] == "adagrad" and state["step"] == 2
    np.testing.assert_allclose(state["state.0.sum"], [0.5, 2.0])
    assert train_main(["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "-o", "adagrad",
                       "-lr", "0.05", "--wandb_mode", "disabled"]) == 0, capsys.readouterr().err


def test_a_new_layer(registries, tmp_path):
    exec(snippet("layer"), vars(layers))           # the class with its decorator line, nothing else
    spec = [{"type": "dense", "units": 6}, {"type": "Scale"}, {"type": "activation", "name": "tanh"},
            {"type": "Dense", "units": 3}]            # types match case-insensitively, as every registry's
    net = Network(spec, input_shape=(5,), dtype="float64", seed=0)
    net.layers[1].params["g"][...] = np.linspace(0.5, 1.5, 6)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    check_network(net, X, y)
    net.save(tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert [type(layer).__name__ for layer in back.layers] == ["Dense", "Scale", "Activation", "Dense"]
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def test_a_new_report_figure(monkeypatch, tmp_path):
    from mlp.report import figures as F
    from mlp.report import registry
    from mlp.report.build import render_figures
    from mlp.report.collect import prepare
    monkeypatch.setattr(registry, "FIGURES", {k: f for k, f in registry.FIGURES.items() if f.section == "runs"})
    monkeypatch.setattr(registry, "SECTIONS", {"runs": registry.SECTIONS["runs"]})
    try:
        exec(snippet("figure"), vars(F))                    # the function, in figures.py's namespace (plt, A)
        exec(snippet("figure-registry"), vars(registry))    # the registry line, in registry.py's
        figures = render_figures(prepare(sweep(), good_and_chance(12, 1)), tmp_path)
    finally:
        vars(F).pop("metric_histogram", None)
    assert "metric_histogram" in figures and (tmp_path / "metric_histogram.png").read_bytes()[:4] == b"\x89PNG"
