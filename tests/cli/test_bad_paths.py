"""Every path a user can give, walked by class: each flag, environment variable and subcommand
argument that names a file or folder, against each kind of path that cannot work — an unknown
~user, a name or a path too long for the file system, a file used as a folder, a symlink loop, a
FIFO (which would block a read forever), a folder where a file goes and a file where a folder
goes, a device, a place in /proc or /sys, an output that is the command's own input.

The promise for each: exit code 2, one line `error: …`, no traceback, nothing written (and the
device, FIFO or input file untouched). Cases run in-process (a blocking open would hang the test,
so each has a deadline that raises instead).
"""
import contextlib
import os
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pytest

from mlp import MLP, paths
from mlp.cli import main as mlp_main
from mlp.core.network import Network
from mlp.cli import train_main
from mlp.errors import UsageError
from helpers.paths import DATA
from helpers.promises import files_in

TINY = ["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled"]


class Hung(BaseException):
    """Raised by the deadline: a BaseException, so no `except Exception` of the code under test eats it."""


@contextlib.contextmanager
def deadline(seconds=20):
    def expired(signum, frame):
        raise Hung(f"no answer within {seconds} s: the command blocked")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _device(path: Path) -> bool:
    """A private character device (the null device's numbers) at `path`; False when not root."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return True
    except PermissionError:
        return False


# path classes: name -> path under the test's folder `w` (None: not available here)
CANNOT_NAME = {            # no path of these names anything, input or output
    "unknown ~user": lambda w: "~nosuchuser-mlp-test/x",
    "name too long": lambda w: str(w / ("a" * 300)),
    "path too long": lambda w: "/" + "/".join(["d" * 200] * 25),
    "a file as a folder": lambda w: str(w / "afile" / "x"),
    "a symlink loop": lambda w: str(w / "loop" / "x"),
}
NOT_A_FILE = {             # where a file is read or written
    "a folder": lambda w: str(w / "adir"),
    "a FIFO": lambda w: str(w / "fifo"),
    "a device": lambda w: str(w / "dev") if (w / "dev").exists() else None,
}
NOT_A_PLACE = {            # kernel interfaces: never written into
    "in /proc": lambda w: "/proc/self/mlp-test-output",
    "in /sys": lambda w: "/sys/mlp-test-output",
}
NOT_A_FOLDER = {           # where a folder is read
    "a file": lambda w: str(w / "afile"),
    "a FIFO": lambda w: str(w / "fifo"),
    "missing": lambda w: str(w / "nowhere"),
}
MISSING = {"missing": lambda w: str(w / "nowhere.npz")}

OUTPUT_FILE = {**CANNOT_NAME, **NOT_A_FILE, **NOT_A_PLACE}
INPUT_FILE = {**CANNOT_NAME, **NOT_A_FILE, **MISSING}
INPUT_DIR = {**CANNOT_NAME, **NOT_A_FOLDER}


@pytest.fixture
def w(work):
    """The test folder with the things the path classes point at; returns it."""
    (work / "afile").write_text("x")
    (work / "adir").mkdir()
    os.mkfifo(work / "fifo")
    os.symlink(work / "loop", work / "loop")
    _device(work / "dev")
    MLP([784, 8, 10], seed=0).save(work / "model.npz")
    return work


def _case(w, make):
    path = make(w)
    if path is None:
        pytest.skip("a device node needs root (mknod)")
    return path


def _refused(w, capsys, call, before=None):
    """Run `call()`; it must exit 2 with one `error:` line, no traceback, nothing written, and the
    FIFO, device and model exactly as they were."""
    before = files_in(w) if before is None else before
    kinds = {name: os.lstat(w / name).st_mode for name in ("fifo", "dev", "model.npz") if os.path.lexists(w / name)}
    model = (w / "model.npz").read_bytes()
    with deadline():
        code = call()
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, err
    assert files_in(w) == before, "a refused command wrote something"
    assert {name: os.lstat(w / name).st_mode for name in kinds} == kinds
    assert (w / "model.npz").read_bytes() == model
    return lines[0]


def _ids(table):
    return list(table)


# ---- train.py ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--save_model", "--summary_json"])
@pytest.mark.parametrize("kind", _ids(OUTPUT_FILE))
def test_train_output_files(w, capsys, flag, kind):
    _refused(w, capsys, lambda: train_main([*TINY, flag, _case(w, OUTPUT_FILE[kind])]))


@pytest.mark.parametrize("flag", ["--save_model", "--summary_json"])
def test_train_outputs_never_overwrite_an_input(w, capsys, flag):
    """The store, the model the features come from, and each other."""
    _refused(w, capsys, lambda: train_main([*TINY, "--store", str(w / "model.npz"), flag, str(w / "model.npz")]))
    _refused(w, capsys, lambda: train_main([*TINY, "--features", str(w / "model.npz"), flag, str(w / "model.npz")]))
    line = _refused(w, capsys, lambda: train_main([*TINY, "--save_model", str(w / "same"), "--summary_json",
                                                   str(w / "same")]))
    assert "same file" in line


# the run's other inputs, each an output may not land on (made or not yet): name -> (argv, env, the path)
RUN_INPUTS = {
    "a store not made yet": lambda w: ([*TINY, "--store", str(w / "new.sqlite")], {}, w / "new.sqlite"),
    "the default store not made yet": lambda w: (TINY, {}, w / "mlp-runs.sqlite"),
    "MLP_STORE not made yet": lambda w: (TINY, {"MLP_STORE": str(w / "env.sqlite")}, w / "env.sqlite"),
    "the store's write-ahead log": lambda w: (TINY, {}, w / "mlp-runs.sqlite-wal"),
    "the store's journal": lambda w: (TINY, {}, w / "mlp-runs.sqlite-journal"),
    "the checkpoint folder": lambda w: (TINY, {}, w / "mlp-checkpoints"),
    "a data file": lambda w: ([*TINY[:1], str(w / "data"), *TINY[2:]], {},
                              w / "data" / "fashion_mnist" / "train-labels-idx1-ubyte.gz"),
    "the sweep's parameter file": lambda w: (TINY, {"WANDB_SWEEP_PARAM_PATH": str(w / "p.yaml")}, w / "p.yaml"),
}


@pytest.mark.parametrize("flag", ["--save_model", "--summary_json"])
@pytest.mark.parametrize("kind", _ids(RUN_INPUTS))
def test_train_outputs_never_land_on_the_runs_inputs(w, capsys, monkeypatch, flag, kind):
    """Found by an adversarial run: an output named like a store that did not exist yet replaced
    the store the run had just created (its row lost), and one on a data file replaced the data."""
    import shutil
    shutil.copytree(DATA, w / "data")
    (w / "p.yaml").write_text("epochs:\n  value: 1\n")
    monkeypatch.chdir(w)
    monkeypatch.delenv("MLP_STORE", raising=False)
    argv, env, target = RUN_INPUTS[kind](w)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = target.read_bytes() if target.is_file() else None
    line = _refused(w, capsys, lambda: train_main([*argv, flag, str(target)]))
    assert "input" in line and (target.read_bytes() if target.is_file() else None) == before


def test_a_file_where_the_checkpoints_go_is_refused_before_training(w, capsys, monkeypatch):
    monkeypatch.chdir(w)
    monkeypatch.delenv("MLP_STORE", raising=False)
    (w / "mlp-checkpoints").write_text("not a folder")
    line = _refused(w, capsys, lambda: train_main(TINY))
    assert "mlp-checkpoints is not a folder" in line


@pytest.mark.parametrize("kind", _ids(INPUT_DIR))
def test_train_data_dir(w, capsys, kind):
    _refused(w, capsys, lambda: train_main([*TINY, "--data_dir", _case(w, INPUT_DIR[kind])]))


@pytest.mark.parametrize("kind", _ids(INPUT_DIR))
def test_mlp_data_dir_variable(w, capsys, monkeypatch, kind):
    monkeypatch.setenv("MLP_DATA_DIR", _case(w, INPUT_DIR[kind]))
    tiny = [a for a in TINY if a not in ("--data_dir", str(DATA))]
    _refused(w, capsys, lambda: train_main(tiny))


@pytest.mark.parametrize("kind", _ids(CANNOT_NAME))
def test_mlp_cache_dir_variable(w, capsys, monkeypatch, kind):
    monkeypatch.setenv("MLP_CACHE_DIR", _case(w, CANNOT_NAME[kind]))
    _refused(w, capsys, lambda: train_main(TINY))


@pytest.mark.parametrize("kind", _ids(INPUT_FILE))
def test_train_features_model(w, capsys, kind):
    _refused(w, capsys, lambda: train_main([*TINY, "--features", _case(w, INPUT_FILE[kind])]))


@pytest.mark.parametrize("kind", _ids({**CANNOT_NAME, **NOT_A_FILE, **NOT_A_PLACE}))
def test_train_store(w, capsys, kind):
    path = _case(w, {**CANNOT_NAME, **NOT_A_FILE, **NOT_A_PLACE}[kind])
    _refused(w, capsys, lambda: train_main([*TINY, "--store", path]))


@pytest.mark.parametrize("kind", _ids({**CANNOT_NAME, **NOT_A_FILE}))
def test_store_variable(w, capsys, monkeypatch, kind):
    monkeypatch.setenv("MLP_STORE", _case(w, {**CANNOT_NAME, **NOT_A_FILE}[kind]))
    _refused(w, capsys, lambda: train_main(TINY))


# ---- mlp features / evaluate -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", _ids(INPUT_FILE))
@pytest.mark.parametrize("command", ["features", "evaluate"])
def test_model_argument(w, capsys, command, kind):
    extra = ["--list"] if command == "features" else ["--data_dir", str(DATA)]
    _refused(w, capsys, lambda: mlp_main([command, _case(w, INPUT_FILE[kind]), *extra]))


@pytest.mark.parametrize("kind", _ids(OUTPUT_FILE))
def test_features_out(w, capsys, kind):
    _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--data_dir", str(DATA), "--out",
                                          _case(w, OUTPUT_FILE[kind])]))


def test_features_out_is_never_the_model(w, capsys):
    line = _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--data_dir", str(DATA),
                                                 "--out", str(w / "model.npz")]))
    assert "input file" in line
    os.symlink(w / "model.npz", w / "link.npz")
    _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--data_dir", str(DATA),
                                          "--out", str(w / "link.npz")]))


def test_features_out_is_never_a_data_file_or_the_store(w, capsys, monkeypatch):
    """The data folder's files (--data_dir, else MLP_DATA_DIR) and the store with its side files:
    `--out` on any of them would have replaced it with the features."""
    data = w / "data"
    shutil.copytree(DATA / "fashion_mnist", data / "fashion_mnist")
    files = sorted((data / "fashion_mnist").iterdir())
    before = {f: f.read_bytes() for f in files}
    assert len(files) == 5
    for f in files:
        line = _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--data_dir", str(data),
                                                     "--out", str(f)]))
        assert "input file" in line
    monkeypatch.setenv("MLP_DATA_DIR", str(data))
    _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--out", str(files[0])]))
    assert {f: f.read_bytes() for f in files} == before
    monkeypatch.setenv("MLP_STORE", str(w / "s.sqlite"))
    for end in ("", "-wal", "-journal"):
        _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--data_dir", str(DATA),
                                              "--out", str(w / "s.sqlite") + end]))


@pytest.mark.parametrize("flag", ["--save_model", "--summary_json"])
def test_an_output_ending_in_a_slash_names_a_folder(w, capsys, flag):
    """`--save_model sub/` wrote a file named `sub`."""
    for text in ("sub/", "sub/.", "adir/"):
        line = _refused(w, capsys, lambda: train_main([*TINY, flag, f"{w}/{text}"]))
        assert "names a folder" in line or "is a folder" in line


def test_a_saved_model_never_goes_into_the_checkpoint_folder(w, capsys):
    """mlp-checkpoints/ beside the store is the program's: a model saved there was removed with the
    run's checkpoint (the store then pointed at a missing file)."""
    (w / "mlp-checkpoints").mkdir()
    for name in ("run.npz", "sub/x.npz"):
        line = _refused(w, capsys, lambda: train_main([*TINY, "--store", str(w / "s.sqlite"), "--save_model",
                                                       str(w / "mlp-checkpoints" / name)]))
        assert "a folder this program manages" in line


@pytest.mark.parametrize("tag", ["/../../../../../../{escape}", "../up", "a/b", "..", "x\x00y"])
def test_a_model_file_cannot_steer_the_default_features_path(w, capsys, tag):
    """The default --out is built from the layer's tag, which the model file holds: it stays a
    plain name beside the model, whatever the tag."""
    escape = Path("/tmp") / f"mlp-escaped-{os.getpid()}"          # a tag has at most 64 characters
    tag = tag.format(escape=str(escape).lstrip("/"))
    spec = MLP([784, 8, 10], seed=0).spec()
    spec["layers"][1]["tag"] = tag
    Network(**spec, seed=0).save(w / "tagged.npz")
    with deadline():
        assert mlp_main(["features", str(w / "tagged.npz"), "--data_dir", str(DATA)]) == 0
    written = sorted(p.name for p in w.glob("tagged.*.features.npz"))
    assert len(written) == 1 and "/" not in written[0] and ".." not in written[0], written
    assert not list(escape.parent.glob(escape.name + "*"))


# ---- selectors and names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["²", "+-1", "-+1", "１", "1.0", "0x1", " ", "٣", "99", "-99"])
def test_layer_selectors(w, capsys, layer):
    _refused(w, capsys, lambda: mlp_main(["features", str(w / "model.npz"), "--layer", layer, "--list"]))
    _refused(w, capsys, lambda: train_main([*TINY, "--features", f"{w / 'model.npz'}:{layer}"]))


# ---- mlp report / rerun -------------------------------------------------------------------------------------

@pytest.fixture
def sweep(w):
    from mlp.runs.store import Store
    with Store(w / "s.sqlite") as store:
        sweep_id = store.create_sweep({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                                       "parameters": {"epochs": {"value": 1}}}, "method: random\n")
        run_id = store.create_run({"epochs": 1}, sweep_id=sweep_id, state="running")
        store.finish_run(run_id, "finished", summary={"val_accuracy": 0.5, "test_accuracy": 0.5})
    return sweep_id


REPORT_OUT = {**CANNOT_NAME, "a file": lambda w: str(w / "afile"), "a FIFO": lambda w: str(w / "fifo"),
              "index.html is a folder": lambda w: (w / "rep" / "index.html").mkdir(parents=True) or str(w / "rep"),
              "report.md is a FIFO": lambda w: (w / "rep2").mkdir() or os.mkfifo(w / "rep2" / "report.md")
              or str(w / "rep2"),
              "in /proc": lambda w: "/proc/mlp-report", "in /sys": lambda w: "/sys/mlp-report",
              "a link into /proc": lambda w: os.symlink("/proc/self", w / "toproc") or str(w / "toproc" / "rep")}


@pytest.mark.parametrize("kind", _ids(REPORT_OUT))
def test_report_out(w, sweep, capsys, kind):
    out = _case(w, REPORT_OUT[kind])
    _refused(w, capsys, lambda: mlp_main(["report", sweep, "--out", out, "--data_dir", str(DATA)]))


REPORT_DATA_DIR = INPUT_DIR


@pytest.mark.parametrize("kind", _ids(REPORT_DATA_DIR))
def test_rerun_data_dir(w, sweep, capsys, kind):
    """Refused before any work: no "checking that mnist is available" line before the error."""
    _refused(w, capsys, lambda: mlp_main(["rerun", sweep, "--dataset", "mnist", "--local", "--data_dir",
                                          _case(w, REPORT_DATA_DIR[kind])]))


@pytest.mark.parametrize("kind", _ids(REPORT_DATA_DIR))
def test_report_data_dir(w, sweep, capsys, kind):
    """Refused before any work: no import, no parameter importance, no progress line first."""
    _refused(w, capsys, lambda: mlp_main(["report", sweep, "--out", str(w / "rep"), "--data_dir",
                                          _case(w, REPORT_DATA_DIR[kind])]))


# ---- the functions themselves --------------------------------------------------------------------------------

def test_expand_refuses_a_nul_byte_and_an_empty_path():
    for text in ("a\x00b", "", "   "):
        with pytest.raises(UsageError):
            paths.expand(text, "--x")


def test_atomic_writes_leave_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def failing(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        paths.write_atomically(target, failing)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    with pytest.raises(KeyboardInterrupt):
        paths.write_atomically(target, lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_an_atomic_write_never_replaces_what_became_a_folder_meanwhile(tmp_path):
    target = tmp_path / "f"

    def make_folder_first(f):
        f.write(b"data")
        target.mkdir()
    with pytest.raises(OSError):
        paths.write_atomically(target, make_folder_first)
    assert target.is_dir() and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_symlinked_output_keeps_its_link(tmp_path):
    real = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    real.write_bytes(b"")
    os.symlink(real, link)
    MLP([4, 3], seed=0).save(paths.output_file(link, "--save_model"))
    assert link.is_symlink() and np.load(real, allow_pickle=False)["0.W"].shape == (4, 3)
