"""The config schema (mlp/config.py): one validator for flags, sweep files and W&B's config."""
import math
import socket

import pytest

from helpers.fake_wandb import FakeWandb
from mlp import config as C
from mlp.errors import UsageError
from mlp.runs.context import RunContext, read_sweep_params
from mlp.runs.tracking import resolve_wandb_mode


def test_every_param_parses_its_default_and_its_text_form():
    for name, param in C.PARAMS.items():
        assert C.parse_value(name, param.default) == param.default, name
        if param.default is not None:
            text = "[" + ", ".join(map(str, param.default)) + "]" if isinstance(param.default, list) else str(param.default)
            assert C.parse_value(name, text) == param.default, name


def test_native_and_text_values_give_the_same_typed_value():
    assert C.parse_value("epochs", "10.0") == C.parse_value("epochs", 10.0) == 10
    assert C.parse_value("batch_norm", "True") is C.parse_value("batch_norm", True) is True
    assert C.parse_value("hidden_sizes", "[128, 64]") == C.parse_value("hidden_sizes", [128, 64]) == [128, 64]
    assert C.parse_value("activation", "LeakyReLU") == "leaky_relu"
    assert C.parse_value("loss", "mse") == "mean_squared_error"


FLOAT_PARAMS = [n for n, p in C.PARAMS.items() if p.kind == "float"]
INT_PARAMS = [n for n, p in C.PARAMS.items() if p.kind == "int"]


@pytest.mark.parametrize("name", FLOAT_PARAMS + INT_PARAMS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), "1e308", 10 ** 30, "-1", True,
                                   "abc", [1]])
def test_numbers_are_finite_and_in_range_or_refused(name, value):
    """Every numeric flag and sweep value: NaN, infinities, absurd sizes, wrong types are one-line
    ConfigErrors naming the parameter — or a value inside the parameter's documented range."""
    param = C.PARAMS[name]
    try:
        parsed = C.parse_value(name, value)
    except UsageError as e:
        assert str(e).startswith(f"{name}: ") and "\n" not in str(e)
        return
    assert isinstance(parsed, float if param.kind == "float" else int) and not isinstance(parsed, bool)
    assert math.isfinite(parsed)
    assert param.low is None or parsed >= param.low
    assert param.high is None or parsed <= param.high


def test_seeds_fit_numpy_and_wandb():
    assert C.parse_value("seed", 2 ** 32 - 1) == 2 ** 32 - 1
    for bad in (-1, 2 ** 32, 2 ** 63):
        with pytest.raises(UsageError, match="seed"):
            C.parse_value("seed", bad)


def test_resolve_applies_preset_then_values_and_checks_combinations():
    c = C.resolve({"preset": "best", "epochs": 3})
    assert c["epochs"] == 3 and c["hidden_sizes"] == [1024, 1024, 1024] and c["num_layers"] == 3
    assert C.resolve({"preset": "best", "dataset": "mnist"})["augment_flip"] is False
    with pytest.raises(UsageError, match="label_smoothing"):
        C.resolve({"loss": "mean_squared_error", "label_smoothing": 0.1})
    with pytest.raises(UsageError, match="unknown parameter 'colour'"):
        C.resolve({"colour": "red"})
    base = C.resolve({"epochs": 4})
    assert C.resolve({"learning_rate": 0.01}, base=base)["epochs"] == 4


def test_plumbing_is_not_a_hyperparameter():
    c = C.resolve({"store": "x.sqlite", "save_model": "m.npz"})
    hp = C.hyperparameters(c)
    assert "store" not in hp and "save_model" not in hp and "learning_rate" in hp
    where = {"store": "x.sqlite", "save_model": "m.npz", "summary_json": "s.json", "wandb_mode": "offline",
             "wandb_project": "p", "data_dir": "d", "resume": "abc123"}
    assert not set(C.hyperparameters(C.resolve(where))) & set(where)     # where things go is never "what is trained"


@pytest.mark.parametrize("project", ["", "a/b", "x" * 129, "what?"])
def test_wandb_names_follow_wandbs_rules(project):
    with pytest.raises(UsageError, match="wandb_project"):
        C.parse_value("wandb_project", project)


# ---- W&B mode and the run's context ------------------------------------------------------------------

@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_resolve_wandb_mode_auto_never_prompts(no_credentials, monkeypatch, capsys):
    assert resolve_wandb_mode("auto") == "offline"                  # nobody logged in: offline, no prompt
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("MLP_WANDB_TIMEOUT", "2")
    with FakeWandb() as server:                                      # logged in, the server answers: online
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        assert resolve_wandb_mode("auto") == "online"
    with socket.socket() as s:                                       # logged in, nothing answers: offline, said once
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
        assert resolve_wandb_mode("auto") == "offline"
    assert "is unreachable (connection refused): logging offline" in capsys.readouterr().err
    for env, mode in (("offline", "offline"), ("disabled", "disabled"), ("dryrun", "offline"), ("online", "online")):
        monkeypatch.setenv("WANDB_MODE", env)
        assert resolve_wandb_mode("auto") == mode
    assert resolve_wandb_mode("disabled") == "disabled"             # an explicit flag wins over WANDB_MODE


def test_online_without_credentials_is_a_usage_error(no_credentials, monkeypatch):
    with pytest.raises(UsageError, match="wandb login"):
        resolve_wandb_mode("online")
    no_credentials.write_text("machine api.wandb.ai login user password " + "p" * 40 + "\n")
    assert resolve_wandb_mode("online") == "online"                 # a netrc entry counts as logged in


def test_run_context_reads_and_checks_the_launchers_variables(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("wandb_version: 1\nlearning_rate: {value: 0.01}\nactivation: {value: tanh}\n")
    ctx = RunContext.from_environment({"WANDB_RUN_ID": "abc123", "WANDB_SWEEP_ID": "sw1", "WANDB_ENTITY": "me",
                                       "WANDB_PROJECT": "p", "WANDB_SWEEP_PARAM_PATH": str(params)})
    assert (ctx.run_id, ctx.sweep_id, ctx.entity, ctx.project) == ("abc123", "sw1", "me", "p")
    assert dict(ctx.sweep_params) == {"learning_rate": 0.01, "activation": "tanh"}
    for env, fragment in (({"WANDB_RUN_ID": "../etc"}, "WANDB_RUN_ID"), ({"WANDB_MODE": "sometimes"}, "WANDB_MODE"),
                          ({"WANDB_SWEEP_PARAM_PATH": str(tmp_path / "missing.yaml")}, "cannot read")):
        with pytest.raises(UsageError, match=fragment):
            RunContext.from_environment(env)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(UsageError, match="not a YAML text file"):
        read_sweep_params(binary)


def test_a_config_retargeted_to_digits_drops_flips():
    fashion = C.resolve({"preset": "best"})
    assert fashion["augment_flip"] is True
    digits = C.resolve(C.for_dataset(C.hyperparameters(fashion), "mnist"))
    assert digits["dataset"] == "mnist" and digits["augment_flip"] is False
    assert digits["hidden_sizes"] == fashion["hidden_sizes"]


def test_a_configuration_bundle_agrees_with_values_spelled_otherwise():
    """W&B's config holds both the run's canonical values and the sweep's `configuration` as the
    YAML wrote it: 'ReLU' and 'relu' are the same activation."""
    merged = C.expand_configuration({"activation": "relu", "epochs": 10,
                                     "configuration": {"activation": "ReLU", "epochs": 10.0, "num_layers": 2}})
    assert merged["num_layers"] == 2
    with pytest.raises(UsageError, match="activation"):
        C.expand_configuration({"activation": "tanh", "configuration": {"activation": "ReLU"}})
