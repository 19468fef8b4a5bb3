"""The store's mirror of W&B: W&B sweeps seen through the runs `wandb agent` launched here (their
row made on first sight, their search space learned from the parameter files), W&B sweeps and runs
imported from W&B's public API, and local sweeps synced as W&B sweeps (found by their W&B id).
"""
from __future__ import annotations

import os
import time

from mlp.errors import UsageError
from mlp.runs.store.records import encode_json
from mlp.runs.store.schema import (_SWEEP_SELECT, FINAL_STATES, ORIGINS, SWEEP_STATES, _check_state, _one_of,
                                   _sweep_column, _sweep_config, _sweep_dict, _text)

__all__ = ["WandbMirror"]


class WandbMirror:
    """W&B sweeps and runs in the store (a part of `Store`)."""

    def _synced_as(self, db, wandb_id: str, entity: str | None = None, project: str | None = None) -> list[dict]:
        """Sweeps whose W&B address has this W&B sweep id (and entity/project when given)."""
        rows = db.execute(_SWEEP_SELECT + " WHERE wandb_path IS NOT NULL ORDER BY rowid").fetchall()
        found = []
        for row in rows:
            wandb_path = _sweep_column(row["id"], "wandb_path", row["wandb_path"], _text)
            e, p, i = (wandb_path.split("/") + [None, None, None])[:3]
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
        if row is not None and _sweep_column(sweep_id, "origin", row["origin"], _one_of(ORIGINS)) != "wandb":
            raise UsageError(f"WANDB_SWEEP_ID={sweep_id} is a local sweep id in {self.path}; a run of `mlp agent` "
                             f"does not set it — unset it")
        config = _sweep_column(sweep_id, "config_json", row["config_json"], _sweep_config) if row is not None else {
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
