"""The local run store: one SQLite file holding sweeps, runs and per-epoch history (and baselines).

`Store` is one handle on one file, made of the parts that each do one job:

* connection.py — opening the file (checked, created or migrated, WAL), write transactions and
  consistent reads, SQLite's errors as one line naming the store (`StoreError`, `StoreBusy`);
* schema.py — states, tables, the migrations of older stores, rows as plain dicts;
* runs.py — sweeps and runs: created, claimed by agents inside a write transaction (so parallel
  agents never draw the same grid point), started, logged, finished, listed;
* wandb_mirror.py — W&B sweeps and runs in the store (seen under `wandb agent`, imported, synced);
* baselines.py — the `mlp baselines` rows;
* orphans.py — runs whose process is gone, reaped as crashed;
* records.py — what is not a row: a rerun's plan, a retry, ids, the files beside the store (models,
  checkpoints), the JSON text of the JSON columns (NaN/inf kept as strings).

Returned rows are plain dicts: JSON columns are decoded (``config``, ``summary``, ``params``,
``extra``; ``{}`` when empty), timestamps are float seconds since the epoch (``time.time()``), or
``None`` when unset. Every value read is checked against what its column holds (schema.py: a JSON
object where a dict is expected, numbers where numbers, nesting at most 64 deep), and every open
checks the path (a regular file or none), the tables and columns and the tables' first pages
(connection.py): a damaged store is one `StoreError` naming the store, the table, column and row.

A sweep's ``wandb_path`` (``ENTITY/PROJECT/SWEEP_ID``) is its address in W&B: where a W&B sweep
lives, or what W&B sweep a local sweep was synced as (`mlp sync`), so it is never created twice.
Older stores (schema v1 to v4) are migrated in place when first opened.
"""
from mlp.runs.store.baselines import Baselines
from mlp.runs.store.connection import BUSY_TIMEOUT_S, Connection, StoreBusy, StoreError, busy_timeout
from mlp.runs.store.orphans import Orphans
from mlp.runs.store.records import (DEFAULT_STORE, RerunPlan, Retry, checkpoint_path_for, decode_json,
                                    default_store_path, encode_json, model_path_for, new_id,
                                    rescue_path_for)
from mlp.runs.store.runs import SweepsAndRuns
from mlp.runs.store.schema import (ACTIVE_STATES, APPLICATION_ID, BASELINE_FIELDS, FINAL_STATES, MODEL_SOURCES,
                                   ORIGINS, RUN_STATES, SCHEMA_VERSION, SWEEP_STATES)
from mlp.runs.store.wandb_mirror import WandbMirror

__all__ = [
    "Store", "default_store_path", "RUN_STATES", "FINAL_STATES", "ACTIVE_STATES", "SWEEP_STATES",
    "SCHEMA_VERSION", "APPLICATION_ID", "MODEL_SOURCES", "encode_json", "decode_json", "new_id", "RerunPlan",
    "Retry", "ORIGINS", "model_path_for", "rescue_path_for", "checkpoint_path_for", "StoreError", "StoreBusy",
    "busy_timeout", "BUSY_TIMEOUT_S", "BASELINE_FIELDS", "DEFAULT_STORE",
]


class Store(SweepsAndRuns, WandbMirror, Baselines, Orphans, Connection):
    """A handle on one store file. Open one per process (forks reconnect automatically)."""

    def __repr__(self) -> str:
        return f"Store({self.path!r})"
