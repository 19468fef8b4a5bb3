"""The parameter file a sweep's agent hands a run (WANDB_SWEEP_PARAM_PATH): it may set exactly what a
sweep file may sweep (one rule, `mlp.runs.context.sweepable`, shared with the sweep-file check), and
anything else in it — plumbing that would redirect the store or the model, a preset, an unknown key,
a value nested thousands deep, a FIFO, a directory — is one line `error: …`, exit code 2, nothing
written (no store, no W&B folder, no run row), and no hang."""
import os
import subprocess
import sys

import pytest
import yaml

from mlp import config as C
from mlp.cli import train_main
from mlp.errors import UsageError
from mlp.runs.context import MAX_PARAM_DEPTH, RunContext, read_sweep_params, sweepable
from mlp.sweep.files import validate_sweep_config

from helpers.paths import DATA, ROOT
from helpers.promises import files_in, one_line_error

TINY = ["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled"]
PLUMBING = [name for name in C.PLUMBING if not sweepable(name)]
# a value each plumbing key would take on the command line (the file must refuse it anyway)
PLUMBING_VALUES = {"wandb_project": "p", "wandb_entity": "e", "wandb_mode": "offline", "store": "other.sqlite",
                   "save_model": "elsewhere.npz", "summary_json": "s.json", "preset": "cnn", "resume": "abc123"}


def _write(path, doc):
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def _entries(**values):
    return {"wandb_version": 1, **{k: {"value": v} for k, v in values.items()}}


def _refused(path, *words):
    with pytest.raises(UsageError) as e:
        read_sweep_params(path)
    message = str(e.value)
    assert "\n" not in message and "WANDB_SWEEP_PARAM_PATH" in message, message
    for word in words:
        assert word in message, message
    return message


# ---- one rule for sweep files and parameter files --------------------------------------------------

def test_the_plumbing_list_covers_every_key_that_says_where_things_go():
    assert set(PLUMBING) == set(C.PLUMBING) - {"data_dir"}
    assert set(PLUMBING) <= set(PLUMBING_VALUES)
    assert sweepable("data_dir") and not sweepable("nosuch") and not sweepable("configuration")


@pytest.mark.parametrize("name", sorted(C.PARAMS))
def test_a_key_is_accepted_by_the_parameter_file_exactly_when_a_sweep_file_may_sweep_it(tmp_path, name):
    """The same answer from both checks, for every parameter train.py has."""
    value = PLUMBING_VALUES.get(name, C.DEFAULTS[name])
    if value is None:
        value = {"hidden_sizes": [8], "conv_filters": [4], "features": "m.npz", "output_activation": "sigmoid",
                 "data_dir": "tests/data"}[name]
    extra = {"task": "autoencoder"} if name == "output_activation" else {}
    path = _write(tmp_path / "p.yaml", _entries(**{name: value}, **extra))
    sweep = {"method": "random", "parameters": {name: {"value": value}, **{k: {"value": v} for k, v in extra.items()}}}
    try:
        validate_sweep_config(sweep, "s.yaml")
        file_ok = True
    except UsageError as e:
        assert "cannot be swept" in str(e), e
        file_ok = False
    if sweepable(name):
        assert file_ok and read_sweep_params(path)[name] == value
    else:
        assert not file_ok
        _refused(path, repr(name), "cannot set it")


# ---- keys the file may not hold --------------------------------------------------------------------

@pytest.mark.parametrize("name", PLUMBING)
def test_plumbing_in_the_parameter_file_is_refused(tmp_path, name):
    _refused(_write(tmp_path / "p.yaml", _entries(epochs=1, **{name: PLUMBING_VALUES[name]})), repr(name))


@pytest.mark.parametrize("name", PLUMBING)
def test_plumbing_inside_a_configuration_is_refused(tmp_path, name):
    doc = _entries(configuration={"epochs": 1, name: PLUMBING_VALUES[name]})
    _refused(_write(tmp_path / "p.yaml", doc), repr(name))


@pytest.mark.parametrize("preset", sorted(C.PRESETS))
def test_a_preset_is_refused_not_ignored(tmp_path, preset):
    _refused(_write(tmp_path / "p.yaml", _entries(preset=preset, epochs=1)), "'preset'")


@pytest.mark.parametrize("text,words", [
    ("colour: {value: red}\n", ["'colour'", "not a train.py parameter"]),
    ("1: {value: 2}\n", ["'1'"]),
    ("'': {value: 2}\n", ["''"]),
    ("Epochs: {value: 2}\n", ["'Epochs'"]),
    ("configuration: {value: {nosuch: 1}}\n", ["'nosuch'"]),
    ("configuration: {value: [1, 2]}\n", ["configuration must be a mapping"]),
    ("configuration: {value: {configuration: {epochs: 1}}}\n", ["cannot hold another"]),
    ("epochs: 3\n", ["entry 'epochs' must be `{value: ...}`"]),
    ("epochs: {values: [3]}\n", ["entry 'epochs'"]),
    ("- epochs\n- 3\n", ["must hold a mapping"]),
    ("just text\n", ["must hold a mapping"]),
    ("42\n", ["must hold a mapping"]),
    ("epochs: {value: 1\n", ["not a YAML text file"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unknown_keys_and_shapes_are_refused(tmp_path, text, words):
    _refused(_write(tmp_path / "p.yaml", text), *words)


@pytest.mark.parametrize("depth", [MAX_PARAM_DEPTH + 1, 50, 900, 5000, 100_000])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, depth):
    path = _write(tmp_path / "p.yaml", "epochs: {value: " + "[" * depth + "1" + "]" * depth + "}\n")
    _refused(path, "nested")


def test_deep_nesting_at_the_top_level_too(tmp_path):
    _refused(_write(tmp_path / "p.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_real_parameter_files_still_read(tmp_path):
    """What W&B's agent and `mlp agent` write: `wandb_version`, `_wandb` (W&B's own, nested
    deeper than any parameter), parameters, a configuration with a list of widths."""
    doc = {"wandb_version": 1, "_wandb": {"value": {"t": {"1": [1, 2, {"a": [[[[1]]]]}]}}},
           "epochs": {"value": 2}, "data_dir": {"value": "tests/data"},
           "configuration": {"value": {"hidden_sizes": [16, 8], "activation": "tanh"}}}
    assert read_sweep_params(_write(tmp_path / "p.yaml", doc)) == \
        {"epochs": 2, "data_dir": "tests/data", "hidden_sizes": [16, 8], "activation": "tanh"}
    assert read_sweep_params(_write(tmp_path / "empty.yaml", "")) == {}


# ---- what the path names ---------------------------------------------------------------------------

def test_a_directory_missing_file_or_device_is_refused(tmp_path):
    _refused(tmp_path, "is a directory")
    _refused(tmp_path / "missing.yaml", "cannot read")
    _refused("/dev/null", "not a regular file")
    link = tmp_path / "link.yaml"
    link.symlink_to(_write(tmp_path / "real.yaml", _entries(epochs=2)))
    assert read_sweep_params(link) == {"epochs": 2}            # a symlink to a regular file is fine


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    """Run in a child with a deadline: a regression would block in open() forever."""
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    code = ("from mlp.runs.context import read_sweep_params\nfrom mlp.errors import UsageError\n"
            f"try:\n    read_sweep_params({str(fifo)!r})\nexcept UsageError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and "not a regular file" in p.stdout, p.stdout + p.stderr


# ---- through train.py: exit 2, one line, nothing written -------------------------------------------

@pytest.mark.parametrize("doc", [
    _entries(store="other.sqlite"), _entries(save_model="elsewhere.npz"), _entries(preset="cnn", epochs=1),
    _entries(resume="abc123"), _entries(summary_json="s.json"), _entries(colour="red"),
    "epochs: {value: " + "[" * 5000 + "1" + "]" * 5000 + "}\n",
], ids=["store", "save_model", "preset", "resume", "summary_json", "unknown", "deep"])
def test_train_refuses_the_parameter_file_and_writes_nothing(work, monkeypatch, capsys, doc):
    path = _write(work / "params.yaml", doc)
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(path))
    before = files_in(work)
    code = train_main(list(TINY))
    out, err = capsys.readouterr()
    one_line_error((code, err), "WANDB_SWEEP_PARAM_PATH")
    assert files_in(work) == before, "a refused parameter file wrote something"
    assert not (work / "other.sqlite").exists() and not (work / "elsewhere.npz").exists()


def test_train_given_a_fifo_as_its_parameter_file_exits_2_at_once(tmp_path):
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "MLP_STORE"}
    env.update(WANDB_SWEEP_PARAM_PATH=str(fifo), MLP_STORE=str(tmp_path / "s.sqlite"), WANDB_DIR=str(tmp_path),
               WANDB_MODE="disabled")
    before = files_in(tmp_path)
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    one_line_error(p, "not a regular file")
    assert files_in(tmp_path) == before


def test_run_context_reads_a_good_file(tmp_path):
    path = _write(tmp_path / "p.yaml", _entries(epochs=3, activation="tanh", data_dir="tests/data"))
    ctx = RunContext.from_environment({"WANDB_SWEEP_PARAM_PATH": str(path)})
    assert dict(ctx.sweep_params) == {"epochs": 3, "activation": "tanh", "data_dir": "tests/data"}


def test_a_parameter_file_with_an_unreadable_scalar_is_one_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seed:\n  value: " + "9" * 5000 + "\n")
    with pytest.raises(UsageError, match="is not a YAML text file"):
        read_sweep_params(f)
