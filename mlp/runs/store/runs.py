"""Sweeps and runs: created, claimed by agents (the proposal made inside the write transaction, so
parallel agents never draw the same grid point), started, logged epoch by epoch, finished, listed.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any, Callable

from mlp.runs.store.records import RerunPlan, Retry, _one_line, encode_json
from mlp.runs.store.schema import (_HISTORY_SELECT, _RUN_SELECT, _RUN_UPDATABLE, _SWEEP_SELECT, _SWEEP_UPDATABLE,
                                   FINAL_STATES, ORIGINS, RUN_STATES, SWEEP_STATES, _assignments, _check_state,
                                   _history_row, _run_dict, _sweep_dict)

__all__ = ["SweepsAndRuns"]


class SweepsAndRuns:
    """The sweeps and runs tables (a part of `Store`; the transactions are Connection's). Rows become
    dicts inside the read (or write) they come from, so a damaged value is reported as a StoreError
    naming the store (Connection._sqlite_errors)."""

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
            rows = db.execute(_HISTORY_SELECT + " WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
            return [_history_row(run_id, r) for r in rows]
