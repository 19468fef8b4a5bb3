"""A command's own process under stress: its stdout/stderr broken under it (a full device, a closed
pipe, a closed descriptor), and SIGINT/SIGTERM at every moment of its life — during the start-up
imports, while training, in bursts, and just as it finishes.

The promises: a run's result is decided by the run, not by its streams (a finished run stays
finished and exits 0 when its output cannot be printed; a listing whose output is lost exits 1
with one `error:` line); an interrupted command exits 130 without a traceback, and whatever row
it made ends `killed` (never `running`), with the exit code the process really returned.
"""
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from helpers.paths import DATA, ROOT
from helpers.promises import store_rows

TINY = ["-nhl", "1", "-sz", "8", "--data_dir", str(DATA)]


def environment(tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in ("MLP_STORE",)}
    env.update(WANDB_MODE="disabled", MLP_STORE=str(tmp / "s.sqlite"), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return env


def rows(tmp):
    return store_rows(tmp / "s.sqlite")


@pytest.fixture
def full(tmp_path):
    """A private /dev/full (writes fail with ENOSPC); needs root for mknod."""
    path = tmp_path / "full"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("a device node needs root (mknod)")
    return path


def train(tmp, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, epochs=1):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "-e", str(epochs), *TINY, *args], cwd=tmp,
                          env=environment(tmp), stdout=stdout, stderr=stderr, text=True, timeout=120)


# ---- broken streams ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", ["stdout", "stderr", "both"])
def test_a_full_device_does_not_fail_a_finished_run(tmp_path, full, stream):
    with open(full, "w") as device:
        p = train(tmp_path, "--summary_json", str(tmp_path / "s.json"),
                  stdout=device if stream != "stderr" else subprocess.PIPE,
                  stderr=device if stream != "stdout" else subprocess.PIPE)
    assert p.returncode == 0 and rows(tmp_path) == [("finished", 0)], p
    assert '"state": "finished"' in (tmp_path / "s.json").read_text()
    if stream == "stdout":
        assert "warning: some output to stdout was lost" in p.stderr and "Traceback" not in p.stderr
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_closed_stderr_does_not_fail_a_run(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "-e", "1", *TINY], cwd=tmp_path,
                       env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                       timeout=120, preexec_fn=lambda: os.close(2))
    assert p.returncode == 0 and "val_accuracy" in p.stdout and rows(tmp_path) == [("finished", 0)]


def test_a_reader_that_exits_early_does_not_fail_a_run(tmp_path):
    """`train.py ... | head -c 1`: the pipe closes under the run (BrokenPipeError on every write)."""
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "-e", "20", *TINY], cwd=tmp_path,
                       env=environment(tmp_path), stdout=reader.stdin, stderr=reader.stdin, timeout=120)
    reader.stdin.close()
    reader.wait()
    assert p.returncode == 0 and rows(tmp_path) == [("finished", 0)]


@pytest.mark.parametrize("argv", [["sweeps"], ["sweeps", "--json"], ["runs", "{sweep}"], ["runs", "{sweep}", "--json"]],
                         ids=" ".join)
def test_a_listing_whose_output_is_lost_says_so(tmp_path, full, argv):
    from mlp.runs.store import Store
    with Store(tmp_path / "s.sqlite") as store:
        sweep = store.create_sweep({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                                    "parameters": {"epochs": {"value": 1}}}, "method: random\n")
    with open(full, "w") as device:
        p = subprocess.run([sys.executable, "-m", "mlp", *[a.format(sweep=sweep) for a in argv]], cwd=tmp_path,
                           env=environment(tmp_path), stdout=device, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith("error: could not write the output to stdout"), p.stderr
    assert p.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [["sweeps"], ["runs", "{sweep}", "--json"], ["sweep", "{file}"]], ids=" ".join)
def test_a_listing_with_stdout_closed_says_so(tmp_path, argv):
    """`mlp sweeps >&-`: Python starts with no stdout at all, and the listing went nowhere — exit 1
    with one line (it exited 0). A sweep is still created: its id is in the store."""
    from mlp.runs.store import Store
    with Store(tmp_path / "s.sqlite") as store:
        sweep = store.create_sweep({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                                    "parameters": {"epochs": {"value": 1}}}, "method: random\n")
    (tmp_path / "g.yaml").write_text("method: grid\nparameters:\n  epochs: {value: 1}\n")
    (tmp_path / "train.py").write_text((ROOT / "train.py").read_text())     # the program the sweep names
    p = subprocess.run([sys.executable, "-m", "mlp", *[a.format(sweep=sweep, file=tmp_path / "g.yaml") for a in argv]],
                       cwd=tmp_path, env=environment(tmp_path), stderr=subprocess.PIPE, text=True, timeout=60,
                       preexec_fn=lambda: os.close(1))
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 1 and errors == ["error: could not write the output to stdout (stdout was closed when "
                                            "the command started)"], p.stderr
    with Store(tmp_path / "s.sqlite") as store:
        assert len(store.list_sweeps()) == (2 if argv[0] == "sweep" else 1)


def test_a_run_with_stdout_closed_still_finishes(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "-e", "1", *TINY], cwd=tmp_path,
                       env=environment(tmp_path), stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert p.returncode == 0 and rows(tmp_path) == [("finished", 0)], p.stderr
    assert "warning: some output to stdout was lost (stdout was closed" in p.stderr


# ---- signals -------------------------------------------------------------------------------------------------

def start(tmp, *args, epochs=400):
    """train.py in the background, with SIGINT not ignored (as a terminal's foreground job)."""
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-e", str(epochs), *TINY, *args], cwd=tmp,
                            env=environment(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def stop(proc, sig, after, times=1, gap=0.0):
    time.sleep(after)
    for _ in range(times):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        time.sleep(gap)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("after", [0.03, 0.08, 0.15])
def test_a_signal_during_start_up_exits_130_quietly(tmp_path, sig, after):
    """Within the imports (the first ~0.1-0.3 s, depending on the machine's load): 130, no
    traceback; nothing recorded, or (if the run had begun) its row killed."""
    code, out, err = stop(start(tmp_path), sig, after)
    if code == -sig:    # so early that the interpreter had not reached train.py's first line: nothing ran
        assert err == "" and rows(tmp_path) == [] and not (tmp_path / "s.sqlite").exists()
        return
    last = err.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in err and "Error" not in err, (code, err)
    assert (last, rows(tmp_path)) == ("interrupted", []) or rows(tmp_path) == [("killed", 130)], (last, err)


def _training(proc):
    """Wait for the first epoch line on stderr (the run is training)."""
    for line in proc.stderr:
        if line.startswith("epoch "):
            return
    raise AssertionError("the run never trained")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("times,gap", [(1, 0), (2, 0.05), (20, 0.005)], ids=["once", "twice", "burst"])
def test_signals_while_training_stop_the_run_once(tmp_path, sig, times, gap):
    """A second Ctrl-C, or a burst of SIGTERMs, neither kills the process with the signal nor cuts
    the recording short: exit 130, the row killed with 130, the checkpoint kept."""
    proc = start(tmp_path)
    _training(proc)
    code, out, err = stop(proc, sig, 0.2, times, gap)
    assert code == 130 and "Traceback" not in err, (code, err[-2000:])
    assert rows(tmp_path) == [("killed", 130)]
    assert len(list((tmp_path / "mlp-checkpoints").glob("*.npz"))) == 1


@pytest.mark.parametrize("after", [0.0, 0.03, 0.08, 0.15, 0.3])
def test_a_burst_as_the_run_finishes_leaves_a_consistent_record(tmp_path, after):
    """Signals racing the end of the run: whatever the moment, the exit code is the recorded one
    (0 finished, or 130 killed) — never a death by signal after the result was recorded."""
    proc = start(tmp_path, epochs=15)
    _training(proc)
    code, out, err = stop(proc, signal.SIGINT, after, 30, 0.01)
    recorded = rows(tmp_path)
    assert code in (0, 130) and "Traceback" not in err, (code, err[-2000:])
    assert recorded == [({0: "finished", 130: "killed"}[code], code)], (code, recorded)
