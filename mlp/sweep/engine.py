"""W&B's own search engine (the open-source `sweeps` package) over the runs of the store, and the
command line W&B's agent builds from a sweep's `command`.

The controller is stateless: every proposal is `sweeps.next_run` over all runs the store holds
(made inside the store's write transaction by `Store.claim_run`, so parallel agents never draw
the same grid point), and hyperband is `sweeps.stop_runs` over the same runs.
"""
from __future__ import annotations

import random
import sys
import zlib
from pathlib import Path

__all__ = ["engine", "engine_run", "propose", "runs_to_stop", "fixed_list", "build_command", "format_value",
           "hyperband_brackets", "dry_run_stop", "engine_config", "finite_space", "DEFAULT_COMMAND"]

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
# sweeps' RunState for each of our run states (diverged runs are failures: bayes imputes the worst)
ENGINE_STATE = {"pending": "pending", "running": "running", "finished": "finished", "failed": "failed",
                "diverged": "failed", "killed": "killed", "crashed": "crashed"}


def engine():
    """W&B's `sweeps` package (its pydantic-v1 config warns on import; the warning is noise)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import sweeps
    return sweeps


def engine_run(run, history):
    """Our run (a store dict) as the engine's SweepRun."""
    SweepRun = engine().SweepRun
    summary = {k: v for k, v in run["summary"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    stopped = bool(run["stopped_by"])
    # a run hyperband stopped is a real (short) result, not a failure for bayes to shun
    state = "finished" if stopped else ENGINE_STATE[run["state"]]
    return SweepRun(name=run["id"], state=state, config={k: {"value": v} for k, v in run["params"].items()},
                    history=history, summary_metrics=summary, stopped=stopped)


def propose(config, runs, seed, histories):
    """The next parameters (a flat dict) or None when the search is over (grid exhausted, run_cap,
    a finite random space drawn out)."""
    import numpy as np

    cap = config.get("run_cap")
    if cap is not None and len(runs) >= int(cap):
        return None
    # The engine draws from the global `random` and numpy generators: seed them from the sweep
    # seed and the number of runs so far, so a sweep's sequence of proposals is reproducible.
    draw = zlib.crc32(f"{seed}:{len(runs)}".encode())
    random.seed(draw)
    np.random.seed(draw)
    space = finite_space(config) if config.get("method") == "random" else None
    if space is not None:            # random without replacement (wandb#4682): never a config twice
        return _draw_unused(space, runs, np.random.default_rng(draw))
    engine_runs = [engine_run(r, histories(r["id"])) for r in runs]
    suggestion = engine().next_run(engine_config(config), engine_runs)
    if suggestion is None:
        return None
    return {k: _plain(v["value"]) for k, v in suggestion.config.items()}


def finite_space(config):
    """([parameter names], [[values] per parameter], [[weights] per parameter]) when every
    parameter of the sweep takes finitely many values (`value`, `values` — with `probabilities`
    as weights —, `int_uniform`), else None (continuous or nested: the engine draws with
    replacement, as W&B's does)."""
    names, choices, weights = [], [], []
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict) or "parameters" in spec:
            return None
        if "value" in spec:
            values, probs = [spec["value"]], [1.0]
        elif "values" in spec:
            values = list(spec["values"])
            probs = list(spec.get("probabilities") or [1.0] * len(values))
        elif spec.get("distribution") == "int_uniform":
            values = list(range(int(spec["min"]), int(spec["max"]) + 1))
            probs = [1.0] * len(values)
        else:
            return None
        names.append(name)
        choices.append(values)
        weights.append(probs)
    return names, choices, weights


ENUMERATE_UP_TO = 100_000   # a finite random space this small is listed to draw from exactly what is left


def _draw_unused(space, runs, rng):
    """A config of the finite space that no run of the sweep has, drawn with the weights; None
    when every one has been run."""
    import itertools

    import numpy as np

    names, choices, weights = space
    seen = {_key(r["params"], names) for r in runs}
    if np.prod([float(len(c)) for c in choices]) > ENUMERATE_UP_TO:   # too many to list: draw until unused
        p = [np.asarray(w, dtype=float) / sum(w) for w in weights]
        for _ in range(1000):
            params = {n: c[int(rng.choice(len(c), p=q))] for n, c, q in zip(names, choices, p)}
            if _key(params, names) not in seen:
                return params
        return None
    unused, probs = [], []
    for combo in itertools.product(*(range(len(c)) for c in choices)):
        params = {n: choices[i][k] for i, (n, k) in enumerate(zip(names, combo))}
        weight = float(np.prod([weights[i][k] for i, k in enumerate(combo)]))
        if weight > 0 and _key(params, names) not in seen:
            unused.append(params)
            probs.append(weight)
    if not unused:                   # every config that can be drawn has been run
        return None
    probs = np.asarray(probs) / sum(probs)
    return unused[int(rng.choice(len(unused), p=probs))]


def _key(params, names):
    import json
    return json.dumps([params.get(n) for n in names], sort_keys=True, default=str)


def engine_config(config):
    """The sweep config as the engine sees it: `run_cap` is ours to enforce (`propose`), and
    sweeps < 0.3 (what pip picks where NumPy 1.x has no wheels) does not know the key."""
    return {k: v for k, v in config.items() if k != "run_cap"}


def _plain(value):
    """Python scalars for the engine's NumPy scalars (YAML, JSON and argv then agree everywhere)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def fixed_list(configs):
    """A proposer that hands out the given configs in order, each once."""
    return lambda runs: configs[len(runs)] if len(runs) < len(configs) else None


def runs_to_stop(config, runs, histories):
    """Run ids hyperband says to stop now."""
    if (config.get("early_terminate") or {}).get("type") != "hyperband":
        return set()
    engine_runs = [engine_run(r, histories(r["id"])) for r in runs]
    return {r.name for r in engine().stop_runs(engine_config(config), engine_runs)}


def hyperband_brackets(config) -> list[int]:
    """The epochs at which hyperband compares runs (as W&B's engine computes them), after the
    engine has accepted the settings; [] means it can never stop a run."""
    from sweeps.hyperband_stopping import hyperband_baseline_validate_and_fill
    et = hyperband_baseline_validate_and_fill(engine_config(config))["early_terminate"]
    eta = float(et["eta"])
    if not eta > 1:
        raise ValueError(f"eta must be > 1, got {et['eta']}")
    if "max_iter" in et:
        band, out = float(et["max_iter"]), []
        for _ in range(int(et["s"])):
            band /= eta
            if band < 1:
                break
            out.append(int(band))
        return sorted(out)
    min_iter = float(et["min_iter"])
    if not min_iter >= 1:
        raise ValueError(f"min_iter must be ≥ 1, got {et['min_iter']}")
    return [int(min_iter * eta ** k) for k in range(100)]   # the engine's own 100 bands (overflow raises)


def dry_run_stop(config) -> None:
    """Let the engine judge two short runs under `config`'s hyperband settings: settings it would
    crash on mid-sweep raise here instead."""
    SweepRun = engine().SweepRun
    metric = config["metric"]["name"]
    runs = [SweepRun(name=name, state="running", config={}, summary_metrics={},
                     history=[{metric: value * (1 + e)} for e in range(4)])
            for name, value in (("a", 0.1), ("b", 0.2))]
    engine().stop_runs(engine_config(config), runs)


# ---- the command line W&B's agent would build -----------------------------------------------------

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
