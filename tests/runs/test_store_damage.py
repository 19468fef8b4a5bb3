"""A damaged or odd store file, class by class: every command that reads it ends with one line
`error: store PATH is damaged: TABLE.COLUMN of ROW …` (or what else is wrong with the path) and exit
code 2 — never a traceback, never a hang — and writes nothing: no new file beside the store, no
run row left running.

The classes: a JSON column holding what is not its JSON object (malformed text, a list, a number,
a string, null, a boolean, nesting too deep for the decoder or for what walks it later), a value
of the wrong type in a text, number or timestamp column, a JSON object whose entries the programs
rely on are of the wrong kind, a dropped table, a renamed column, a damaged page, a path that is
no regular file (FIFO, socket, character device, a loop of links), and a new store on a disk that
takes no byte.

One good store is made once per module by a real sweep (a grid of one point on tests/data, its run
finished, its model beside the store, the sweep left `running` so `mlp agent` reads every run and
history row while it looks for work); each case copies it and damages the copy with sqlite3.
Commands run in this process where that is the same path as the command line (`mlp.cli.main`
returns the exit code and prints what the command line prints), in a subprocess where the exit
status, a hang or a file-size limit is the point.
"""
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers.paths import DATA, ROOT
from helpers.promises import files_in, one_line_error
from mlp.cli import main as mlp_main
from mlp.cli import train_main
from mlp.runs.store import Store, StoreError, schema

SWEEP_YAML = f"""name: damage
program: train.py
method: grid
metric: {{name: val_accuracy, goal: maximize}}
parameters:
  data_dir: {{value: {DATA}}}
  epochs: {{value: 1}}
  num_layers: {{value: 1}}
  hidden_size: {{value: 8}}
"""
TINY = ["-e", "1", "-nhl", "1", "-sz", "8", "--data_dir", str(DATA), "--wandb_mode", "disabled"]
DAMAGED = "move it aside (keep it for recovery) and pass --store with a new path"
SQLITE_FILES = ("-wal", "-shm")     # SQLite's own, beside an open store: not something a command wrote


def _env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLP_"))}
    env.update(WANDB_MODE="disabled", WANDB_SILENT="true", WANDB_DIR=str(folder), MLP_STORE=str(folder / "s.sqlite"),
               NETRC=str(folder / "no-netrc"))
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A good store: one sweep (left running), its one run finished with its history, summary and
    model file, and one baseline row. (folder, sweep id, run id)."""
    folder = tmp_path_factory.mktemp("template")
    (folder / "s.yaml").write_text(SWEEP_YAML)
    made = subprocess.run([sys.executable, "-m", "mlp", "sweep", str(folder / "s.yaml"), "--count", "1"], cwd=ROOT,
                          env=_env(folder), capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    sweep_id = made.stdout.split()[0]
    with Store(folder / "s.sqlite", create=False) as store:
        (run,) = store.list_runs(sweep_id)
        assert run["state"] == "finished" and store.history(run["id"]) and run["summary"]["confusion_matrix"]
        store.set_sweep_state(sweep_id, "running")
        store.add_baseline(model="knn", label="k-NN", settings={"k": 5}, dataset="fashion_mnist", split="standard",
                           val_fraction=0.1, val_rows_sha256="ab" * 32, n_train=1800, n_val=200, n_test=500,
                           val_accuracy=0.7, test_accuracy=0.7, train_seconds=0.1, sweep_id=sweep_id, run_id=None,
                           library="test")
    return folder, sweep_id, run["id"]


@pytest.fixture
def case(template, tmp_path, monkeypatch):
    """A copy of the good store in an empty folder (the cwd, W&B off, no store variables)."""
    folder, sweep_id, run_id = template
    for key in [k for k in os.environ if k.startswith(("WANDB_", "MLP_"))]:
        monkeypatch.delenv(key)
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    shutil.copy(folder / "s.sqlite", tmp_path / "s.sqlite")
    for sub in ("mlp-models", "mlp-logs"):
        shutil.copytree(folder / sub, tmp_path / sub)
    return Case(tmp_path, sweep_id, run_id)


class Case:
    def __init__(self, folder: Path, sweep_id: str, run_id: str):
        self.folder, self.sweep_id, self.run_id = folder, sweep_id, run_id
        self.store = folder / "s.sqlite"

    def damage(self, *statements: str) -> None:
        db = sqlite3.connect(self.store, isolation_level=None)
        try:
            for statement in statements:
                db.execute(statement)
        finally:
            db.close()
        self.files = self._files()
        self.rows = self._rows()

    def _files(self) -> list[str]:
        return [f for f in files_in(self.folder) if not f.endswith(SQLITE_FILES)]

    def _rows(self):
        """(id, state) of every run, or what stops sqlite3 itself from reading them."""
        db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True)
        try:
            return sorted(db.execute("SELECT id, state FROM runs").fetchall())
        except sqlite3.Error as e:
            return str(e)
        finally:
            db.close()

    def argv(self, command: str) -> list[str]:
        return [*COMMANDS[command](self), "--store", str(self.store)]

    def refused(self, code: int, err: str, *words: str) -> str:
        """Exit 2, stderr exactly one line `error: …` naming the store (and `words`), and nothing
        written: the same files, the same runs in the same states."""
        line = one_line_error((code, err), f"store {self.store}", *words)
        assert err.strip().splitlines() == [line], err
        assert self._files() == self.files, "a refused command wrote something"
        assert self._rows() == self.rows, "a refused command changed the runs"
        return line


COMMANDS = {
    "sweeps": lambda c: ["sweeps"],
    "sweeps --json": lambda c: ["sweeps", "--json"],
    "runs": lambda c: ["runs", c.sweep_id],
    "agent": lambda c: ["agent", c.sweep_id, "--count", "1"],
    "report": lambda c: ["report", c.sweep_id, "--out", str(c.folder / "report")],
}
LISTINGS = ("sweeps", "sweeps --json", "runs")
EVERY_READER = (*LISTINGS, "agent", "report")


def run_mlp(capsys, argv) -> tuple[int, str, str]:
    code = mlp_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---- JSON columns -------------------------------------------------------------------------------------

BAD_JSON = {   # what the column holds -> what the message says of it
    "malformed": ("{", "is not valid JSON (Expecting property name"),
    "not json": ("not json", "is not valid JSON (Expecting value"),
    "list": ("[]", "is a JSON list, not a JSON object"),
    "number": ("5", "is the number 5, not a JSON object"),
    "string": ('"x"', "is the text 'x', not a JSON object"),
    "null": ("null", "is the JSON null, not a JSON object"),
    "boolean": ("true", "is the JSON boolean true, not a JSON object"),
    "deep list": ("[" * 100_000 + "]" * 100_000, "is JSON nested more than 64 levels deep"),
    "deep object": ('{"a":' * 70 + "1" + "}" * 70, "is JSON nested more than 64 levels deep"),
}
# (table, column) -> the commands that read it
JSON_COLUMNS = {
    ("runs", "config_json"): EVERY_READER,
    ("runs", "summary_json"): EVERY_READER,
    ("runs", "params_json"): EVERY_READER,
    ("runs", "extra_json"): EVERY_READER,
    ("sweeps", "config_json"): EVERY_READER,
    ("sweeps", "extra_json"): EVERY_READER,
    ("sweeps", "rerun_json"): EVERY_READER,
    ("history", "metrics_json"): ("agent", "report"),
}
# the full cross of every kind with the listings and the agent; the report (slower) with three kinds
JSON_CASES = [(table, column, kind, command) for (table, column), commands in JSON_COLUMNS.items()
              for command in commands for kind in BAD_JSON
              if command != "report" or kind in ("malformed", "list", "deep list")]


def _where(case, table):
    return {"runs": f"run {case.run_id!r}", "sweeps": f"sweep {case.sweep_id!r}",
            "history": f"run {case.run_id!r} epoch 1"}[table]


@pytest.mark.parametrize("table, column, kind, command", JSON_CASES,
                         ids=[f"{t}.{c}-{k}-{m}" for t, c, k, m in JSON_CASES])
def test_a_damaged_json_column_is_one_line_naming_table_column_and_row(case, capsys, table, column, kind, command):
    text, problem = BAD_JSON[kind]
    case.damage(f"UPDATE {table} SET {column} = {_quote(text)}")
    code, _, err = run_mlp(capsys, case.argv(command))
    line = case.refused(code, err, f"is damaged: {table}.{column} of {_where(case, table)} {problem}", DAMAGED)
    assert len(line) < 600          # what is wrong, not the damaged value (100,000 brackets) itself
    assert not (case.folder / "report").exists()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---- what a JSON object holds, and the other columns ----------------------------------------------------

VALUE_CASES = {   # name -> (statements, what the message says, the commands that read it)
    "runs.started_at text": (["UPDATE runs SET started_at = 'yesterday'"],
                             "runs.started_at of run {run} is the text 'yesterday', not a number", EVERY_READER),
    "runs.created_at blob": (["UPDATE runs SET created_at = x'00ff'"],
                             "runs.created_at of run {run} is a 2-byte BLOB, not a number", LISTINGS),
    "runs.pid text": (["UPDATE runs SET pid = 'abc'"], "runs.pid of run {run} is the text 'abc', not an integer",
                      (*LISTINGS, "agent")),
    "runs.seq fraction": (["UPDATE runs SET seq = 1.5"], "runs.seq of run {run} is the number 1.5, not an integer",
                          LISTINGS),
    "runs.exit_code text": (["UPDATE runs SET exit_code = 'zero'"],
                            "runs.exit_code of run {run} is the text 'zero', not an integer", LISTINGS),
    "runs.name blob": (["UPDATE runs SET name = x'00'"], "runs.name of run {run} is a 1-byte BLOB, not text",
                       LISTINGS),
    "runs.state unknown": (["PRAGMA ignore_check_constraints = ON", "UPDATE runs SET state = 'exploded'"],
                           "runs.state of run {run} is the text 'exploded', not one of pending, running", LISTINGS),
    "summary metric text": (["UPDATE runs SET summary_json = json_set(summary_json, '$.val_accuracy', 'high')"],
                            "runs.summary_json of run {run} has 'val_accuracy' that is the text 'high', not a number",
                            EVERY_READER),
    "summary ragged confusion": (["UPDATE runs SET summary_json = json_set(summary_json, '$.confusion_matrix', "
                                  "json('[[1, 2], [3]]'))"],
                                 "runs.summary_json of run {run} has 'confusion_matrix' that is not a matrix",
                                 (*LISTINGS, "report")),
    "extra retry_of list": (["UPDATE runs SET extra_json = json_set(extra_json, '$.retry_of', json('[1]'))"],
                            "runs.extra_json of run {run} has 'retry_of' that is a JSON list, not text",
                            (*LISTINGS, "agent")),
    "sweeps.seed text": (["UPDATE sweeps SET seed = 'abc'"],
                         "sweeps.seed of sweep {sweep} is the text 'abc', not an integer", (*LISTINGS, "agent")),
    "sweeps.created_at text": (["UPDATE sweeps SET created_at = 'monday'"],
                               "sweeps.created_at of sweep {sweep} is the text 'monday', not a number", LISTINGS),
    "sweeps.wandb_path blob": (["UPDATE sweeps SET wandb_path = x'2f2f'"],
                               "sweeps.wandb_path of sweep {sweep} is a 2-byte BLOB, not text", LISTINGS),
    "sweep config parameters list": (["UPDATE sweeps SET config_json = json_set(config_json, '$.parameters', "
                                      "json('[1]'))"],
                                     "sweeps.config_json of sweep {sweep} has 'parameters' that is a JSON list, "
                                     "not a JSON object", (*LISTINGS, "agent")),
    "sweep config parameter number": (["UPDATE sweeps SET config_json = json_set(config_json, '$.parameters.epochs',"
                                       " 5)"], "sweeps.config_json of sweep {sweep} has 'parameters' that holds "
                                      "'epochs': the number 5, not a JSON object", (*LISTINGS, "agent")),
    "sweep config method number": (["UPDATE sweeps SET config_json = json_set(config_json, '$.method', 5)"],
                                   "sweeps.config_json of sweep {sweep} has 'method' that is the number 5, not text",
                                   (*LISTINGS, "agent")),
    "sweep config command text": (["UPDATE sweeps SET config_json = json_set(config_json, '$.command', 'python')"],
                                  "sweeps.config_json of sweep {sweep} has 'command' that is the text 'python', not "
                                  "a JSON list", ("sweeps", "agent")),
    "rerun plan source_runs": (["UPDATE sweeps SET rerun_json = '{\"parent\": \"x\", \"source_runs\": 5}'"],
                               "sweeps.rerun_json of sweep {sweep} has 'source_runs' that is the number 5, not a "
                               "JSON list", (*LISTINGS, "agent")),
    "rerun plan configs": (["UPDATE sweeps SET rerun_json = '{\"parent\": \"x\", \"configs\": [1]}'"],
                           "sweeps.rerun_json of sweep {sweep} has 'configs' that is the number 1, not a JSON object",
                           (*LISTINGS, "agent")),
    "history epoch text": (["UPDATE history SET epoch = 'first'"],
                           "history.epoch of run {run} epoch 'first' is the text 'first', not an integer",
                           ("agent", "report")),
    "history metric text": (["UPDATE history SET metrics_json = json_set(metrics_json, '$.val_loss', 'x')"],
                            "history.metrics_json of run {run} epoch 1 has 'val_loss' that is the text 'x', "
                            "not a number", ("agent", "report")),
}
VALUE_PARAMS = [(name, command) for name, (_, _, commands) in VALUE_CASES.items() for command in commands]


@pytest.mark.parametrize("name, command", VALUE_PARAMS, ids=[f"{n}-{c}" for n, c in VALUE_PARAMS])
def test_a_value_of_the_wrong_kind_is_one_line_naming_it(case, capsys, name, command):
    statements, said, _ = VALUE_CASES[name]
    case.damage(*statements)
    code, _, err = run_mlp(capsys, case.argv(command))
    case.refused(code, err, said.format(run=repr(case.run_id), sweep=repr(case.sweep_id)), DAMAGED)
    assert not (case.folder / "report").exists()


def test_the_good_store_passes_every_reader(case, capsys):
    """The control: the same commands on the undamaged copy succeed (so the cases above fail for the
    damage alone)."""
    case.damage()
    for command in (*LISTINGS, "agent"):
        code, out, err = run_mlp(capsys, case.argv(command))
        assert code == 0 and "error" not in err, (command, err)


def test_damaged_baseline_rows_are_store_errors(case):
    for statement, said in (("UPDATE baselines SET settings_json = '[1]'", "settings_json of baseline"),
                            ("UPDATE baselines SET val_accuracy = 'good'", "val_accuracy of baseline"),
                            ("UPDATE baselines SET n_train = 1.5", "n_train of baseline")):
        case.damage(statement)
        with Store(case.store, create=False) as store, pytest.raises(StoreError) as raised:
            store.list_baselines()
        assert str(raised.value).startswith(f"store {case.store} is damaged: baselines.") and said in str(raised.value)
        case.damage("UPDATE baselines SET settings_json = '{}', val_accuracy = 0.7, n_train = 1800")


def test_a_damaged_sweep_row_is_not_called_an_unknown_sweep(case, capsys):
    case.damage("UPDATE sweeps SET config_json = '[]'")
    code, _, err = run_mlp(capsys, case.argv("runs"))
    assert case.refused(code, err).endswith(DAMAGED)


# ---- the schema: tables and columns ---------------------------------------------------------------------

def _train(case, capsys):
    code = train_main([*TINY, "--store", str(case.store)])
    out, err = capsys.readouterr()
    return code, out, err


SCHEMA_CASES = {   # name -> (statements, what the message says)
    "no sweeps table": (["DROP TABLE sweeps"], "is damaged: it has no sweeps table"),
    "no runs table": (["DROP TABLE runs"], "is damaged: it has no runs table"),
    "no history table": (["DROP TABLE history"], "is damaged: it has no history table"),
    "no baselines table": (["DROP TABLE baselines"], "is damaged: it has no baselines table"),
    "runs.summary_json renamed": (["ALTER TABLE runs RENAME COLUMN summary_json TO s"],
                                  "is damaged: its runs table has no column summary_json"),
    "sweeps.config_json renamed": (["ALTER TABLE sweeps RENAME COLUMN config_json TO c"],
                                   "is damaged: its sweeps table has no column config_json"),
    "history.metrics_json renamed": (["ALTER TABLE history RENAME COLUMN metrics_json TO m"],
                                     "is damaged: its history table has no column metrics_json"),
    "runs.model_source dropped": (["ALTER TABLE runs DROP COLUMN model_source"],
                                  "is damaged: its runs table has no column model_source"),
}
SCHEMA_PARAMS = [(name, command) for name in SCHEMA_CASES for command in ("train.py", "sweep", "runs", "sweeps")]


def _command(case, capsys, monkeypatch, template, command):
    """train.py, `mlp sweep` of the template's sweep file (from the repository, where train.py is)
    or another command, on the case's store."""
    if command == "train.py":
        return _train(case, capsys)
    if command == "sweep":
        monkeypatch.chdir(ROOT)
        return run_mlp(capsys, ["sweep", str(template[0] / "s.yaml"), "--store", str(case.store)])
    return run_mlp(capsys, case.argv(command))


@pytest.mark.parametrize("name, command", SCHEMA_PARAMS, ids=[f"{n}-{c}" for n, c in SCHEMA_PARAMS])
def test_a_missing_table_or_column_is_found_on_open(case, capsys, monkeypatch, template, name, command):
    """Before anything is written: no sweep row added, no run trained into a store that loses its
    epochs or its summary."""
    statements, said = SCHEMA_CASES[name]
    case.damage(*statements)
    code, _, err = _command(case, capsys, monkeypatch, template, command)
    case.refused(code, err, said, DAMAGED)


def test_extra_tables_and_columns_are_left_alone(case, capsys):
    case.damage("CREATE TABLE notes (x)", "ALTER TABLE runs ADD COLUMN note TEXT")
    code, out, err = run_mlp(capsys, case.argv("runs"))
    assert code == 0 and case.run_id in out, err


def test_the_expected_columns_are_those_the_store_selects():
    """The open check compares with the schema new stores are made with; every column the store
    reads is in it (a column added to a SELECT but not to the schema would fail every open)."""
    expected = schema._expected_columns()
    assert set(expected) == {"sweeps", "runs", "history", "baselines"}
    assert (expected["sweeps"], expected["runs"], expected["baselines"]) == \
        (schema._SWEEP_COLUMNS, schema._RUN_COLUMNS, schema._BASELINE_COLUMNS)
    assert set(schema._HISTORY_COLUMNS) <= set(expected["history"])


# ---- damaged pages ---------------------------------------------------------------------------------------

def _garbage_in_the_pages(case) -> None:
    """Garbage over the start of every page after the first (the schema's), as a failing disk or
    a stray write leaves it."""
    case.damage()
    data = bytearray(case.store.read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset:offset + 100] = bytes(range(100))
    case.store.write_bytes(bytes(data))
    case.rows = case._rows()        # what sqlite3 itself says of the damaged file


@pytest.mark.parametrize("command", ["sweep", "sweeps", "runs", "agent"])
def test_garbage_in_the_pages_is_found_on_open(case, capsys, monkeypatch, template, command):
    _garbage_in_the_pages(case)
    with pytest.raises(StoreError, match="database disk image is malformed"):
        Store(case.store, create=False)            # on open, before any command reads a row
    code, _, err = _command(case, capsys, monkeypatch, template, command)
    case.refused(code, err, "is damaged (database disk image is malformed)", DAMAGED)


@pytest.mark.parametrize("damage, said", [
    (_garbage_in_the_pages, "is damaged (database disk image is malformed)"),
    (lambda case: case.damage("DROP TABLE runs"), "is damaged: it has no runs table"),
    (lambda case: case.damage("DROP TABLE history"), "is damaged: it has no history table"),
    (lambda case: case.damage("ALTER TABLE runs RENAME COLUMN summary_json TO s"), "has no column summary_json"),
], ids=["garbage pages", "no runs table", "no history table", "renamed summary_json"])
def test_train_py_starts_nothing_on_a_damaged_store(case, damage, said):
    """train.py with W&B offline: the store is refused when it is opened, before W&B writes its run
    folder (the damage used to surface after W&B had started, or never: a run without its history
    table finished with exit 0 and lost every epoch)."""
    damage(case)
    env = {**_env(case.folder), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY[:-2], "--store", str(case.store)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    case.refused(proc.returncode, proc.stderr, said, DAMAGED)
    assert not (case.folder / "wandb").exists()


# ---- paths that are no regular file ------------------------------------------------------------------

def _subprocess(folder: Path, argv: list[str], timeout: float = 60, limit_file_size: bool = False):
    def no_file_bytes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    cmd = [sys.executable, str(ROOT / "train.py"), *argv[1:]] if argv[0] == "train.py" else \
        [sys.executable, "-m", "mlp", *argv]
    env = _env(folder)
    if limit_file_size:      # joblib's import probes a semaphore file, and warns when it cannot write it
        env["JOBLIB_MULTIPROCESSING"] = "0"
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=no_file_bytes if limit_file_size else None)


def _special(kind: str, folder: Path) -> Path:
    path = folder / "s.sqlite"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))               # the folder is short: a socket path has at most 107 bytes
        server.close()
    elif kind == "/dev/null link":
        path.symlink_to("/dev/null")
    elif kind == "link loop":
        path.symlink_to(path.name)
    return path


SPECIAL = {"fifo": "is a FIFO (named pipe), not an mlp-sweeps store file",
           "socket": "is a socket, not an mlp-sweeps store file",
           "/dev/null link": "is a character device, not an mlp-sweeps store file",
           "link loop": "loop of symbolic links"}     # the command line's own check of --store may say it first
SPECIAL_COMMANDS = {"train.py": ["train.py", *TINY], "sweep": ["sweep", "{folder}/s.yaml"], "sweeps": ["sweeps"],
                    "runs": ["runs", "abcd1234"], "agent": ["agent", "abcd1234", "--count", "1"]}
SPECIAL_PARAMS = [(kind, command) for kind in SPECIAL for command in SPECIAL_COMMANDS
                  if kind in ("fifo", "/dev/null link") or command in ("train.py", "sweeps")]


@pytest.mark.parametrize("kind, command", SPECIAL_PARAMS, ids=[f"{k}-{c}" for k, c in SPECIAL_PARAMS])
def test_a_store_path_that_is_no_regular_file_is_refused_at_once(kind, command):
    """A FIFO made every command hang in open(); a device or socket never holds a store. Each is
    one line, in well under the timeout (a hang fails the test instead of blocking the suite)."""
    folder = Path(tempfile.mkdtemp(prefix="mlp-", dir="/tmp"))
    try:
        (folder / "s.yaml").write_text(SWEEP_YAML)
        path = _special(kind, folder)
        before = files_in(folder)
        argv = [a.replace("{folder}", str(folder)) for a in SPECIAL_COMMANDS[command]]
        proc = _subprocess(folder, [*argv, "--store", str(path)], timeout=60)
        line = one_line_error(proc, str(path), SPECIAL[kind])
        assert kind == "link loop" or f"{path} {SPECIAL[kind]}" in line, line
        assert proc.stderr.strip().splitlines() == [line]
        assert files_in(folder) == before
        assert os.path.islink(path) or not path.is_file()       # still what it was
    finally:
        shutil.rmtree(folder)


BESIDE = {"fifo journal": ("-journal", "is a FIFO (named pipe), not SQLite's journal"),
          "fifo wal": ("-wal", "is a FIFO (named pipe), not SQLite's write-ahead log"),
          "folder shm": ("-shm", "is a directory, not SQLite's shared-memory file")}
BESIDE_PARAMS = [(kind, command) for kind in BESIDE for command in ("train.py", "sweeps")] + [("fifo journal", "sweep")]


@pytest.mark.parametrize("kind, command", BESIDE_PARAMS, ids=[f"{k}-{c}" for k, c in BESIDE_PARAMS])
def test_what_is_beside_the_store_is_checked_too(template, tmp_path, kind, command):
    """SQLite opens a journal it finds beside the store to see whether to roll it back: a FIFO
    there blocked it beyond any signal (only SIGKILL ended it)."""
    folder = template[0]
    shutil.copy(folder / "s.sqlite", tmp_path / "s.sqlite")
    suffix, said = BESIDE[kind]
    beside = tmp_path / f"s.sqlite{suffix}"
    os.mkfifo(beside) if kind.startswith("fifo") else beside.mkdir()
    before = files_in(tmp_path)
    argv = {"train.py": ["train.py", *TINY], "sweeps": ["sweeps"], "sweep": ["sweep", str(folder / "s.yaml")]}[command]
    proc = _subprocess(tmp_path, [*argv, "--store", str(tmp_path / "s.sqlite")], timeout=60)
    line = one_line_error(proc, f"{beside}, beside store {tmp_path / 's.sqlite'}, {said}; remove it")
    assert proc.stderr.strip().splitlines() == [line] and files_in(tmp_path) == before


def test_the_store_opened_through_a_link_to_a_regular_file_works(case, capsys):
    case.damage()
    link = case.folder / "link.sqlite"
    link.symlink_to(case.store)
    code, out, err = run_mlp(capsys, ["runs", case.sweep_id, "--store", str(link)])
    assert code == 0 and case.run_id in out, err


# ---- a new store that cannot be made -------------------------------------------------------------------

@pytest.mark.parametrize("command", ["sweep", "train.py"])
def test_a_new_store_that_cannot_be_written_leaves_no_file(tmp_path, command):
    """No byte may be written (RLIMIT_FSIZE 0, as on a full disk): one line, and the empty file the
    attempt made is gone again."""
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    store = tmp_path / "new" / "s.sqlite"
    argv = ["sweep", str(tmp_path / "s.yaml")] if command == "sweep" else ["train.py", *TINY]
    proc = _subprocess(tmp_path, [*argv, "--store", str(store)], limit_file_size=True)
    one_line_error(proc, f"store {store} cannot be written")
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(os.listdir(store.parent)) == []


def test_an_existing_empty_file_is_never_removed(tmp_path, monkeypatch):
    """Only a file this process made is removed when making the store fails: a 0-byte file that
    was there before stays."""
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")

    def fail(self, conn):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(Store, "_check_schema", fail)
    with pytest.raises(StoreError, match="cannot be written"):
        Store(path)
    assert path.exists()
    path.unlink()
    with pytest.raises(StoreError, match="cannot be written"):
        Store(path)
    assert not path.exists()


@pytest.mark.parametrize("config", [{"hidden_size": -5}, {"epochs": "x"}, {"learning_rate": float("inf")},
                                    {"activation": "relux"}, {"hidden_sizes": "[8,"}])
def test_a_run_config_with_invalid_values_is_a_damaged_row(tmp_path, config, capsys):
    """Values of train.py's parameters that train.py could never have recorded (a row edited by
    hand, a damaged disk) are one line naming the run, in every command that reads the runs."""
    from mlp.cli import main
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"value": 1}}}, "", name="s")
        run = store.create_run({"epochs": 1, **config}, sweep_id=sweep)
        store.finish_run(run, "finished", summary={"val_accuracy": 0.5, "epochs_run": 1})
    for argv in (["runs", sweep], ["report", sweep, "--out", str(tmp_path / "r")], ["rerun", sweep, "--local"]):
        assert main([*argv, "--store", str(path)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"error: store {path} is damaged") and err.count("\n") == 1, err
        assert repr(run) in err and repr(next(iter(config))) in err, err
    assert not (tmp_path / "r").exists()


def test_a_store_in_a_folder_that_cannot_be_written_is_not_called_damaged(tmp_path, capsys):
    """SQLite cannot open a store whose folder it cannot write in (its journal goes there): one line
    saying so — the store itself is intact, so "damaged; move it aside" would mislead."""
    folder = tmp_path / "locked"
    folder.mkdir()
    with Store(folder / "s.sqlite") as store:
        store.create_sweep({"method": "grid", "parameters": {"epochs": {"value": 1}}}, "", name="s")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (a folder root cannot write in otherwise)")
    try:
        for argv in (["sweeps"], ["runs", "x"]):
            code = mlp_main([*argv, "--store", str(folder / "s.sqlite")])
            line = one_line_error((code, capsys.readouterr().err), "not writable", str(folder))
            assert "damaged" not in line
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
