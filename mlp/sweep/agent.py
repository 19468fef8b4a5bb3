"""Offline sweeps: W&B's own search engine (the open-source `sweeps` package) driven from the
local store, so the same YAML runs with `wandb agent` online and with `mlp agent` offline.

The controller is stateless: every proposal is `sweeps.next_run` over all runs the store holds,
made inside the store's write transaction (`Store.claim_run`), so parallel agents never draw the
same grid point. Each run is a subprocess launched with the argv W&B's agent builds from the YAML
`command`; hyperband (`sweeps.stop_runs`) is checked as epochs arrive and stops a run with SIGINT.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import yaml

from mlp.errors import UsageError

METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
# sweeps' RunState for each of our run states (diverged runs are failures: bayes imputes the worst)
ENGINE_STATE = {"pending": "pending", "running": "running", "finished": "finished", "failed": "failed",
                "diverged": "failed", "killed": "killed", "crashed": "crashed"}
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 600.0        # a run of another host silent this long is crashed (same host: its pid decides)
CRASH_LOOP = 3               # this many runs in a row failing before any epoch stops the agent


def _engine():
    """W&B's `sweeps` package (its pydantic-v1 config warns on import; the warning is noise)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import sweeps
    return sweeps


# ---- sweep files ------------------------------------------------------------------------------

def load_sweep_file(path):
    """Read and validate a sweep YAML; returns (config dict, YAML text). Bad files -> UsageError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read sweep file {path}: {e.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"sweep file {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    validate_sweep_config(config, str(path))
    return config, text


def validate_sweep_config(config, source="sweep config"):
    """W&B's JSON schema, then what W&B checks only server-side or not at all."""
    sweeps = _engine()

    if not isinstance(config, dict):
        raise UsageError(f"{source} must be a YAML mapping with method, metric and parameters")
    violations = sweeps.schema_violations_from_proposed_config(config)
    if violations:
        first = violations[0].replace("Additional properties are not allowed", "unknown top-level key")
        raise UsageError(f"{source} is not a valid W&B sweep config: {first}")
    params = config.get("parameters") or {}
    if not params:
        raise UsageError(f"{source} has no parameters to search")
    metric = (config.get("metric") or {}).get("name")
    if config["method"] == "bayes" or "early_terminate" in config:
        if not metric:
            raise UsageError(f"{source}: method bayes and early_terminate need `metric: {{name: val_accuracy, goal: maximize}}`")
    if metric and metric.startswith("test_"):
        raise UsageError(f"{source} optimises {metric}: selecting on the test set is not allowed; use val_accuracy")
    if metric and metric not in METRICS:
        raise UsageError(f"{source}: metric {metric!r} is never logged; choose one of {', '.join(METRICS)}")
    known = _train_flags()
    for name, spec in params.items():
        if name not in known:
            raise UsageError(f"{source}: parameter {name!r} is not a train.py flag; see `python train.py --help`")
        discrete = "values" in spec or "value" in spec or spec.get("distribution") in ("int_uniform", "q_uniform")
        if config["method"] == "grid" and not discrete:
            raise UsageError(f"{source}: grid search needs `values` (or `value`, int_uniform, q_uniform) for "
                             f"{name!r}, not a continuous distribution; use method random or bayes")
        for value in spec.get("values", [spec["value"]] if "value" in spec else []):
            _check_value(name, value, source)
    if "run_cap" in config and int(config["run_cap"]) < 1:
        raise UsageError(f"{source}: run_cap must be ≥ 1")


def _train_flags():
    from mlp.cli import train_parser
    return {a.dest for a in train_parser()._actions if a.dest != "help"}


def _check_value(name, value, source):
    from mlp.cli import parse_train_args
    try:
        parse_train_args([f"--{name}={format_value(value)}"])
    except UsageError as e:
        raise UsageError(f"{source}: value {value!r} of {name!r} is rejected by train.py ({e})") from None


# ---- the command line W&B's agent would build ----------------------------------------------------

def format_value(value):
    """How W&B's agent writes a value into `--key=value`: Python's str()."""
    return str(value)


def build_command(command, params, program, args_json_file=None):
    """Expand the YAML `command` macros exactly as `wandb agent` does, with wandb's own argument
    builder, except that ${interpreter} is this Python (W&B's agent uses the literal `python`)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args
    forms = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    forms.update(interpreter=[sys.executable], program=[program], env=["/usr/bin/env"],
                 args_json_file=[args_json_file] if args_json_file else [])
    if "${args_json_file}" in command and args_json_file:
        Path(args_json_file).write_text(forms["args_json"][0])
    argv = []
    for part in command:
        part = str(part)
        if part.startswith("${") and part.endswith("}"):
            argv += [str(x) for x in forms.get(part[2:-1]) or []]
        else:
            argv.append(part)
    return argv


# ---- the search -----------------------------------------------------------------------------

def engine_run(run, history):
    """Our run (a store dict) as the engine's SweepRun."""
    SweepRun = _engine().SweepRun
    params = run["extra"].get("sweep_params", {})
    summary = {k: v for k, v in run["summary"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    stopped = bool(run["extra"].get("stopped_by"))
    # a run hyperband stopped is a real (short) result, not a failure for bayes to shun
    state = "finished" if stopped else ENGINE_STATE[run["state"]]
    return SweepRun(name=run["id"], state=state, config={k: {"value": v} for k, v in params.items()},
                    history=history, summary_metrics=summary, stopped=stopped)


def propose(config, runs, seed, histories):
    """The next parameters (a flat dict) or None when the search is over (grid exhausted, run_cap)."""
    import numpy as np
    sweeps = _engine()

    cap = config.get("run_cap")
    if cap is not None and len(runs) >= int(cap):
        return None
    # The engine draws from the global `random` and numpy generators: seed them from the sweep
    # seed and the number of runs so far, so a sweep's sequence of proposals is reproducible.
    draw = zlib.crc32(f"{seed}:{len(runs)}".encode())
    random.seed(draw)
    np.random.seed(draw)
    engine_runs = [engine_run(r, histories(r["id"])) for r in runs]
    suggestion = sweeps.next_run(config, engine_runs)
    if suggestion is None:
        return None
    return {k: v["value"] for k, v in suggestion.config.items()}


def fixed_list(configs):
    """A proposer that hands out the given configs in order, each once."""
    return lambda runs: configs[len(runs)] if len(runs) < len(configs) else None


def runs_to_stop(config, runs, histories):
    """Run ids hyperband says to stop now."""
    sweeps = _engine()
    if (config.get("early_terminate") or {}).get("type") != "hyperband":
        return set()
    engine_runs = [engine_run(r, histories(r["id"])) for r in runs]
    return {r.name for r in sweeps.stop_runs(config, engine_runs)}


# ---- creating sweeps and running agents ------------------------------------------------------------

def prepare_sweep(path, workdir=None):
    """Validate a sweep file for this folder before anything is written: (config, text, workdir)."""
    config, text = load_sweep_file(path)
    workdir = Path(workdir or os.getcwd()).resolve()
    program = config.get("program", "train.py")
    if not (workdir / program).is_file():
        raise UsageError(f"program {program!r} of {path} is not in {workdir}; run `mlp sweep` from the folder that holds it")
    return config, text, workdir


def create_sweep(store, path, prepared, name=None, seed=None):
    config, text, workdir = prepared
    seed = int(seed) if seed is not None else random.SystemRandom().randrange(2 ** 31)
    return store.create_sweep(config, text, name=name or config.get("name") or Path(path).stem, seed=seed,
                              extra={"workdir": str(workdir), "file": str(Path(path).resolve())})


class Agent:
    """Claims runs of one sweep from the store and trains them one after another."""

    def __init__(self, store, sweep_id, count=None, jobs=1, out=None):
        self.store, self.sweep_id, self.count, self.jobs = store, sweep_id, count, jobs
        self.out = out or (lambda line: print(line, flush=True))
        sweep = store.get_sweep(sweep_id)
        self.config, self.seed = sweep["config"], sweep["seed"]
        # the search: W&B's engine over the YAML, or the fixed list of configs of a rerun sweep
        # (kept in the store, so `mlp agent CHILD_ID` resumes a rerun exactly like `mlp rerun`)
        fixed = (sweep["extra"].get("rerun") or {}).get("configs")
        self.proposer = fixed_list(fixed) if fixed else (
            lambda runs: propose(self.config, runs, self.seed, self.histories))
        self.workdir = Path(sweep["extra"].get("workdir") or os.getcwd())
        self.logs = Path(store.path).resolve().parent / "mlp-logs" / sweep_id
        self.models = Path(store.path).resolve().parent / "mlp-models" / sweep_id
        self.child = None

    def histories(self, run_id):
        return self.store.history(run_id)

    def run(self):
        """Returns the exit code: 0 when done (count reached or search over), 1 on a crash loop,
        130 on Ctrl-C."""
        for run in self.store.reap_orphans(STALE_SECONDS, states=("pending", "running")):
            self.out(f"run {run['id']} was orphaned ({run.get('orphan_reason', 'its process is gone')}): recorded as crashed")
        state = self.store.get_sweep(self.sweep_id)["state"]
        if state in ("finished", "cancelled"):
            self.out(f"sweep {self.sweep_id} is {state}; nothing to do")
            return 0
        self.store.set_sweep_state(self.sweep_id, "running")
        done = failures_in_a_row = 0
        try:
            while self.count is None or done < self.count:
                run = self.store.claim_run(self.sweep_id, self.proposer)
                if run is None:
                    self._finish_sweep_if_over()
                    break
                done += 1
                final = self.execute(run, done)
                no_epoch = final["state"] in ("failed", "crashed") and not self.store.history(run["id"])
                failures_in_a_row = failures_in_a_row + 1 if no_epoch else 0
                if failures_in_a_row >= CRASH_LOOP:
                    self.out(f"error: {CRASH_LOOP} runs in a row failed before their first epoch; "
                             f"see {self.logs}/{run['id']}.log and fix the sweep or the program")
                    return 1
        except KeyboardInterrupt:
            self.out("interrupted: the run in flight is recorded as killed")
            return 130
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

    def environment(self, run_id, params):
        env = dict(os.environ)
        wandb_base = Path(os.environ.get("WANDB_DIR") or self.workdir)
        param_file = wandb_base / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run_id}.yaml"
        param_file.parent.mkdir(parents=True, exist_ok=True)
        param_file.write_text(yaml.safe_dump({"wandb_version": 1, **{k: {"value": v} for k, v in params.items()}}))
        env.update({
            "MLP_RUN_ID": run_id, "MLP_STORE": str(Path(self.store.path).resolve()),
            "WANDB_RUN_ID": run_id, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "WANDB_SWEEP_PARAM_PATH": str(param_file),
            "MLP_MODEL_DIR": str(self.models),
        })
        if self.jobs > 1:  # parallel agents on a small machine: one BLAS thread pool each, no oversubscription
            threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
            env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return env

    def execute(self, run, number):
        run_id, params = run["id"], run["extra"]["sweep_params"]
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = self.command(params, run_id)
        total = f"/{self.count}" if self.count else ""
        self.out(f"[{number}{total}] run {run_id}: " + " ".join(f"{k}={v}" for k, v in params.items()))
        started = time.monotonic()
        with open(self.logs / f"{run_id}.log", "w") as log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            self.store.update_run(run_id, extra={**run["extra"], "log": str(self.logs / f"{run_id}.log"), "argv": argv})
            try:
                self.child = subprocess.Popen(argv, cwd=self.workdir, env=self.environment(run_id, params),
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                self.store.finish_run(run_id, "failed", exit_code=127, error=f"cannot start {argv[0]}: {e}")
                return self.store.get_run(run_id)
            stopped_by = None
            try:
                stopped_by = self._watch(run_id)
            except KeyboardInterrupt:
                self._interrupt_child()
                self._settle(run_id, self.child.returncode, None)
                raise
            finally:
                returncode = self.child.wait()
        final = self._settle(run_id, returncode, stopped_by)
        metric = (self.config.get("metric") or {}).get("name", "val_accuracy")
        value = final["summary"].get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, float) else ""
        extra = " (stopped by hyperband)" if final["extra"].get("stopped_by") else ""
        self.out(f"    {final['state']}{extra} {shown} in {time.monotonic() - started:.0f}s")
        return final

    def _watch(self, run_id):
        """Wait for the child; heartbeat; apply hyperband as epochs arrive. Returns 'hyperband'
        if the run was stopped early."""
        seen_epochs, last_beat = 0, time.monotonic()
        hyperband = (self.config.get("early_terminate") or {}).get("type") == "hyperband"
        while self.child.poll() is None:
            time.sleep(POLL_SECONDS)
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
            elif returncode in (130, -signal.SIGINT):
                self.store.finish_run(run_id, "killed", exit_code=returncode, error="interrupted")
            else:
                self.store.finish_run(run_id, "crashed", exit_code=returncode,
                                      error=log_tail or f"exited with code {returncode}")
        run = self.store.get_run(run_id)
        if stopped_by and run["state"] == "killed":  # the stop landed (a run may finish first)
            self.store.update_run(run_id, extra={**run["extra"], "stopped_by": stopped_by})
            run = self.store.get_run(run_id)
        return run


def _last_line(path):
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:500] if lines else None


def run_parallel_agents(store_path, sweep_id, count, jobs, out=None):
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


def dump_json(obj):
    return json.dumps(obj, indent=2, allow_nan=False, default=str)
