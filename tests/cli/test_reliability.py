"""Reliability: bad input, divergence, crashes, Ctrl-C, concurrent agents, security."""
import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlp.runs.store import Store
from helpers.paths import DATA, ROOT
from helpers.waiting import wait_for



def env_for(tmp_path, **extra):
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "MLP_STORE": str(tmp_path / "s.sqlite"), **extra}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "MLP_DATA_DIR"):
        if key not in extra:
            env.pop(key, None)
    return env


def run(tmp_path, *argv, cwd=ROOT, timeout=300, **extra_env):
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env_for(tmp_path, **extra_env),
                          capture_output=True, text=True, timeout=timeout)


# ---- bad input: one line, exit 2, no traceback, nothing written ---------------------------------

def idx_dir(tmp_path, damage):
    """A copy of the subset with one file damaged in a given way."""
    src = DATA / "fashion_mnist"
    dst = tmp_path / "data" / "fashion_mnist"
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    target = dst / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "corrupt_gzip":
        target.write_bytes(target.read_bytes()[:20] + b"garbage" * 10)
    elif damage == "wrong_magic":
        target.write_bytes(gzip.compress(b"\x00\x00\x09\x01" + raw[4:]))
    elif damage == "truncated":
        target.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "checksum":
        target.write_bytes(gzip.compress(raw[:-1] + bytes([(raw[-1] + 1) % 10])))
    return tmp_path / "data"


def bad_yaml(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


TRAIN = "train.py"
CASES = {
    # train.py flags
    "unknown optimizer": lambda t: [TRAIN, "-o", "adagrad"],
    "unknown activation": lambda t: [TRAIN, "-a", "swish"],
    "unknown init": lambda t: [TRAIN, "-w_i", "orthogonal"],
    "unknown loss": lambda t: [TRAIN, "-l", "hinge"],
    "unknown dataset": lambda t: [TRAIN, "-d", "cifar10"],
    "learning rate 0": lambda t: [TRAIN, "-lr", "0"],
    "learning rate negative": lambda t: [TRAIN, "-lr", "-0.1"],
    "learning rate NaN": lambda t: [TRAIN, "-lr", "nan"],
    "batch size 0": lambda t: [TRAIN, "-b", "0"],
    "batch size non-numeric": lambda t: [TRAIN, "-b", "lots"],
    "batch size > training set": lambda t: [TRAIN, "-b", "100000", "--data_dir", str(DATA)],
    "num_layers < 0": lambda t: [TRAIN, "-nhl", "-2"],
    "hidden size 0": lambda t: [TRAIN, "-sz", "0"],
    "weight decay < 0": lambda t: [TRAIN, "-w_d", "-1e-3"],
    "beta1 = 1": lambda t: [TRAIN, "-beta1", "1"],
    "beta outside [0,1)": lambda t: [TRAIN, "-beta", "1.5"],
    "epsilon 0": lambda t: [TRAIN, "-eps", "0"],
    "epochs < 0": lambda t: [TRAIN, "-e", "-3"],
    "dropout 1": lambda t: [TRAIN, "--dropout", "1.0"],
    "val fraction 0": lambda t: [TRAIN, "--val_fraction", "0"],
    "val fraction 1.2": lambda t: [TRAIN, "--val_fraction", "1.2"],
    "unknown flag": lambda t: [TRAIN, "--colour", "red"],
    # data files
    "missing data dir": lambda t: [TRAIN, "--data_dir", str(t / "nowhere")],
    "corrupt gzip": lambda t: [TRAIN, "--data_dir", str(idx_dir(t, "corrupt_gzip"))],
    "wrong IDX magic": lambda t: [TRAIN, "--data_dir", str(idx_dir(t, "wrong_magic"))],
    "truncated IDX": lambda t: [TRAIN, "--data_dir", str(idx_dir(t, "truncated"))],
    "checksum mismatch": lambda t: [TRAIN, "--data_dir", str(idx_dir(t, "checksum"))],
    # sweep YAML
    "YAML syntax error": lambda t: ["-m", "mlp", "sweep", str(bad_yaml(t, "method: grid\nparameters: {a: [1\n"))],
    "unknown top-level key": lambda t: ["-m", "mlp", "sweep", str(bad_yaml(
        t, "method: random\nschedule: nightly\nparameters: {epochs: {values: [1]}}\n"))],
    "sweep parameter train.py does not know": lambda t: ["-m", "mlp", "sweep", str(bad_yaml(
        t, "method: random\nparameters: {momentum_schedule: {values: [1]}}\n"))],
    "grid over a continuous distribution": lambda t: ["-m", "mlp", "sweep", str(bad_yaml(
        t, "method: grid\nparameters: {learning_rate: {distribution: uniform, min: 0.001, max: 0.1}}\n"))],
    "sweep file missing": lambda t: ["-m", "mlp", "sweep", str(t / "nope.yaml")],
    # model files
    "model file with pickled objects": lambda t: ["-m", "mlp", "evaluate", str(_pickled_model(t)), "--data_dir", str(DATA)],
    "model file of another architecture": lambda t: ["-m", "mlp", "evaluate", str(_small_model(t)), "--data_dir", str(DATA)],
    "model file that is not a model": lambda t: ["-m", "mlp", "evaluate", str(_text_file(t / "m.npz")), "--data_dir", str(DATA)],
    # store
    "store that is not SQLite": lambda t: ["-m", "mlp", "sweeps", "--store", str(_text_file(t / "notes.txt"))],
    "unknown sweep id": lambda t: ["-m", "mlp", "runs", "zzzzzzzz", "--store", str(_empty_store(t))],
    "store that does not exist": lambda t: ["-m", "mlp", "agent", "abc", "--store", str(t / "missing.sqlite")],
    "unknown mlp command": lambda t: ["-m", "mlp", "fly"],
}


def _text_file(path):
    path.write_text("these are my notes, not a database\n" * 50)
    return path


def _pickled_model(tmp_path):
    np.savez(tmp_path / "pickled.npz", __meta__=np.array([{"format": "mlp-sweeps"}], dtype=object))
    return tmp_path / "pickled.npz"


def _small_model(tmp_path):
    from mlp import MLP
    MLP([20, 8, 3], seed=0).save(tmp_path / "small.npz")
    return tmp_path / "small.npz"


def _empty_store(tmp_path):
    path = tmp_path / "other.sqlite"
    Store(path).close()
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    argv = CASES[case](tmp_path)  # may write the bad input itself (a YAML, a damaged data dir)
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
    argv = [str(ROOT / a) if a == TRAIN else a for a in argv]
    p = run(tmp_path, *argv, cwd=work if argv[0] != "-m" else ROOT)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (case, p.stdout, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    # nothing half-written: no store, no W&B directory, other files untouched
    assert not (tmp_path / "s.sqlite").exists() and not (work / "mlp-runs.sqlite").exists()
    assert not (tmp_path / "wandb").exists() and not (work / "wandb").exists()
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()} == before


def test_bad_input_messages_name_the_fix(tmp_path):
    p = run(tmp_path, str(ROOT / TRAIN), "-b", "100000", "--data_dir", str(DATA))
    assert p.returncode == 2 and "use a smaller -b/--batch_size" in p.stderr
    p = run(tmp_path, str(ROOT / TRAIN), "--data_dir", str(idx_dir(tmp_path, "checksum")))
    assert p.returncode == 2 and "SHA-256" in p.stderr and "fix:" in p.stderr


# ---- divergence ---------------------------------------------------------------------------------

def test_divergent_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "div.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 2}, "optimizer": {"value": "sgd"},
                       "activation": {"value": "identity"}, "num_layers": {"value": 1}, "hidden_size": {"value": 16},
                       "learning_rate": {"values": [1e6, 0.05]}},
        "command": ["${env}", "${interpreter}", "${program}", "${args}"]}))
    p = run(tmp_path, "-m", "mlp", "sweep", str(sweep), "--count", "5")
    assert p.returncode == 0, p.stderr + p.stdout
    sweep_id = p.stdout.splitlines()[0]
    store = Store(tmp_path / "s.sqlite", create=False)
    runs = store.list_runs(sweep_id)
    assert [(r["state"], r["exit_code"]) for r in runs] == [("diverged", 3), ("finished", 0)]
    assert "lower the learning rate" in runs[0]["error"]
    from mlp.sweep.engine import engine_run
    assert engine_run(runs[0], store.history(runs[0]["id"])).state == "failed"  # bayes imputes the worst
    assert store.get_sweep(sweep_id)["state"] == "finished"


# ---- crashes and interruptions ------------------------------------------------------------------

SLOW = {"program": "train.py", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 400}, "batch_size": {"value": 16},
                       "num_layers": {"value": 2}, "hidden_size": {"value": 64},
                       "learning_rate": {"values": [0.001, 0.002, 0.003]}},
        "command": ["${env}", "${interpreter}", "${program}", "${args}"]}


# the first run is long enough to be caught mid-run (an epoch on the subset takes ~30 ms), the
# others are short so the sweep completes quickly after the crash
LONG_THEN_SHORT = {**SLOW, "parameters": {**SLOW["parameters"], "epochs": {"values": [300, 3, 2]},
                                          "learning_rate": {"value": 0.001}}}


def start_agent(tmp_path, sweep_id, *extra):
    return subprocess.Popen([sys.executable, "-m", "mlp", "agent", sweep_id, *extra], cwd=ROOT,
                            env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def create(tmp_path, config, name="slow"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    p = run(tmp_path, "-m", "mlp", "sweep", str(path))
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()[0], Store(tmp_path / "s.sqlite", create=False)


def running_with_epochs(store, sweep_id, n=1):
    for r in store.list_runs(sweep_id):
        if r["state"] == "running" and len(store.history(r["id"])) >= n:
            return r
    return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_on_agent_marks_the_run_killed(tmp_path):
    sweep_id, store = create(tmp_path, SLOW)
    agent = start_agent(tmp_path, sweep_id)
    run = wait_for(lambda: running_with_epochs(store, sweep_id), what="a run with an epoch")
    os.killpg(agent.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 130, out
    final = store.get_run(run["id"])
    assert final["state"] == "killed" and final["exit_code"] == 130
    assert list(Path(final["wandb_dir"]).glob("*.wandb"))   # the offline W&B data survived
    assert len(store.list_runs(sweep_id)) == 1        # no further run was started
    assert not pid_alive(final["pid"])


def test_kill_9_of_a_training_child_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep_id, store = create(tmp_path, LONG_THEN_SHORT)
    agent = start_agent(tmp_path, sweep_id)
    run = wait_for(lambda: running_with_epochs(store, sweep_id), what="a run with an epoch")
    os.kill(run["pid"], signal.SIGKILL)  # the training child dies mid-run
    out, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, out
    runs = store.list_runs(sweep_id)
    assert runs[0]["id"] == run["id"] and runs[0]["state"] == "crashed" and runs[0]["exit_code"] == -9
    assert [r["state"] for r in runs[1:]] == ["finished", "finished"]   # the sweep completed
    assert store.get_sweep(sweep_id)["state"] == "finished"
    assert len(store.history(run["id"])) >= 1        # its epochs before the crash are kept


def test_kill_9_of_agent_and_child_is_reaped_and_resumed(tmp_path):
    sweep_id, store = create(tmp_path, LONG_THEN_SHORT)
    agent = start_agent(tmp_path, sweep_id)
    run = wait_for(lambda: running_with_epochs(store, sweep_id), what="a run with an epoch")
    os.killpg(agent.pid, signal.SIGKILL)  # agent ...
    os.kill(run["pid"], signal.SIGKILL)   # ... and its child (own session): a machine crash, say
    agent.wait()
    wait_for(lambda: not pid_alive(run["pid"]), what="the child to die")
    assert store.get_run(run["id"])["state"] == "running"  # stuck, as the W&B agent leaves it
    resumed = start_agent(tmp_path, sweep_id)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"run {run['id']} was orphaned" in out
    runs = store.list_runs(sweep_id)
    assert runs[0]["state"] == "crashed" and runs[0]["error"].startswith("orphaned: process")
    assert [r["state"] for r in runs[1:]] == ["finished", "finished"]
    assert store.get_sweep(sweep_id)["state"] == "finished"


def test_agent_killed_while_child_runs_loses_nothing(tmp_path):
    """kill -9 of the agent alone: the child (its own session) finishes and records itself."""
    sweep_id, store = create(tmp_path, {**SLOW, "parameters": {**SLOW["parameters"], "epochs": {"value": 150},
                                                               "learning_rate": {"values": [0.001]}}})
    agent = start_agent(tmp_path, sweep_id)
    run = wait_for(lambda: running_with_epochs(store, sweep_id), what="a run with an epoch")
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    final = wait_for(lambda: (r := store.get_run(run["id"]))["state"] != "running" and r, timeout=180,
                     what="the orphaned child to finish")
    assert final["state"] == "finished" and len(store.history(run["id"])) == 150
    assert 0.3 < final["summary"]["test_accuracy"] <= 1


# ---- concurrency ----------------------------------------------------------------------------------

def test_four_agents_run_every_grid_point_exactly_once(tmp_path):
    grid = {"program": "train.py", "method": "grid",
            "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 1}, "batch_size": {"value": 256},
                           "num_layers": {"value": 1}, "hidden_size": {"values": [8, 16, 24, 32]},
                           "activation": {"values": ["tanh", "ReLU"]}},
            "command": ["${env}", "${interpreter}", "${program}", "${args}"]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    p = run(tmp_path, "-m", "mlp", "sweep", str(path), "--count", "12", "--jobs", "4", timeout=600)
    assert p.returncode == 0, p.stderr + p.stdout
    runs = Store(tmp_path / "s.sqlite", create=False).list_runs(p.stdout.splitlines()[0])
    points = [(r["params"]["hidden_size"], r["params"]["activation"]) for r in runs]
    assert sorted(points) == sorted((h, a) for h in (8, 16, 24, 32) for a in ("tanh", "ReLU"))
    assert all(r["state"] == "finished" for r in runs)


# ---- security and determinism ------------------------------------------------------------------------

SOURCES = sorted((ROOT / "mlp").rglob("*.py")) + [ROOT / "train.py"]


def test_shell_metacharacters_in_sweep_values_are_never_run_by_a_shell(tmp_path):
    """The agent launches runs without a shell: values full of shell syntax reach train.py as
    single argv items (here: data folders that do not exist, so the runs fail), never as commands."""
    marker = tmp_path / "pwned"
    sweep = tmp_path / "evil.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"epochs": {"value": 1},
                       "data_dir": {"values": [f"tests/data; touch {marker}", f"$(touch {marker})",
                                               f"`touch {marker}`"]}},
        "command": ["${env}", "${interpreter}", "${program}", "${args}"]}))
    p = run(tmp_path, "-m", "mlp", "sweep", str(sweep), "--count", "3")
    assert not marker.exists()
    runs = Store(tmp_path / "s.sqlite").list_runs()
    assert [(r["state"], r["exit_code"]) for r in runs] == [("failed", 2)] * 3, p.stdout + p.stderr
    assert all("does not exist" in r["error"] for r in runs)


def test_yaml_tags_that_construct_python_objects_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"method: grid\nparameters: !!python/object/apply:os.system ['touch {marker}']\n")
    p = run(tmp_path, "-m", "mlp", "sweep", str(bad))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and not marker.exists(), p.stderr


def test_sql_is_parameterised(tmp_path):
    """Values full of SQL syntax are stored and read back verbatim; the tables survive."""
    store = Store(tmp_path / "s.sqlite")
    evil = "x'); DROP TABLE runs; --"
    sweep = store.create_sweep({"method": "grid", "name": evil}, evil, name=evil)
    run_id = store.create_run({"note": evil}, sweep_id=sweep, name=evil)
    store.finish_run(run_id, "failed", error=evil, summary={"k": evil})
    store.update_run(run_id, name=evil + "2")
    run = store.get_run(run_id)
    assert (run["name"], run["error"], run["config"]["note"], run["summary"]["k"]) == (evil + "2", evil, evil, evil)
    assert store.get_sweep(sweep)["name"] == evil and len(store.list_runs(sweep)) == 1


def test_no_credential_is_written_anywhere(tmp_path):
    secret = "0123456789abcdef0123456789abcdef01234567"
    p = run(tmp_path, str(ROOT / TRAIN), "--data_dir", str(DATA), "-e", "1", "--wandb_mode", "offline",
            "--summary_json", str(tmp_path / "s.json"), cwd=tmp_path, WANDB_API_KEY=secret)
    assert p.returncode == 0, p.stderr
    assert secret not in p.stdout + p.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_evaluate_a_saved_model(tmp_path):
    p = run(tmp_path, str(ROOT / TRAIN), "--data_dir", str(DATA), "-e", "2", "-nhl", "1", "-sz", "32",
            "--wandb_mode", "disabled", "--save_model", "m.npz", "--summary_json", "s.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    q = run(tmp_path, "-m", "mlp", "evaluate", str(tmp_path / "m.npz"), "--data_dir", str(DATA), "--json")
    assert q.returncode == 0, q.stderr
    import json
    expected = json.loads((tmp_path / "s.json").read_text())["summary"]
    got = json.loads(q.stdout)
    assert got["test_accuracy"] == expected["test_accuracy"] and got["confusion_matrix"] == expected["confusion_matrix"]


def test_model_file_with_pickle_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez(tmp_path / "evil.npz", __meta__=np.array([Evil()], dtype=object))
    from mlp import UsageError, load_model
    with pytest.raises(UsageError):
        load_model(tmp_path / "evil.npz")
    assert not marker.exists()


def test_same_seed_same_metrics_in_process():
    from mlp.runs.data import load_dataset
    from mlp.runs.experiment import build
    from mlp.cli import parse_train_args
    from mlp.runs.training import FitOptions, fit
    data = load_dataset("fashion_mnist", data_dir=DATA)
    results = []
    for _ in range(2):
        config = parse_train_args(["-nhl", "2", "-sz", "32", "--dropout", "0.1", "--batch_norm", "--seed", "5"])
        net, opt = build(config)
        history = fit(net, opt, (data.x_train, data.y_train), (data.x_val, data.y_val),
                      FitOptions(epochs=2, batch_size=64, seed=5, progress=False))
        results.append(([{k: v for k, v in r.items() if k != "epoch_seconds"} for r in history],
                        net.predict_proba(data.x_test)))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_sigint_works_even_when_started_with_it_ignored(tmp_path):
    """Background jobs of a shell start with SIGINT ignored; hyperband stops and Ctrl-C rely on it."""
    sweep_id, store = create(tmp_path, SLOW)
    agent = subprocess.Popen([sys.executable, "-m", "mlp", "agent", sweep_id], cwd=ROOT, env=env_for(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    run = wait_for(lambda: running_with_epochs(store, sweep_id), what="a run with an epoch")
    os.killpg(agent.pid, signal.SIGINT)
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 130, out
    assert store.get_run(run["id"])["state"] == "killed"
