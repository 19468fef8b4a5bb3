"""Faults after work began and faults of the store, injected for real (damaged files, a lock held
by another process, a file-size limit or a full filesystem enforced by the kernel, signals) —
never a mocked Store. The promise: one line, no traceback, no row left `running`, and what was
already computed (the model, the summary) is kept."""
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlp.runs.store import APPLICATION_ID, SCHEMA_VERSION, Store
from helpers.paths import DATA, ROOT
from helpers.waiting import wait_for

TINY = ["--data_dir", str(DATA), "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled"]


def env_for(tmp_path, **extra):
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "MLP_STORE": str(tmp_path / "s.sqlite"), **extra}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "MLP_DATA_DIR"):
        env.pop(key, None)
    return env


def run(tmp_path, *argv, preexec=None, timeout=300, **extra):
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env_for(tmp_path, **extra), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def one_line_error(p, code=2):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in p.stderr + p.stdout, p.stderr
    return lines[-1]


def populated_store(path):
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"value": 1}}}, "", name="s")
        for i in range(40):
            run_id = store.create_run({"i": i, "pad": "x" * 500}, sweep_id=sweep)
            store.finish_run(run_id, "finished", summary={"val_accuracy": 0.5})
    return sweep


COMMANDS = [
    lambda s, sw: ["-m", "mlp", "sweeps", "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "runs", sw, "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "agent", sw, "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "report", sw, "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "rerun", sw, "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "sync", sw, "--store", str(s)],
    lambda s, sw: [str(ROOT / "train.py"), *TINY, "-e", "1", "--store", str(s)],
]


@pytest.mark.parametrize("command", COMMANDS, ids=["sweeps", "runs", "agent", "report", "rerun", "sync", "train"])
def test_a_store_with_damaged_pages(tmp_path, command):
    path = tmp_path / "s.sqlite"
    sweep = populated_store(path)
    raw = bytearray(path.read_bytes())
    assert len(raw) > 5 * 4096
    raw[2 * 4096: 5 * 4096] = os.urandom(3 * 4096)          # pages 3-5: b-tree pages of the tables
    path.write_bytes(bytes(raw))
    line = one_line_error(run(tmp_path, *command(path, sweep)))
    assert str(path) in line and ("damaged" in line or "not an mlp-sweeps store" in line), line


@pytest.mark.parametrize("command", COMMANDS, ids=["sweeps", "runs", "agent", "report", "rerun", "sync", "train"])
def test_a_store_with_our_application_id_but_no_tables(tmp_path, command):
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.commit()
    db.close()
    line = one_line_error(run(tmp_path, *command(path, "abcdefgh")))
    assert str(path) in line and ("damaged" in line or "no such table" in line), line


@pytest.mark.parametrize("argv", [
    lambda s, sw: [str(ROOT / "train.py"), *TINY, "-e", "1", "--store", str(s)],
    lambda s, sw: ["-m", "mlp", "agent", sw, "--store", str(s), "--count", "1"],
], ids=["train", "agent"])
def test_a_store_locked_by_another_process_beyond_the_timeout(tmp_path, argv):
    path = tmp_path / "s.sqlite"
    sweep = populated_store(path)
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], "
                               "isolation_level=None); db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
                               "time.sleep(30)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = run(tmp_path, *argv(path, sweep), MLP_STORE_TIMEOUT="1", timeout=25)   # waiting for the lock: a hang
        line = one_line_error(p, code=75)
        assert "locked by another process" in line and "MLP_STORE_TIMEOUT" in line, line
    finally:
        holder.kill()
        holder.wait()
    with Store(path) as store:
        assert not [r for r in store.list_runs() if r["state"] in ("pending", "running")]


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_disk_that_fills_while_training_keeps_the_model_and_reports_one_line(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 96 KiB: the store's WAL outgrows it while
    epochs are logged. Training goes on (one warning), the model and the summary are written
    (small files), and the run ends with one `error:` line naming the store."""
    p = run(tmp_path, str(ROOT / "train.py"), *TINY, "-e", "30", "--store", str(tmp_path / "s.sqlite"),
            "--save_model", str(tmp_path / "m.npz"), "--summary_json", str(tmp_path / "s.json"),
            preexec=_file_size_limit(96 * 1024))
    line = one_line_error(p)
    assert "cannot be written" in line and str(tmp_path / "s.sqlite") in line, line
    assert p.stderr.count("warning: ") == 1 and "training goes on" in p.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["state"] == "finished" and summary["summary"]["epochs_run"] == 30
    from mlp import load_model
    assert load_model(tmp_path / "m.npz").n_outputs == 10


def test_a_disk_that_is_full_when_the_agent_claims_a_run(tmp_path):
    """The agent's first write (orphan check, then the claim) cannot grow the store's WAL past
    4 KiB: one line naming the store, exit 2, and no run row half-made."""
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text("program: train.py\nmethod: grid\nparameters:\n  epochs: {value: 1}\n"
                          "  data_dir: {value: tests/data}\n  hidden_size: {values: [8, 9]}\n")
    p = run(tmp_path, "-m", "mlp", "sweep", str(sweep_file), "--store", str(tmp_path / "s.sqlite"))
    sweep = p.stdout.strip()
    assert p.returncode == 0 and sweep, p.stderr
    p = run(tmp_path, "-m", "mlp", "agent", sweep, "--store", str(tmp_path / "s.sqlite"), "--count", "1",
            preexec=_file_size_limit(4096))
    line = one_line_error(p)
    assert str(tmp_path / "s.sqlite") in line and "cannot be written" in line, line
    with Store(tmp_path / "s.sqlite") as store:
        assert store.list_runs(sweep) == []


def _mount_tmpfs(folder, size):
    folder.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return p.returncode == 0


def test_a_requirements_file_that_cannot_be_saved_is_a_warning_not_a_failed_run(tmp_path, capsys):
    """mlp writes each W&B run's requirements.txt itself: a folder that cannot take it costs one
    warning, never the run; a folder that can gets the file, handed to W&B for upload."""
    from mlp.runs.tracking import WandbTracker

    class Run:                     # stands in for the W&B run: its folder and its save()
        def __init__(self, folder):
            self.dir, self.saved = str(folder), []

        def save(self, path, base_path, policy):
            self.saved.append((path, base_path, policy))

    tracker = WandbTracker("offline", "p")
    tracker.run = Run(tmp_path / "gone")
    tracker._save_requirements([("numpy", "1.0")])
    assert "warning: could not save" in capsys.readouterr().err and tracker.run.saved == []
    tracker.run = Run(tmp_path)
    tracker._save_requirements([("numpy", "1.0"), ("wandb", "0.31.0")])
    assert (tmp_path / "requirements.txt").read_text() == "numpy==1.0\nwandb==0.31.0\n"
    assert tracker.run.saved == [(str(tmp_path / "requirements.txt"), str(tmp_path), "now")]
    assert capsys.readouterr().err == ""

    class Refusing(Run):           # W&B refuses the file (a closed run, a bad path): a warning too
        def save(self, path, base_path, policy):
            raise ValueError("run is finished")

    tracker.run = Refusing(tmp_path)
    tracker._save_requirements([("numpy", "1.0")])
    assert "warning: could not save" in capsys.readouterr().err


def test_a_full_filesystem(tmp_path):
    """ENOSPC from a real filesystem (a small tmpfs; needs root and mount permission, as CI has)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "160k"):
        pytest.skip("cannot mount a tmpfs here (not root or no permission); the RLIMIT_FSIZE tests cover the fault")
    try:
        p = run(tmp_path, str(ROOT / "train.py"), *TINY, "-e", "40", "--store", str(disk / "s.sqlite"),
                "--summary_json", str(tmp_path / "s.json"))
        line = one_line_error(p)
        assert str(disk / "s.sqlite") in line and ("full" in line or "cannot be written" in line), line
        assert json.loads((tmp_path / "s.json").read_text())["state"] == "finished"
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _last_run(store_path):
    with Store(store_path) as store:
        (row,) = store.list_runs()
    return row


def test_a_model_that_cannot_be_saved_is_kept_beside_the_store(tmp_path):
    """--save_model on a full filesystem (a 64 KiB tmpfs): the run fails with one error line and
    exit 1, its test accuracy is in the store, and the trained model is not lost: it is kept in
    mlp-models/unsaved/RUN.npz beside the store, which the row records."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (not root or no permission); the file-size-limit case below remains")
    try:
        p = run(tmp_path, str(ROOT / "train.py"), *TINY, "-e", "2", "-sz", "64", "--store", str(tmp_path / "s.sqlite"),
                "--save_model", str(disk / "m.npz"))
        line = one_line_error(p, code=1)
        assert str(disk / "m.npz") in line and "No space left" in line and "kept in" in line, line
        assert list(disk.iterdir()) == []                       # nothing half-written on the full disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    row = _last_run(tmp_path / "s.sqlite")
    kept = tmp_path / "mlp-models" / "unsaved" / f"{row['id']}.npz"
    assert row["state"] == "failed" and row["exit_code"] == 1 and row["model_path"] == str(kept)
    from mlp import load_model
    from mlp.runs.data import load_dataset
    data = load_dataset("fashion_mnist", data_dir=DATA)       # the kept model is the run's: its test accuracy
    accuracy = float(np.mean(load_model(kept).predict(data.x_test) == data.y_test))
    assert accuracy == pytest.approx(row["summary"]["test_accuracy"]) and accuracy > 0.2


def test_a_model_that_can_be_saved_nowhere_says_it_is_lost(tmp_path):
    """A file-size limit below the model's size (and above the store's): neither --save_model nor
    the rescue copy can be written; one error line says so, the row is failed with its accuracy."""
    p = run(tmp_path, str(ROOT / "train.py"), *TINY, "-e", "1", "-nhl", "2", "-sz", "512",
            "--store", str(tmp_path / "s.sqlite"), "--save_model", str(tmp_path / "m.npz"),
            preexec=_file_size_limit(1024 * 1024))
    line = one_line_error(p, code=1)
    assert "could not save the model" in line and "the model is lost" in line, line
    row = _last_run(tmp_path / "s.sqlite")
    assert row["state"] == "failed" and row["model_path"] is None and row["summary"]["test_accuracy"] > 0.1
    assert not (tmp_path / "m.npz").exists()
    assert not [f for f in (tmp_path / "mlp-models").rglob("*") if f.is_file()]   # no half-written rescue copy


# ---- signals ---------------------------------------------------------------------------------------------

def _epochs(store_path):
    if not Path(store_path).exists():
        return 0
    db = sqlite3.connect(store_path)
    try:
        return db.execute("SELECT count(*) FROM history").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def test_sigterm_to_a_training_run_records_it_killed_with_its_summary(tmp_path):
    store = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *TINY, "-e", "500", "--store", str(store),
                             "--summary_json", str(tmp_path / "s.json")], cwd=ROOT, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _epochs(store) >= 2, what="two epochs in the store")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in out + err, err
    with Store(store) as s:
        (run,) = s.list_runs()
    assert run["state"] == "killed" and run["exit_code"] == 130
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["state"] == "killed" and summary["summary"]["epochs_run"] >= 2


def test_sigterm_to_a_parallel_sweep_stops_every_agent_and_run(tmp_path):
    sweep_file = tmp_path / "long.yaml"
    sweep_file.write_text("program: train.py\nmethod: grid\nparameters:\n  epochs: {value: 500}\n"
                          "  data_dir: {value: tests/data}\n  num_layers: {value: 1}\n"
                          "  hidden_size: {values: [8, 9, 10, 11]}\n")
    store = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "mlp", "sweep", str(sweep_file), "--count", "4", "--jobs", "2",
                             "--store", str(store)], cwd=ROOT, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _epochs(store) >= 4, timeout=120, what="four epochs in the store")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err
    with Store(store) as s:
        runs = s.list_runs()
        pids = [r["pid"] for r in runs]
    assert runs and all(r["state"] == "killed" for r in runs), [(r["id"], r["state"]) for r in runs]
    assert len(runs) == 2                      # no agent claimed a new run after the signal
    def alive():
        return [pid for pid in pids if pid and Path(f"/proc/{pid}").exists()
                and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]]
    wait_for(lambda: not alive(), timeout=30, what="every run's process to be gone")
