"""Orphans: runs recorded as running (or pending) that nobody works on any more — their process is
gone (on this host the process table decides), or, for another host's runs, no heartbeat for a
while. An agent reaps them (marks them crashed) before it claims work, so a sweep never waits on a
dead run and a grid point is never left half-done.
"""
from __future__ import annotations

import os
import time

from mlp.runs.store.records import _one_line
from mlp.runs.store.schema import _RUN_SELECT, FINAL_STATES, RUN_STATES, _check_state, _run_dict

__all__ = ["Orphans"]


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


class Orphans:
    """Finding and reaping orphaned runs (a part of `Store`)."""

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
