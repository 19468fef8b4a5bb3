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


@pytest.mark.parametrize("project", ["", "a/b", "x" * 129, "what?", " ", "a\nb"])
def test_wandb_names_follow_wandbs_rules(project):
    with pytest.raises(UsageError, match="wandb_project"):
        C.parse_value("wandb_project", project)


# ---- spellings a tester found accepted or crashing -------------------------------------------------------

def _refused(name, value, fragment=""):
    """One line ConfigError naming the parameter (never OverflowError, never a value)."""
    with pytest.raises(C.ConfigError) as e:
        C.parse_value(name, value)
    message = str(e.value)
    assert message.startswith(f"{name}: ") and "\n" not in message and len(message) < 300, message
    assert fragment in message, message
    return message


def _yaml_int(text):
    import yaml
    return yaml.safe_load(f"v: {text}")["v"]


HUGE = [10 ** 400, -(10 ** 400), 10 ** 5000, "9" * 400, "-" + "9" * 400, "9" * 5000,
        _yaml_int("0x" + "f" * 400), _yaml_int("9" * 400)]


@pytest.mark.parametrize("name", INT_PARAMS + FLOAT_PARAMS)
@pytest.mark.parametrize("value", HUGE, ids=lambda v: f"{type(v).__name__}-{str(v)[:6]}" if not isinstance(v, int)
                         or abs(v) < 10 ** 4000 else "int-10**5000")
def test_numbers_beyond_a_float_are_out_of_range_not_a_crash(name, value):
    _refused(name, value)


def test_out_of_range_messages_show_the_number_and_the_range():
    assert _refused("epochs", "9" * 400) == \
        "epochs: a 400-digit number is out of range; it must be ≥ 1 and ≤ 100000"
    assert "a negative 400-digit number" in _refused("seed", -(10 ** 399))
    assert _refused("seed", 2 ** 32).endswith("4294967296 is out of range; it must be ≥ 0 and ≤ 4294967295")
    assert _refused("hidden_sizes", [8, 10 ** 400]).endswith("got a 401-digit number")
    assert "a 5000-digit number" in _refused("epochs", "9" * 5000)
    assert C.PARAMS["learning_rate"].range_text() == "> 0" and C.PARAMS["dropout"].range_text() == "≥ 0 and < 1"


@pytest.mark.parametrize("name", INT_PARAMS + FLOAT_PARAMS)
@pytest.mark.parametrize("value", ["1_0", "١", "١٠", "１", "٣.٥", "1_0.5", "1e1_0", "0x10", "1 0", "1,0", "²"])
def test_numbers_are_ascii_decimal(name, value):
    _refused(name, value)


@pytest.mark.parametrize("name,value,expected", [
    ("epochs", "10", 10), ("epochs", " 10 ", 10), ("epochs", "+10", 10), ("epochs", "10.0", 10), ("epochs", "1e1", 10),
    ("epochs", 10, 10), ("epochs", 10.0, 10), ("epochs", "00010", 10), ("seed", "4294967295", 2 ** 32 - 1),
    ("learning_rate", "1e-3", 1e-3), ("learning_rate", "1E-3", 1e-3), ("learning_rate", ".5", 0.5),
    ("learning_rate", "2.", 2.0), ("learning_rate", "+0.25", 0.25), ("learning_rate", "1e+2", 100.0),
    ("weight_decay", "0", 0.0), ("dropout", "0.5", 0.5),
])
def test_ascii_number_spellings_still_parse(name, value, expected):
    parsed = C.parse_value(name, value)
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "NaN"])
def test_nan_and_infinity_keep_their_messages(value):
    _refused("learning_rate", value, "NaN" if "nan" in value.lower() else "infinite")


@pytest.mark.parametrize("name", ["hidden_sizes", "conv_filters"])
@pytest.mark.parametrize("value", ["[8, 16", "(8, 16]", "8 16", "[8 16]", "[8,,16]", "8,16,", ",8", "[", "]", "(",
                                   "8]", "[8;16]", "[8, 16)", "{8, 16}", "[[8]]", "[8]]", "((8))", "[,]", "[8,16]x"])
def test_malformed_lists_are_refused(name, value):
    _refused(name, value)


@pytest.mark.parametrize("value,expected", [
    ("[8,16]", [8, 16]), ("[8, 16]", [8, 16]), ("8,16", [8, 16]), (" 8 , 16 ", [8, 16]), ("(8, 16)", [8, 16]),
    ("[8, 16,]", [8, 16]), ("(8,)", [8]), ("8", [8]), ("[8]", [8]), ("[8.0, 16]", [8, 16]), ([8, 16], [8, 16]),
    ((8, 16), [8, 16]), (8, [8]), ("None", None), ("null", None), (None, None),
])
def test_well_formed_lists_parse(value, expected):
    assert C.parse_value("hidden_sizes", value) == expected


@pytest.mark.parametrize("value", ["", "[]", "()", "[ ]", "none", None, []])
def test_an_empty_conv_filters_is_an_mlp(value):
    assert C.parse_value("conv_filters", value) is None


TEXT_NULLABLE = [n for n, p in C.PARAMS.items() if p.nullable and not p.empty_is_none]


@pytest.mark.parametrize("name", TEXT_NULLABLE)
@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_an_explicitly_empty_value_is_not_the_same_as_leaving_it_out(name, value):
    message = _refused(name, value, "empty")
    if C.PARAMS[name].path:
        assert "the path is empty" in message
    assert C.parse_value(name, None) is None      # absent (a W&B config's null) is still allowed
    assert C.resolve({name: None})[name] is None or name == "output_activation"


def test_the_path_params_are_the_paths():
    assert {n for n, p in C.PARAMS.items() if p.path} == {"data_dir", "store", "save_model", "summary_json", "features"}


@pytest.mark.parametrize("name", ["\x01", "a\nb", "ü\x01", "a\tb", "x\x7f", "a\u200bb", "\x1b[31mred", "a\u00a0b",
                                  "a\u2028b"])
@pytest.mark.parametrize("param", ["wandb_project", "wandb_entity"])
def test_wandb_names_are_printable(param, name):
    assert "printable" in _refused(param, name)


@pytest.mark.parametrize("variable", ["WANDB_ENTITY", "WANDB_PROJECT"])
@pytest.mark.parametrize("name", ["x\ny", "ü\x01", "a\tb"])
def test_wandb_names_in_the_environment_are_printable_too(monkeypatch, variable, name):
    from mlp.runs.wandb_access import check_wandb_environment
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv(variable, name)
    with pytest.raises(UsageError, match=variable):
        check_wandb_environment()


@pytest.mark.parametrize("name", ["ü-team", "my project", "team_1", "a" * 128, "日本"])
def test_printable_wandb_names_are_accepted(name):
    assert C.parse_value("wandb_entity", name) == C.check_wandb_name("entity", name) == name


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
