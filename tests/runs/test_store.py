"""Tests for mlp.runs.store, the SQLite run store."""

import json
import math
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from mlp.errors import UsageError
from mlp.runs.store import (APPLICATION_ID, RUN_STATES, SCHEMA_VERSION, Store, decode_json,
                       default_store_path, encode_json)
from mlp.runs.store.records import MAX_JSON_DEPTH, parse_json

SWEEP_YAML = "method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
SWEEP_CONFIG = {"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
                "parameters": {"learning_rate": {"values": [1e-3, 1e-4]}}}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.sqlite") as s:
        yield s


# ----------------------------------------------------------------------------- basics

def test_default_store_path(monkeypatch):
    monkeypatch.delenv("MLP_STORE", raising=False)
    assert default_store_path() == "mlp-runs.sqlite"
    monkeypatch.setenv("MLP_STORE", "/tmp/elsewhere.sqlite")
    assert default_store_path() == "/tmp/elsewhere.sqlite"


def test_file_is_wal_with_schema_version(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sweeps", "runs", "history"} <= tables
    con.close()


def test_store_path_attribute_and_reopen(tmp_path):
    path = tmp_path / "sub" / "dir" / "s.sqlite"      # parent directories are created
    with Store(path) as s:
        sweep_id = s.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    with Store(path, create=False) as s:              # readers reopen an existing store
        assert s.get_sweep(sweep_id)["config"] == SWEEP_CONFIG


# ----------------------------------------------------------------------------- sweeps

def test_sweep_round_trip(store):
    made = [time.time()]
    sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML, name="fashion", seed=7)
    made.append(time.time())
    assert len(sweep_id) == 8 and sweep_id.isalnum() and sweep_id == sweep_id.lower()
    sweep = store.get_sweep(sweep_id)
    assert sweep["id"] == sweep_id
    assert sweep["name"] == "fashion"
    assert sweep["seed"] == 7
    assert sweep["config"] == SWEEP_CONFIG
    assert sweep["config_yaml"] == SWEEP_YAML
    assert sweep["state"] == "pending"
    assert sweep["parent_sweep_id"] is None
    assert sweep["extra"] == {}
    assert sweep["n_runs"] == 0
    assert sweep["run_counts"] == {s: 0 for s in RUN_STATES}
    assert isinstance(sweep["created_at"], float) and made[0] <= sweep["created_at"] <= made[1]

    before = sweep["updated_at"]
    time.sleep(0.01)
    store.set_sweep_state(sweep_id, "running")
    after = store.get_sweep(sweep_id)
    assert after["state"] == "running"
    assert after["updated_at"] > before
    assert after["created_at"] == sweep["created_at"]


def test_list_sweeps_with_counts_and_parent(store):
    first = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML, name="first")
    second = store.create_sweep({"method": "random"}, "method: random\n", name="rerun",
                                parent_sweep_id=first)
    a = store.create_run({"lr": 1}, sweep_id=first)
    store.create_run({"lr": 2}, sweep_id=first)
    store.finish_run(a, "finished")
    store.create_run({"lr": 3}, sweep_id=second, state="pending")

    sweeps = store.list_sweeps()
    assert [s["id"] for s in sweeps] == [first, second]
    assert sweeps[0]["run_counts"]["finished"] == 1
    assert sweeps[0]["run_counts"]["running"] == 1
    assert sweeps[0]["n_runs"] == 2
    assert sweeps[1]["run_counts"]["pending"] == 1
    assert sweeps[1]["n_runs"] == 1
    assert sweeps[1]["parent_sweep_id"] == first
    assert sweeps[1]["config"] == {"method": "random"}


def test_bad_sweep_state_and_unknown_parent(store):
    sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    with pytest.raises(ValueError, match="cancelled"):
        store.set_sweep_state(sweep_id, "exploded")
    with pytest.raises(UsageError, match="mlp sweeps"):
        store.create_sweep(SWEEP_CONFIG, SWEEP_YAML, parent_sweep_id="nope1234")
    assert [s["id"] for s in store.list_sweeps()] == [sweep_id]


# ----------------------------------------------------------------------------- runs

def test_run_round_trip(store):
    sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    config = {"optimizer": "nadam", "hidden_sizes": [128, 64], "learning_rate": 1e-3,
              "batch_norm": False}
    run_id = store.create_run(config, sweep_id=sweep_id, name="run-a", pid=4242,
                              wandb_dir="/tmp/wandb/offline-run-x")
    assert len(run_id) == 8 and run_id.isalnum() and run_id == run_id.lower()
    run = store.get_run(run_id)
    assert run["id"] == run_id
    assert run["sweep_id"] == sweep_id
    assert run["seq"] == 1
    assert run["name"] == "run-a"
    assert run["config"] == config
    assert run["state"] == "running"
    assert run["pid"] == 4242
    assert run["host"] == socket.gethostname()
    assert run["wandb_dir"] == "/tmp/wandb/offline-run-x"
    assert run["summary"] == {}
    assert run["exit_code"] is None and run["error"] is None and run["model_path"] is None
    assert run["started_at"] == run["heartbeat_at"] == run["created_at"]
    assert run["finished_at"] is None

    summary = {"val_accuracy": 0.875, "test_accuracy": 0.86,
               "confusion_matrix": [[5, 1], [0, 6]]}
    store.finish_run(run_id, "finished", summary=summary, exit_code=0,
                     model_path="models/best.npz")
    run = store.get_run(run_id)
    assert run["state"] == "finished"
    assert run["summary"] == summary
    assert run["exit_code"] == 0
    assert run["model_path"] == "models/best.npz"
    assert run["finished_at"] >= run["started_at"]


def test_runs_listed_in_creation_order_with_seq(store):
    s1 = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    s2 = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    ids = []
    for i in range(4):
        ids.append(store.create_run({"i": i}, sweep_id=s1 if i % 2 == 0 else s2))
    loose = store.create_run({"i": 99})                  # a plain train.py run, no sweep
    assert [r["id"] for r in store.list_runs(s1)] == [ids[0], ids[2]]
    assert [r["seq"] for r in store.list_runs(s1)] == [1, 2]
    assert [r["seq"] for r in store.list_runs(s2)] == [1, 2]
    assert [r["id"] for r in store.list_runs()] == ids + [loose]
    assert store.get_run(loose)["sweep_id"] is None
    assert store.get_run(loose)["seq"] == 1
    assert [r["config"]["i"] for r in store.list_runs(state="running")] == [0, 1, 2, 3, 99]


def test_state_transitions_and_timestamps(store):
    run_id = store.create_run({"lr": 0.1}, state="pending")
    run = store.get_run(run_id)
    assert run["state"] == "pending"
    assert run["started_at"] is None and run["heartbeat_at"] is None and run["pid"] is None

    time.sleep(0.01)
    store.start_run(run_id, pid=12345, wandb_dir="wandb/offline-run-1")
    run = store.get_run(run_id)
    assert run["state"] == "running"
    assert run["pid"] == 12345
    assert run["wandb_dir"] == "wandb/offline-run-1"
    assert run["started_at"] > run["created_at"]
    assert run["heartbeat_at"] == run["started_at"]

    time.sleep(0.01)
    store.heartbeat(run_id)
    beat = store.get_run(run_id)["heartbeat_at"]
    assert beat > run["started_at"]

    time.sleep(0.01)
    store.log_history(run_id, {"epoch": 1, "train_loss": 0.5})
    assert store.get_run(run_id)["heartbeat_at"] > beat

    store.finish_run(run_id, "failed", exit_code=1,
                     error="Traceback (most recent call last):\n  ...\nValueError: boom\n")
    run = store.get_run(run_id)
    assert run["state"] == "failed"
    assert run["exit_code"] == 1
    assert run["error"] == "Traceback (most recent call last): ... ValueError: boom"
    assert "\n" not in run["error"]
    assert run["finished_at"] >= run["heartbeat_at"]

    # a restart clears the previous ending
    store.start_run(run_id)
    run = store.get_run(run_id)
    assert run["state"] == "running" and run["pid"] == os.getpid()
    assert run["finished_at"] is None and run["exit_code"] is None and run["error"] is None

    with pytest.raises(ValueError, match="finished"):
        store.finish_run(run_id, "running")           # not a final state
    with pytest.raises(ValueError):
        store.create_run({}, state="sleeping")


def test_update_run_whitelist(store):
    run_id = store.create_run({"lr": 0.1})
    store.update_run(run_id, name="renamed", summary={"val_accuracy": 0.5},
                     config={"lr": 0.2}, heartbeat_at=123.0, extra={"wandb_url": "u"})
    run = store.get_run(run_id)
    assert run["name"] == "renamed"
    assert run["summary"] == {"val_accuracy": 0.5}
    assert run["config"] == {"lr": 0.2}
    assert run["heartbeat_at"] == 123.0
    assert run["extra"] == {"wandb_url": "u"}
    with pytest.raises(ValueError, match="updatable"):
        store.update_run(run_id, id="hijacked")
    with pytest.raises(ValueError):
        store.update_run(run_id, state="bogus")
    assert store.get_run(run_id)["state"] == "running"


def test_json_handles_numpy_values(store):
    run_id = store.create_run({"hidden_sizes": np.array([128, 64]), "lr": np.float32(0.5)})
    cm = np.array([[3, 1], [0, 4]], dtype=np.int64)
    store.finish_run(run_id, "finished",
                     summary={"confusion_matrix": cm, "test_accuracy": np.float64(0.875),
                              "n": np.int64(8), "ok": np.bool_(True)})
    run = store.get_run(run_id)
    assert run["config"] == {"hidden_sizes": [128, 64], "lr": 0.5}
    assert run["summary"] == {"confusion_matrix": [[3, 1], [0, 4]], "test_accuracy": 0.875,
                              "n": 8, "ok": True}
    assert type(run["summary"]["n"]) is int


# ----------------------------------------------------------------------------- history

def test_history_order_and_replace(store):
    run_id = store.create_run({"lr": 0.1})
    store.log_history(run_id, {"epoch": 3, "train_loss": 0.3, "val_accuracy": 0.8})
    store.log_history(run_id, {"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.5})
    store.log_history(run_id, {"epoch": 2, "train_loss": 0.6, "val_accuracy": 0.7})
    store.log_history(run_id, {"epoch": np.int64(2), "train_loss": 0.55, "val_accuracy": 0.72})
    rows = store.history(run_id)
    assert rows == [
        {"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.5},
        {"epoch": 2, "train_loss": 0.55, "val_accuracy": 0.72},
        {"epoch": 3, "train_loss": 0.3, "val_accuracy": 0.8},
    ]
    other = store.create_run({"lr": 0.2})
    assert store.history(other) == []
    with pytest.raises(ValueError, match="epoch"):
        store.log_history(run_id, {"train_loss": 1.0})
    with pytest.raises(ValueError, match="integer"):
        store.log_history(run_id, {"epoch": 1.5})


# ----------------------------------------------------------------------------- NaN

def test_nan_and_inf_round_trip_as_strings(store):
    run_id = store.create_run({"lr": 10.0})
    summary = {"train_loss": float("nan"), "val_loss": float("inf"),
               "grad_norm": float("-inf"), "curve": [1.0, float("nan")],
               "val_accuracy": 0.1}
    store.finish_run(run_id, "diverged", summary=summary)
    store.log_history(run_id, {"epoch": 1, "train_loss": np.float32("nan")})

    got = store.get_run(run_id)["summary"]
    assert math.isnan(got["train_loss"])
    assert got["val_loss"] == math.inf
    assert got["grad_norm"] == -math.inf
    assert got["curve"][0] == 1.0 and math.isnan(got["curve"][1])
    assert got["val_accuracy"] == 0.1
    assert math.isnan(store.history(run_id)[0]["train_loss"])

    # on disk it is strict JSON with the documented string spellings
    con = sqlite3.connect(store.path)
    (raw,) = con.execute("SELECT summary_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    con.close()

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    stored = json.loads(raw, parse_constant=reject)
    assert stored["train_loss"] == "NaN"
    assert stored["val_loss"] == "Infinity"
    assert stored["grad_norm"] == "-Infinity"
    assert encode_json({"x": float("nan")}) == '{"x":"NaN"}'
    assert decode_json('{"x":"-Infinity","y":"NaNa"}') == {"x": -math.inf, "y": "NaNa"}


# ----------------------------------------------------------------------------- bad input

def test_unknown_ids_raise_usage_error(store):
    sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    with pytest.raises(UsageError, match=r"unknown sweep id 'zzzz9999'.*`mlp sweeps`"):
        store.get_sweep("zzzz9999")
    with pytest.raises(UsageError, match="mlp sweeps"):
        store.list_runs("zzzz9999")
    with pytest.raises(UsageError, match="mlp sweeps"):
        store.create_run({}, sweep_id="zzzz9999")
    with pytest.raises(UsageError, match="mlp sweeps"):
        store.set_sweep_state("zzzz9999", "running")
    with pytest.raises(UsageError, match="mlp sweeps"):
        store.claim_run("zzzz9999", lambda runs: {"a": 1})
    for call in (lambda: store.get_run("nope0000"),
                 lambda: store.start_run("nope0000"),
                 lambda: store.heartbeat("nope0000"),
                 lambda: store.log_history("nope0000", {"epoch": 1}),
                 lambda: store.finish_run("nope0000", "finished"),
                 lambda: store.update_run("nope0000", name="x"),
                 lambda: store.history("nope0000")):
        with pytest.raises(UsageError, match=r"unknown run id 'nope0000'.*`mlp runs SWEEP_ID`"):
            call()
    assert store.list_runs() == [] and store.list_runs(sweep_id) == []


def test_non_sqlite_file_is_rejected_and_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 10
    path.write_bytes(content)
    for create in (True, False):
        with pytest.raises(UsageError) as info:
            Store(path, create=create)
        message = str(info.value)
        assert "notes.txt is not an mlp-sweeps store (not an SQLite database)" in message
        assert "--store" in message and "\n" not in message
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]       # no -wal / -shm left behind


def test_foreign_sqlite_database_is_rejected(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(UsageError, match="SQLite database but not an mlp-sweeps store"):
        Store(path)
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["photos"]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"   # not switched to WAL
    con.close()


def test_newer_schema_version_is_rejected(tmp_path):
    path = tmp_path / "future.sqlite"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(UsageError, match=r"newer mlp-sweeps .*upgrade mlp-sweeps"):
        Store(path, create=False)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(UsageError, match=r"is a directory.*--store"):
        Store(tmp_path)


def test_create_false_on_missing_path(tmp_path):
    path = tmp_path / "missing.sqlite"
    with pytest.raises(UsageError, match=r"no mlp-sweeps store at .*missing\.sqlite"):
        Store(path, create=False)
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_create_false_on_empty_file(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    with pytest.raises(UsageError, match="empty database"):
        Store(path, create=False)
    assert path.read_bytes() == b""


def test_json_read_back_is_strict_and_total():
    """What the store reads back is JSON text nested at most MAX_JSON_DEPTH deep, or a ValueError
    saying what it is — never a RecursionError, whatever the nesting."""
    def nested(depth):
        return "[" * depth + "]" * depth

    deepest = parse_json(nested(MAX_JSON_DEPTH))
    for _ in range(MAX_JSON_DEPTH - 1):
        (deepest,) = deepest
    assert deepest == [] and math.isnan(parse_json('{"a": ["NaN"]}')["a"][0])
    for text, said in ((nested(MAX_JSON_DEPTH + 1), "nested more than"), (nested(100_000), "nested more than"),
                       ("{", "is not valid JSON"), ("1" * 5000, "is not valid JSON"), (b"{}", "a 2-byte BLOB"),
                       (None, "is NULL, not JSON text")):
        with pytest.raises(ValueError, match=said):
            parse_json(text)
    assert decode_json(None, {}) == {} and decode_json("", 5) == 5      # empty still gives the default


def test_a_new_store_behind_a_dangling_link_is_made_where_the_link_points(tmp_path):
    link = tmp_path / "s.sqlite"
    link.symlink_to(tmp_path / "data" / "runs.sqlite")
    with Store(link) as store:
        sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    assert link.is_symlink() and (tmp_path / "data" / "runs.sqlite").is_file()
    with Store(link, create=False) as store:
        assert store.get_sweep(sweep_id)["config"] == SWEEP_CONFIG


# ----------------------------------------------------------------------------- claiming

def test_claim_run_in_one_process(store):
    sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    seen = []

    def propose(runs):
        seen.append([r["config"]["x"] for r in runs])
        return {"x": len(runs)} if len(runs) < 2 else None

    first = store.claim_run(sweep_id, propose)
    assert first["state"] == "pending" and first["seq"] == 1 and first["config"] == {"x": 0}
    assert first["pid"] == os.getpid() and first["sweep_id"] == sweep_id
    second = store.claim_run(sweep_id, propose)
    assert second["seq"] == 2 and second["config"] == {"x": 1}
    assert store.claim_run(sweep_id, propose) is None
    assert seen == [[], [0], [0, 1]]

    def broken(runs):
        raise RuntimeError("proposer bug")

    with pytest.raises(RuntimeError):
        store.claim_run(sweep_id, broken)
    assert len(store.list_runs(sweep_id)) == 2           # nothing half-written
    store.create_run({"x": 9}, sweep_id=sweep_id)        # the store is still writable


CANDIDATES = [{"learning_rate": lr, "hidden_size": h}
              for lr in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5) for h in (32, 64, 128, 256)]


def _claim_worker(path, sweep_id, start, queue):
    claimed = []
    with Store(path) as store:
        start.wait(60)
        def propose(runs):
            taken = [r["config"] for r in runs]
            time.sleep(0.002)               # widen the race window
            for candidate in CANDIDATES:
                if candidate not in taken:
                    return candidate
            return None

        while True:
            run = store.claim_run(sweep_id, propose)
            if run is None:
                break
            claimed.append(run["id"])
            time.sleep(0.01)                # "train" it, letting the other agents in
    queue.put((os.getpid(), claimed))


INTERRUPTED_CLAIM = """
import signal, sys
from mlp.runs.store import Store
store = Store(sys.argv[1], create=True)
sweep_id = store.create_sweep({"method": "grid", "parameters": {}}, "")
def propose(runs):          # Ctrl-C arrives while the claim's transaction is open
    signal.raise_signal(signal.SIGINT)
    return {"x": 1}
try:
    store.claim_run(sweep_id, propose)
    print("no interrupt")
except KeyboardInterrupt:
    (run,) = store.list_runs(sweep_id)        # the transaction was completed, then the interrupt landed
    store.finish_run(run["id"], "killed", exit_code=130)   # and the store is still usable
    print(run["state"], store.get_run(run["id"])["state"])
"""


def test_an_interrupt_lands_after_a_store_transaction_not_inside_it(tmp_path):
    p = subprocess.run([sys.executable, "-c", INTERRUPTED_CLAIM, str(tmp_path / "s.sqlite")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["pending", "killed"]


def test_claim_run_from_several_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    with Store(path) as store:
        sweep_id = store.create_sweep(SWEEP_CONFIG, SWEEP_YAML)
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(3), ctx.Queue()     # all workers begin claiming together
    workers = [ctx.Process(target=_claim_worker, args=(path, sweep_id, start, queue))
               for _ in range(3)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0

    claimed_ids = [run_id for _, ids in results for run_id in ids]
    with Store(path, create=False) as store:
        runs = store.list_runs(sweep_id)
    assert len(claimed_ids) == len(set(claimed_ids)) == len(CANDIDATES)   # no lost claims
    assert sorted(claimed_ids) == sorted(r["id"] for r in runs)
    configs = [r["config"] for r in runs]
    assert len(configs) == len(CANDIDATES)
    assert all(configs.count(c) == 1 for c in CANDIDATES)                 # each exactly once
    assert [r["seq"] for r in runs] == list(range(1, len(CANDIDATES) + 1))
    assert {r["pid"] for r in runs} == {pid for pid, ids in results if ids}
    assert all(r["state"] == "pending" for r in runs)
    assert sum(1 for _, ids in results if ids) >= 2      # the claims really interleaved


def _open_and_write_worker(path, start, queue):
    start.wait(30)
    with Store(path) as store:
        ids = [store.create_run({"worker": os.getpid(), "i": i}) for i in range(5)]
    queue.put(ids)


def test_concurrent_creation_of_a_fresh_store(tmp_path):
    path = str(tmp_path / "fresh.sqlite")
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_open_and_write_worker, args=(path, start, queue))
               for _ in range(3)]
    for w in workers:
        w.start()
    ids = [run_id for _ in workers for run_id in queue.get(timeout=120)]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    with Store(path, create=False) as store:
        runs = store.list_runs()
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert len(ids) == 15
    assert sorted(r["seq"] for r in runs) == list(range(1, 16))


def test_forked_child_reconnects(tmp_path):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    path = str(tmp_path / "fork.sqlite")
    store = Store(path)
    run_id = store.create_run({"lr": 1})
    child = mp.get_context("fork").Process(target=store.log_history,
                                           args=(run_id, {"epoch": 1, "train_loss": 0.25}))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.history(run_id) == [{"epoch": 1, "train_loss": 0.25}]
    store.close()


# ----------------------------------------------------------------------------- orphans

def test_find_orphans(store):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead_pid = proc.pid
    alive_pid = os.getpid()

    dead = store.create_run({"case": "dead pid"}, pid=dead_pid)
    stale = store.create_run({"case": "stale heartbeat on another host"}, pid=dead_pid)
    store.update_run(stale, host="some-other-machine", heartbeat_at=time.time() - 3600)
    slow = store.create_run({"case": "live pid here, old heartbeat (a long epoch)"}, pid=alive_pid)
    store.update_run(slow, heartbeat_at=time.time() - 3600)
    fresh = store.create_run({"case": "live and fresh"}, pid=alive_pid)
    store.heartbeat(fresh)
    elsewhere = store.create_run({"case": "dead pid number but other host"}, pid=dead_pid)
    store.update_run(elsewhere, host="some-other-machine")
    done = store.create_run({"case": "finished"}, pid=dead_pid)
    store.finish_run(done, "finished")
    queued = store.create_run({"case": "pending"}, state="pending", pid=dead_pid)

    orphans = store.find_orphans(stale_after=600)
    assert [o["id"] for o in orphans] == [dead, stale]
    assert str(dead_pid) in orphans[0]["orphan_reason"]
    assert "heartbeat" in orphans[1]["orphan_reason"]
    assert store.get_run(dead)["state"] == "running"          # finding changes nothing

    # with no patience at all, every other-host run is stale, but live local processes never are
    assert [o["id"] for o in store.find_orphans(stale_after=0.0)] == [dead, stale, elsewhere]
    assert queued not in [o["id"] for o in store.find_orphans(0.0)]
    assert queued in [o["id"] for o in store.find_orphans(0.0, states=("pending", "running"))]

    reaped = store.reap_orphans(stale_after=600)
    assert [o["id"] for o in reaped] == [dead, stale]
    assert store.get_run(dead)["state"] == "crashed"
    assert store.get_run(dead)["error"].startswith("orphaned: process")
    assert store.get_run(dead)["finished_at"] is not None
    assert store.get_run(fresh)["state"] == "running" and store.get_run(slow)["state"] == "running"
    assert store.find_orphans(stale_after=600) == []


def test_store_shared_with_a_heartbeat_thread(store):
    import threading
    run_id = store.create_run({"lr": 1})
    beats = threading.Thread(target=lambda: [store.heartbeat(run_id) for _ in range(30)])
    beats.start()
    for epoch in range(1, 31):
        store.log_history(run_id, {"epoch": epoch, "train_loss": 1.0 / epoch})
    beats.join(30)
    assert [row["epoch"] for row in store.history(run_id)] == list(range(1, 31))


# ----------------------------------------------------------------------------- schema v1 -> v2

V1_SCHEMA = """
CREATE TABLE sweeps (id TEXT PRIMARY KEY, name TEXT, config_yaml TEXT NOT NULL, config_json TEXT NOT NULL,
    seed INTEGER, state TEXT NOT NULL DEFAULT 'pending', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    parent_sweep_id TEXT REFERENCES sweeps(id) ON DELETE SET NULL, extra_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE runs (id TEXT PRIMARY KEY, sweep_id TEXT REFERENCES sweeps(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    name TEXT, config_json TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER, host TEXT, created_at REAL NOT NULL,
    started_at REAL, heartbeat_at REAL, finished_at REAL, exit_code INTEGER, summary_json TEXT NOT NULL DEFAULT '{}',
    wandb_dir TEXT, model_path TEXT, error TEXT, extra_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE history (run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    metrics_json TEXT NOT NULL, logged_at REAL NOT NULL, PRIMARY KEY (run_id, epoch)) WITHOUT ROWID;
"""


def test_a_v1_store_is_migrated_in_place(tmp_path):
    """Stores written before the typed columns open: the keys other modules read from extra_json
    (sweep_params, stopped_by, log; workdir, file, rerun) become columns, the rest stays."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    rerun = {"parent": "parent01", "source_runs": ["r1"], "configs": [{"epochs": 2}], "dataset": "mnist",
             "epochs": None, "top": 1}
    db.execute("INSERT INTO sweeps VALUES ('parent01', 'p', '', '{}', 7, 'finished', 1, 1, NULL, ?)",
               (json.dumps({"workdir": "/w", "file": "/w/s.yaml", "note": "kept"}),))
    db.execute("INSERT INTO sweeps VALUES ('child001', 'c', '', '{}', 7, 'finished', 2, 2, 'parent01', ?)",
               (json.dumps({"workdir": "/w", "rerun": rerun}),))
    db.execute("INSERT INTO runs (id, sweep_id, seq, config_json, state, created_at, extra_json) "
               "VALUES ('r1', 'parent01', 1, '{}', 'killed', 1, ?)",
               (json.dumps({"sweep_params": {"learning_rate": 0.01}, "stopped_by": "hyperband", "log": "/l/r1.log",
                            "argv": ["python"]}),))
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        run = store.get_run("r1")
        assert (run["params"], run["stopped_by"], run["log_path"]) == ({"learning_rate": 0.01}, "hyperband", "/l/r1.log")
        assert run["extra"] == {"argv": ["python"]}
        parent, child = store.get_sweep("parent01"), store.get_sweep("child001")
        assert (parent["workdir"], parent["source_file"], parent["extra"], parent["origin"]) == \
            ("/w", "/w/s.yaml", {"note": "kept"}, "local")
        assert child["rerun"].configs == [{"epochs": 2}] and child["rerun"].source_runs == ["r1"]
        assert (run["wandb_entity"], run["wandb_project"]) == (None, None)       # v3's columns, empty
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5


def drop_v5_columns(db):
    db.execute("ALTER TABLE runs DROP COLUMN model_source")
    db.execute("ALTER TABLE runs DROP COLUMN model_artifact")


def test_a_v4_store_learns_where_its_models_came_from(tmp_path):
    """v4 stores gain model_source and model_artifact; a run that kept a model file is marked as
    having saved it itself ("run"), the others stay empty."""
    path = tmp_path / "v4.sqlite"
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"values": [1]}}}, "", name="s")
        saved = store.create_run({"epochs": 1}, sweep_id=sweep)
        store.finish_run(saved, "finished", model_path=tmp_path / "m.npz")
        bare = store.create_run({"epochs": 1}, sweep_id=sweep)
        store.finish_run(bare, "finished")
    db = sqlite3.connect(path)
    drop_v5_columns(db)
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        assert (store.get_run(saved)["model_source"], store.get_run(saved)["model_artifact"]) == ("run", None)
        assert store.get_run(bare)["model_source"] is None
        store.update_run(bare, model_path=str(tmp_path / "r.npz"), model_source="retrain")
        assert store.get_run(bare)["model_source"] == "retrain"
        with pytest.raises(UsageError):
            store.update_run(bare, model_source="somewhere")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5


def test_a_v2_store_is_migrated_to_v3_in_place(tmp_path):
    """v2 stores gain a run's W&B entity and project (what `mlp sync` uploads to); nothing else
    changes, and the store is usable at once."""
    path = tmp_path / "v2.sqlite"
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"values": [1]}}}, "", name="s")
        run = store.create_run({"epochs": 1}, sweep_id=sweep, params={"epochs": 1})
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN wandb_entity")
    db.execute("ALTER TABLE runs DROP COLUMN wandb_project")
    db.execute("DROP TABLE baselines")                  # v4's: a v2 store has no baselines either
    drop_v5_columns(db)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        old = store.get_run(run)
        assert (old["params"], old["wandb_entity"], old["wandb_project"]) == ({"epochs": 1}, None, None)
        new = store.create_run({"epochs": 1}, sweep_id=sweep, wandb_entity="team", wandb_project="proj")
        assert (store.get_run(new)["wandb_entity"], store.get_run(new)["wandb_project"]) == ("team", "proj")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


BASELINE = dict(model="knn", label="k-NN (k=5)", settings={"n_neighbors": 5}, dataset="fashion_mnist",
                split="standard", val_fraction=0.1, val_rows_sha256="ab" * 32, n_train=1800, n_val=200, n_test=500,
                val_accuracy=0.75, test_accuracy=0.74, train_seconds=0.5, sweep_id=None, run_id=None,
                library="scikit-learn 1.9")


def test_a_v3_store_gains_the_baselines_table_in_place(tmp_path):
    """v3 stores (before `mlp baselines`) gain the baselines table with its own columns; their
    runs are untouched and baselines can be recorded at once."""
    path = tmp_path / "v3.sqlite"
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"values": [1]}}}, "", name="s")
        run = store.create_run({"epochs": 1}, sweep_id=sweep, params={"epochs": 1})
    db = sqlite3.connect(path)
    db.execute("DROP TABLE baselines")
    drop_v5_columns(db)
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        assert store.get_run(run)["params"] == {"epochs": 1} and store.list_baselines() == []
        first = store.add_baseline(**BASELINE)
        store.add_baseline(**{**BASELINE, "model": "twin", "sweep_id": sweep, "run_id": run, "settings": None})
        rows = store.list_baselines(dataset="fashion_mnist", val_rows_sha256="ab" * 32)
        assert [r["model"] for r in rows] == ["knn", "twin"] and rows[0]["id"] == first
        assert rows[0]["settings"] == {"n_neighbors": 5} and rows[1]["settings"] == {} and rows[1]["sweep_id"] == sweep
        assert store.list_baselines(val_rows_sha256="cd" * 32) == []
        with pytest.raises(UsageError, match="unknown sweep"):
            store.add_baseline(**{**BASELINE, "sweep_id": "nosuchid"})
        with pytest.raises(ValueError, match="missing"):
            store.add_baseline(model="knn")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    columns = [row[1] for row in db.execute("PRAGMA table_info(baselines)")]
    assert {"model", "val_accuracy", "test_accuracy", "train_seconds", "val_rows_sha256"} <= set(columns)


def test_json_output_is_total_for_non_finite_values(tmp_path):
    """A config or summary holding inf/NaN never breaks `--json` output for the whole store."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"x": {"value": float("inf")}}}, "", name="s")
        # (not a train.py parameter: an infinite learning_rate would be a damaged row, refused on reading)
        run = store.create_run({"a_note": float("inf")}, sweep_id=sweep)
        store.finish_run(run, "diverged", summary={"val_loss": float("nan"), "val_accuracy": 0.1})
    env = {**os.environ, "MLP_STORE": str(path)}
    for argv in (["sweeps", "--json"], ["runs", sweep, "--json"]):
        p = subprocess.run([sys.executable, "-m", "mlp", *argv], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        parsed = json.loads(p.stdout)          # strict JSON: would raise on a bare NaN/Infinity
        assert parsed and "Infinity" in p.stdout
