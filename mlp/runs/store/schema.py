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

import os
import sqlite3
from dataclasses import asdict
from typing import Any, Iterable

from mlp.runs.store.records import RerunPlan, _one_line, decode_json, encode_json

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
