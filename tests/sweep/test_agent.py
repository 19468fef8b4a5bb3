"""The offline agent end to end: sweeps run to their end, parallel agents never duplicate a grid
point, hyperband stops runs, failures stop a crash loop and are retried on request, warm runs equal
fresh processes, and one W&B service is shared between an agent's runs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlp.core.metrics import confusion_matrix
from mlp.core.model_file import load_model
from mlp.runs.data import load_dataset
from mlp.runs.store import RerunPlan, Store
from mlp.sweep.engine import propose

from helpers.paths import DATA, ROOT
from helpers.sweeps import mlp, sweep_id_of, write_sweep


# ---- offline sweeps end to end -------------------------------------------------------------------

def test_six_run_offline_sweep_end_to_end(tmp_path):
    sweep_id = sweep_id_of(mlp(tmp_path, "sweep", "sweeps/smoke.yaml", "--seed", "3", "--count", "6"))
    store = Store(tmp_path / "s.sqlite", create=False)
    runs = store.list_runs(sweep_id)
    test = load_dataset("fashion_mnist", data_dir=DATA)
    assert [r["state"] for r in runs] == ["finished"] * 6
    for r in runs:
        assert [h["epoch"] for h in store.history(r["id"])] == [1, 2]
        assert 0.1 < r["summary"]["val_accuracy"] <= 1 and 0.1 < r["summary"]["test_accuracy"] <= 1
        assert r["exit_code"] == 0 and r["config"]["epochs"] == 2
        assert Path(r["wandb_dir"]).name.endswith(r["id"]) and list(Path(r["wandb_dir"]).glob("*.wandb"))
        assert r["model_path"] == str(tmp_path / "mlp-models" / sweep_id / f"{r['id']}.npz")
        model = load_model(r["model_path"])       # the run's own model: its logged test confusion matrix
        pred = model.predict(test.x_test)
        assert confusion_matrix(test.y_test, pred, 10).tolist() == r["summary"]["confusion_matrix"]
        # the run's full config agrees with what the search proposed (data_dir is plumbing, not config)
        for key, value in r["params"].items():
            if key == "data_dir":
                continue
            assert r["config"][key] == (value.lower() if isinstance(value, str) and key != "data_dir" else value)
    listed = json.loads(mlp(tmp_path, "runs", sweep_id, "--json").stdout)
    assert [r["id"] for r in listed] == [r["id"] for r in runs]
    assert all({"id", "state", "config", "summary"} <= set(r) for r in listed)
    sweeps = json.loads(mlp(tmp_path, "sweeps", "--json").stdout)
    assert sweeps[0]["id"] == sweep_id and sweeps[0]["run_counts"]["finished"] == 6
    assert sweeps[0]["summary"]["best_val_accuracy"] == max(r["summary"]["val_accuracy"] for r in runs)
    table = mlp(tmp_path, "runs", sweep_id).stdout
    assert table.splitlines()[0].split()[:2] == ["ID", "STATE"] and len(table.splitlines()) == 7
    sync = mlp(tmp_path, "sync", sweep_id, "--dry_run")
    assert sync.returncode == 0 and sync.stdout.count("offline-run-") == 6 and " -m wandb sync " in sync.stdout


GRID = {"method": "grid", "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 1},
                                         "batch_size": {"value": 128}, "num_layers": {"value": 1},
                                         "hidden_size": {"values": [8, 16]},
                                         "activation": {"values": ["tanh", "ReLU", "sigmoid"]}}}


def test_grid_is_exhausted_and_the_sweep_finishes(tmp_path):
    path = write_sweep(tmp_path, "grid", **{**GRID, "parameters": {**GRID["parameters"], "activation": {"values": ["tanh", "ReLU"]}}})
    p = mlp(tmp_path, "sweep", str(path), "--count", "10")
    sweep_id = sweep_id_of(p)
    assert "exhausted" in p.stdout
    store = Store(tmp_path / "s.sqlite", create=False)
    points = sorted((r["params"]["hidden_size"], r["params"]["activation"])
                    for r in store.list_runs(sweep_id))
    assert points == [(8, "ReLU"), (8, "tanh"), (16, "ReLU"), (16, "tanh")]
    assert store.get_sweep(sweep_id)["state"] == "finished"
    again = mlp(tmp_path, "agent", sweep_id)
    assert again.returncode == 0 and "finished; nothing to do" in again.stdout


def test_two_parallel_agents_never_duplicate(tmp_path):
    path = write_sweep(tmp_path, "grid6", **GRID)
    sweep_id = sweep_id_of(mlp(tmp_path, "sweep", str(path), "--count", "8", "--jobs", "2", timeout=600))
    runs = Store(tmp_path / "s.sqlite", create=False).list_runs(sweep_id)
    points = [json.dumps(r["params"], sort_keys=True) for r in runs]
    assert len(points) == 6 and len(set(points)) == 6  # every grid point exactly once
    assert all(r["state"] == "finished" for r in runs)


def test_hyperband_stops_a_deliberately_bad_run(tmp_path):
    config = {**GRID, "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
              "parameters": {"data_dir": {"value": "tests/data"}, "epochs": {"value": 300}, "optimizer": {"value": "sgd"},
                             "batch_size": {"value": 32}, "learning_rate": {"values": [0.1, 0.05, 1e-7]}}}
    path = tmp_path / "hb.yaml"
    path.write_text(yaml.safe_dump({**config, "program": "train.py"}))
    sweep_id = sweep_id_of(mlp(tmp_path, "sweep", str(path)))
    store = Store(tmp_path / "s.sqlite", create=False)
    cfg = store.get_sweep(sweep_id)["config"]
    # two good runs already finished (as if trained earlier) with high accuracy at every epoch:
    # hyperband judges a run at the largest band it has reached (1, 2, 4, 8, ...) against the runs
    # that reached it too, so the good runs need full-length histories wherever the agent looks
    for accuracy in (0.80, 0.78):
        run = store.claim_run(sweep_id, lambda runs: propose(cfg, runs, 0, store.history))
        for epoch in range(1, 301):
            store.log_history(run["id"], {"epoch": epoch, "val_accuracy": accuracy})
        store.finish_run(run["id"], "finished", summary={"val_accuracy": accuracy})
    p = mlp(tmp_path, "agent", sweep_id, "--count", "1")
    assert p.returncode == 0, p.stderr + p.stdout
    bad = store.list_runs(sweep_id)[-1]
    assert bad["params"]["learning_rate"] == 1e-7
    assert bad["state"] == "killed" and bad["stopped_by"] == "hyperband", bad
    assert 1 <= len(store.history(bad["id"])) < 300
    assert "stopped by hyperband" in p.stdout


def test_unknown_sweep_id_is_a_usage_error(tmp_path):
    mlp(tmp_path, "sweep", "sweeps/smoke.yaml")
    p = mlp(tmp_path, "agent", "nosuchid")
    assert p.returncode == 2 and "unknown sweep id 'nosuchid'" in p.stderr and "mlp sweeps" in p.stderr


def test_rerun_sweep_resumes_with_its_exact_configs(tmp_path):
    """A child sweep made by `mlp rerun` keeps its K configs; `mlp agent CHILD` hands them out."""
    from mlp.sweep.agent import Agent
    store = Store(tmp_path / "s.sqlite")
    configs = [{"data_dir": "tests/data", "epochs": 1, "hidden_size": h, "num_layers": 1, "batch_size": 256}
               for h in (24, 8)]
    grid = {"method": "grid", "program": "train.py", "run_cap": 2,
            "parameters": {"hidden_size": {"values": [24, 8]}, "epochs": {"value": 1}}}
    child = store.create_sweep(grid, yaml.safe_dump(grid), workdir=ROOT,
                               rerun=RerunPlan(parent="p", source_runs=["a", "b"], configs=configs, top=2))
    store.claim_run(child, Agent(store, child).proposer)          # the first was claimed before a crash
    assert [r["params"] for r in store.list_runs(child)] == configs[:1]
    agent = Agent(store, child)
    assert agent.proposer(store.list_runs(child)) == configs[1]
    assert agent.proposer(store.list_runs(child) * 2) is None


def test_agent_stops_after_three_runs_in_a_row_fail_before_their_first_epoch(tmp_path):
    """A broken program or value burns at most three runs, and the agent names the log."""
    sweep = write_sweep(tmp_path, "broken", method="grid", parameters={
        "epochs": {"value": 1}, "data_dir": {"values": [f"missing-{i}" for i in range(5)]}})
    p = mlp(tmp_path, "sweep", str(sweep), "--count", "5")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "3 runs in a row failed before their first epoch" in p.stdout and ".log" in p.stdout
    runs = Store(tmp_path / "s.sqlite").list_runs()
    assert [r["state"] for r in runs] == ["failed"] * 3
    assert all("does not exist" in Path(r["log_path"]).read_text() for r in runs)   # each log says why


def test_retry_failed_runs_the_failed_grid_points_again(tmp_path):
    """wandb#2031: a grid point that failed (here: its data folder was missing, since fixed) is
    not proposed again by the search; `mlp agent --retry-failed` runs its parameters once more as
    a new run that says which one it retries, and the grid then counts the point as done."""
    later = tmp_path / "later"
    sweep = write_sweep(tmp_path, "retry", method="grid", parameters={
        "epochs": {"value": 1}, "hidden_size": {"value": 8}, "num_layers": {"value": 1},
        "data_dir": {"values": [str(later), "tests/data"]}})
    sweep_id = sweep_id_of(mlp(tmp_path, "sweep", str(sweep), "--count", "2"))
    with Store(tmp_path / "s.sqlite", create=False) as store:
        failed, done = store.list_runs(sweep_id)
    assert (failed["state"], done["state"]) == ("failed", "finished")
    shutil.copytree(ROOT / "tests" / "data" / "fashion_mnist", later / "fashion_mnist")
    p = mlp(tmp_path, "agent", sweep_id)
    assert p.returncode == 0 and "finished; nothing to do" in p.stdout
    p = mlp(tmp_path, "agent", sweep_id, "--retry-failed")
    assert p.returncode == 0, p.stdout + p.stderr
    with Store(tmp_path / "s.sqlite", create=False) as store:
        runs = store.list_runs(sweep_id)
        assert store.get_sweep(sweep_id)["state"] == "finished"
    assert [r["state"] for r in runs] == ["failed", "finished", "finished"]
    assert runs[2]["params"] == failed["params"] and runs[2]["extra"]["retry_of"] == failed["id"]
    p = mlp(tmp_path, "agent", sweep_id, "--retry_failed")           # retried once: nothing left
    assert p.returncode == 0 and len(Store(tmp_path / "s.sqlite").list_runs(sweep_id)) == 3


def test_a_run_that_learns_resets_the_count_of_failures(tmp_path):
    sweep = write_sweep(tmp_path, "mixed", method="grid", parameters={
        "epochs": {"value": 1}, "hidden_size": {"value": 8}, "num_layers": {"value": 1},
        "data_dir": {"values": ["missing-a", "missing-b", "tests/data", "missing-c", "missing-d"]}})
    p = mlp(tmp_path, "sweep", str(sweep), "--count", "5")
    assert p.returncode == 0, p.stdout + p.stderr
    assert [r["state"] for r in Store(tmp_path / "s.sqlite").list_runs()] == \
        ["failed", "failed", "finished", "failed", "failed"]


def test_warm_runs_equal_fresh_processes(tmp_path):
    """The agent forks runs of train.py from its warm process by default; --fresh_process starts
    each as a new Python, as `wandb agent` does. Same sweep, same seed: the same numbers, and the
    same requirements.txt in each W&B run."""
    sweep = write_sweep(tmp_path, "twins", method="grid", parameters={
        "data_dir": {"value": "tests/data"}, "epochs": {"value": 2}, "num_layers": {"value": 1},
        "hidden_size": {"values": [8, 16]}, "dropout": {"value": 0.1}, "optimizer": {"values": ["adam", "nag"]}})
    summaries, requirements = {}, {}
    for mode, extra in (("warm", []), ("fresh", ["--fresh_process"])):
        store = tmp_path / f"{mode}.sqlite"
        p = mlp(tmp_path, "sweep", str(sweep), "--count", "4", "--seed", "3", "--store", str(store), *extra)
        assert p.returncode == 0, p.stdout + p.stderr
        runs = Store(store).list_runs()
        logs = [Path(r["log_path"]).read_text() for r in runs]
        assert all(("a warm run: forked" in log) == (mode == "warm") for log in logs), logs[0][:300]
        summaries[mode] = [(r["params"], r["state"], r["summary"]["val_accuracy"], r["summary"]["test_accuracy"],
                            r["summary"]["confusion_matrix"]) for r in runs]
        for r in runs:    # the file, and the record that makes `wandb sync` upload it
            run_dir = Path(r["wandb_dir"])
            lines = set((run_dir / "files" / "requirements.txt").read_text().splitlines())
            assert lines == requirements.setdefault("lines", lines) and f"numpy=={np.__version__}" in lines
            assert b"requirements.txt" in next(run_dir.glob("*.wandb")).read_bytes()
    assert len(summaries["warm"]) == 4 and summaries["warm"] == summaries["fresh"]


WARM_INTERRUPT = """
import os, signal, sys, tempfile, time
from pathlib import Path
from mlp.sweep.warm import WarmLauncher
def entry(args):          # a run interrupted before train.py's own handlers exist
    time.sleep(60)
    return 0
with tempfile.TemporaryFile("w+") as log:
    child = WarmLauncher(entry).start([], dict(os.environ), Path.cwd(), log)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    code = child.wait(30)
    log.seek(0)
    print(code, "Traceback" in log.read())
"""


def test_a_warm_run_interrupted_early_exits_130_like_a_fresh_process():
    """SIGINT/SIGTERM reaching a forked run before train.py handles them (during its set-up) stops
    it as killed (130), never as a crash (a parallel sweep stopped by SIGTERM recorded such a run
    'crashed' with a traceback in its log)."""
    p = subprocess.run([sys.executable, "-c", WARM_INTERRUPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["130", "False"]


def _w_and_b_can_share_a_service():
    """`wandb beta core start` exists in this W&B (older versions lack it; the agent then lets
    every run start its own service, which the other sweep tests cover)."""
    p = subprocess.run([sys.executable, "-m", "wandb", "beta", "core", "--help"], capture_output=True, text=True,
                       timeout=120)
    return p.returncode == 0 and "start" in p.stdout


@pytest.fixture(scope="session")
def shared_service():
    """Skip where this W&B cannot share a service (asked once per session, not at collection)."""
    if not _w_and_b_can_share_a_service():
        pytest.skip("this W&B has no `wandb beta core` (shared service)")


def _used_shared_service(run):
    logs = list(Path(run["wandb_dir"]).glob("logs/debug.log"))
    return bool(logs) and "Connected to an existing wandb-core service via WANDB_SERVICE" in logs[0].read_text()


def test_an_agent_shares_one_w_and_b_service_between_its_runs(tmp_path, shared_service):
    """From five runs on, the agent starts one W&B service (`wandb beta core start`) in the
    background and hands it to every run that starts once it is ready: those runs connect to it
    instead of starting their own. Two runs are not worth one; WANDB_SERVICE set empty turns
    sharing off (both also checked on their own, with stand-in commands, below)."""
    sweep = write_sweep(tmp_path, "shared", method="grid", parameters={
        "data_dir": {"value": "tests/data"}, "epochs": {"value": 2}, "num_layers": {"value": 1},
        "hidden_size": {"values": [8, 9, 10, 11, 12, 13]}})
    for i, (count, env) in enumerate(((6, {}), (2, {"WANDB_SERVICE": ""}))):
        store = tmp_path / f"{i}.sqlite"
        p = mlp(tmp_path, "sweep", str(sweep), "--count", str(count), "--store", str(store), env_extra=env)
        assert p.returncode == 0, p.stdout + p.stderr
        runs = Store(store).list_runs()
        assert [r["state"] for r in runs] == ["finished"] * count
        assert all(list(Path(r["wandb_dir"]).glob("*.wandb")) for r in runs)     # offline data kept
        shared = [_used_shared_service(r) for r in runs]
        if not env:   # once ready (about 1 s after the agent starts), every later run uses it
            assert shared[-1] and shared == sorted(shared), shared
        else:
            assert not any(shared), shared


def test_a_w_and_b_service_named_in_the_environment_serves_every_run(tmp_path, shared_service):
    env = {**os.environ}
    env.pop("WANDB_SERVICE", None)
    started = subprocess.run([sys.executable, "-m", "wandb", "beta", "core", "start", "--idle-timeout", "30s"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr
    token = started.stdout.strip().splitlines()[0]
    sweep = write_sweep(tmp_path, "given", method="grid", parameters={
        "data_dir": {"value": "tests/data"}, "epochs": {"value": 1}, "num_layers": {"value": 1},
        "hidden_size": {"values": [8, 9]}})
    try:
        p = mlp(tmp_path, "sweep", str(sweep), "--count", "2", env_extra={"WANDB_SERVICE": token})
    finally:
        subprocess.run([sys.executable, "-m", "wandb", "beta", "core", "stop"], capture_output=True,
                       env={**env, "WANDB_SERVICE": token}, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    runs = Store(tmp_path / "s.sqlite").list_runs()
    assert [r["state"] for r in runs] == ["finished"] * 2 and all(_used_shared_service(r) for r in runs)


def test_a_count_that_ends_with_the_grid_finishes_the_sweep(tmp_path):
    """`--count N` on a grid of N points: the sweep is finished, not left running; a grid with
    points left stays running (another agent may go on)."""
    states = {}
    for points in (2, 3):
        sweep = write_sweep(tmp_path, f"grid{points}", method="grid", parameters={
            "data_dir": {"value": "tests/data"}, "epochs": {"value": 1}, "num_layers": {"value": 1},
            "hidden_size": {"values": list(range(8, 8 + points))}})
        store = tmp_path / f"{points}.sqlite"
        p = mlp(tmp_path, "sweep", str(sweep), "--count", "2", "--store", str(store))
        assert p.returncode == 0, p.stdout + p.stderr
        (row,) = Store(store).list_sweeps()
        states[points] = row["state"]
    assert states == {2: "finished", 3: "running"}


def _ready(service, timeout=30.0):
    """for_run() once the background start has finished."""
    if service._starting is not None:
        service._starting.wait(timeout)
    return service.for_run()


def test_the_shared_service_is_handed_out_only_while_it_can_still_be_running():
    """SharedService with stand-in start commands: the printed value is handed to runs; a start
    that fails, hangs or is not worth it gives None (runs start their own); a service idle for
    half its idle timeout is replaced; the environment's value wins, an empty one turns it off."""
    from mlp.sweep.wandb_service import SharedService
    prints = lambda text: [sys.executable, "-c", f"print({text!r})"]   # noqa: E731
    s = SharedService(environ={}, command=prints("tok-1"), idle_seconds=600)
    s.start(2)                                  # two runs are not worth a service
    assert s._starting is None and s.for_run() is None
    s.start(None)
    assert _ready(s) == "tok-1"
    s.released()
    assert s.for_run() == "tok-1"
    s.fresh_until = 0.0                          # idle too long: it may be gone; a new one is started
    s.command = prints("tok-2")
    assert s.for_run() is None and _ready(s) == "tok-2"

    failing = SharedService(environ={}, command=[sys.executable, "-c", "raise SystemExit(1)"])
    failing.start(None)
    assert _ready(failing) is None and failing.failed
    failing.start(None)
    assert failing._starting is None             # not retried

    hung = SharedService(environ={}, command=[sys.executable, "-c", "import time; time.sleep(60)"], start_seconds=0.3)
    hung.start(None)
    import time
    time.sleep(0.5)
    assert hung.for_run() is None and hung.failed and hung._starting is None

    given = SharedService(environ={"WANDB_SERVICE": "users-own"}, command=prints("never"))
    given.start(None)
    assert given._starting is None and given.for_run() == "users-own"
    off = SharedService(environ={"WANDB_SERVICE": ""}, command=prints("never"))
    off.start(None)
    assert off._starting is None and off.for_run() is None
