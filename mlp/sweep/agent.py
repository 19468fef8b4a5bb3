"""Offline sweeps: `mlp sweep` creates a sweep in the store, `mlp agent` runs it.

An agent claims runs from the store (`Store.claim_run`: W&B's engine proposes inside the store's
write transaction, so parallel agents never draw the same grid point) and launches each as a
subprocess with exactly what `wandb agent` gives a run: the argv built from the YAML `command`,
`WANDB_RUN_ID`, `WANDB_SWEEP_PARAM_PATH`, W&B offline. The run finds its row in the store by that
id (the row carries its sweep and proposed parameters) and keeps its model beside the store
(`mlp.runs.store.model_path_for`) — nothing else passes between agent and run. Hyperband
(`sweeps.stop_runs`) is checked as epochs arrive and stops a run with SIGINT; the stop is recorded
in the run's `stopped_by` column.

A sweep's config is validated again when an agent takes it from the store (with the same rules as
a sweep file, `validate_sweep_config`, and this machine's memory): a row written by another
version or edited by hand is one line naming the store and the sweep, not a traceback mid-search.
A run whose process cannot be started (its command expands to nothing, the program cannot be
executed, its parameter file cannot be written) is recorded failed with the reason, never left
pending. Exit codes: 0 when the agent's work is done, 1 when its runs fail before their first
epoch — three in a row (a crash loop), or every run it ran —, 130 on Ctrl-C.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mlp.errors import UsageError
from mlp.runs import interrupts
from mlp.runs.store import Retry
from mlp.runs.wandb_api import SweepPath
from mlp.sweep.engine import DEFAULT_COMMAND, build_command, fixed_list, propose, runs_to_stop
from mlp.sweep.files import check_program, load_sweep_file, objective, validate_sweep_config
from mlp.sweep.wandb_service import SharedService
from mlp.sweep.warm import can_fork

__all__ = ["Agent", "prepare_sweep", "create_sweep", "run_parallel_agents"]

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 600.0        # a run of another host silent this long is crashed (same host: its pid decides)
CRASH_LOOP = 3               # this many runs in a row failing before any epoch stops the agent


def prepare_sweep(path, workdir=None):
    """Validate a sweep file for this folder before anything is written: (config, text, workdir)."""
    config, text = load_sweep_file(path, machine_memory=True)
    _VALIDATED.add(_config_key(config))
    workdir = Path(workdir or os.getcwd()).resolve()
    check_program(config, workdir, path)
    return config, text, workdir


def create_sweep(store, path, prepared, name=None, seed=None):
    config, text, workdir = prepared
    seed = int(seed) if seed is not None else random.SystemRandom().randrange(2 ** 31)
    name = name if name is not None else str(config.get("name") or Path(path).stem)
    if not name.strip() or len(name) > 256 or not name.isprintable():
        raise UsageError(f"sweep name {name!r:.60} must be 1-256 printable characters (no newline, tab or other "
                         f"control character); give another with --name")
    return store.create_sweep(config, text, name=name, seed=seed, workdir=workdir, source_file=Path(path).resolve())


class Agent:
    """Claims runs of one sweep from the store and trains them one after another."""

    def __init__(self, store, sweep_id, count=None, jobs=1, out=None, launcher=None, retry_failed=False):
        """`launcher`: a WarmLauncher to fork runs of the project's train.py from this process
        (see mlp.sweep.warm); None starts every run as a fresh subprocess. `retry_failed`: before
        new proposals, run again the parameters of the sweep's crashed and failed runs (wandb#2031:
        a killed process, a missing data folder since fixed) — each once per agent; a diverged run
        would only diverge again."""
        self.store, self.sweep_id, self.count, self.jobs = store, sweep_id, count, jobs
        self.retry_failed, self.retried = retry_failed, set()
        self.launcher = launcher
        self.out = out or (lambda line: print(line, flush=True))
        sweep = store.get_sweep(sweep_id)
        self.config, self.seed = sweep["config"], sweep["seed"]
        # the search: W&B's engine over the YAML, or the fixed list of configs of a rerun sweep
        # (kept in the store, so `mlp agent CHILD_ID` resumes a rerun exactly like `mlp rerun`)
        if sweep["origin"] != "local":
            raise UsageError(f"sweep {sweep_id} is a W&B sweep: run it with `wandb agent {sweep['wandb_path']}` "
                             f"(mlp agent runs the sweeps that `mlp sweep` and `mlp rerun` create)")
        _validate_stored(self.config, f"sweep {sweep_id} in store {store.path}")
        plan = sweep["rerun"]
        self.planned = len(plan.configs) if plan else None      # runs a rerun sweep has at most
        search = fixed_list(plan.configs) if plan else (
            lambda runs: propose(self.config, runs, self.seed, self.histories))
        self.proposer = lambda runs: self._retry(runs) or search(_not_retried(runs))
        self.workdir = Path(sweep["workdir"] or os.getcwd())
        self.logs = Path(store.path).resolve().parent / "mlp-logs" / sweep_id
        self.child = self.claimed = None
        self.service = SharedService()     # one W&B service for the runs (see mlp.sweep.wandb_service)

    def histories(self, run_id):
        return self.store.history(run_id)

    def _retry(self, runs):
        """A Retry of the oldest crashed or failed run not retried yet (with --retry-failed)."""
        if not self.retry_failed:
            return None
        for run in self._retryable(runs):
            self.retried.add(run["id"])
            return Retry(run["id"], dict(run["params"]))
        return None

    def _retryable(self, runs):
        retried = {r["extra"].get("retry_of") for r in runs}
        return [r for r in runs if r["state"] in RETRIED_STATES and r["id"] not in retried and r["id"] not in self.retried]

    def run(self):
        """Returns the exit code: 0 when done (count reached or search over), 1 on a crash loop,
        130 on Ctrl-C."""
        for run in self.store.reap_orphans(STALE_SECONDS, states=("pending", "running")):
            self.out(f"run {run['id']} was orphaned ({run.get('orphan_reason', 'its process is gone')}): recorded as crashed")
        state = self.store.get_sweep(self.sweep_id)["state"]
        retry = self.retry_failed and state == "finished" and self._retryable(self.store.list_runs(self.sweep_id))
        if state in ("finished", "cancelled") and not retry:
            self.out(f"sweep {self.sweep_id} is {state}; nothing to do")
            return 0
        self.store.set_sweep_state(self.sweep_id, "running")
        runs = [n for n in (self.count, self.planned) if n is not None]
        self.service.start(min(runs) if runs else None)
        done = failures_in_a_row = 0
        last = None
        try:
            while self.count is None or done < self.count:
                self.child = None
                with interrupts.held():     # a stop that arrives now finds the claimed run kept
                    run = self.claimed = self.store.claim_run(self.sweep_id, self.proposer)
                if run is None:
                    self._finish_sweep_if_over()
                    break
                done += 1
                final = self.execute(run, done)
                last = run["id"]
                self.service.released()
                no_epoch = final["state"] in ("failed", "crashed") and not self.store.history(run["id"])
                failures_in_a_row = failures_in_a_row + 1 if no_epoch else 0
                if failures_in_a_row >= CRASH_LOOP:
                    self.out(f"error: {CRASH_LOOP} runs in a row failed before their first epoch; "
                             f"see {self.logs}/{last}.log and fix the sweep or the program")
                    return 1
            else:   # --count reached: the last run may also have been the search's last
                if self.proposer(self.store.list_runs(self.sweep_id)) is None:
                    self._finish_sweep_if_over()
        except KeyboardInterrupt:
            self._record_unstarted()
            self.out("interrupted: the run in flight is recorded as killed")
            return 130
        if done and failures_in_a_row == done:    # fewer than CRASH_LOOP runs, and not one of them trained
            self.out(f"error: {'the run' if done == 1 else f'all {done} runs'} of this agent failed before "
                     f"{'its' if done == 1 else 'their'} first epoch; see {self.logs}/{last}.log and fix the sweep "
                     f"or the program")
            return 1
        return 0

    def _finish_sweep_if_over(self):
        active = [r for r in self.store.list_runs(self.sweep_id) if r["state"] in ("pending", "running")]
        if not active:
            self.store.set_sweep_state(self.sweep_id, "finished")
        self.out(f"sweep {self.sweep_id}: search space exhausted or run_cap reached")

    def command(self, params, run_id):
        program = self.config.get("program", "train.py")
        return build_command(self.config.get("command") or DEFAULT_COMMAND, params, program,
                             args_json_file=str(self.logs / f"{run_id}.json"))

    def threads(self):
        """BLAS threads per run: parallel agents on a small machine get one pool each, no oversubscription."""
        return max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else None

    def environment(self, run_id, params):
        env = dict(os.environ)
        wandb_base = Path(os.environ.get("WANDB_DIR") or self.workdir)
        param_file = wandb_base / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run_id}.yaml"
        param_file.parent.mkdir(parents=True, exist_ok=True)
        param_file.write_text(yaml.safe_dump({"wandb_version": 1, **{k: {"value": v} for k, v in params.items()}}))
        for key in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_SERVICE"):
            env.pop(key, None)        # e.g. an agent started from inside a W&B run
        service = self.service.for_run()
        if service:
            env["WANDB_SERVICE"] = service
        env.update({
            "MLP_STORE": str(Path(self.store.path).resolve()),
            "WANDB_RUN_ID": run_id, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "WANDB_SWEEP_PARAM_PATH": str(param_file),
        })
        synced = SweepPath.parse(self.store.get_sweep(self.sweep_id)["wandb_path"] or "")
        if synced is not None:     # `mlp sync` made it a W&B sweep: the run carries its id, so `wandb sync` files it there
            env.update(WANDB_SWEEP_ID=synced.sweep_id, WANDB_ENTITY=synced.entity, WANDB_PROJECT=synced.project)
        if self.threads():
            threads = str(self.threads())
            env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return env

    def _start(self, argv, env, log):
        """The run as a forked warm process when it is the project's train.py, else a subprocess."""
        program = self.workdir / self.config.get("program", "train.py")
        if self.launcher is not None and can_fork() and self.launcher.eligible(argv, program):
            log.write("(a warm run: forked from the agent, which has imported what it needs)\n")
            log.flush()
            return self.launcher.start(argv[3:], env, self.workdir, log, self.threads())
        return subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _record_unstarted(self):
        """Ctrl-C/SIGTERM before the claimed run's process existed: the run is recorded killed,
        never left pending."""
        run = self.claimed
        if run is not None and self.child is None and self.store.get_run(run["id"])["state"] == "pending":
            self.store.finish_run(run["id"], "killed", exit_code=130, error="interrupted before it started")

    def execute(self, run, number):
        """Run one claimed run to its end; its row is final afterwards (a run that cannot be
        started is failed, exit code 127, with the reason)."""
        run_id, params = run["id"], run["params"]
        total = f"/{self.count}" if self.count else ""
        self.out(f"[{number}{total}] run {run_id}: " + " ".join(f"{k}={v}" for k, v in params.items()))
        started = time.monotonic()
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            argv = self.command(params, run_id)
            if not argv or not argv[0]:
                raise ValueError(f"the sweep's command {self.config.get('command')!r} expands to no program")
            log = open(self.logs / f"{run_id}.log", "w")
        except Exception as e:   # nothing was started: the claimed run must not stay pending
            return self._not_started(run_id, f"cannot build the run's command: {type(e).__name__}: {e}")
        with log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            self.store.update_run(run_id, log_path=self.logs / f"{run_id}.log", extra={**run["extra"], "argv": argv})
            stopped_by = None
            try:
                with interrupts.held():     # a stop that arrives as the run starts finds its handle
                    self.child = self._start(argv, self.environment(run_id, params), log)
                stopped_by = self._watch(run_id)
            except Exception as e:
                if self.child is not None:
                    raise
                log.write(f"cannot start {argv[0]}: {type(e).__name__}: {e}\n")
                return self._not_started(run_id, f"cannot start {argv[0]}: {e}")
            except KeyboardInterrupt:
                if self.child is not None:
                    self._interrupt_child()
                    self._settle(run_id, self.child.returncode, None)
                raise
            finally:
                returncode = self.child.wait() if self.child is not None else None
        final = self._settle(run_id, returncode, stopped_by)
        metric = objective(self.config)[0]
        value = final["summary"].get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, float) else ""
        extra = f" (stopped by {final['stopped_by']})" if final["stopped_by"] else ""
        self.out(f"    {final['state']}{extra} {shown} in {time.monotonic() - started:.0f}s")
        return final

    def _not_started(self, run_id, reason):
        """The claimed run's process never existed: failed (exit code 127, as a shell says of a
        command it cannot run), with the reason in its row and on the agent's output."""
        self.store.finish_run(run_id, "failed", exit_code=127, error=reason[:500])
        self.out(f"    failed: {reason[:300]}")
        return self.store.get_run(run_id)

    def _watch(self, run_id):
        """Wait for the child; heartbeat; apply hyperband as epochs arrive. Returns 'hyperband'
        if the run was stopped early."""
        seen_epochs, last_beat = 0, time.monotonic()
        hyperband = (self.config.get("early_terminate") or {}).get("type") == "hyperband"
        while self.child.poll() is None:
            try:
                self.child.wait(POLL_SECONDS)    # returns as soon as the run ends
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                self.store.heartbeat(run_id)
                last_beat = time.monotonic()
            if not hyperband:
                continue
            epochs = len(self.store.history(run_id))
            if epochs == seen_epochs:
                continue
            seen_epochs = epochs
            planned = self.store.get_run(run_id)["config"].get("epochs")
            if planned is not None and epochs >= planned:
                continue  # training is over; the run is only testing and saving now
            runs = self.store.list_runs(self.sweep_id)
            if run_id in runs_to_stop(self.config, runs, self.histories):
                self.store.update_run(run_id, stopped_by="hyperband")   # the run reads it: stopped, not interrupted
                self._interrupt_child()
                return "hyperband"
        return None

    def _interrupt_child(self, grace=30.0):
        """SIGINT (not SIGTERM: W&B offline data survives it), then SIGKILL if it hangs."""
        if self.child is None or self.child.poll() is not None:
            return
        self.child.send_signal(signal.SIGINT)
        try:
            self.child.wait(grace)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def _settle(self, run_id, returncode, stopped_by):
        """Make the store row final whatever the child managed to record."""
        run = self.store.get_run(run_id)
        if run["state"] in ("pending", "running"):
            log_tail = _last_line(self.logs / f"{run_id}.log")
            if returncode == 2:
                self.store.finish_run(run_id, "failed", exit_code=2, error=log_tail or "bad input")
            elif returncode in (130, -signal.SIGINT) or (returncode == 0 and run["stopped_by"]):
                self.store.finish_run(run_id, "killed", exit_code=returncode, error="interrupted")
            else:
                self.store.finish_run(run_id, "crashed", exit_code=returncode,
                                      error=log_tail or f"exited with code {returncode}")
        run = self.store.get_run(run_id)
        if stopped_by and run["state"] == "killed" and run["stopped_by"] != stopped_by:
            self.store.update_run(run_id, stopped_by=stopped_by)     # the stop landed
            run = self.store.get_run(run_id)
        elif stopped_by and run["state"] != "killed":                 # the run ended before the stop landed
            self.store.update_run(run_id, stopped_by=None)
            run = self.store.get_run(run_id)
        return run


RETRIED_STATES = ("crashed", "failed")
_VALIDATED: set = set()    # stored configs this process has checked already (`mlp sweep --count` checks the file first)


def _config_key(config):
    try:
        return json.dumps(config, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return None


def _validate_stored(config, source):
    """A sweep config read from the store, checked like a sweep file (and against this machine's
    memory): a bad row is one line naming the store and the sweep."""
    key = _config_key(config)
    if key is not None and key in _VALIDATED:
        return
    validate_sweep_config(config, source, machine_memory=True)
    if key is not None:
        _VALIDATED.add(key)


def _not_retried(runs):
    """The runs the search sees: a failed run that was retried is replaced by its retry (a grid
    point counts once, bayes learns from the retry's result)."""
    retried = {r["extra"].get("retry_of") for r in runs}
    return [r for r in runs if r["id"] not in retried]


def _last_line(path):
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:500] if lines else None


def run_parallel_agents(store_path, sweep_id, count, jobs, out=None, fresh_process=False):
    """`mlp sweep --jobs J`: J agent processes on one store; the runs are split between them."""
    out = out or (lambda line: print(line, flush=True))
    shares = [count // jobs + (1 if i < count % jobs else 0) for i in range(jobs)] if count else [None] * jobs
    procs = []
    for share in shares:
        if share == 0:
            continue
        argv = [sys.executable, "-m", "mlp", "agent", sweep_id, "--store", str(store_path), "--jobs", str(jobs)]
        if share is not None:
            argv += ["--count", str(share)]
        if fresh_process:
            argv.append("--fresh_process")
        procs.append(subprocess.Popen(argv))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        return 130
    return max(codes) if codes else 0

