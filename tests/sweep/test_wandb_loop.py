"""One loop, online and offline (issue 12): W&B sweeps in the store, report and rerun; offline sweeps
arriving in W&B as sweeps.

Nothing here talks to the W&B cloud and nothing patches wandb: wandb's own client code (the public
API, `wandb.sweep`, `wandb sync` through wandb-core, the agent's command builder) runs against a
loopback server (`tests/fake_wandb.py`) started by the tests, which records what it was asked.
Every `mlp` and `train.py` runs as a subprocess, as a user would run it (wandb keeps process-wide
state). MNIST here is a stand-in: the committed Fashion-MNIST subset under the name `mnist` (it has
its own checksum manifest), so the tests need no download and no real MNIST; they check the
plumbing, not accuracy on digits.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlp import config as C
from mlp.core.model_file import load_model
from mlp.errors import UsageError
from mlp.report.registry import figures_for
from mlp.runs.data import load_dataset
from mlp.runs.store import Store
from mlp.sweep.engine import engine

from helpers.fake_wandb import API_KEY, FakeWandb, ForwardProxy
from helpers.paths import FASHION_SUBSET, ROOT
from helpers.promises import one_line_error
from helpers.waiting import wait_for

ENTITY, PROJECT = "fake-entity", "loop-project"
METRIC = {"name": "val_accuracy", "goal": "maximize"}
TINY = {"epochs": 2, "num_layers": 1, "hidden_size": 16, "batch_size": 64, "optimizer": "nadam",
        "learning_rate": 0.001, "activation": "relu", "weight_init": "xavier"}


# ---- helpers ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """fashion_mnist/ (the committed subset) and mnist/ (the same files as a stand-in)."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(FASHION_SUBSET, root / "fashion_mnist")
    shutil.copytree(FASHION_SUBSET, root / "mnist")
    return root


@pytest.fixture(scope="module")
def fake():
    with FakeWandb() as server:
        yield server


def environment(tmp: Path, extra: dict | None = None) -> dict:
    """A clean environment: no W&B credentials or settings from this machine, W&B files and the
    store in `tmp`, short network timeouts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in ("MLP_STORE", "NETRC")}
    env.update({"WANDB_DIR": str(tmp), "WANDB_CONFIG_DIR": str(tmp / "wandb-config"), "WANDB_SILENT": "true",
                "NETRC": str(tmp / "no-netrc"), "MLP_STORE": str(tmp / "s.sqlite"), "MLP_WANDB_TIMEOUT": "3",
                "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    env.update(extra or {})
    return env


def mlp(tmp: Path, *args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlp", *map(str, args)], cwd=ROOT, env=environment(tmp, env),
                          capture_output=True, text=True, timeout=timeout)


def train(tmp: Path, data_dir: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """train.py with a tiny network for one epoch on the subset, W&B as `--wandb_mode auto` decides."""
    tiny = ["-e", "1", "-nhl", "1", "-sz", "16", "--data_dir", str(data_dir), "-wp", PROJECT, "--wandb_mode", "auto"]
    return subprocess.run([sys.executable, "train.py", *tiny, *map(str, args)], cwd=ROOT, env=environment(tmp, env),
                          capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    return proc


def as_wandb_agent(tmp: Path, sweep_id: str, run_id: str, params: dict, command: list, mode: str = "offline",
                   extra_env: dict | None = None) -> subprocess.Popen:
    """Start train.py exactly as `wandb agent` starts a run: the parameter file written by wandb's own
    writer, the argv from wandb's own builder (`create_sweep_command` / `create_sweep_command_args`,
    the macros expanded as its agent does), and the agent's environment. `${interpreter}` is this
    Python (the agent's literal `python`, with the project's environment active)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils
    from wandb.sdk.lib import config_util
    run = {"args": {k: {"value": v} for k, v in params.items()}, "run_id": run_id, "program": "train.py"}
    param_file = tmp / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    param_file.parent.mkdir(parents=True, exist_ok=True)
    config_util.save_config_file_from_dict(str(param_file), run["args"])
    forms = sweep_utils.create_sweep_command_args(run)
    forms.update(interpreter=[sys.executable], program=[run["program"]], env=["/usr/bin/env"])
    argv = []
    for part in sweep_utils.create_sweep_command(list(command)):
        argv += forms.get(part[2:-1]) or [] if part.startswith("${") and part.endswith("}") else [part]
    env = environment(tmp, {"WANDB_SWEEP_ID": sweep_id, "WANDB_RUN_ID": run_id, "WANDB_SWEEP_PARAM_PATH": str(param_file),
                            "WANDB_ENTITY": ENTITY, "WANDB_PROJECT": PROJECT, "WANDB_MODE": mode, **(extra_env or {})})
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs) -> list:
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    return outs


def dump(store_path: Path) -> dict:
    """Everything the store holds about sweeps, runs and history (to compare before and after)."""
    with Store(store_path, create=False) as store:
        runs = store.list_runs()
        return {"sweeps": [{k: v for k, v in s.items() if k != "updated_at"} for s in store.list_sweeps()],
                "runs": runs, "history": {r["id"]: store.history(r["id"]) for r in runs}}


# ---- 1. runs under `wandb agent` belong to their sweep; report and rerun it --------------------------------

SWEEP_ID = "wbsweep1"
LOSSES = {"program": "train.py", "method": "grid", "metric": METRIC,
          "parameters": {"loss": {"values": ["cross_entropy", "mean_squared_error"]}, "seed": {"values": [0, 1]},
                         **{k: {"value": v} for k, v in TINY.items()}},
          "command": ["${env}", "${interpreter}", "${program}", "${args}"]}


def test_runs_of_wandb_agent_are_a_sweep_that_reports_and_reruns(tmp_path, data_dir):
    """Three runs launched as `wandb agent` launches them (W&B offline, in parallel): the store
    records them under their W&B sweep; `mlp sweeps` lists it as a W&B sweep, `mlp runs` shows the
    runs, `mlp report` draws every figure from the kept models, and `mlp rerun --top 1 --dataset
    mnist` on the W&B sweep id runs here and lands next to it in the report."""
    grid = [{"loss": "cross_entropy", "seed": 0}, {"loss": "mean_squared_error", "seed": 0},
            {"loss": "cross_entropy", "seed": 1}]
    proposals = [{**p, **TINY, "data_dir": str(data_dir)} for p in grid]
    run_ids = ["wbrun001", "wbrun002", "wbrun003"]
    finish([as_wandb_agent(tmp_path, SWEEP_ID, rid, params, LOSSES["command"])
            for rid, params in zip(run_ids, proposals)])

    sweeps = json.loads(ok(mlp(tmp_path, "sweeps", "--json")).stdout)
    assert [(s["id"], s["origin"], s["wandb_path"], s["summary"]["runs"]) for s in sweeps] == \
        [(SWEEP_ID, "wandb", f"{ENTITY}/{PROJECT}/{SWEEP_ID}", 3)]
    listed = ok(mlp(tmp_path, "sweeps")).stdout
    assert SWEEP_ID in listed and "W&B" in listed
    assert f"W&B sweep {ENTITY}/{PROJECT}/{SWEEP_ID}" in ok(mlp(tmp_path, "runs", SWEEP_ID)).stdout
    runs = json.loads(ok(mlp(tmp_path, "runs", SWEEP_ID, "--json")).stdout)
    assert sorted(r["id"] for r in runs) == run_ids and {r["state"] for r in runs} == {"finished"}
    by_id = {r["id"]: r for r in runs}
    for rid, params in zip(run_ids, proposals):
        assert by_id[rid]["params"] == params                    # what the sweep chose, from its parameter file
        assert Path(by_id[rid]["model_path"]) == tmp_path / "mlp-models" / SWEEP_ID / f"{rid}.npz"
        assert Path(by_id[rid]["model_path"]).is_file()            # kept beside the store, as under `mlp agent`
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert {(r["wandb_entity"], r["wandb_project"]) for r in store.list_runs(SWEEP_ID)} == {(ENTITY, PROJECT)}
        config = store.get_sweep(SWEEP_ID)["config"]
    assert sorted(config["parameters"]["loss"]["values"]) == ["cross_entropy", "mean_squared_error"]   # as seen

    proc = ok(mlp(tmp_path, "rerun", SWEEP_ID, "--top", "1", "--dataset", "mnist", "--epochs", "1",
                  "--data_dir", data_dir))
    child = proc.stdout.splitlines()[0].strip()
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert store.get_sweep(child)["parent_sweep_id"] == SWEEP_ID
        (rerun,) = store.list_runs(child)
        best = max(store.list_runs(SWEEP_ID), key=lambda r: (r["summary"]["val_accuracy"], -r["seq"]))
    assert rerun["state"] == "finished" and rerun["config"]["dataset"] == "mnist"
    assert rerun["config"]["loss"] == best["config"]["loss"] and rerun["config"]["seed"] == best["config"]["seed"]
    out = tmp_path / "report"
    proc = ok(mlp(tmp_path, "report", SWEEP_ID, "--out", out))
    assert "retraining" not in proc.stderr                          # the best run's own model was loaded
    for name in figures_for("classify"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (out / "report.md").read_text()
    assert (f"| {best['summary']['val_accuracy']:.4f} | {best['summary']['test_accuracy']:.4f} | "
            f"{rerun['summary']['val_accuracy']:.4f} | {rerun['summary']['test_accuracy']:.4f} | {rerun['id']} | "
            f"finished |") in md


def test_online_run_of_wandb_agent_gives_the_store_the_sweeps_real_config(tmp_path, data_dir, fake):
    """Online, the first run of a W&B sweep asks W&B's public API for the sweep's config, so the
    store's row has the real search space and method, not only what the parameter files show."""
    fake.add_sweep(PROJECT, "onlinesw", {**LOSSES, "name": "losses-online"})
    start = len(fake.requests)
    finish([as_wandb_agent(tmp_path, "onlinesw", "onrun001", {"loss": "cross_entropy", "seed": 0, **TINY,
                                                               "data_dir": str(data_dir)},
                           LOSSES["command"], mode="online", extra_env=fake.env())])
    ops = [r.operation for r in fake.requests[start:]]
    assert ops.count("GetSweep") == 1 and "UpsertBucket" in ops and not fake.unknown
    assert fake.runs[(ENTITY, PROJECT, "onrun001")]["sweepName"] == "onlinesw"     # W&B has the run in its sweep
    with Store(tmp_path / "s.sqlite", create=False) as store:
        sweep = store.get_sweep("onlinesw")
        (run,) = store.list_runs("onlinesw")
    assert (sweep["origin"], sweep["name"], sweep["config"]) == ("wandb", "losses-online",
                                                                 {**LOSSES, "name": "losses-online"})
    assert run["state"] == "finished"
    model = load_model(run["model_path"])                    # the run's own model: its logged test accuracy
    test = load_dataset("fashion_mnist", data_dir=data_dir).x_test, load_dataset("fashion_mnist", data_dir=data_dir).y_test
    assert model.evaluate(*test)[1] == pytest.approx(run["summary"]["test_accuracy"], abs=1e-9)


def test_models_travel_with_their_runs_to_another_machine(tmp_path, data_dir, fake):
    """Machine A runs a W&B sweep under `wandb agent`: two runs online, one offline that `mlp sync`
    uploads later. Every run logs its model as artifact mlp-model:RUN_ID (type model) and its test
    confusion counts in its summary. Machine B (a fresh store) reports the sweep: the import
    downloads the best runs' models — byte for byte the files machine A saved — and the confusion
    matrix is the best run's own model's, equal to the one it logged; nothing is retrained."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    fake.add_sweep(PROJECT, "artsweep", {**LOSSES, "name": "artifacts"})
    grid = [("cross_entropy", 0, "online"), ("mean_squared_error", 0, "online"), ("cross_entropy", 1, "offline")]
    procs = [as_wandb_agent(a, "artsweep", f"artrun0{i}", {"loss": loss, "seed": seed, **TINY, "data_dir": str(data_dir)},
                            LOSSES["command"], mode=mode, extra_env=fake.env())
             for i, (loss, seed, mode) in enumerate(grid)]
    finish(procs)
    assert not fake.find_artifact(ENTITY, PROJECT, "mlp-model:artrun02")      # offline: not uploaded yet
    ok(mlp(a, "sync", "artsweep", env=fake.env()))
    with Store(a / "s.sqlite", create=False) as store:
        saved = {r["id"]: Path(r["model_path"]).read_bytes() for r in store.list_runs("artsweep")}
        logged = {r["id"]: r["summary"]["confusion_matrix"] for r in store.list_runs("artsweep")}
    for run_id, content in saved.items():
        artifact_id = fake.find_artifact(ENTITY, PROJECT, f"mlp-model:{run_id}")
        assert artifact_id and fake.artifacts[artifact_id]["artifactTypeName"] == "model"
        assert fake.uploads[f"artifacts/{artifact_id}/model.npz"] == content
        assert fake.runs[(ENTITY, PROJECT, run_id)]["summaryMetrics"]["confusion_matrix_counts"] == logged[run_id]

    out = b / "report"
    proc = ok(mlp(b, "report", f"{ENTITY}/{PROJECT}/artsweep", "--out", out, "--data_dir", data_dir / "fashion_mnist",
                  env=fake.env()))
    assert "retrain" not in proc.stderr, proc.stderr
    with Store(b / "s.sqlite", create=False) as store:
        runs = {r["id"]: r for r in store.list_runs("artsweep")}
    assert sorted(runs) == sorted(saved)
    for run_id, run in runs.items():         # all three are among the best three: each one downloaded
        assert (run["model_source"], run["model_artifact"]) == ("artifact", f"{ENTITY}/{PROJECT}/mlp-model:{run_id}")
        assert Path(run["model_path"]).read_bytes() == saved[run_id]
        assert Path(run["model_path"]).parent == b / "mlp-models" / "artsweep"
        assert run["summary"]["confusion_matrix"] == logged[run_id]          # imported from W&B's summary
    md = (out / "report.md").read_text()
    best = max(runs.values(), key=lambda r: (r["summary"]["val_accuracy"], -r["seq"]))
    assert (f"Model for the analysis below: its own model, downloaded from W&B (artifact "
            f"{ENTITY}/{PROJECT}/mlp-model:{best['id']})") in md
    assert "with a confusion matrix identical to the one the run logged when it ran" in md
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "confusion_matrix.png" in md


def wait_for_epochs(store_path: Path, run_id: str, proc, n: int = 1) -> None:
    def done():
        assert proc.poll() is None, "the run ended before it could be signalled"
        try:
            with Store(store_path, create=False) as store:
                return len(store.history(run_id)) >= n
        except UsageError:           # the run has not made the store yet
            return False
    wait_for(done, what=f"{n} epoch(s) of run {run_id} in the store", every=0.02)


def test_under_wandb_agent_a_sweep_stop_is_no_failure_and_a_preemption_is_requeued_and_resumes(tmp_path, data_dir,
                                                                                               fake):
    """Under `wandb agent` both arrive as SIGTERM. When W&B's sweep asked for the stop (its early
    termination: the run's shouldStop), the run is a short result: exit code 0 (W&B's agent counts
    any code above 0 toward its failure and flapping rules), stopped_by in the store and in W&B's
    summary, no checkpoint, and an import elsewhere keeps "stopped early". Otherwise it is a
    preemption: the run keeps a checkpoint, marks itself preempting and exits non-zero (W&B's
    convention: it is requeued), and the requeued run — the same id, launched again — continues
    from the checkpoint to the end."""
    fake.add_sweep(PROJECT, "stopsw01", {**LOSSES, "name": "stops", "early_terminate": {"type": "hyperband",
                                                                                       "min_iter": 1}})
    params = {"loss": "cross_entropy", "seed": 0, **TINY, "epochs": 40, "hidden_size": 256,
              "data_dir": str(data_dir)}
    stopped = as_wandb_agent(tmp_path, "stopsw01", "stopped1", params, LOSSES["command"], mode="online",
                             extra_env=fake.env())
    wait_for_epochs(tmp_path / "s.sqlite", "stopped1", stopped)
    fake.should_stop.add("stopped1")
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 0, err                                      # not a failure for W&B's agent
    with Store(tmp_path / "s.sqlite", create=False) as store:
        row = store.get_run("stopped1")
    assert (row["state"], row["stopped_by"]) == ("killed", "hyperband") and row["summary"]["stopped_by"] == "hyperband"
    assert not (tmp_path / "mlp-checkpoints" / "stopped1.npz").exists()
    assert fake.runs[(ENTITY, PROJECT, "stopped1")]["summaryMetrics"]["stopped_by"] == "hyperband"

    preempted = as_wandb_agent(tmp_path, "stopsw01", "preempt1", {**params, "seed": 1}, LOSSES["command"],
                               mode="online", extra_env=fake.env())
    wait_for_epochs(tmp_path / "s.sqlite", "preempt1", preempted)
    preempted.send_signal(signal.SIGTERM)
    _, err = preempted.communicate(timeout=120)
    assert preempted.returncode == 130, err                                  # non-zero: W&B requeues it
    assert any(chunk.get("preempting") for chunk in fake.file_stream[(ENTITY, PROJECT, "preempt1")])
    assert (tmp_path / "mlp-checkpoints" / "preempt1.npz").is_file()
    with Store(tmp_path / "s.sqlite", create=False) as store:
        done = len(store.history("preempt1"))
        assert store.get_run("preempt1")["state"] == "killed" and done < 40
    (_, err), = finish([as_wandb_agent(tmp_path, "stopsw01", "preempt1", {**params, "seed": 1}, LOSSES["command"],
                                       mode="online", extra_env=fake.env())])    # the requeued run
    assert f"continuing from its checkpoint after epoch {done}" in err
    with Store(tmp_path / "s.sqlite", create=False) as store:
        row = store.get_run("preempt1")
        assert row["state"] == "finished" and len(store.history("preempt1")) == 40
    assert not (tmp_path / "mlp-checkpoints" / "preempt1.npz").exists()

    fake.runs[(ENTITY, PROJECT, "stopped1")]["state"] = "finished"          # what W&B shows for exit code 0
    other = tmp_path / "elsewhere"
    other.mkdir()
    ok(mlp(other, "import", f"{ENTITY}/{PROJECT}/stopsw01", env=fake.env()))
    with Store(other / "s.sqlite", create=False) as store:
        imported = store.get_run("stopped1")
    assert (imported["state"], imported["stopped_by"]) == ("killed", "hyperband")


def test_dataset_set_by_the_sweep_is_the_data_loaded(tmp_path, data_dir):
    """A sweep whose command has no ${args} sets `dataset` only in W&B's parameter file: the run
    trains on that dataset, not on the one train.py's argv (here its default) names. And when W&B's
    config disagrees with what the run prepared (its parameter file unread by the run, read by
    wandb.init), the data is loaded again for W&B's dataset."""
    proc = as_wandb_agent(tmp_path, "wbsweep2", "wbrun010", {"dataset": "mnist", "data_dir": str(data_dir), **TINY},
                          ["${env}", "${interpreter}", "${program}", "-d", "fashion_mnist"])
    (_, stderr), = finish([proc])
    assert ": mnist from " in stderr
    param_file = tmp_path / "params.yaml"
    param_file.write_text(yaml.safe_dump({"dataset": {"value": "mnist"}}))
    script = ("from mlp import config as C\nfrom mlp.runs.context import RunContext\nfrom mlp.runs.experiment import run\n"
              f"config = C.resolve({{'dataset': 'fashion_mnist', 'data_dir': {str(data_dir)!r}, 'store': {str(tmp_path / 's.sqlite')!r}, **{TINY!r}}})\n"
              "raise SystemExit(run(config, RunContext(run_id='wbrun011')).exit_code)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=environment(tmp_path, {"WANDB_MODE": "offline", "WANDB_SWEEP_PARAM_PATH": str(param_file)}))
    ok(proc)
    assert "W&B's config asks for other data (dataset=mnist); loading it" in proc.stderr
    assert ": mnist from " in proc.stderr
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert store.get_run("wbrun010")["config"]["dataset"] == "mnist"
        assert store.get_run("wbrun011")["config"]["dataset"] == "mnist"


# ---- 2. import from W&B's public API: twice adds nothing --------------------------------------------------

IMPORTED = "impsweep"
GRID = {"name": "imported-grid", "program": "train.py", "method": "grid", "metric": METRIC,
        "parameters": {"learning_rate": {"values": [0.001, 0.003]}, "optimizer": {"values": ["nadam", "adam"]},
                       **{k: {"value": v} for k, v in TINY.items() if k not in ("learning_rate", "optimizer")}},
        "command": ["${env}", "${interpreter}", "${program}", "${args}"]}


def seeded_run(fake, name, lr, optimizer, val, state="finished", sweep=IMPORTED, created=None, extra=None):
    config = C.hyperparameters(C.resolve({**TINY, "learning_rate": lr, "optimizer": optimizer}))
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": val - 0.05, "val_loss": 1.1 / e,
                "val_accuracy": val - 0.02 * (2 - e), "epoch_seconds": 0.1} for e in (1, 2)]
    history.insert(0, {"samples": {"_type": "images/separated", "count": 10}})     # W&B's media row, not an epoch
    summary = {"val_accuracy": val, "test_accuracy": val - 0.01, "epochs_run": 2, "state": state,
               "_runtime": 3.2, "samples": {"_type": "images/separated"}} if state == "finished" else {}
    return fake.add_run(PROJECT, name, {**config, **(extra or {})}, summary, history if state == "finished" else [],
                        state=state, sweep=sweep, created_at=created)


@pytest.fixture(scope="module")
def imported(fake, tmp_path_factory, data_dir):
    """A W&B sweep of 3 finished runs and 1 running, imported into a fresh store."""
    tmp = tmp_path_factory.mktemp("import")
    fake.add_sweep(PROJECT, IMPORTED, GRID, created_at=1_700_000_000)
    seeded_run(fake, "imp00001", 0.001, "nadam", 0.42, created=1_700_000_100)
    seeded_run(fake, "imp00002", 0.003, "nadam", 0.47, created=1_700_000_200)
    seeded_run(fake, "imp00003", 0.001, "adam", 0.45, created=1_700_000_300)
    seeded_run(fake, "imp00004", 0.003, "adam", 0.0, state="running", created=1_700_000_400)
    start = len(fake.requests)
    proc = ok(mlp(tmp, "import", f"{ENTITY}/{PROJECT}/{IMPORTED}", env=fake.env()))
    return {"tmp": tmp, "proc": proc, "requests": fake.requests[start:]}


def test_import_copies_the_sweep_and_its_finished_runs(imported, fake):
    assert imported["proc"].stdout.strip() == IMPORTED
    ops = [r.operation for r in imported["requests"] if r.operation]
    assert ops.count("GetSweep") == 1 and ops.count("Runs") == 1
    assert ops.count("RunFullHistory") == 3                   # the running run's history is not read yet
    runs_query = next(r for r in imported["requests"] if r.operation == "Runs")
    assert json.loads(runs_query.variables["filters"]) == {"$and": [{"sweep": IMPORTED}]}
    assert not fake.unknown
    with Store(imported["tmp"] / "s.sqlite", create=False) as store:
        sweep = store.get_sweep(IMPORTED)
        runs = {r["id"]: r for r in store.list_runs(IMPORTED)}
        history = store.history("imp00002")
    assert (sweep["origin"], sweep["wandb_path"], sweep["name"]) == ("wandb", f"{ENTITY}/{PROJECT}/{IMPORTED}",
                                                                     "imported-grid")
    assert sweep["config"] == GRID and sweep["created_at"] == 1_700_000_000
    assert sorted(runs) == ["imp00001", "imp00002", "imp00003"]
    run = runs["imp00002"]
    assert run["state"] == "finished" and run["created_at"] == 1_700_000_200
    assert run["params"] == {"learning_rate": 0.003, "optimizer": "nadam",
                             **{k: v for k, v in TINY.items() if k not in ("learning_rate", "optimizer")}}
    assert run["config"] == C.hyperparameters(C.resolve({**TINY, "learning_rate": 0.003}))
    assert run["summary"] == {"val_accuracy": 0.47, "test_accuracy": 0.47 - 0.01, "epochs_run": 2, "state": "finished"}
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["val_accuracy"] == 0.47
    assert (run["wandb_entity"], run["wandb_project"]) == (ENTITY, PROJECT)


def test_import_twice_adds_nothing_and_later_adds_what_finished(imported, fake):
    tmp = imported["tmp"]
    before = dump(tmp / "s.sqlite")
    start = len(fake.requests)
    proc = ok(mlp(tmp, "import", f"{ENTITY}/{PROJECT}/{IMPORTED}", env=fake.env()))
    assert dump(tmp / "s.sqlite") == before
    assert "0 runs imported, 3 already in the store, 1 not over yet" in proc.stderr
    assert "RunFullHistory" not in [r.operation for r in fake.requests[start:]]
    seeded_run(fake, "imp00004", 0.003, "adam", 0.44, created=1_700_000_400)    # the running run finished
    proc = ok(mlp(tmp, "import", f"{ENTITY}/{PROJECT}/{IMPORTED}", env=fake.env()))
    assert "1 runs imported, 3 already in the store" in proc.stderr
    after = dump(tmp / "s.sqlite")
    assert [r["id"] for r in after["runs"]] == [r["id"] for r in before["runs"]] + ["imp00004"]
    assert after["history"]["imp00004"][-1]["val_accuracy"] == 0.44


def seed_loss_study(fake, name: str, vals: dict) -> None:
    """A W&B cross-entropy vs squared-error sweep: one finished run per (loss, seed) in `vals`."""
    fake.add_sweep(PROJECT, name, {"name": f"{name}-study", "program": "train.py", "method": "grid", "metric": METRIC,
                                   "parameters": {"loss": {"values": ["cross_entropy", "mean_squared_error"]},
                                                  "seed": {"values": [0, 1]},
                                                  **{k: {"value": v} for k, v in TINY.items()}},
                                   "command": ["${env}", "${interpreter}", "${program}", "${args}"]})
    for i, ((loss, seed), val) in enumerate(vals.items()):
        config = C.hyperparameters(C.resolve({**TINY, "loss": loss, "seed": seed}))
        fake.add_run(PROJECT, f"{name}r{i}", config, {"val_accuracy": val, "test_accuracy": val - 0.01, "epochs_run": 2,
                                                       "state": "finished"},
                     [{"epoch": 1, "val_accuracy": val - 0.02}, {"epoch": 2, "val_accuracy": val}], sweep=name,
                     created_at=1_700_001_000 + i)


def test_compare_takes_a_wandb_sweep_as_a_url_a_path_or_a_bare_id(imported, fake, data_dir, tmp_path):
    """`mlp report --compare` imports a W&B cross-entropy vs squared-error sweep like the main
    sweep: by its URL, by ENTITY/PROJECT/ID, or by a bare id that lives in the main W&B sweep's
    project; the report's comparison is computed from the imported runs."""
    shutil.copy(imported["tmp"] / "s.sqlite", tmp_path / "s.sqlite")
    studies = {"lossurl1": {("cross_entropy", 0): 0.80, ("mean_squared_error", 0): 0.70,
                            ("cross_entropy", 1): 0.82, ("mean_squared_error", 1): 0.76},
               "lossbare": {("cross_entropy", 0): 0.60, ("mean_squared_error", 0): 0.66,
                            ("cross_entropy", 1): 0.61, ("mean_squared_error", 1): 0.69}}
    for name, vals in studies.items():
        seed_loss_study(fake, name, vals)
    for ref, name in ((f"{fake.url}/{ENTITY}/{PROJECT}/sweeps/lossurl1", "lossurl1"), ("lossbare", "lossbare"),
                      (f"{ENTITY}/{PROJECT}/lossurl1", "lossurl1")):
        out = tmp_path / f"report-{name}"
        ok(mlp(tmp_path, "report", IMPORTED, "--compare", ref, "--out", out, "--data_dir", data_dir / "fashion_mnist",
               env=fake.env()))
        gaps = [studies[name][("cross_entropy", s)] - studies[name][("mean_squared_error", s)] for s in (0, 1)]
        md = (out / "report.md").read_text()
        assert f"paired gap CE − MSE {np.mean(gaps):+.4f} ± {np.std(gaps, ddof=1):.4f}" in md, ref
        with Store(tmp_path / "s.sqlite", create=False) as store:
            study = store.get_sweep(name)
            assert (study["origin"], study["wandb_path"]) == ("wandb", f"{ENTITY}/{PROJECT}/{name}")
            assert len(store.list_runs(name)) == 4
    one_line_error(mlp(tmp_path, "report", IMPORTED, "--compare", "nosuch99", env=fake.env()), "nosuch99")


# ---- 3. rerun online: a W&B grid over exactly the K configs; the report of the W&B path ---------------------

def test_online_rerun_is_a_wandb_grid_over_exactly_the_top_configs_and_the_report_shows_it(imported, fake, data_dir):
    """`mlp rerun ENTITY/PROJECT/ID --top 2 --dataset mnist` creates one W&B sweep (W&B's grid
    engine proposes exactly the two configs), prints the `wandb agent` command; once W&B's agents ran
    it, `mlp report ENTITY/PROJECT/ID` imports both sweeps and shows both datasets side by side."""
    tmp = imported["tmp"]
    start = len(fake.requests)
    proc = ok(mlp(tmp, "rerun", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--top", "2", "--dataset", "mnist", env=fake.env()))
    upserts = [r for r in fake.requests[start:] if r.operation == "UpsertSweep"]
    assert len(upserts) == 1
    variables = upserts[0].variables
    assert (variables["entityName"], variables["projectName"]) == (ENTITY, PROJECT)
    assert variables["priorRunsFilters"] is None
    config = yaml.safe_load(variables["config"])
    assert config["method"] == "grid" and config["run_cap"] == 2
    assert config["parameters"]["dataset"] == {"value": "mnist"}
    assert f"sweep {ENTITY}/{PROJECT}/{IMPORTED}" in config["description"] and config["name"] == "imported-grid-top2-mnist"
    # W&B's own grid engine proposes exactly the two best configurations (imp00002, then imp00003)
    proposals, engine_runs = [], []
    while (suggestion := engine().next_run(config, engine_runs)) is not None:
        engine_runs.append(engine().SweepRun(name=str(len(engine_runs)), state="finished", config=suggestion.config))
        proposals.append(C.expand_configuration({k: v["value"] for k, v in suggestion.config.items()}))
    with Store(tmp / "s.sqlite", create=False) as store:
        top = [store.get_run(i)["config"] for i in ("imp00002", "imp00003")]
        created = [s for s in store.list_sweeps() if s["parent_sweep_id"] == IMPORTED]
    assert proposals == [{**{k: v for k, v in c.items() if v is not None}, "dataset": "mnist"} for c in top]
    new_id = config and created[0]["id"]
    lines = proc.stdout.splitlines()
    assert lines[:2] == [f"{ENTITY}/{PROJECT}/{new_id}", f"wandb agent {ENTITY}/{PROJECT}/{new_id}"]
    assert (created[0]["origin"], created[0]["wandb_path"]) == ("wandb", f"{ENTITY}/{PROJECT}/{new_id}")
    assert created[0]["rerun"].source_runs == ["imp00002", "imp00003"]
    assert "data_dir" not in variables["config"]                     # no folder of this machine in a W&B sweep
    # the same rerun again reuses that sweep; a folder of this machine is refused for agents elsewhere
    start = len(fake.requests)
    again = ok(mlp(tmp, "rerun", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--top", "2", "--dataset", "mnist", env=fake.env()))
    assert again.stdout.splitlines()[:2] == lines[:2] and "UpsertSweep" not in fake.operations()[start:]
    one_line_error(mlp(tmp, "rerun", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--top", "2", "--dataset", "mnist",
                       "--data_dir", data_dir, env=fake.env()), "folder of this machine", "--local")
    assert "UpsertSweep" not in fake.operations()[start:]
    with Store(tmp / "s.sqlite", create=False) as store:
        assert [s["id"] for s in store.list_sweeps() if s["parent_sweep_id"] == IMPORTED] == [new_id]

    # W&B's agents run it elsewhere; the parent's report imports their runs and shows both datasets
    for i, (proposal, val) in enumerate(zip(config["parameters"]["configuration"]["values"], (0.91, 0.93))):
        seeded = {**top[i], "dataset": "mnist"}
        fake.add_run(PROJECT, f"rer0000{i}", {**seeded, "configuration": proposal},
                     {"val_accuracy": val, "test_accuracy": val - 0.01, "epochs_run": 2, "state": "finished"},
                     [{"epoch": 1, "val_accuracy": val}, {"epoch": 2, "val_accuracy": val}], sweep=new_id)
    out = tmp / "report"
    start = len(fake.requests)
    proc = ok(mlp(tmp, "report", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--out", out, "--data_dir",
                  data_dir / "fashion_mnist", env=fake.env()))
    assert [r.variables["name"] for r in fake.requests[start:] if r.operation == "GetSweep"] == [IMPORTED, new_id]
    assert proc.stdout.strip() == str(out / "index.html")
    md = (out / "report.md").read_text()
    assert "Run imp00002 (#2) has the best val_accuracy: 0.4700" in md   # imp00004 (0.44) arrived, not better
    assert ("Model for the analysis below: a retrain of its exact config (no model file is recorded for it, and it "
            "logged no model artifact to W&B)") in md                       # these runs logged none
    for name in ("parallel_coordinates", "confusion_matrix"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"{name}.png" in md
    assert "| 0.4700 | 0.4600 | 0.9100 | 0.9000 | rer00000 | finished |" in md
    assert "| 0.4500 | 0.4400 | 0.9300 | 0.9200 | rer00001 | finished |" in md

    # --local runs the same grid here instead (and creates no W&B sweep): the local agent hands out
    # the two configs, which reach train.py through the parameter file (the command has no ${args})
    start = len(fake.requests)
    proc = ok(mlp(tmp, "rerun", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--top", "2", "--dataset", "mnist", "--local",
                  "--epochs", "1", "--data_dir", data_dir, env=fake.env()))
    assert "UpsertSweep" not in [r.operation for r in fake.requests[start:]]
    with Store(tmp / "s.sqlite", create=False) as store:
        here = store.get_sweep(proc.stdout.splitlines()[0].strip())
        runs = store.list_runs(here["id"])
    assert "configuration" in here["config"]["parameters"] and "${args}" not in here["config"]["command"]
    assert [r["state"] for r in runs] == ["finished", "finished"]
    for run, source in zip(runs, top):
        assert run["params"] == here["rerun"].configs[runs.index(run)]
        assert run["config"] == {**source, "dataset": "mnist", "epochs": 1}

    # a relative data folder is kept as given: each agent finds it beside its train.py
    start = len(fake.requests)
    ok(mlp(tmp, "rerun", f"{ENTITY}/{PROJECT}/{IMPORTED}", "--top", "2", "--dataset", "mnist", "--data_dir",
           "data/mnist-here", env=fake.env()))
    (upsert,) = [r for r in fake.requests[start:] if r.operation == "UpsertSweep"]
    values = yaml.safe_load(upsert.variables["config"])["parameters"]
    assert values["data_dir"] == {"value": "data/mnist-here"}


# ---- 4. sync: an offline sweep arrives in W&B as a sweep, once ----------------------------------------------

ATTACH = "upsertBucket(input: {entityName: $entity, modelName: $project, name: $name, sweep: $sweep})"


def test_sync_creates_the_sweep_once_every_run_arrived_and_later_runs_join_it(tmp_path, fake, data_dir):
    """`mlp sync` of a local sweep: while a run has not reached W&B, one `error:` line, exit 1 and
    no W&B sweep; run again, it uploads only what is missing and creates one sweep holding every
    run (W&B's prior-runs mechanism, from the sweep's own YAML). Runs finished after the sync carry
    the W&B sweep's id, so `wandb sync` files them in it; a run already under way when the sweep was
    created is attached to it. Syncing again changes nothing."""
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "tiny", "program": "train.py", "method": "grid", "metric": METRIC,
                                          "parameters": {"seed": {"values": [0, 1, 2, 3, 4]},
                                                         "data_dir": {"value": str(data_dir)},
                                                         **{k: {"value": v} for k, v in TINY.items()}}}))
    local = ok(mlp(tmp_path, "sweep", sweep_file, "--count", "3", "--seed", "1")).stdout.splitlines()[0].strip()
    with Store(tmp_path / "s.sqlite", create=False) as store:
        ids = sorted(r["id"] for r in store.list_runs(local))
        config = store.get_sweep(local)["config"]

    def sync():
        start = len(fake.requests)
        proc = mlp(tmp_path, "sync", local, env=fake.env())
        return proc, fake.requests[start:]

    fake.refused = {ids[1]}                       # W&B turns one run down: the sweep must wait for it
    proc, first = sync()
    one_line_error(proc, ids[1], "1 of 3 runs", "mlp sync", code=1)
    assert "UpsertSweep" not in [r.operation for r in first] and not [p for (e, p, n) in fake.sweeps if p == "mlp-sweeps"]
    assert {n for (e, p, n) in fake.runs if p == "mlp-sweeps"} == {ids[0], ids[2]}
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert store.get_sweep(local)["wandb_path"] is None

    fake.refused = set()
    proc, second = sync()
    ok(proc)
    assert {r.variables["name"] for r in second if r.operation == "UpsertBucket"} == {ids[1]}   # only what was missing
    (upsert,) = [r for r in second if r.operation == "UpsertSweep"]
    assert json.loads(upsert.variables["priorRunsFilters"]) == {"$or": [{"name": i} for i in ids]}
    assert yaml.safe_load(upsert.variables["config"]) == config                   # the sweep's own YAML
    assert (upsert.variables["entityName"], upsert.variables["projectName"]) == (fake.entity, "mlp-sweeps")
    (wandb_id,) = [name for (e, p, name) in fake.sweeps if p == "mlp-sweeps"]
    assert fake.sweep_runs("mlp-sweeps", wandb_id) == ids                       # W&B holds all three in the sweep
    url = proc.stdout.strip()
    assert url.endswith(f"/{fake.entity}/mlp-sweeps/sweeps/{wandb_id}")
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert store.get_sweep(local)["wandb_path"] == f"{fake.entity}/mlp-sweeps/{wandb_id}"
    history = fake.runs[(fake.entity, "mlp-sweeps", ids[0])]["history"]
    assert [row["epoch"] for row in history if "epoch" in row] == [1, 2]     # the epochs arrived too

    # a run finished after the sync: launched with the W&B sweep's id, `wandb sync` files it there
    ok(mlp(tmp_path, "agent", local, "--count", "1"))
    proc, third = sync()
    assert ok(proc).stdout.strip() == url
    with Store(tmp_path / "s.sqlite", create=False) as store:
        fourth = sorted({r["id"] for r in store.list_runs(local)} - set(ids))
    assert [(r.variables["name"], r.variables.get("sweep")) for r in third if r.operation == "UpsertBucket"
            and ATTACH not in r.query][:1] == [(fourth[0], wandb_id)]
    assert not [r for r in third if ATTACH in r.query] and "UpsertSweep" not in [r.operation for r in third]
    assert fake.sweep_runs("mlp-sweeps", wandb_id) == sorted(ids + fourth)

    # a run under way when the sweep was created (launched without its id) is attached by the next sync
    with Store(tmp_path / "s.sqlite", create=False) as store:
        store.update_sweep(local, wandb_path=None)
    ok(mlp(tmp_path, "agent", local, "--count", "1"))
    with Store(tmp_path / "s.sqlite", create=False) as store:
        store.update_sweep(local, wandb_path=f"{fake.entity}/mlp-sweeps/{wandb_id}")
        fifth = sorted({r["id"] for r in store.list_runs(local)} - set(ids) - set(fourth))
    proc, fourth_sync = sync()
    ok(proc)
    assert [r.variables for r in fourth_sync if ATTACH in r.query] == \
        [{"entity": fake.entity, "project": "mlp-sweeps", "name": fifth[0], "sweep": wandb_id}]
    assert fake.sweep_runs("mlp-sweeps", wandb_id) == sorted(ids + fourth + fifth)

    before = {k: dict(v) for k, v in fake.sweeps.items()}
    proc, again = sync()                          # idempotent: same sweep, same runs, nothing uploaded
    assert ok(proc).stdout.strip() == url
    assert not {"UpsertSweep", "UpsertBucket"} & set(r.operation for r in again)
    assert fake.sweeps == before and fake.sweep_runs("mlp-sweeps", wandb_id) == sorted(ids + fourth + fifth)

    # the W&B id now names the local sweep too, and `wandb agent` continuing it online adds to it
    proc = as_wandb_agent(tmp_path, wandb_id, "contd001", {"seed": 7, "data_dir": str(data_dir), **TINY},
                          ["${env}", "${interpreter}", "${program}", "${args}"],
                          extra_env={"WANDB_ENTITY": fake.entity, "WANDB_PROJECT": "mlp-sweeps"})
    finish([proc])
    listed = json.loads(ok(mlp(tmp_path, "runs", wandb_id, "--json")).stdout)
    assert sorted(r["id"] for r in listed) == sorted([*ids, *fourth, *fifth, "contd001"])
    with Store(tmp_path / "s.sqlite", create=False) as store:
        assert [s["id"] for s in store.list_sweeps()] == [local]            # no second sweep row either
        assert Path(store.get_run("contd001")["model_path"]).parent.name == local


# ---- 5. where W&B is: self-hosted servers (`wandb login --host`) and proxies ---------------------------------

def test_wandb_login_host_gives_online_runs_and_imports(tmp_path, data_dir, fake):
    """After `wandb login --host URL KEY` (wandb's own CLI: the server in wandb's settings, the key
    in netrc under host:port) and nothing in the environment, `--wandb_mode auto` logs online to that
    server and `mlp import` reads from it — not silently offline, not W&B's cloud."""
    login = subprocess.run([sys.executable, "-m", "wandb", "login", "--host", fake.url, API_KEY],
                           env=environment(tmp_path), capture_output=True, text=True, timeout=120)
    assert login.returncode == 0, login.stderr
    assert fake.url in (tmp_path / "wandb-config" / "settings").read_text()
    proc = ok(train(tmp_path, data_dir, "--seed", "3"))
    assert "W&B online" in proc.stderr and "offline" not in proc.stderr
    with Store(tmp_path / "s.sqlite", create=False) as store:
        (run,) = store.list_runs()
    assert fake.runs[(fake.entity, PROJECT, run["id"])]["config"]["seed"]["value"] == 3     # it reached this server
    fake.add_sweep(PROJECT, "hostsw01", GRID)
    seeded_run(fake, "host0001", 0.001, "nadam", 0.5, sweep="hostsw01")
    assert ok(mlp(tmp_path, "import", f"{ENTITY}/{PROJECT}/hostsw01")).stdout.strip() == "hostsw01"


def test_wandb_through_a_proxy_and_no_proxy(tmp_path, data_dir, fake):
    """A server only a proxy can reach (its name resolves nowhere else): with HTTP_PROXY set, the
    import and an online run (wandb-core) both go through the proxy; NO_PROXY naming the server, or
    a proxy that is down, make W&B unreachable — one line for `mlp import`, a note and an offline
    run for `--wandb_mode auto`."""
    name = "wandb.proxied.test"
    port = int(fake.url.rsplit(":", 1)[1])
    fake.add_sweep(PROJECT, "proxysw1", GRID)
    seeded_run(fake, "prox0001", 0.001, "nadam", 0.5, sweep="proxysw1")
    with ForwardProxy({name: ("127.0.0.1", port)}) as proxy:
        via = {**fake.env(), "WANDB_BASE_URL": f"http://{name}:{port}", "HTTP_PROXY": proxy.url, "NO_PROXY": "localhost"}
        assert ok(mlp(tmp_path, "import", f"{ENTITY}/{PROJECT}/proxysw1", env=via)).stdout.strip() == "proxysw1"
        assert ("POST", name, "/graphql") in proxy.seen
        seen = len(proxy.seen)
        proc = ok(train(tmp_path, data_dir, env=via))
        assert "W&B online" in proc.stderr
        assert any(path.startswith("/files/") and path.endswith("/file_stream") for _, _, path in proxy.seen[seen:])

        bypass = {**via, "NO_PROXY": name}
        one_line_error(mlp(tmp_path / "x", "import", f"{ENTITY}/{PROJECT}/proxysw1", env=bypass), "unreachable")
        proc = ok(train(tmp_path, data_dir, env=bypass))
        assert f"W&B at http://{name}:{port} is unreachable" in proc.stderr and "W&B offline" in proc.stderr
    with socket.socket() as s:                 # a proxy that is not there
        s.bind(("127.0.0.1", 0))
        down = {**via, "HTTP_PROXY": f"http://127.0.0.1:{s.getsockname()[1]}"}
        line = one_line_error(mlp(tmp_path / "y", "import", f"{ENTITY}/{PROJECT}/proxysw1", env=down), "unreachable")
    assert "proxy" in line


# ---- 6. bad input: one line, exit 2 ---------------------------------------------------------------------------

@pytest.fixture
def offline(tmp_path, monkeypatch):
    """This process with no W&B credentials or settings of the machine (for in-process `main`)."""
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("MLP_STORE", str(tmp_path / "s.sqlite"))
    return tmp_path


def in_process(capsys, *argv) -> subprocess.CompletedProcess:
    from mlp.cli import main
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def test_malformed_path_is_one_line(offline, capsys):
    for ref in ("a/b", "a//c", "e/p/sweeps/x/y", "e/p/bad id"):
        one_line_error(in_process(capsys, "report", ref), "neither a sweep id nor a W&B sweep path")
    one_line_error(in_process(capsys, "import", "justanid"), "ENTITY/PROJECT/SWEEP_ID")


def test_unknown_path_offline_says_what_to_do(offline, capsys):
    line = one_line_error(in_process(capsys, "report", "ent/proj/nosuch"), "no W&B credentials",
                          "mlp import ent/proj/nosuch")
    assert "is not in store" in line
    one_line_error(in_process(capsys, "import", "ent/proj/nosuch"), "no W&B credentials", "needs W&B")
    assert not (offline / "s.sqlite").exists()          # nothing written


def test_wandb_unreachable_when_needed_is_one_line(tmp_path):
    with socket.socket() as s:                 # a port nothing listens on: no retrying for minutes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_API_KEY": "f" * 40}
    one_line_error(mlp(tmp_path, "import", "ent/proj/sweep01", env=env, timeout=30), "unreachable", "needs W&B")
    one_line_error(mlp(tmp_path, "rerun", "ent/proj/sweep01", env=env, timeout=30), "unreachable", "mlp import")


def test_sweep_without_finished_runs_and_missing_sweep_are_one_line(tmp_path, fake):
    fake.add_sweep(PROJECT, "busysw01", GRID)
    seeded_run(fake, "busy0001", 0.001, "nadam", 0.0, state="running", sweep="busysw01")
    for command in ("report", "rerun"):
        one_line_error(mlp(tmp_path, command, f"{ENTITY}/{PROJECT}/busysw01", env=fake.env()), "no finished runs")
    one_line_error(mlp(tmp_path, "import", f"{ENTITY}/{PROJECT}/nosuch01", env=fake.env()), "could not find sweep")


# ---- 7. pure parts ---------------------------------------------------------------------------------------

def test_sweep_paths_and_the_configuration_parameter():
    from mlp.runs.wandb_api import SweepPath, epoch_rows
    from mlp.sweep.files import validate_sweep_config
    assert SweepPath.parse("abc123") is None
    for text in ("team/proj/abc123", "team/proj/sweeps/abc123", "https://wandb.ai/team/proj/sweeps/abc123"):
        assert SweepPath.parse(text) == SweepPath("team", "proj", "abc123"), text
    assert C.expand_configuration({"dataset": "mnist", "configuration": {"seed": 1, "loss": "mse"}}) == \
        {"dataset": "mnist", "seed": 1, "loss": "mse"}
    with pytest.raises(UsageError, match="give it once"):
        C.expand_configuration({"seed": 0, "configuration": {"seed": 1}})
    grid = {"method": "grid", "metric": METRIC, "command": ["${env}", "${interpreter}", "${program}"],
            "parameters": {"dataset": {"value": "mnist"},
                           "configuration": {"values": [{"seed": 0, "loss": "cross_entropy"}, {"seed": 1}]}}}
    validate_sweep_config(grid)
    bad = [({"command": ["${env}", "${interpreter}", "${program}", "${args}"]}, "cannot carry a configuration"),
           ({"parameters": {**grid["parameters"], "seed": {"value": 3}}}, "also a parameter of its own"),
           ({"parameters": {"configuration": {"values": [{"nosuch": 1}]}}}, "not a hyperparameter"),
           ({"parameters": {"configuration": {"values": [{"store": "x.sqlite"}]}}}, "not a hyperparameter"),
           ({"parameters": {"configuration": {"values": [{"epochs": 0}]}}}, "rejected by train.py"),
           ({"parameters": {"configuration": {"values": [3]}}}, "non-empty mapping")]
    for change, words in bad:
        with pytest.raises(UsageError, match=words):
            validate_sweep_config({**grid, **change})
    # W&B's history: media rows and W&B's own keys are not epochs
    assert epoch_rows([{"_step": 0, "samples": {"_type": "images"}}, {"_step": 1, "epoch": 1, "val_accuracy": 0.5,
                                                                       "_runtime": 2.0}]) == \
        [{"epoch": 1, "val_accuracy": 0.5}]
