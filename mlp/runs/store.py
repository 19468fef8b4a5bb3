"""The local run store: one SQLite file holding sweeps, runs and per-epoch history.

Several processes (agents, training runs, `mlp runs`) open the same file at once, so:

* the database runs in WAL mode (readers never block the writer), with a 30 s busy timeout;
* every write is one short ``BEGIN IMMEDIATE ... COMMIT`` transaction, so writers queue on the
  busy timeout instead of failing with "database is locked";
* :meth:`Store.claim_run` calls the caller's proposer *inside* that write transaction, which is
  how parallel agents never draw the same grid point twice;
* a :class:`Store` notices when it is used in a forked child and opens a fresh connection there
  (an SQLite connection must never cross ``fork``), and it may be shared between threads (a
  background heartbeat thread, say): calls are serialised by a lock.

Returned rows are plain dicts: JSON columns are decoded (``config``, ``summary``, ``params``,
``extra``; ``{}`` when empty), timestamps are float seconds since the epoch (``time.time()``), or
``None`` when unset. What other modules rely on is a column, never a key inside ``extra``: a run's
sweep (``sweep_id``), the parameters the search proposed (``params``), its model file
(``model_path``), why it was stopped (``stopped_by``), its log (``log_path``); a sweep's origin
(``local`` or ``wandb``), its W&B path, its folder and file, and for a rerun sweep its plan
(``rerun``, a `RerunPlan`); where a run logs in W&B (``wandb_entity``, ``wandb_project``). A sweep's
``wandb_path`` (``ENTITY/PROJECT/SWEEP_ID``) is its address in W&B: where a W&B sweep lives, or what
W&B sweep a local sweep was synced as (`mlp sync`), so it is never created twice. ``extra`` holds
only free-form notes for humans (e.g. the argv). Older stores (schema v1, v2, v3) are migrated in
place when first opened.

Baselines (`mlp baselines`, schema v4) have a table of their own, one row per trained model: its
name and settings, the data (dataset, split, and ``val_rows_sha256``: a digest of exactly which
training-file rows were validated on, so a report matches baselines to a sweep's split), the
validation and test accuracy, training seconds, and for the PyTorch twin of a sweep's best run
that sweep and run.

JSON convention for non-finite floats
-------------------------------------
Strict JSON has no NaN or infinity, but a diverged run's loss is NaN. The store writes
``float('nan')``, ``inf`` and ``-inf`` as the JSON *strings* ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (so the stored text stays valid JSON that SQLite's ``json_extract`` and other
tools can read) and decodes exactly those three strings back to floats. Consequence: a config
value that genuinely is the string ``"NaN"`` comes back as a float NaN. Tuples come back as lists;
NumPy scalars and arrays are stored as their ``.tolist()`` value.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shlex
import socket
import sqlite3
import string
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from mlp.errors import UsageError
from mlp.runs import interrupts

__all__ = [
    "Store", "default_store_path", "RUN_STATES", "FINAL_STATES", "ACTIVE_STATES",
    "SWEEP_STATES", "SCHEMA_VERSION", "encode_json", "decode_json", "new_id", "RerunPlan", "ORIGINS",
    "model_path_for", "StoreError", "StoreBusy", "busy_timeout", "BASELINE_FIELDS",
]

DEFAULT_STORE = "mlp-runs.sqlite"
SCHEMA_VERSION = 5                 # PRAGMA user_version of the stores this code writes
APPLICATION_ID = 0x6D6C7073        # PRAGMA application_id: b"mlps", marks the file as ours
BUSY_TIMEOUT_S = 30.0             # default wait for another writer; MLP_STORE_TIMEOUT (seconds) overrides

RUN_STATES = ("pending", "running", "finished", "failed", "diverged", "killed", "crashed")
ACTIVE_STATES = ("pending", "running")
FINAL_STATES = ("finished", "failed", "diverged", "killed", "crashed")
SWEEP_STATES = ("pending", "running", "finished", "cancelled")
MODEL_SOURCES = ("run", "artifact", "retrain")   # a run's model file: saved by the run, its W&B artifact, a retrain
ORIGINS = ("local", "wandb")       # created by `mlp sweep`/`mlp rerun`, or a W&B sweep (`wandb agent`, import)

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 8

_SQLITE_MAGIC = b"SQLite format 3\x00"
_INHERITED: list = []   # connections inherited through fork: never used, never closed


class StoreError(UsageError):
    """The store cannot be used (damaged, unwritable, full): one line naming the store, exit 2."""


class StoreBusy(StoreError):
    """Another process held the store's write lock longer than the busy timeout. Exit code 75
    (EX_TEMPFAIL: try again later)."""

    exit_code = 75


def busy_timeout() -> float:
    """Seconds to wait for another writer: MLP_STORE_TIMEOUT, else 30."""
    text = os.environ.get("MLP_STORE_TIMEOUT")
    if not text:
        return BUSY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:
        raise UsageError(f"MLP_STORE_TIMEOUT={text!r} must be a number of seconds in (0, 3600]; unset it for 30")
    return value


def default_store_path() -> str:
    """The store used when no path is given: ``$MLP_STORE`` or ``./mlp-runs.sqlite``."""
    return os.environ.get("MLP_STORE") or DEFAULT_STORE


def model_path_for(store_path: str | os.PathLike, sweep_id: str, run_id: str) -> Path:
    """Where a sweep's run keeps its model: ``mlp-models/SWEEP/RUN.npz`` beside the store."""
    return Path(store_path).resolve().parent / "mlp-models" / sweep_id / f"{run_id}.npz"


def checkpoint_path_for(store_path: str | os.PathLike, run_id: str) -> Path:
    """Where an interrupted run keeps its checkpoint: ``mlp-checkpoints/RUN.npz`` beside the store."""
    return Path(store_path).resolve().parent / "mlp-checkpoints" / f"{run_id}.npz"


@dataclass(frozen=True)
class Retry:
    """A proposal that runs a failed run's parameters again (`mlp agent --retry-failed`)."""

    run_id: str
    params: dict


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun sweep (`mlp rerun`) runs: the parent's top configs, on another dataset, in order."""

    parent: str
    source_runs: list = field(default_factory=list)   # run ids of the parent, best first
    configs: list = field(default_factory=list)       # one full config per source run
    dataset: str = "mnist"
    epochs: int | None = None
    top: int = 0

    @classmethod
    def from_json(cls, value: dict | None) -> "RerunPlan | None":
        if not value:
            return None
        return cls(**{k: value.get(k) for k in ("parent", "source_runs", "configs", "dataset", "epochs", "top")
                      if k in value})

    def command(self) -> str:
        """The `mlp rerun` command that made this plan, with the options it was given: --top,
        --dataset, and --epochs / --data_dir when they were set (the data folder as the plan's
        configs hold it)."""
        argv = ["mlp", "rerun", self.parent, "--top", str(self.top or len(self.source_runs)), "--dataset", self.dataset]
        if self.epochs is not None:
            argv += ["--epochs", str(self.epochs)]
        data_dirs = {c.get("data_dir") for c in self.configs or []}
        if len(data_dirs) == 1 and None not in data_dirs:
            argv += ["--data_dir", data_dirs.pop()]
        return shlex.join(argv)


def new_id() -> str:
    """A random 8-character lowercase alphanumeric id (the shape W&B uses for runs and sweeps).

    Drawn from ``secrets`` (the OS entropy pool), so forked agents never repeat each other.
    """
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

_NONFINITE_OUT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NONFINITE_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _to_jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):                       # includes numpy.float64
        if math.isfinite(obj):
            return float(obj)
        return _NONFINITE_OUT[repr(float(obj))]
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = key.item() if hasattr(key, "item") else str(key)
            out[key] = _to_jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(asdict(obj))
    if hasattr(obj, "tolist"):                       # numpy arrays and scalars
        return _to_jsonable(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def _from_jsonable(obj: Any) -> Any:
    if isinstance(obj, str):
        return _NONFINITE_IN.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    return obj


def encode_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text for ``obj``; NaN/inf become "NaN"/"Infinity"/"-Infinity" (so the output
    of `--json` commands is valid JSON whatever a config or a summary holds)."""
    if indent is None:
        return json.dumps(_to_jsonable(obj), allow_nan=False, separators=(",", ":"))
    return json.dumps(_to_jsonable(obj), allow_nan=False, indent=indent)


def decode_json(text: str | None, default: Any = None) -> Any:
    """Inverse of :func:`encode_json`; ``None``/empty text gives ``default``."""
    if not text:
        return default
    return _from_jsonable(json.loads(text))


def _one_line(text: Any) -> str | None:
    if text is None:
        return None
    line = " ".join(str(text).split())
    return line[:2000]


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------

def _in_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)     # constants only, never user data


# Schema v4: the baselines table (created by new stores and by the v3 -> v4 migration alike).
_BASELINES_V4 = [
    """CREATE TABLE baselines (
    id              TEXT PRIMARY KEY,
    model           TEXT NOT NULL,
    label           TEXT NOT NULL,
    settings_json   TEXT NOT NULL DEFAULT '{}',
    dataset         TEXT NOT NULL,
    split           TEXT NOT NULL,
    val_fraction    REAL,
    val_rows_sha256 TEXT NOT NULL,
    n_train         INTEGER NOT NULL,
    n_val           INTEGER NOT NULL,
    n_test          INTEGER NOT NULL,
    val_accuracy    REAL,
    test_accuracy   REAL,
    train_seconds   REAL NOT NULL,
    sweep_id        TEXT REFERENCES sweeps(id) ON DELETE SET NULL,
    run_id          TEXT,
    library         TEXT,
    host            TEXT,
    created_at      REAL NOT NULL
)""",
    "CREATE INDEX baselines_data ON baselines(dataset, val_rows_sha256)",
]

_SCHEMA = f"""
CREATE TABLE sweeps (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    config_yaml     TEXT NOT NULL,
    config_json     TEXT NOT NULL,
    seed            INTEGER,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ({_in_list(SWEEP_STATES)})),
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    parent_sweep_id TEXT REFERENCES sweeps(id) ON DELETE SET NULL,
    extra_json      TEXT NOT NULL DEFAULT '{{}}',
    origin          TEXT NOT NULL DEFAULT 'local' CHECK (origin IN ({_in_list(ORIGINS)})),
    wandb_path      TEXT,
    workdir         TEXT,
    source_file     TEXT,
    rerun_json      TEXT
);
CREATE INDEX sweeps_parent ON sweeps(parent_sweep_id);

CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    sweep_id     TEXT REFERENCES sweeps(id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    name         TEXT,
    config_json  TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ({_in_list(RUN_STATES)})),
    pid          INTEGER,
    host         TEXT,
    created_at   REAL NOT NULL,
    started_at   REAL,
    heartbeat_at REAL,
    finished_at  REAL,
    exit_code    INTEGER,
    summary_json TEXT NOT NULL DEFAULT '{{}}',
    wandb_dir    TEXT,
    model_path   TEXT,
    error        TEXT,
    extra_json   TEXT NOT NULL DEFAULT '{{}}',
    params_json  TEXT NOT NULL DEFAULT '{{}}',
    stopped_by   TEXT,
    log_path     TEXT,
    wandb_entity TEXT,
    wandb_project TEXT,
    model_source TEXT CHECK (model_source IN ({_in_list(MODEL_SOURCES)})),
    model_artifact TEXT
);
CREATE UNIQUE INDEX runs_sweep_seq ON runs(sweep_id, seq);
CREATE INDEX runs_state ON runs(state);

CREATE TABLE history (
    run_id       TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    logged_at    REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
""" + "".join(f"{statement};" for statement in _BASELINES_V4)

# What schema v1 lacked: added (and filled from extra_json) when a v1 store is opened.
_MIGRATION_V2 = [
    "ALTER TABLE sweeps ADD COLUMN origin TEXT NOT NULL DEFAULT 'local' "
    f"CHECK (origin IN ({_in_list(ORIGINS)}))",
    "ALTER TABLE sweeps ADD COLUMN wandb_path TEXT",
    "ALTER TABLE sweeps ADD COLUMN workdir TEXT",
    "ALTER TABLE sweeps ADD COLUMN source_file TEXT",
    "ALTER TABLE sweeps ADD COLUMN rerun_json TEXT",
    "ALTER TABLE runs ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE runs ADD COLUMN stopped_by TEXT",
    "ALTER TABLE runs ADD COLUMN log_path TEXT",
    "UPDATE sweeps SET workdir = json_extract(extra_json, '$.workdir'), "
    "source_file = json_extract(extra_json, '$.file'), rerun_json = json_extract(extra_json, '$.rerun'), "
    "extra_json = json_remove(extra_json, '$.workdir', '$.file', '$.rerun')",
    "UPDATE runs SET params_json = coalesce(json_extract(extra_json, '$.sweep_params'), '{}'), "
    "stopped_by = json_extract(extra_json, '$.stopped_by'), log_path = json_extract(extra_json, '$.log'), "
    "extra_json = json_remove(extra_json, '$.sweep_params', '$.stopped_by', '$.log')",
]
# What schema v2 lacked: where in W&B a run logs (what `mlp sync` uploads to and attaches to a sweep).
_MIGRATION_V3 = [
    "ALTER TABLE runs ADD COLUMN wandb_entity TEXT",
    "ALTER TABLE runs ADD COLUMN wandb_project TEXT",
]
# What schema v4 lacked: where a run's model file came from (its run, its W&B artifact, a retrain).
_MIGRATION_V5 = [
    f"ALTER TABLE runs ADD COLUMN model_source TEXT CHECK (model_source IN ({_in_list(MODEL_SOURCES)}))",
    "ALTER TABLE runs ADD COLUMN model_artifact TEXT",
    "UPDATE runs SET model_source = 'run' WHERE model_path IS NOT NULL",
]
_MIGRATIONS = {1: _MIGRATION_V2, 2: _MIGRATION_V3, 3: _BASELINES_V4, 4: _MIGRATION_V5}      # from version -> statements to the next

_SWEEP_COLUMNS = ("id", "name", "config_yaml", "config_json", "seed", "state", "created_at",
                  "updated_at", "parent_sweep_id", "extra_json", "origin", "wandb_path", "workdir",
                  "source_file", "rerun_json")
_RUN_COLUMNS = ("id", "sweep_id", "seq", "name", "config_json", "state", "pid", "host",
                "created_at", "started_at", "heartbeat_at", "finished_at", "exit_code",
                "summary_json", "wandb_dir", "model_path", "error", "extra_json", "params_json",
                "stopped_by", "log_path", "wandb_entity", "wandb_project", "model_source", "model_artifact")
_RUN_SELECT = "SELECT " + ", ".join(_RUN_COLUMNS) + " FROM runs"
# add_baseline(**fields): API name -> column (settings is JSON); every baseline row has all of them
BASELINE_FIELDS = ("model", "label", "settings", "dataset", "split", "val_fraction", "val_rows_sha256", "n_train",
                   "n_val", "n_test", "val_accuracy", "test_accuracy", "train_seconds", "sweep_id", "run_id",
                   "library")
_BASELINE_COLUMNS = ("id", *(f if f != "settings" else "settings_json" for f in BASELINE_FIELDS), "host",
                     "created_at")
_SWEEP_SELECT = "SELECT " + ", ".join(_SWEEP_COLUMNS) + " FROM sweeps"

# update_run(**fields): API name -> (column, is_json)
_RUN_UPDATABLE = {
    "name": ("name", False), "config": ("config_json", True), "state": ("state", False),
    "pid": ("pid", False), "host": ("host", False), "started_at": ("started_at", False),
    "heartbeat_at": ("heartbeat_at", False), "finished_at": ("finished_at", False),
    "exit_code": ("exit_code", False), "summary": ("summary_json", True),
    "wandb_dir": ("wandb_dir", False), "model_path": ("model_path", False),
    "error": ("error", False), "extra": ("extra_json", True), "params": ("params_json", True),
    "stopped_by": ("stopped_by", False), "log_path": ("log_path", False),
    "wandb_entity": ("wandb_entity", False), "wandb_project": ("wandb_project", False),
    "model_source": ("model_source", False), "model_artifact": ("model_artifact", False),
}
_SWEEP_UPDATABLE = {
    "name": ("name", False), "seed": ("seed", False), "state": ("state", False),
    "extra": ("extra_json", True), "config_yaml": ("config_yaml", False),
    "config": ("config_json", True), "wandb_path": ("wandb_path", False), "workdir": ("workdir", False),
    "source_file": ("source_file", False), "rerun": ("rerun_json", True),
}


def _sweep_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"], "name": row["name"], "config": decode_json(row["config_json"], {}),
        "config_yaml": row["config_yaml"], "seed": row["seed"], "state": row["state"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "parent_sweep_id": row["parent_sweep_id"], "extra": decode_json(row["extra_json"], {}),
        "origin": row["origin"], "wandb_path": row["wandb_path"], "workdir": row["workdir"],
        "source_file": row["source_file"], "rerun": RerunPlan.from_json(decode_json(row["rerun_json"], None)),
    }


def _run_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"], "sweep_id": row["sweep_id"], "seq": row["seq"], "name": row["name"],
        "config": decode_json(row["config_json"], {}), "state": row["state"],
        "pid": row["pid"], "host": row["host"], "created_at": row["created_at"],
        "started_at": row["started_at"], "heartbeat_at": row["heartbeat_at"],
        "finished_at": row["finished_at"], "exit_code": row["exit_code"],
        "summary": decode_json(row["summary_json"], {}), "wandb_dir": row["wandb_dir"],
        "model_path": row["model_path"], "error": row["error"],
        "extra": decode_json(row["extra_json"], {}), "params": decode_json(row["params_json"], {}),
        "stopped_by": row["stopped_by"], "log_path": row["log_path"],
        "wandb_entity": row["wandb_entity"], "wandb_project": row["wandb_project"],
        "model_source": row["model_source"], "model_artifact": row["model_artifact"],
    }


def _pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists on this host and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # exists, owned by someone else
        return True
    except OSError:
        return False
    try:                               # an exited child nobody reaped yet is not running
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def _is_busy(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def _check_state(state: str, allowed: tuple[str, ...], what: str) -> str:
    if state not in allowed:
        raise ValueError(f"unknown {what} state {state!r}; expected one of {', '.join(allowed)}")
    return state


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _assignments(fields: dict[str, Any], updatable: dict, states: tuple, kind: str) -> dict[str, Any]:
    """Column -> value for an UPDATE of whitelisted fields: states checked, errors on one line,
    paths as strings, dicts JSON-encoded (None becomes {})."""
    assignments: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in updatable:
            raise ValueError(f"cannot update {kind} field {key!r}; updatable: {', '.join(updatable)}")
        column, is_json = updatable[key]
        if key == "state":
            _check_state(value, states, kind)
        elif key == "error":
            value = _one_line(value)
        elif key in ("wandb_dir", "model_path", "log_path", "workdir", "source_file") and value is not None:
            value = os.fspath(value)
        elif key == "rerun":
            value = asdict(value) if isinstance(value, RerunPlan) else value
            assignments[column] = None if value is None else encode_json(value)
            continue
        assignments[column] = encode_json(value if value is not None else {}) if is_json else value
    return assignments


class Store:
    """A handle on one store file. Open one per process (forks reconnect automatically)."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path: str = os.fspath(path) if path is not None else default_store_path()
        self.create = create
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self.timeout = busy_timeout()
        self._check_file()
        self._conn = self._connect()

    # ---------------------------------------------------------------- opening and closing
    def _check_file(self) -> None:
        path = self.path
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory, not an mlp-sweeps store file; pass --store "
                             f"with a file path such as {os.path.join(path, DEFAULT_STORE)}")
        if not os.path.exists(path):
            if not self.create:
                raise UsageError(f"no mlp-sweeps store at {path}; create one with `mlp sweep "
                                 f"FILE.yaml` (or train with --store), or pass --store / set "
                                 f"MLP_STORE to an existing store")
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create store {path}: {e.strerror} ({parent}); pass "
                                 f"--store with a writable path") from None
            return
        try:
            with open(path, "rb") as f:
                header = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise UsageError(f"cannot read store {path}: {e.strerror}; check its permissions or "
                             f"pass --store with another path") from None
        if header and header != _SQLITE_MAGIC:
            raise UsageError(f"{path} is not an mlp-sweeps store (not an SQLite database); pass "
                             f"--store with another path")

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + \
              ("?mode=rwc" if self.create else "?mode=rw")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise UsageError(f"cannot open store {path}: {e}; check the path and its permissions "
                             f"or pass --store with another path") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_schema(conn)
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as e:
            conn.close()
            if "not a database" not in str(e):      # locked, full, I/O, read-only, damaged
                raise self._error(e) from None
            raise StoreError(f"{path} is not an mlp-sweeps store (unreadable SQLite database: "
                             f"{e}); pass --store with another path") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL unless it is already. The switch needs the file to itself, and
        SQLite may answer "locked" at once (without its busy handler) while another process
        opens or initialises the same store, so a busy answer is retried until the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        path = self.path
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0:
            if not self.create:
                raise UsageError(f"{path} is an empty database, not an mlp-sweeps store; create "
                                 f"one with `mlp sweep FILE.yaml --store {path}` or pass --store "
                                 f"with another path")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:               # nobody initialised it while we waited
                    tables = conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                    ).fetchone()[0]
                    if tables:
                        raise UsageError(f"{path} is an SQLite database but not an mlp-sweeps "
                                         f"store; pass --store with another path")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    version, app_id = SCHEMA_VERSION, APPLICATION_ID
                else:
                    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if app_id != APPLICATION_ID:
            raise UsageError(f"{path} is an SQLite database but not an mlp-sweeps store; pass "
                             f"--store with another path")
        if version > SCHEMA_VERSION:
            raise UsageError(f"{path} was written by a newer mlp-sweeps (store schema "
                             f"v{version}, this version reads v{SCHEMA_VERSION}); upgrade "
                             f"mlp-sweeps or pass --store with another path")
        if version in _MIGRATIONS:
            self._migrate(conn)
        elif version < SCHEMA_VERSION:
            raise UsageError(f"{path} has store schema v{version}, which this mlp-sweeps "
                             f"cannot read (needs v{SCHEMA_VERSION}); pass --store with another "
                             f"path")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Up to the current schema in one transaction: v1 -> v2 (the keys other modules read from
        extra_json become columns), v2 -> v3 (a run's W&B entity and project), v3 -> v4 (the
        baselines table)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]   # as found once we hold the lock
            if version in _MIGRATIONS:
                while version < SCHEMA_VERSION:
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                    version += 1
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"store {self.path} is closed")
        if os.getpid() != self._pid:        # forked: never touch the parent's connection
            _INHERITED.append(self._conn)   # ...not even to close it (keep it from GC)
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def _error(self, e: sqlite3.Error) -> StoreError:
        """What an SQLite error means for the user, on one line naming the store."""
        text, path = str(e), self.path
        if _is_busy(e):
            return StoreBusy(f"store {path} is locked by another process for more than {self.timeout:g} s ({text}); "
                             f"retry when it is done, or set MLP_STORE_TIMEOUT to wait longer")
        if "full" in text or "disk I/O" in text:
            return StoreError(f"store {path} cannot be written ({text}): is the disk full? Free space (or pass "
                              f"--store on another disk) and retry")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"store {path} is read-only ({text}); fix its permissions or pass --store with a "
                              f"writable path")
        return StoreError(f"store {path} is damaged ({text}); move it aside (keep it for recovery) and pass --store "
                          f"with a new path")

    @contextlib.contextmanager
    def _sqlite_errors(self):
        try:
            yield
        except sqlite3.Error as e:
            raise self._error(e) from None

    @contextlib.contextmanager
    def _write(self):
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, waiting up to
        the busy timeout, so a transaction never fails half-way on lock upgrade. SQLite errors
        become one-line StoreErrors; the transaction is rolled back."""
        with self._lock, self._sqlite_errors(), interrupts.held():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self):
        """A consistent snapshot for multi-statement reads. Inside a write transaction of this
        thread (e.g. a claim_run proposer reading histories) it simply joins that transaction."""
        with self._lock, self._sqlite_errors():
            db = self._db()
            if db.in_transaction:
                yield db
                return
            with interrupts.held():
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")

    # ---------------------------------------------------------------- errors
    def _unknown_sweep(self, sweep_id: Any) -> UsageError:
        return UsageError(f"unknown sweep id {sweep_id!r} in store {self.path}; see the valid "
                          f"ids with `mlp sweeps`")

    def _unknown_run(self, run_id: Any) -> UsageError:
        return UsageError(f"unknown run id {run_id!r} in store {self.path}; see a sweep's run "
                          f"ids with `mlp runs SWEEP_ID` (sweep ids: `mlp sweeps`)")

    def _require_sweep(self, db: sqlite3.Connection, sweep_id: Any) -> None:
        if db.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone() is None:
            raise self._unknown_sweep(sweep_id)

    def _update_run_row(self, db, run_id: Any, assignments: dict[str, Any]) -> None:
        cols = ", ".join(f"{col} = ?" for col in assignments)
        cur = db.execute(f"UPDATE runs SET {cols} WHERE id = ?",
                         (*assignments.values(), run_id))
        if cur.rowcount == 0:
            raise self._unknown_run(run_id)

    def _insert(self, db, table: str, kind: str, values: dict[str, Any],
                wanted_id: str | None = None) -> str:
        """Insert a row under `wanted_id`, or a fresh random id (retrying on the rare clash)."""
        cols = ", ".join(("id", *values))
        marks = ", ".join("?" * (len(values) + 1))
        if wanted_id is not None:
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (wanted_id,)).fetchone() is not None:
                raise UsageError(f"{kind} id {wanted_id!r} already exists in {self.path}; "
                                 f"unset WANDB_RUN_ID/MLP_RUN_ID or use another store")
            db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", (wanted_id, *values.values()))
            return wanted_id
        for _ in range(20):
            new = new_id()
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (new,)).fetchone() is None:
                db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                           (new, *values.values()))
                return new
        raise RuntimeError(f"could not draw a free {kind} id")  # pragma: no cover

    # ---------------------------------------------------------------- sweeps
    def create_sweep(self, config: dict, config_yaml: str, name: str | None = None,
                     seed: int | None = None, parent_sweep_id: str | None = None,
                     extra: dict | None = None, workdir: str | os.PathLike | None = None,
                     source_file: str | os.PathLike | None = None, rerun: RerunPlan | None = None,
                     origin: str = "local", wandb_path: str | None = None, sweep_id: str | None = None,
                     created_at: float | None = None) -> str:
        """Record a new sweep (state "pending") and return its 8-character id (`sweep_id`
        keeps a given id: a W&B sweep is stored under its own id)."""
        if not isinstance(config, dict):
            raise TypeError("config must be a dict (the parsed sweep YAML)")
        if origin not in ORIGINS:
            raise ValueError(f"unknown sweep origin {origin!r}; expected one of {', '.join(ORIGINS)}")
        now = time.time()
        values = {
            "name": name, "config_yaml": config_yaml or "", "config_json": encode_json(config),
            "seed": None if seed is None else int(seed), "state": "pending",
            "created_at": created_at or now, "updated_at": now, "parent_sweep_id": parent_sweep_id,
            "extra_json": encode_json(extra or {}), "origin": origin, "wandb_path": wandb_path,
            "workdir": None if workdir is None else os.fspath(workdir),
            "source_file": None if source_file is None else os.fspath(source_file),
            "rerun_json": None if rerun is None else encode_json(asdict(rerun)),
        }
        with self._write() as db:
            if parent_sweep_id is not None:
                self._require_sweep(db, parent_sweep_id)
            return self._insert(db, "sweeps", "sweep", values, sweep_id)

    def _run_counts(self, db, sweep_id: str | None = None) -> dict[str, dict[str, int]]:
        sql = "SELECT sweep_id, state, count(*) AS n FROM runs"
        params: tuple = ()
        if sweep_id is not None:
            sql += " WHERE sweep_id = ?"
            params = (sweep_id,)
        counts: dict[str, dict[str, int]] = {}
        for row in db.execute(sql + " GROUP BY sweep_id, state", params):
            counts.setdefault(row["sweep_id"], {})[row["state"]] = row["n"]
        return counts

    @staticmethod
    def _with_counts(sweep: dict, counts: dict[str, int] | None) -> dict:
        counts = counts or {}
        sweep["run_counts"] = {state: counts.get(state, 0) for state in RUN_STATES}
        sweep["n_runs"] = sum(sweep["run_counts"].values())
        return sweep

    def get_sweep(self, sweep_id: str) -> dict:
        """The sweep as a dict (with ``run_counts`` per state and ``n_runs``)."""
        with self._read() as db:
            row = db.execute(_SWEEP_SELECT + " WHERE id = ?", (sweep_id,)).fetchone()
            if row is None:
                raise self._unknown_sweep(sweep_id)
            counts = self._run_counts(db, sweep_id).get(sweep_id)
        return self._with_counts(_sweep_dict(row), counts)

    def list_sweeps(self) -> list[dict]:
        """All sweeps, oldest first, each with ``run_counts`` per state and ``n_runs``."""
        with self._read() as db:
            rows = db.execute(_SWEEP_SELECT + " ORDER BY rowid").fetchall()
            counts = self._run_counts(db)
        return [self._with_counts(_sweep_dict(r), counts.get(r["id"])) for r in rows]

    def set_sweep_state(self, sweep_id: str, state: str) -> None:
        self.update_sweep(sweep_id, state=state)

    def update_sweep(self, sweep_id: str, **fields: Any) -> None:
        """Set sweep columns: name, seed, state, config, config_yaml, extra (dicts replace)."""
        assignments = _assignments(fields, _SWEEP_UPDATABLE, SWEEP_STATES, "sweep")
        assignments["updated_at"] = time.time()
        cols = ", ".join(f"{col} = ?" for col in assignments)
        with self._write() as db:
            cur = db.execute(f"UPDATE sweeps SET {cols} WHERE id = ?",
                             (*assignments.values(), sweep_id))
            if cur.rowcount == 0:
                raise self._unknown_sweep(sweep_id)

    # ---------------------------------------------------------------- runs
    def _new_run(self, db, config: dict, sweep_id: str | None, name: str | None, state: str,
                 pid: int | None, wandb_dir: str | None, extra: dict | None,
                 run_id: str | None = None, params: dict | None = None,
                 wandb_entity: str | None = None, wandb_project: str | None = None) -> str:
        if not isinstance(config, dict):
            raise TypeError("run config must be a dict")
        _check_state(state, RUN_STATES, "run")
        if sweep_id is not None:
            self._require_sweep(db, sweep_id)
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM runs WHERE sweep_id IS ?",
                         (sweep_id,)).fetchone()[0]
        now = time.time()
        running = state == "running"
        if running and pid is None:
            pid = os.getpid()
        values = {
            "sweep_id": sweep_id, "seq": seq, "name": name, "config_json": encode_json(config),
            "state": state, "pid": pid, "host": self._host, "created_at": now,
            "started_at": now if running else None, "heartbeat_at": now if running else None,
            "finished_at": now if state in FINAL_STATES else None,
            "wandb_dir": None if wandb_dir is None else os.fspath(wandb_dir),
            "extra_json": encode_json(extra or {}), "params_json": encode_json(params or {}),
            "wandb_entity": wandb_entity, "wandb_project": wandb_project,
        }
        return self._insert(db, "runs", "run", values, run_id)

    def create_run(self, config: dict, sweep_id: str | None = None, name: str | None = None,
                   state: str = "running", pid: int | None = None,
                   wandb_dir: str | None = None, extra: dict | None = None,
                   run_id: str | None = None, params: dict | None = None,
                   wandb_sweep: dict | None = None, wandb_entity: str | None = None,
                   wandb_project: str | None = None) -> str:
        """Record a run and return its id (8 characters, also usable as the W&B run id);
        `run_id` reuses a given id (e.g. the one a W&B agent assigned).

        A "running" run gets started_at/heartbeat_at = now and ``pid`` defaults to this
        process. ``seq`` is the next number in its sweep (or among sweep-less runs).
        ``wandb_sweep`` ({entity, project, params}): the run was launched by `wandb agent` for
        the W&B sweep ``sweep_id``; that sweep's row is created on first sight (origin "wandb",
        in the same transaction, so parallel agents cannot collide) and the run's parameters
        are recorded as proposed by it. If a local sweep of this store was synced as that W&B
        sweep (its ``wandb_path``), the run joins the local sweep instead.
        ``wandb_entity``/``wandb_project``: where the run logs in W&B.
        """
        with self._write() as db:
            if wandb_sweep is not None and sweep_id is not None:
                params = dict(wandb_sweep.get("params") or {})
                sweep_id = self._note_wandb_sweep(db, sweep_id, wandb_sweep.get("entity"), wandb_sweep.get("project"),
                                                  params)
            return self._new_run(db, config, sweep_id, name, state, pid, wandb_dir, extra, run_id, params,
                                 wandb_entity, wandb_project)

    def _synced_as(self, db, wandb_id: str, entity: str | None = None, project: str | None = None) -> list[dict]:
        """Sweeps whose W&B address has this W&B sweep id (and entity/project when given)."""
        rows = db.execute(_SWEEP_SELECT + " WHERE wandb_path IS NOT NULL ORDER BY rowid").fetchall()
        found = []
        for row in rows:
            e, p, i = (row["wandb_path"].split("/") + [None, None, None])[:3]
            if i == wandb_id and (entity is None or e == entity) and (project is None or p == project):
                found.append(_sweep_dict(row))
        return found

    def find_wandb_sweeps(self, wandb_id: str, entity: str | None = None, project: str | None = None) -> list[dict]:
        """The sweeps whose ``wandb_path`` is ENTITY/PROJECT/``wandb_id`` (entity and project
        checked when given): a W&B sweep, or a local sweep synced as it. Oldest first."""
        with self._read() as db:
            found = self._synced_as(db, wandb_id, entity, project)
            counts = self._run_counts(db)
        return [self._with_counts(s, counts.get(s["id"])) for s in found]

    def _note_wandb_sweep(self, db, sweep_id: str, entity: str | None, project: str | None, params: dict) -> str:
        """Create the W&B sweep's row if new; add the run's parameter values to what its config
        says was searched (offline, the runs' parameter files are all that show the search).
        Returns the store id the run belongs to."""
        synced = [s for s in self._synced_as(db, sweep_id, entity, project) if s["origin"] == "local"]
        if len(synced) == 1:                       # `wandb agent` continuing a sweep `mlp sync` uploaded
            return synced[0]["id"]
        row = db.execute("SELECT origin, config_json FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is not None and row["origin"] != "wandb":
            raise UsageError(f"WANDB_SWEEP_ID={sweep_id} is a local sweep id in {self.path}; a run of `mlp agent` "
                             f"does not set it — unset it")
        config = decode_json(row["config_json"], {}) if row is not None else {
            "method": "unknown", "parameters": {},
            "metric": {"name": "val_r2" if params.get("task") == "autoencoder" else "val_accuracy", "goal": "maximize"},
            "description": "a W&B sweep seen through the runs `wandb agent` launched here"}
        searched = config.setdefault("parameters", {})
        if config.get("method") == "unknown":     # derived from parameter files: keep every value seen
            for key, value in params.items():
                spec = searched.setdefault(key, {"values": []})
                if "values" in spec and value not in spec["values"]:
                    spec["values"].append(value)
        now = time.time()
        path = "/".join(x for x in (entity, project, sweep_id) if x) if entity and project else None
        if row is None:
            self._insert(db, "sweeps", "sweep", {
                "name": f"W&B sweep {sweep_id}", "config_yaml": "", "config_json": encode_json(config),
                "seed": None, "state": "running", "created_at": now, "updated_at": now, "parent_sweep_id": None,
                "extra_json": "{}", "origin": "wandb", "wandb_path": path, "workdir": os.getcwd(),
                "source_file": None, "rerun_json": None}, sweep_id)
        else:
            db.execute("UPDATE sweeps SET config_json = ?, updated_at = ?, wandb_path = coalesce(wandb_path, ?) "
                       "WHERE id = ?", (encode_json(config), now, path, sweep_id))
        return sweep_id

    def upsert_wandb_sweep(self, wandb_path: str, config: dict, config_yaml: str, name: str | None,
                           state: str, created_at: float | None = None) -> str:
        """The store's row of the W&B sweep at ``wandb_path`` (ENTITY/PROJECT/ID), created or
        brought up to date with W&B's own config, name and state, in one transaction; returns its
        store id. A local sweep synced as that W&B sweep is returned as it is (its YAML is the
        source); a row made by runs under `wandb agent` (origin "wandb", same id) is updated."""
        _check_state(state, SWEEP_STATES, "sweep")
        entity, project, wandb_id = wandb_path.split("/")
        now = time.time()
        with self._write() as db:
            synced = self._synced_as(db, wandb_id, entity, project)
            if synced and synced[0]["origin"] == "local":
                return synced[0]["id"]
            store_id = synced[0]["id"] if synced else wandb_id
            row = db.execute("SELECT origin FROM sweeps WHERE id = ?", (store_id,)).fetchone()
            if row is not None and row["origin"] != "wandb":
                raise UsageError(f"W&B sweep {wandb_path} has the id of local sweep {store_id} in {self.path}; "
                                 f"use another --store for it")
            values = {"name": name, "config_yaml": config_yaml or "", "config_json": encode_json(config),
                      "state": state, "updated_at": now, "wandb_path": wandb_path}
            if row is None:
                values.update(seed=None, created_at=created_at or now, parent_sweep_id=None, extra_json="{}",
                              origin="wandb", workdir=None, source_file=None, rerun_json=None)
                return self._insert(db, "sweeps", "sweep", values, store_id)
            cols = ", ".join(f"{col} = ?" for col in values)
            db.execute(f"UPDATE sweeps SET {cols} WHERE id = ?", (*values.values(), store_id))
            return store_id

    def import_run(self, sweep_id: str, run_id: str, config: dict, state: str, summary: dict,
                   history: list[dict], created_at: float, finished_at: float | None = None,
                   params: dict | None = None, name: str | None = None, host: str | None = None,
                   wandb_entity: str | None = None, wandb_project: str | None = None,
                   stopped_by: str | None = None) -> bool:
        """Add a finished run recorded elsewhere (W&B) with its per-epoch history, in one
        transaction; False, changing nothing, when the store already has a run of that id."""
        _check_state(state, FINAL_STATES, "final run")
        with self._write() as db:
            self._require_sweep(db, sweep_id)
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None:
                return False
            seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM runs WHERE sweep_id = ?",
                             (sweep_id,)).fetchone()[0]
            values = {
                "sweep_id": sweep_id, "seq": seq, "name": name, "config_json": encode_json(config), "state": state,
                "pid": None, "host": host, "created_at": created_at, "started_at": created_at,
                "heartbeat_at": finished_at, "finished_at": finished_at, "summary_json": encode_json(summary),
                "extra_json": "{}", "params_json": encode_json(params or {}), "wandb_entity": wandb_entity,
                "wandb_project": wandb_project, "stopped_by": stopped_by,
            }
            self._insert(db, "runs", "run", values, run_id)
            for row in history:
                metrics = {k: v for k, v in row.items() if k != "epoch"}
                db.execute("INSERT INTO history (run_id, epoch, metrics_json, logged_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (run_id, epoch) DO UPDATE SET metrics_json = excluded.metrics_json",
                           (run_id, int(row["epoch"]), encode_json(metrics), finished_at or created_at))
            return True

    def find_run(self, run_id: str) -> dict | None:
        """The run, or None if the store has no run of that id."""
        with self._read() as db:
            row = db.execute(_RUN_SELECT + " WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run_dict(row)

    def claim_run(self, sweep_id: str,
                  propose: Callable[[list[dict]], dict | None]) -> dict | None:
        """Atomically pick and record the sweep's next run.

        Inside one write transaction, ``propose(existing_runs)`` gets every run of the sweep
        (all states, creation order) and returns the next config, or None when there is
        nothing left. A returned config becomes a new "pending" run (next ``seq``, ``pid`` =
        this process), which is returned. Other writers wait while ``propose`` runs, so keep it
        quick (well under the 30 s busy timeout). If ``propose`` raises, nothing is written.
        A proposal may also be a `Retry` of a failed run: the new run takes its parameters and
        records which run it retries (`extra["retry_of"]`).
        """
        with self._write() as db:
            self._require_sweep(db, sweep_id)
            rows = db.execute(_RUN_SELECT + " WHERE sweep_id = ? ORDER BY seq",
                              (sweep_id,)).fetchall()
            config = propose([_run_dict(r) for r in rows])
            if config is None:
                return None
            extra = None
            if isinstance(config, Retry):
                config, extra = config.params, {"retry_of": config.run_id}
            # the proposal is kept verbatim in `params`: `config` is later replaced by the run's
            # full effective config, but the search engine must see exactly what it proposed
            run_id = self._new_run(db, config, sweep_id, None, "pending", os.getpid(), None,
                                   extra, params=config)
            row = db.execute(_RUN_SELECT + " WHERE id = ?", (run_id,)).fetchone()
        return _run_dict(row)

    def start_run(self, run_id: str, pid: int | None = None,
                  wandb_dir: str | None = None) -> None:
        """Mark a run running now, on this host, as ``pid`` (default: this process).

        Clears finished_at/exit_code/error so a restarted run does not look finished.
        """
        now = time.time()
        fields = {"state": "running", "pid": os.getpid() if pid is None else int(pid),
                  "host": self._host, "started_at": now, "heartbeat_at": now,
                  "finished_at": None, "exit_code": None, "error": None}
        if wandb_dir is not None:
            fields["wandb_dir"] = os.fspath(wandb_dir)
        with self._write() as db:
            self._update_run_row(db, run_id, fields)

    def heartbeat(self, run_id: str) -> None:
        with self._write() as db:
            self._update_run_row(db, run_id, {"heartbeat_at": time.time()})

    def log_history(self, run_id: str, row: dict) -> None:
        """Store one epoch's metrics (``row["epoch"]`` required); the same epoch again replaces
        it. Also refreshes the run's heartbeat."""
        if "epoch" not in row:
            raise ValueError("a history row needs an 'epoch' key")
        epoch = row["epoch"]
        if hasattr(epoch, "item"):
            epoch = epoch.item()
        if isinstance(epoch, bool) or int(epoch) != epoch:
            raise ValueError(f"history epoch must be an integer, got {row['epoch']!r}")
        epoch = int(epoch)
        metrics = {k: v for k, v in row.items() if k != "epoch"}
        now = time.time()
        text = encode_json(metrics)
        with self._write() as db:
            self._update_run_row(db, run_id, {"heartbeat_at": now})
            db.execute("INSERT INTO history (run_id, epoch, metrics_json, logged_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (run_id, epoch) DO UPDATE SET "
                       "metrics_json = excluded.metrics_json, logged_at = excluded.logged_at",
                       (run_id, epoch, text, now))

    def finish_run(self, run_id: str, state: str, summary: dict | None = None,
                   exit_code: int | None = None, error: str | None = None,
                   model_path: str | None = None, stopped_by: str | None = None) -> None:
        """Mark a run done: ``state`` must be one of FINAL_STATES; finished_at = now.

        ``summary`` (if given) replaces the stored summary; ``error`` is squeezed onto one
        line; ``model_path`` is kept unless given.
        """
        _check_state(state, FINAL_STATES, "final run")
        now = time.time()
        fields: dict[str, Any] = {"state": state, "finished_at": now,
                                  "exit_code": None if exit_code is None else int(exit_code),
                                  "error": _one_line(error)}
        if summary is not None:
            fields["summary_json"] = encode_json(summary)
        if model_path is not None:
            fields["model_path"] = os.fspath(model_path)
            fields["model_source"] = "run"
        if stopped_by is not None:
            fields["stopped_by"] = stopped_by
        with self._write() as db:
            self._update_run_row(db, run_id, fields)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set whitelisted run fields: name, config, state, pid, host, started_at,
        heartbeat_at, finished_at, exit_code, summary, wandb_dir, model_path, error, extra.
        Dicts (config/summary/extra) replace the stored value."""
        assignments = _assignments(fields, _RUN_UPDATABLE, RUN_STATES, "run")
        with self._write() as db:
            if assignments:
                self._update_run_row(db, run_id, assignments)
            elif db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._unknown_run(run_id)

    def get_run(self, run_id: str) -> dict:
        with self._read() as db:
            row = db.execute(_RUN_SELECT + " WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._unknown_run(run_id)
        return _run_dict(row)

    def list_runs(self, sweep_id: str | None = None, state: str | None = None) -> list[dict]:
        """Runs in creation order: all of them, or one sweep's (UsageError if unknown);
        optionally only those in ``state``."""
        where, params = [], []
        if sweep_id is not None:
            where.append("sweep_id = ?")
            params.append(sweep_id)
        if state is not None:
            where.append("state = ?")
            params.append(_check_state(state, RUN_STATES, "run"))
        sql = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        with self._read() as db:
            if sweep_id is not None:
                self._require_sweep(db, sweep_id)
            rows = db.execute(sql, params).fetchall()
        return [_run_dict(r) for r in rows]

    def history(self, run_id: str) -> list[dict]:
        """The run's per-epoch rows, ``{"epoch": e, **metrics}``, in epoch order."""
        with self._read() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise self._unknown_run(run_id)
            rows = db.execute("SELECT epoch, metrics_json FROM history WHERE run_id = ? "
                              "ORDER BY epoch", (run_id,)).fetchall()
        return [{"epoch": r["epoch"], **decode_json(r["metrics_json"], {})} for r in rows]

    # ---------------------------------------------------------------- baselines
    def add_baseline(self, **fields: Any) -> str:
        """Record one trained baseline model (every name of BASELINE_FIELDS; ``sweep_id``,
        ``run_id``, ``library``, accuracies and ``val_fraction`` may be None); returns its id."""
        missing = sorted(set(BASELINE_FIELDS) - set(fields))
        unknown = sorted(set(fields) - set(BASELINE_FIELDS))
        if missing or unknown:
            raise ValueError(f"add_baseline: missing {missing}, unknown {unknown}")
        values = {("settings_json" if k == "settings" else k): (encode_json(fields[k] or {}) if k == "settings"
                                                                else fields[k]) for k in BASELINE_FIELDS}
        for key in ("val_accuracy", "test_accuracy", "train_seconds", "val_fraction"):
            if values[key] is not None:
                values[key] = float(values[key])
        values.update(host=self._host, created_at=time.time())
        with self._write() as db:
            if values["sweep_id"] is not None:
                self._require_sweep(db, values["sweep_id"])
            return self._insert(db, "baselines", "baseline", values)

    def list_baselines(self, dataset: str | None = None, val_rows_sha256: str | None = None) -> list[dict]:
        """Baseline rows, oldest first, optionally only those of a dataset and of exactly the
        validation rows `val_rows_sha256`; ``settings`` decoded."""
        where, params = [], []
        for column, value in (("dataset", dataset), ("val_rows_sha256", val_rows_sha256)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = ("SELECT " + ", ".join(_BASELINE_COLUMNS) + " FROM baselines"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, rowid")
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        out = []
        for row in rows:
            item = {k: row[k] for k in _BASELINE_COLUMNS if k != "settings_json"}
            item["settings"] = decode_json(row["settings_json"], {})
            out.append(item)
        return out

    # ---------------------------------------------------------------- orphans
    def _orphans(self, db, stale_after: float, states: tuple[str, ...]) -> list[dict]:
        for s in states:
            _check_state(s, RUN_STATES, "run")
        marks = ", ".join("?" * len(states))
        rows = db.execute(_RUN_SELECT + f" WHERE state IN ({marks}) ORDER BY rowid",
                          tuple(states)).fetchall()
        now = time.time()
        orphans = []
        for row in rows:
            run = _run_dict(row)
            reason = None
            if run["pid"] is not None and run["host"] == self._host:
                # on this host the process table is the truth: a live process is never an orphan,
                # however long its epoch (the heartbeat only speaks for runs on other hosts)
                if not _pid_alive(run["pid"]):
                    reason = f"process {run['pid']} on {run['host']} is gone"
            else:
                seen = run["heartbeat_at"] or run["started_at"] or run["created_at"]
                if now - seen > stale_after:
                    reason = f"no heartbeat for {now - seen:.0f} s"
            if reason:
                run["orphan_reason"] = reason
                orphans.append(run)
        return orphans

    def find_orphans(self, stale_after: float,
                     states: tuple[str, ...] = ("running",)) -> list[dict]:
        """Runs in ``states`` (default: running) that nobody is working on any more: the
        recorded pid is dead (checked when the run's host is this host, and then decisive), or,
        for runs of other hosts, the last sign of life (heartbeat_at, else started_at, else
        created_at) is older than ``stale_after`` seconds. Each dict carries an extra ``orphan_reason`` string. Nothing is changed."""
        with self._read() as db:
            return self._orphans(db, stale_after, tuple(states))

    def reap_orphans(self, stale_after: float, state: str = "crashed",
                     states: tuple[str, ...] = ("running",)) -> list[dict]:
        """Find orphans and mark them ``state`` in the same transaction (so a run finishing
        concurrently is never overwritten); returns the runs as they were found."""
        _check_state(state, FINAL_STATES, "final run")
        with self._write() as db:
            orphans = self._orphans(db, stale_after, tuple(states))
            now = time.time()
            for run in orphans:
                db.execute("UPDATE runs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                           (state, now, _one_line(f"orphaned: {run['orphan_reason']}"),
                            run["id"]))
        return orphans
