"""The store's schema: its states, its tables as this version writes them, the migrations that
bring older stores up to it in place, and the conversion of rows to the plain dicts callers get.

What other modules rely on is a column, never a key inside ``extra``: a run's sweep (``sweep_id``),
the parameters the search proposed (``params``), its model file (``model_path``) and where that came
from (``model_source``: "run", "artifact", "retrain"; ``model_artifact``), why it was stopped
(``stopped_by``), its log (``log_path``); a sweep's origin (``local`` or ``wandb``), its W&B path,
its folder and file, and for a rerun sweep its plan (``rerun``, a `RerunPlan`); where a run logs in
W&B (``wandb_entity``, ``wandb_project``). ``extra`` holds only free-form notes for humans (e.g.
the argv) and a retry's link (``retry_of``).

Baselines (`mlp baselines`, schema v4) have a table of their own, one row per trained model: its
name and settings, the data (dataset, split, and ``val_rows_sha256``: a digest of exactly which
training-file rows were validated on), the validation and test accuracy, training seconds, and for
the PyTorch twin of a sweep's best run that sweep and run.
"""
from __future__ import annotations

import functools
import os
import sqlite3
from dataclasses import asdict
from typing import Any, Callable, Iterable

from mlp import config as C
from mlp.runs.store.records import DamagedRow, RerunPlan, _one_line, describe_value, encode_json, parse_json

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "RUN_STATES", "ACTIVE_STATES", "FINAL_STATES", "SWEEP_STATES",
           "MODEL_SOURCES", "ORIGINS", "BASELINE_FIELDS"]

SCHEMA_VERSION = 5                 # PRAGMA user_version of the stores this code writes
APPLICATION_ID = 0x6D6C7073        # PRAGMA application_id: b"mlps", marks the file as ours
RUN_STATES = ("pending", "running", "finished", "failed", "diverged", "killed", "crashed")
ACTIVE_STATES = ("pending", "running")
FINAL_STATES = ("finished", "failed", "diverged", "killed", "crashed")
SWEEP_STATES = ("pending", "running", "finished", "cancelled")
MODEL_SOURCES = ("run", "artifact", "retrain")   # a run's model file: saved by the run, its W&B artifact, a retrain
ORIGINS = ("local", "wandb")       # created by `mlp sweep`/`mlp rerun`, or a W&B sweep (`wandb agent`, import)


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
_BASELINE_SELECT = "SELECT " + ", ".join(_BASELINE_COLUMNS) + " FROM baselines"
_HISTORY_COLUMNS = ("epoch", "metrics_json")          # what history() reads of a row
_HISTORY_SELECT = "SELECT " + ", ".join(_HISTORY_COLUMNS) + " FROM history"

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


# ---- rows read back: every value checked against what its column holds -------------------------
# A store can be damaged (edited by hand, written by another program, a failing disk). Each reader
# below takes the value SQLite returns for one kind of column and returns it as callers get it, or
# raises ValueError saying what is wrong with it; `_read_row` names the table, column and row
# (`DamagedRow`), and the connection reports that as one line naming the store. So no caller ever
# meets a list where it expects a dict, or text where it subtracts timestamps.

def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"is {describe_value(value)}, not text")


def _required_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"is {describe_value(value)}, not text")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float | int | None:
    """A REAL column (a timestamp, an accuracy, seconds): a number or NULL."""
    if value is None or _is_number(value):
        return value
    raise ValueError(f"is {describe_value(value)}, not a number")


def _required_number(value: Any) -> float | int:
    if _is_number(value):
        return value
    raise ValueError(f"is {describe_value(value)}, not a number")


def _integer(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"is {describe_value(value)}, not an integer")


def _required_integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"is {describe_value(value)}, not an integer")


def _one_of(allowed: tuple[str, ...], nullable: bool = False) -> Callable[[Any], str | None]:
    def read(value: Any) -> str | None:
        if (value is None and nullable) or value in allowed:
            return value
        raise ValueError(f"is {describe_value(value)}, not one of {', '.join(allowed)}")
    return read


def _object(value: Any) -> dict:
    """A JSON column holding an object (config, params, settings): a dict; NULL or '' is {}."""
    if value is None or value == "":
        return {}
    decoded = parse_json(value)
    if not isinstance(decoded, dict):
        raise ValueError(f"is {'the JSON null' if decoded is None else describe_value(decoded)}, not a JSON object")
    return decoded


def _run_config(value: Any) -> dict:
    """A run's effective config: an object whose values of train.py's parameters are each valid
    for its parameter (a row written by hand or by a damaged disk would otherwise surface as a
    TypeError deep in a report)."""
    config = _object(value)
    for key, item in config.items():
        if key in C.PARAMS:
            try:
                C.parse_value(key, item)
            except ValueError as e:
                raise _entry(key, f"is not a valid value: {_one_line(str(e))}") from None
    return config


def _entry(key: str, problem: str) -> ValueError:
    return ValueError(f"has {key!r} that {problem}")


def _check_entry(obj: dict, key: str, kind: Callable[[Any], Any]) -> None:
    """obj[key], when present, passes the reader `kind` (its ValueError names the key)."""
    if key in obj:
        try:
            kind(obj[key])
        except ValueError as e:
            raise _entry(key, str(e)) from None


def _list_of(kind: Callable[[Any], Any]) -> Callable[[Any], list]:
    def read(value: Any) -> list:
        if not isinstance(value, list):
            raise ValueError(f"is {describe_value(value)}, not a JSON list")
        for item in value:
            kind(item)
        return value
    return read


def _json_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"is {describe_value(value)}, not a JSON object")
    return value


# summary keys that hold a number (or null): what train.py records and the report and agents compare
_SUMMARY_NUMBERS = ("epochs_run", "seconds", "seconds_per_epoch", "diverged_epoch", "diverged_batch", "epoch")
_METRIC_SUFFIXES = ("_accuracy", "_loss", "_r2")


def _summary(value: Any) -> dict:
    summary = _object(value)
    for key, item in summary.items():
        if (key in _SUMMARY_NUMBERS or key.endswith(_METRIC_SUFFIXES)) and item is not None and not _is_number(item):
            raise _entry(key, f"is {describe_value(item)}, not a number")
    _check_entry(summary, "confusion_matrix", _matrix)
    return summary


def _matrix(value: Any) -> list:
    """A matrix of numbers (a confusion matrix's counts): a list of equally long lists of numbers."""
    if not (isinstance(value, list) and all(isinstance(row, list) and len(row) == len(value[0])
                                            and all(type(x) in (int, float) for x in row) for row in value)):
        raise ValueError("is not a matrix of numbers (a list of equally long lists of numbers)")
    return value


def _metrics(value: Any) -> dict:
    """history.metrics_json: one epoch's metrics, every one a number (NaN/inf included)."""
    metrics = _object(value)
    for key, item in metrics.items():
        if not _is_number(item):
            raise _entry(key, f"is {describe_value(item)}, not a number")
    return metrics


def _extra(value: Any) -> dict:
    extra = _object(value)
    _check_entry(extra, "retry_of", _required_text)
    return extra


def _sweep_config(value: Any) -> dict:
    """sweeps.config_json: the parsed sweep YAML. Its shape is checked here (what the store itself
    and every listing rely on); whether its method or distributions make sense is the sweep
    layer's question (mlp.sweep.files)."""
    config = _object(value)
    _check_entry(config, "method", _required_text)
    _check_entry(config, "program", _text)
    _check_entry(config, "command", _list_of(_required_text))
    _check_entry(config, "metric", _json_object)
    _check_entry(config, "early_terminate", _json_object)
    _check_entry(config, "run_cap", _integer)
    _check_entry(config, "parameters", _json_object)
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict):
            raise _entry("parameters", f"holds {name!r}: {describe_value(spec)}, not a JSON object")
        if "values" in spec and not isinstance(spec["values"], list):
            raise _entry("parameters", f"holds {name!r} whose values are {describe_value(spec['values'])}, "
                                       f"not a JSON list")
    return config


def _rerun(value: Any) -> RerunPlan | None:
    """sweeps.rerun_json: a rerun sweep's plan (`mlp rerun`), or NULL."""
    plan = _object(value)
    if not plan:
        return None
    for key, kind in (("parent", _required_text), ("source_runs", _list_of(_required_text)),
                      ("configs", _list_of(_json_object)), ("dataset", _required_text), ("epochs", _integer),
                      ("top", _integer)):
        _check_entry(plan, key, kind)
    return RerunPlan.from_json(plan)


# column -> (key in the dict callers get, reader), for every column of the SELECTs above
_SWEEP_READERS = {
    "id": ("id", _required_text), "name": ("name", _text), "config_yaml": ("config_yaml", _text),
    "config_json": ("config", _sweep_config), "seed": ("seed", _integer),
    "state": ("state", _one_of(SWEEP_STATES)), "created_at": ("created_at", _required_number),
    "updated_at": ("updated_at", _required_number), "parent_sweep_id": ("parent_sweep_id", _text),
    "extra_json": ("extra", _extra), "origin": ("origin", _one_of(ORIGINS)), "wandb_path": ("wandb_path", _text),
    "workdir": ("workdir", _text), "source_file": ("source_file", _text), "rerun_json": ("rerun", _rerun),
}
_RUN_READERS = {
    "id": ("id", _required_text), "sweep_id": ("sweep_id", _text), "seq": ("seq", _required_integer),
    "name": ("name", _text), "config_json": ("config", _run_config), "state": ("state", _one_of(RUN_STATES)),
    "pid": ("pid", _integer), "host": ("host", _text), "created_at": ("created_at", _required_number),
    "started_at": ("started_at", _number), "heartbeat_at": ("heartbeat_at", _number),
    "finished_at": ("finished_at", _number), "exit_code": ("exit_code", _integer),
    "summary_json": ("summary", _summary), "wandb_dir": ("wandb_dir", _text), "model_path": ("model_path", _text),
    "error": ("error", _text), "extra_json": ("extra", _extra), "params_json": ("params", _object),
    "stopped_by": ("stopped_by", _text), "log_path": ("log_path", _text), "wandb_entity": ("wandb_entity", _text),
    "wandb_project": ("wandb_project", _text), "model_source": ("model_source", _one_of(MODEL_SOURCES, True)),
    "model_artifact": ("model_artifact", _text),
}
_BASELINE_READERS = {
    "id": ("id", _required_text), "model": ("model", _required_text), "label": ("label", _required_text),
    "settings_json": ("settings", _object), "dataset": ("dataset", _required_text), "split": ("split", _required_text),
    "val_fraction": ("val_fraction", _number), "val_rows_sha256": ("val_rows_sha256", _required_text),
    "n_train": ("n_train", _required_integer), "n_val": ("n_val", _required_integer),
    "n_test": ("n_test", _required_integer), "val_accuracy": ("val_accuracy", _number),
    "test_accuracy": ("test_accuracy", _number), "train_seconds": ("train_seconds", _required_number),
    "sweep_id": ("sweep_id", _text), "run_id": ("run_id", _text), "library": ("library", _text),
    "host": ("host", _text), "created_at": ("created_at", _required_number),
}
_HISTORY_READERS = {"epoch": ("epoch", _required_integer), "metrics_json": ("metrics", _metrics)}


def _in_order(columns: tuple[str, ...], readers: dict) -> tuple:
    """(column, key, reader) in the order of a SELECT's columns: rows are read by position."""
    return tuple((column, *readers[column]) for column in columns)


_SWEEP_ROW = _in_order(_SWEEP_COLUMNS, _SWEEP_READERS)
_RUN_ROW = _in_order(_RUN_COLUMNS, _RUN_READERS)
_BASELINE_ROW = _in_order(_BASELINE_COLUMNS, _BASELINE_READERS)
_HISTORY_ROW = _in_order(_HISTORY_COLUMNS, _HISTORY_READERS)


def _read_row(table: str, where: str, row: sqlite3.Row, readers: tuple) -> dict:
    """The row (selected with exactly the columns of `readers`, in order) as a dict, every value
    read by its column's reader; DamagedRow names the first value that is not what it should be."""
    if len(row) != len(readers):
        raise RuntimeError(f"a {table} row of {len(row)} columns read as {len(readers)}")   # a bug, not damage
    out = {}
    for value, (column, key, read) in zip(row, readers):
        try:
            out[key] = read(value)
        except ValueError as e:
            raise DamagedRow(table, column, where, str(e)) from None
    return out


def _sweep_dict(row: sqlite3.Row) -> dict:
    """A row of _SWEEP_SELECT."""
    return _read_row("sweeps", f"sweep {row[0]!r}", row, _SWEEP_ROW)


def _run_dict(row: sqlite3.Row) -> dict:
    """A row of _RUN_SELECT."""
    return _read_row("runs", f"run {row[0]!r}", row, _RUN_ROW)


def _baseline_dict(row: sqlite3.Row) -> dict:
    """A row of _BASELINE_SELECT."""
    return _read_row("baselines", f"baseline {row[0]!r}", row, _BASELINE_ROW)


def _history_row(run_id: str, row: sqlite3.Row) -> dict:
    """{"epoch": e, **metrics} of one row of _HISTORY_SELECT."""
    read = _read_row("history", f"run {run_id!r} epoch {row[0]!r}", row, _HISTORY_ROW)
    return {"epoch": read["epoch"], **read["metrics"]}


def _sweep_column(sweep_id: Any, column: str, value: Any, read) -> Any:
    """One column of a sweep read on its own (e.g. its wandb_path), checked like the whole row."""
    try:
        return read(value)
    except ValueError as e:
        raise DamagedRow("sweeps", column, f"sweep {sweep_id!r}", str(e)) from None


@functools.lru_cache(maxsize=1)
def _expected_columns() -> dict[str, tuple[str, ...]]:
    """Table -> its columns, as _SCHEMA makes them (built once per process, in memory)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return {table: tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    finally:
        db.close()


def _check_state(state: str, allowed: tuple[str, ...], what: str) -> str:
    if state not in allowed:
        raise ValueError(f"unknown {what} state {state!r}; expected one of {', '.join(allowed)}")
    return state


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
