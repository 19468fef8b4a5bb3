"""One W&B service for the runs of an agent.

Each `wandb.init` in a new process — a warm run forked from the agent, or a fresh Python per run —
starts W&B's own service process (wandb-core) and waits for it, unless the environment names a
running one in WANDB_SERVICE. W&B's CLI has a documented way to share one service between many
worker processes on a machine: `wandb beta core start` starts a detached service and prints the
value for WANDB_SERVICE; the service shuts itself down after an idle time with no client.

The agent starts one in the background when it has at least MIN_RUNS runs to do, and hands it
to every run that starts once it is ready (the first run does not wait for it). Measured on a
sweep of 2-epoch runs on tests/data: a warm run's launch to its store row `running` drops from
about 0.39 s to 0.17 s, a fresh process's from 1.8 s to 1.0 s; `benchmarks/sweep_throughput.py`
gives the sweep-level numbers (README, "Speed").

* A WANDB_SERVICE already in the agent's environment (the user's own shared service) is used as it
  is, for every run; set but empty (`WANDB_SERVICE= mlp agent ...`), it turns sharing off: every
  run starts its own service, as under `wandb agent`.
* The agent's own service is never stopped by the agent: it shuts itself down IDLE_SECONDS after
  the last run disconnects. A run therefore only gets it while it is fresh — ready, or last used,
  less than half that time ago; after a longer pause the agent starts a new one.
* Where the CLI is missing (a W&B older than the command), fails or hangs (START_SECONDS), runs
  start their own service, exactly as before.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

__all__ = ["SharedService", "IDLE_SECONDS"]

IDLE_SECONDS = 60
START_SECONDS = 30           # a start that takes longer is given up (killed); runs start their own
# A service costs one W&B CLI start (~1 s of CPU, beside the first run) and saves each later run its own
# service (~0.2 s of wall time, ~0.3 s of CPU): it pays from about the fifth run.
MIN_RUNS = 5


class SharedService:
    """The WANDB_SERVICE value to give each run, or None for "start your own"."""

    def __init__(self, environ=None, command=None, idle_seconds=IDLE_SECONDS, start_seconds=START_SECONDS):
        """`command`: what starts a service and prints its WANDB_SERVICE value on its first line
        (default: W&B's CLI, `wandb beta core start`)."""
        environ = os.environ if environ is None else environ
        self.idle, self.start_seconds = idle_seconds, start_seconds
        self.command = command or [sys.executable, "-m", "wandb", "beta", "core", "start", "--idle-timeout",
                                   f"{idle_seconds:g}s"]
        self.given = environ.get("WANDB_SERVICE") or None    # the user's own: always used, never ours
        self.off = environ.get("WANDB_SERVICE") == ""         # set but empty: no sharing
        self.token = None
        self.fresh_until = 0.0
        self._starting = None
        self._started_at = 0.0
        self.failed = False

    def start(self, runs: int | None) -> None:
        """Start a service in the background if `runs` (None: no limit) make it worth it."""
        if self.given or self.off or self.failed or self._starting is not None or \
                (runs is not None and runs < MIN_RUNS):
            return
        env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
        self._started_at = time.monotonic()
        try:
            self._starting = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, env=env, text=True, start_new_session=True)
        except OSError:
            self.failed = True

    def for_run(self) -> str | None:
        """The value of WANDB_SERVICE for a run starting now (None: the run starts its own)."""
        if self.given:
            return self.given
        self._collect()
        if self.token is not None and time.monotonic() > self.fresh_until:
            self.token = None                  # it may have shut itself down by now: start another
            self.start(None)
            self._collect()
        return self.token

    def released(self) -> None:
        """A run has ended: the service's idle time starts now."""
        if self.token is not None:
            self.fresh_until = time.monotonic() + self.idle / 2

    def _collect(self) -> None:
        proc = self._starting
        if proc is None:
            return
        if proc.poll() is None:
            if time.monotonic() - self._started_at < self.start_seconds:
                return
            proc.kill()                         # hung: give up on sharing
            proc.wait()
        self._starting = None
        out = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        lines = out.strip().splitlines()
        if proc.returncode == 0 and lines and lines[0].strip():
            self.token = lines[0].strip()
            # idle since it came up, at the earliest when the command started (a long first run
            # that started its own service may have let it shut down already: then it is stale)
            self.fresh_until = self._started_at + self.idle / 2
        else:
            self.failed = True
