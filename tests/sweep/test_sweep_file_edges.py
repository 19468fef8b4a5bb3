"""Sweep files at their edges, by class: search spaces too large to list (sizes are counted, never
listed; a grid W&B's engine would list is refused), commands with macros W&B's agent does not
expand, parameters that are valid alone but not together (every combination of representative
values is resolved as a run would be, and sized against this machine's memory), files that are
not regular files, and sweep configs read back from the store. Each refusal is one line, exit code
2 from the CLI, and nothing written: no store, no sweep row, no run row left pending.

Pure validation runs in-process; the CLI cases run as subprocesses with a deadline (a hang fails,
it does not block) and, where a regression would allocate without bound, under an address-space
limit (RLIMIT_AS) so it fails with MemoryError instead of taking the machine down."""
import json
import os
import resource
import subprocess
import sys
import time

import pytest
import yaml

from mlp.errors import UsageError
from mlp.networks import physical_memory
from mlp.runs.store import Store
from mlp.sweep.agent import Agent
from mlp.sweep.engine import (DEFAULT_COMMAND, ENUMERATE_UP_TO, MACROS, MAX_GRID_POINTS, engine, finite_space,
                              grid_size, parameter_values, propose)
from mlp.sweep.files import MAX_COMBINATIONS, load_sweep_file, validate_sweep_config

from helpers.paths import ROOT
from helpers.promises import one_line_error, store_rows

GIB = 1 << 30
METRIC = {"name": "val_accuracy", "goal": "maximize"}
SMALL = {"data_dir": {"value": "tests/data"}, "epochs": {"value": 1}, "num_layers": {"value": 1},
         "hidden_size": {"value": 8}}


def sweep(method="random", command=None, **params):
    config = {"program": "train.py", "method": method, "metric": dict(METRIC),
              "parameters": {**SMALL, **params}, "command": list(command or DEFAULT_COMMAND)}
    return config


def refused(config, *words, memory=True):
    """The config is refused in-process with one line holding every word; returns the line."""
    with pytest.raises(UsageError) as e:
        validate_sweep_config(config, "s.yaml", machine_memory=memory)
    message = str(e.value)
    assert "\n" not in message and message.startswith("s.yaml"), message
    for word in words:
        assert word in message, message
    return message


def accepted(config, memory=True):
    validate_sweep_config(config, "s.yaml", machine_memory=memory)


def _limited(gib):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (gib * GIB, gib * GIB))
    return limit


def run_mlp(tmp_path, *args, limit_gib=None, timeout=120):
    """`mlp ...` from the repository (where train.py is), store and W&B files in tmp_path, with a
    deadline and optionally an address-space limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in ("MLP_STORE",)}
    env.update(WANDB_DIR=str(tmp_path), WANDB_SILENT="true", WANDB_MODE="offline", MLP_STORE=str(tmp_path / "s.sqlite"))
    return subprocess.run([sys.executable, "-m", "mlp", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limited(limit_gib) if limit_gib else None)


def write(tmp_path, config, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


# ---- 1. search spaces: counted, never listed ---------------------------------------------------------

HUGE_GRIDS = {
    "int_uniform seed 0..2^32-1": {"seed": {"distribution": "int_uniform", "min": 0, "max": 2 ** 32 - 1}},
    "int_uniform without distribution": {"seed": {"min": 0, "max": 2 ** 32 - 1}},
    "int_uniform hidden_size 1..1e8": {"hidden_size": {"distribution": "int_uniform", "min": 1, "max": 10 ** 8}},
    "q_uniform tiny q": {"learning_rate": {"distribution": "q_uniform", "min": 1e-4, "max": 1.0, "q": 1e-12}},
    "q_uniform int seed": {"seed": {"distribution": "q_uniform", "min": 0, "max": 2 ** 32 - 1, "q": 1}},
    "10 lists of 100": {name: {"values": list(range(1, 101))} for name in
                        ("seed", "early_stopping", "warmup_epochs", "batch_size", "epochs")} |
                       {name: {"values": [i / 200 for i in range(100)]} for name in
                        ("dropout", "momentum", "beta", "beta1", "input_dropout")},
    "two lists of 101": {"seed": {"values": list(range(101))}, "early_stopping": {"values": list(range(101))}},
}


@pytest.mark.parametrize("params", HUGE_GRIDS.values(), ids=HUGE_GRIDS.keys())
def test_a_grid_too_large_for_the_engine_is_refused_naming_its_size(params):
    config = sweep("grid", **params)
    size = grid_size(config)
    assert size > MAX_GRID_POINTS
    message = refused(config, "points", f"at most {MAX_GRID_POINTS:,}", "method random")
    assert any(name in message for name in params)


@pytest.mark.parametrize("params,points", [
    ({"seed": {"values": list(range(100))}, "batch_size": {"min": 1, "max": 100}}, MAX_GRID_POINTS),
    ({"seed": {"distribution": "int_uniform", "min": 0, "max": MAX_GRID_POINTS - 1}}, MAX_GRID_POINTS),
    ({"seed": {"distribution": "q_uniform", "min": 0, "max": MAX_GRID_POINTS, "q": 1}}, MAX_GRID_POINTS),
    ({"seed": {"distribution": "int_uniform", "min": 0, "max": MAX_GRID_POINTS}}, MAX_GRID_POINTS + 1),
    ({"seed": {"distribution": "q_uniform", "min": 0, "max": MAX_GRID_POINTS + 1, "q": 1}}, MAX_GRID_POINTS + 1),
    ({"seed": {"values": list(range(101))}, "batch_size": {"min": 1, "max": 100}}, MAX_GRID_POINTS + 100),
], ids=["100x100", "int_uniform at", "q_uniform at", "int_uniform over", "q_uniform over", "101x100"])
def test_grids_at_and_just_over_the_limit(params, points):
    config = sweep("grid", **params)
    assert grid_size(config) == points
    if points <= MAX_GRID_POINTS:
        accepted(config)
        first = propose(config, [], 0, lambda rid: [])          # the engine lists it: quick enough
        assert first is not None and set(params) <= set(first)
    else:
        refused(config, f"{points:,} points")


@pytest.mark.parametrize("spec", [
    {"distribution": "int_uniform", "min": 3, "max": 17},
    {"min": -4, "max": 4},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    {"distribution": "q_uniform", "min": 0.001, "max": 0.1, "q": 0.003},
    {"distribution": "q_uniform", "min": 1, "max": 10, "q": 4},
    {"distribution": "q_uniform", "min": 0, "max": 100, "q": 10},
    {"values": [1, 2, 3]},
    {"value": 7},
], ids=str)
def test_grid_counts_agree_with_what_the_engine_lists(spec):
    """The arithmetic count and the lazy values are exactly the grid W&B's engine runs."""
    config = {"method": "grid", "parameters": {"x": spec}}
    listed, runs, sweeps = [], [], engine()
    while (suggestion := sweeps.next_run(config, runs)) is not None:
        value = suggestion.config["x"]["value"]
        listed.append(value)
        runs.append(sweeps.SweepRun(name=str(len(runs)), state="finished", config={"x": {"value": value}}))
    assert grid_size(config) == len(listed)
    assert list(parameter_values("x", spec, "grid")) == pytest.approx(listed)


@pytest.mark.parametrize("spec", [
    {"distribution": "q_uniform", "min": 0.001, "max": 0.1, "q": 0.003},
    {"distribution": "q_uniform", "min": 1, "max": 10, "q": 4},
    {"distribution": "q_uniform", "min": 0.05, "max": 0.95, "q": 0.1},
    {"distribution": "int_uniform", "min": -3, "max": 3},
], ids=str)
def test_random_supports_agree_with_what_the_engine_draws(spec):
    """A random q_uniform can give every round(x/q)·q for x in [min, max] — and nothing else (the
    ends included even when only x = min or x = max exactly would round to them)."""
    from sweeps.params import HyperParameter
    hp = HyperParameter("x", spec)
    drawn = {float(hp.ppf(u)) for u in [i / 20000 for i in range(1, 20000)]}     # random.uniform: 0 < u < 1
    support = [float(v) for v in parameter_values("x", spec, "random")]
    assert drawn <= set(support) and len(set(support) - drawn) <= 2 and len(support) == len(set(support))
    assert {support[0], support[-1]} == {float(v) for v in (hp.ppf(0.0), hp.ppf(1.0))} or "int" in str(spec)


def _bounded(code, gib=1, timeout=120):
    """Run `code` in a child Python whose address space is limited: a regression that lists a
    huge space fails with MemoryError there instead of exhausting the machine."""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_limited(gib))
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


HUGE_RANGES = {"seed": {"distribution": "int_uniform", "min": 0, "max": 2 ** 32 - 1},
               "learning_rate": {"distribution": "q_uniform", "min": 1e-4, "max": 1.0, "q": 1e-12}}
RANDOM_HUGE = {
    "seed 0..2^32-1": ("random", {"seed": HUGE_RANGES["seed"]}),
    "seed and batch ranges": ("random", {"seed": HUGE_RANGES["seed"],
                                         "batch_size": {"distribution": "int_uniform", "min": 1, "max": 1000}}),
    "four lists of 100 weighted": ("random", {name: {"values": list(range(1, 101)), "probabilities": [0.01] * 100}
                                              for name in ("seed", "early_stopping", "epochs", "batch_size")}),
    "q_uniform tiny q": ("random", {"learning_rate": HUGE_RANGES["learning_rate"]}),
    "bayes over huge ranges": ("bayes", HUGE_RANGES),
}


@pytest.mark.parametrize("method,params", RANDOM_HUGE.values(), ids=RANDOM_HUGE.keys())
def test_a_huge_random_or_bayes_space_is_validated_and_searched_in_bounded_memory(method, params):
    config = sweep(method, **params)
    code = ("import json\nfrom mlp.sweep.engine import propose\nfrom mlp.sweep.files import validate_sweep_config\n"
            f"config = json.loads({json.dumps(json.dumps(config))})\n"
            "validate_sweep_config(config, machine_memory=True)\n"
            "runs = []\n"
            "for i in range(3):\n"
            "    params = propose(config, runs, 7, lambda rid: [])\n"
            "    runs.append({'id': str(i), 'state': 'finished', 'summary': {}, 'params': params,\n"
            "                 'stopped_by': None})\n"
            "print(json.dumps([r['params'] for r in runs]))\n")
    drawn = _bounded(code)
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) == 3          # without replacement
    for d in drawn:
        assert set(params) <= set(d)
        if "seed" in params:
            assert 0 <= d["seed"] < 2 ** 32


def test_a_finite_random_space_is_a_range_not_a_list():
    space = finite_space(sweep("random", seed={"distribution": "int_uniform", "min": 0, "max": 2 ** 32 - 1}))
    names, choices, _ = space
    seeds = choices[names.index("seed")]
    assert isinstance(seeds, range) and len(seeds) == 2 ** 32
    small = finite_space(sweep("random", seed={"distribution": "int_uniform", "min": 0, "max": 3}))
    assert len(small[1][small[0].index("seed")]) == 4 and 4 <= ENUMERATE_UP_TO


@pytest.mark.parametrize("params,limit_gib,words", [
    ({"seed": {"distribution": "int_uniform", "min": 0, "max": 2 ** 32 - 1}}, 2, ["4,294,967,296 points"]),
    ({name: {"values": list(range(1, 101))}
      for name in ("seed", "early_stopping", "epochs", "batch_size", "warmup_epochs")},
     2, ["10,000,000,000 points"]),
    ({"hidden_size": {"distribution": "int_uniform", "min": 1, "max": 10 ** 8}}, 2, ["100,000,000 points"]),
], ids=["seed range", "5 lists of 100", "hidden_size range"])
def test_mlp_sweep_refuses_a_huge_grid_before_creating_the_sweep(tmp_path, params, limit_gib, words):
    path = write(tmp_path, sweep("grid", **params))
    p = run_mlp(tmp_path, "sweep", str(path), "--count", "1", limit_gib=limit_gib)
    one_line_error(p, *words)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("method,params,words", [
    ("grid", {"optimizer": {"values": ["adam", "sgd"], "probabilities": [0.5, 0.5]}}, ["probabilities", "grid"]),
    ("bayes", {"optimizer": {"values": ["adam", "sgd"], "probabilities": [0.5, 0.5]}}, ["probabilities", "bayes"]),
    ("grid", {"learning_rate": {"distribution": "q_log_uniform_values", "min": 1e-3, "max": 1e-1, "q": 1e-3}},
     ["grid search needs"]),
    ("grid", {"learning_rate": {"distribution": "uniform", "min": 1e-3, "max": 1e-1}}, ["grid search needs"]),
    ("grid", {"batch_size": {"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16}},
     ["grid search needs"]),
], ids=["grid probabilities", "bayes probabilities", "grid q_log_uniform_values", "grid uniform", "grid q_log int"])
def test_what_the_engine_would_crash_on_mid_sweep_is_refused(method, params, words):
    refused(sweep(method, **params), *words)


# ---- 2. the command's macros -------------------------------------------------------------------------

HEAD = ["${env}", "${interpreter}", "${program}"]


@pytest.mark.parametrize("command,words", [
    (["${nosuchmacro}"], ["'${nosuchmacro}'", "not a macro"]),
    ([*HEAD, "${nosuchmacro}"], ["not a macro"]),
    ([*HEAD, "${ARGS}"], ["'${ARGS}'"]),
    ([*HEAD, "${args_dict}"], ["'${args_dict}'"]),
    ([*HEAD, "${ args}"], ["not a macro"]),
    ([*HEAD, "${}"], ["not a macro"]),
    ([*HEAD, "${args}}"], ["not a macro"]),
    ([*HEAD, "${${args}}"], ["not a macro"]),
    ([*HEAD, "--lr=${args}"], ["whole part"]),
    ([*HEAD, "${args"], ["whole part"]),
    ([*HEAD, "x${program}"], ["whole part"]),
    (["${env}", "${interpreter}", "${program}.py", "${args}"], ["whole part"]),
    (["${args}"], ["first part is the program"]),
    (["${args_json_file}", *HEAD], ["first part is the program"]),
    (["${args_no_hyphens}", "${program}"], ["first part is the program"]),
    (["", *HEAD, "${args}"], ["first part is the program"]),
    ([*HEAD, 3], ["list of strings"]),
    ("${env} ${interpreter} ${program} ${args}", ["not of type 'array'"]),
], ids=lambda v: json.dumps(v) if isinstance(v, (list, str)) else None)
def test_commands_with_macros_wandb_would_drop_are_refused(command, words):
    config = sweep()
    config["command"] = command
    refused(config, *words)


@pytest.mark.parametrize("macro", MACROS)
def test_every_macro_wandbs_agent_expands_is_accepted(macro):
    accepted(sweep(command=[*HEAD, "${args}", f"${{{macro}}}"]))


def test_mlp_sweep_refuses_an_unknown_macro_before_creating_the_sweep(tmp_path):
    path = write(tmp_path, sweep(command=["${nosuchmacro}"]))
    p = run_mlp(tmp_path, "sweep", str(path), "--count", "1")
    one_line_error(p, "${nosuchmacro}")
    assert not (tmp_path / "s.sqlite").exists()


def _stored_agent(tmp_path, config, count=None):
    store = Store(tmp_path / "s.sqlite")
    sweep_id = store.create_sweep(config, yaml.safe_dump(config), workdir=ROOT)
    return store, sweep_id, Agent(store, sweep_id, count=count, out=lambda line: None)


@pytest.mark.parametrize("command,reason", [
    (["${nosuchmacro}"], "expands to no program"),
    (["${nosuchmacro}", "${args}"], "cannot start --"),
    (["/nonexistent/program", "${args}"], "cannot start /nonexistent/program"),
    ([os.devnull, "${args}"], "cannot start /dev/null"),
], ids=["empty argv", "args as program", "missing program", "not executable"])
def test_a_run_that_cannot_start_is_failed_with_the_reason_never_left_pending(tmp_path, command, reason):
    """Commands the file check refuses, forced on an agent after it checked its sweep: the claimed
    run ends failed (exit 127) with the reason, and an agent whose every run failed exits 1."""
    store, sweep_id, agent = _stored_agent(tmp_path, sweep(hidden_size={"values": [8, 16]}), count=2)
    agent.config = {**agent.config, "command": command}
    assert agent.run() == 1
    runs = store.list_runs(sweep_id)
    assert [(r["state"], r["exit_code"]) for r in runs] == [("failed", 127)] * 2
    assert all(reason in r["error"] for r in runs), runs[0]["error"]


# ---- 3. parameters together --------------------------------------------------------------------------

CNN = {"conv_filters": {"value": [2]}}
COMBOS = {
    "even kernel, padding same": ({**CNN, "kernel_size": {"value": 4}}, ["kernel_size=4", "even kernel"]),
    "even kernel among values": ({**CNN, "kernel_size": {"values": [3, 4, 5]}}, ["even kernel"]),
    "even kernel in int_uniform": ({**CNN, "kernel_size": {"distribution": "int_uniform", "min": 3, "max": 5}},
                                   ["even kernel"]),
    "even kernel from q_uniform rounding": ({**CNN, "kernel_size": {"distribution": "q_uniform", "min": 3, "max": 7,
                                                                    "q": 2}}, ["even kernel"]),
    "three-way: conv x kernel x padding": ({"conv_filters": {"values": [[], [8]]}, "kernel_size": {"values": [3, 4]},
                                            "padding": {"values": ["valid", "same"]}}, ["even kernel"]),
    "kernel too large for valid padding": ({"conv_filters": {"value": [4, 4]}, "padding": {"value": "valid"},
                                            "kernel_size": {"distribution": "int_uniform", "min": 1, "max": 28}},
                                           ["conv_filters"]),
    "too many pools": ({"conv_filters": {"values": [[4], [4, 4, 4, 4, 4, 4]]}}, ["conv_filters"]),
    "conv and features": ({"conv_filters": {"values": [None, [4]]}, "features": {"value": "m.npz"}}, ["features"]),
    "features and shift": ({"features": {"value": "m.npz"}, "augment_shift": {"min": 0, "max": 2}}, ["augment_shift"]),
    "flip on mnist": ({"dataset": {"values": ["fashion_mnist", "mnist"]}, "augment_flip": {"values": [False, True]}},
                      ["augment_flip", "dataset='mnist'"]),
    "label smoothing with squared error": ({"loss": {"values": ["cross_entropy", "mean_squared_error"]},
                                            "label_smoothing": {"min": 0.0, "max": 0.2}}, ["label_smoothing"]),
    "autoencoder with conv": ({"task": {"value": "autoencoder"}, "conv_filters": {"value": [4]}}, ["autoencoder"]),
    "autoencoder with shift": ({"task": {"value": "autoencoder"}, "augment_shift": {"values": [0, 1]}},
                               ["autoencoder"]),
    "classifier with output_activation": ({"output_activation": {"value": "identity"}}, ["output_activation"]),
    "huge widths": ({"hidden_sizes": {"values": [[100_000_000, 100_000_000]]}}, ["needs about", "GiB"]),
    "huge width range": ({"hidden_size": {"distribution": "int_uniform", "min": 8, "max": 100_000_000},
                          "num_layers": {"values": [1, 2]}}, ["needs about", "hidden_size=100000000"]),
    "huge batch with wide layers": ({"hidden_size": {"value": 4096}, "num_layers": {"value": 8},
                                     "batch_size": {"values": [16, 10_000_000]}}, ["needs about"]),
    "huge CNN": ({"conv_filters": {"value": [4096, 4096]}, "batch_size": {"value": 10_000_000}}, ["needs about"]),
    "q_uniform rounding below the range": ({"batch_size": {"distribution": "q_uniform", "min": 1, "max": 10, "q": 4}},
                                           ["batch_size", "value 0"]),
}


@pytest.mark.parametrize("params,words", COMBOS.values(), ids=COMBOS.keys())
def test_values_that_cannot_run_together_are_refused(params, words):
    config = sweep("random", **params)
    if "task" in params:
        config["metric"] = {"name": "val_r2", "goal": "maximize"}
    refused(config, *words)


def test_the_memory_check_is_this_machines_and_only_where_the_sweep_runs():
    config = sweep("random", hidden_sizes={"values": [[100_000_000, 100_000_000]]})
    refused(config, "needs about", memory=True)
    accepted(config, memory=False)           # `mlp rerun` making a W&B sweep for other machines
    assert physical_memory() is None or physical_memory() < 100 * 10 ** 15


def test_a_clash_in_a_space_too_large_to_check_whole_is_still_found():
    """More than MAX_COMBINATIONS combinations: pairs on the first and on the largest values catch
    an even kernel that needs a CNN (the largest conv_filters) and `same` padding together."""
    params = {"optimizer": {"values": ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]},
              "activation": {"values": ["tanh", "relu", "sigmoid", "gelu", "elu", "identity"]},
              "weight_init": {"values": ["xavier", "he", "random", "normal", "he_uniform"]},
              "batch_size": {"values": [16, 32, 64, 128]},
              "conv_filters": {"values": [[], [8]]}, "kernel_size": {"values": [3, 4]},
              "padding": {"values": ["valid", "same"]}}
    config = sweep("random", **params)
    assert 6 * 6 * 5 * 4 * 2 * 2 * 2 > MAX_COMBINATIONS
    refused(config, "even kernel")


def test_a_large_space_without_a_clash_is_accepted_quickly():
    params = {"optimizer": {"values": ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "eve"]},
              "activation": {"values": ["tanh", "relu", "sigmoid", "gelu", "elu", "identity", "leaky_relu"]},
              "weight_init": {"values": ["xavier", "he", "random", "normal", "he_uniform"]},
              "batch_size": {"values": [16, 32, 64, 128]}, "seed": {"values": list(range(200))},
              "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
              "kernel_size": {"values": [3, 5]}, "conv_filters": {"values": [[], [8], [8, 16]]}}
    started = time.monotonic()
    accepted(sweep("random", **params))
    assert time.monotonic() - started < 30


def test_a_configuration_that_clashes_with_a_parameter_of_its_own_is_refused():
    config = sweep("grid", command=HEAD, conv_filters={"value": [4]},
                   configuration={"values": [{"kernel_size": 3}, {"kernel_size": 4}]})
    refused(config, "kernel_size=4", "even kernel")


def test_every_sweep_file_of_the_project_passes_the_combination_check():
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        load_sweep_file(path)


def test_mlp_sweep_refuses_a_combination_before_creating_the_sweep(tmp_path):
    path = write(tmp_path, sweep("random", conv_filters={"value": [2]}, kernel_size={"value": 4}))
    p = run_mlp(tmp_path, "sweep", str(path), "--count", "3")
    one_line_error(p, "even kernel")
    assert not (tmp_path / "s.sqlite").exists()


def test_an_agent_whose_every_run_fails_before_an_epoch_exits_1(tmp_path):
    """Fewer runs than the crash-loop limit, all failing at once: not a silent exit 0."""
    config = sweep("random", command=[sys.executable, "-c", "import sys; print('error: no'); sys.exit(2)"])
    store, sweep_id, agent = _stored_agent(tmp_path, config, count=1)
    assert agent.run() == 1
    assert [(r["state"], r["exit_code"]) for r in store.list_runs(sweep_id)] == [("failed", 2)]


# ---- 4. the file itself --------------------------------------------------------------------------------

def test_a_fifo_given_as_the_sweep_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    p = run_mlp(tmp_path, "sweep", str(fifo), timeout=60)
    one_line_error(p, "not a regular file")
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("target,words", [
    ("{dir}", ["is a directory"]), ("{missing}", ["cannot read"]), ("/dev/null", ["not a regular file"]),
    ("/dev/zero", ["not a regular file"]),
])
def test_what_is_not_a_regular_file_is_refused(tmp_path, target, words):
    path = target.format(dir=tmp_path, missing=tmp_path / "missing.yaml")
    with pytest.raises(UsageError) as e:
        load_sweep_file(path)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_symlink_to_a_sweep_file_is_read(tmp_path):
    link = tmp_path / "link.yaml"
    link.symlink_to(write(tmp_path, sweep()))
    assert load_sweep_file(link)[0]["method"] == "random"


# ---- 5. sweep configs read back from the store ------------------------------------------------------

STORED = {
    "bogus method": ({"method": "bogus"}, ["'bogus'"]),
    "test metric": ({"metric": {"name": "test_accuracy", "goal": "maximize"}}, ["test set"]),
    "unknown metric": ({"metric": {"name": "nosuch", "goal": "maximize"}}, ["never logged"]),
    "no parameters": ({"parameters": {}}, ["non-empty"]),
    "unknown parameter": ({"parameters": {**SMALL, "colour": {"value": "red"}}}, ["'colour'"]),
    "plumbing parameter": ({"parameters": {**SMALL, "store": {"value": "x.sqlite"}}}, ["'store'", "cannot be swept"]),
    "preset parameter": ({"parameters": {**SMALL, "preset": {"value": "cnn"}}}, ["'preset'"]),
    "bad value": ({"parameters": {**SMALL, "activation": {"values": ["swish"]}}}, ["'swish'"]),
    "huge grid": ({"method": "grid", "parameters": {**SMALL, "seed": {"min": 0, "max": 2 ** 32 - 1}}}, ["points"]),
    "unknown macro": ({"command": ["${nosuchmacro}"]}, ["${nosuchmacro}"]),
    "even kernel": ({"parameters": {**SMALL, **CNN, "kernel_size": {"value": 4}}}, ["even kernel"]),
    "huge network": ({"parameters": {**SMALL, "hidden_sizes": {"value": [100_000_000, 100_000_000]}}},
                     ["needs about"]),
    "grid probabilities": ({"method": "grid", "parameters": {**SMALL, "optimizer": {
        "values": ["adam", "sgd"], "probabilities": [0.5, 0.5]}}}, ["probabilities"]),
    "bad hyperband": ({"early_terminate": {"type": "hyperband", "min_iter": 0, "eta": 2}}, ["hyperband"]),
}


@pytest.mark.parametrize("change,words", STORED.values(), ids=STORED.keys())
def test_an_agent_refuses_a_bad_stored_config_naming_store_and_sweep(tmp_path, change, words):
    store = Store(tmp_path / "s.sqlite")
    config = {**sweep(), **change}
    sweep_id = store.create_sweep(config, yaml.safe_dump(config), workdir=ROOT)
    with pytest.raises(UsageError) as e:
        Agent(store, sweep_id)
    message = str(e.value)
    assert "\n" not in message and f"sweep {sweep_id} in store {store.path}" in message, message
    for word in words:
        assert word in message, message
    assert store.list_runs(sweep_id) == [] and store.get_sweep(sweep_id)["state"] == "pending"


@pytest.mark.parametrize("change,words", [STORED["bogus method"], STORED["unknown macro"]],
                         ids=["bogus method", "unknown macro"])
def test_mlp_agent_on_a_bad_stored_config_exits_2_with_one_line(tmp_path, change, words):
    config = {**sweep(), **change}
    with Store(tmp_path / "s.sqlite") as store:
        sweep_id = store.create_sweep(config, yaml.safe_dump(config), workdir=ROOT)
    p = run_mlp(tmp_path, "agent", sweep_id, "--count", "1", timeout=120)
    one_line_error(p, sweep_id, str(tmp_path / "s.sqlite"), *words)
    assert store_rows(tmp_path / "s.sqlite") == []
    with Store(tmp_path / "s.sqlite", create=False) as again:
        assert again.get_sweep(sweep_id)["state"] == "pending"


@pytest.mark.parametrize("value, fragment", [("9" * 5000, "thousands of digits"), ("2020-13-45", "month")])
def test_a_scalar_yaml_cannot_build_is_one_line(tmp_path, value, fragment, capsys):
    """PyYAML raises ValueError (not YAMLError) for an integer past Python's digit limit or an
    impossible date: still one line, and no sweep is made."""
    from mlp.cli import main
    f = tmp_path / "s.yaml"
    f.write_text(f"program: train.py\nmethod: grid\nparameters:\n  epochs:\n    value: 1\n  seed:\n    value: {value}\n")
    assert main(["sweep", str(f), "--count", "1", "--store", str(tmp_path / "st.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: sweep file {f} holds a value YAML cannot read") and fragment in err
    assert err.count("\n") == 1 and not (tmp_path / "st.sqlite").exists()


@pytest.mark.parametrize("text, line, key", [
    ("method: grid\nmethod: random\nparameters:\n  epochs: {value: 1}\n", 2, "method"),
    ("method: grid\nparameters:\n  epochs: {value: 1}\n  seed: {values: [1]}\n  seed: {values: [2]}\n", 5, "seed"),
    ("method: grid\nparameters:\n  epochs: {value: 1, value: 2}\n", 3, "value"),
])
def test_a_key_given_twice_is_one_line_not_the_last_one_silently(tmp_path, text, line, key, capsys):
    from mlp.cli import main
    f = tmp_path / "s.yaml"
    f.write_text("program: train.py\n" + text)
    assert main(["sweep", str(f), "--count", "1", "--store", str(tmp_path / "st.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: sweep file {f} is not valid YAML at line {line + 1}") and f"'{key}' is given twice" in err
    assert err.count("\n") == 1 and not (tmp_path / "st.sqlite").exists()


def test_a_merge_key_may_still_be_overridden():
    from mlp.sweep.files import _SafeUniqueKeys
    text = "base: &b {epochs: {value: 1}, seed: {value: 3}}\nparameters:\n  <<: *b\n  epochs: {value: 2}\n"
    assert yaml.load(text, Loader=_SafeUniqueKeys)["parameters"] == {"epochs": {"value": 2}, "seed": {"value": 3}}


@pytest.mark.parametrize("value, words", [("{dir}/nowhere.npz", "nowhere.npz"), ("/etc/passwd", "not an .npz"),
                                          ("{dir}/m.npz:dense_9", "no layer named 'dense_9'"),
                                          ("{dir}/small.npz", "takes inputs of shape (20,)")])
def test_a_sweep_that_runs_here_refuses_a_features_model_its_runs_cannot_load(tmp_path, value, words):
    from mlp import MLP
    MLP([784, 8, 10]).save(tmp_path / "m.npz")
    MLP([20, 8, 10]).save(tmp_path / "small.npz")
    config = {"method": "grid", "metric": METRIC, "parameters": {
        **SMALL, "features": {"values": [str(tmp_path / "m.npz"), value.format(dir=tmp_path)]}}}
    with pytest.raises(UsageError, match="would fail") as info:
        validate_sweep_config(config, "s.yaml", machine_memory=True)
    assert words in str(info.value) and "\n" not in str(info.value)
    # a sweep made for W&B's agents on other machines is not checked against this one's files
    validate_sweep_config(config, "s.yaml", machine_memory=False)


def test_a_features_model_that_loads_is_accepted(tmp_path):
    from mlp import MLP
    MLP([784, 8, 10]).save(tmp_path / "m.npz")
    config = {"method": "grid", "metric": METRIC, "parameters": {
        **SMALL, "features": {"values": [str(tmp_path / "m.npz"), str(tmp_path / "m.npz") + ":dense_1"]}}}
    validate_sweep_config(config, "s.yaml", machine_memory=True)
