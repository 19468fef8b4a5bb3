"""W&B's own search engine (the open-source `sweeps` package) over the runs of the store, and the
command line W&B's agent builds from a sweep's `command`.

The controller is stateless: every proposal is `sweeps.next_run` over all runs the store holds
(made inside the store's write transaction by `Store.claim_run`, so parallel agents never draw
the same grid point), and hyperband is `sweeps.stop_runs` over the same runs.

Sizes are counted, never listed. What a parameter can take (`parameter_values`) is a lazy
sequence — `range` for int_uniform, `Steps` for q_uniform — whose length is arithmetic, so an
int_uniform seed over 0..2³²−1 costs nothing until a value is drawn. The engine itself lists a
grid in full on every proposal (`sweeps.grid_search`: each value YAML-hashed, then
`list(itertools.product(...))`), so a grid is refused above `MAX_GRID_POINTS` (`grid_size`,
checked when a sweep file or a stored sweep is validated) and never reaches it. A random sweep's
finite space is listed only up to `ENUMERATE_UP_TO` configurations; beyond that, unused
configurations are drawn one parameter at a time.
"""
from __future__ import annotations

import math
import random
import sys
import zlib
from pathlib import Path

__all__ = ["engine", "engine_run", "propose", "runs_to_stop", "fixed_list", "build_command", "format_value",
           "hyperband_brackets", "dry_run_stop", "dry_run_propose", "engine_config", "finite_space", "DEFAULT_COMMAND",
           "MACROS", "ARGS_MACROS", "parameter_values", "extreme_values", "grid_size", "Steps",
           "MAX_GRID_POINTS", "ENUMERATE_UP_TO"]

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
# The macros `wandb agent` expands in a sweep's `command` (wandb/wandb_agent.py: the lists of
# sweeps.utils.create_sweep_command_args, plus env, interpreter, program and args_json_file). It
# drops any other `${…}` silently; `args_dict` is a mapping there, of which only the keys would
# reach argv, so it is no macro a command can use.
ARGS_MACROS = ("args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json",
               "args_append_hydra", "args_override_hydra")
MACROS = ("env", "interpreter", "program", "args_json_file", *ARGS_MACROS)
# W&B's engine lists and YAML-hashes a whole grid on every proposal: 10⁴ points take about 0.15 s, 10⁵ 1.5 s
MAX_GRID_POINTS = 10_000
ENUMERATE_UP_TO = 100_000    # a finite random space this small is listed to draw from exactly what is left
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


class Steps:
    """base + (offset + i)·step for i < n, each computed when asked, as the engine computes it: a
    grid's q_uniform is `np.arange(min, max, q)` (min + i·q), a random draw's round(x/q)·q is k·q.
    Its length costs nothing."""

    def __init__(self, base, offset, step, n, integer):
        self.base, self.offset, self.step, self.n, self.integer = base, offset, step, max(0, int(n)), integer

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        value = self.base + (self.offset + i) * self.step
        return int(value) if self.integer else float(value)

    def __iter__(self):
        return (self[i] for i in range(self.n))


def _hyperparameter(name, spec):
    """The engine's own reading of a parameter spec (its distribution, with defaults filled)."""
    engine()                             # imported quietly first
    from sweeps.params import HyperParameter
    return HyperParameter(str(name), spec)


def parameter_values(name, spec, method):
    """The values the search can give parameter `name` as a sequence (a list, or a lazy `range` /
    `Steps` whose length is counted, not listed), or None when they are not finitely many (a
    continuous distribution). A grid's q_uniform is `np.arange(min, max, q)`, as the engine lists
    it; a random or bayes q_uniform is every round(x/q)·q for x in [min, max]."""
    if not isinstance(spec, dict) or "parameters" in spec:
        return None
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"]) if isinstance(spec["values"], list) else None
    hp = _hyperparameter(name, spec)
    H, c = type(hp), hp.config
    if hp.type == H.INT_UNIFORM:
        return range(int(c["min"]), int(c["max"]) + 1)
    if hp.type == H.Q_UNIFORM:
        lo, hi, q = c["min"], c["max"], c["q"]
        integer = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, q))
        if method == "grid":
            return Steps(lo, 0, q, math.ceil((hi - lo) / q), integer)
        import numpy as np
        k_lo, k_hi = int(np.round(lo / q)), int(np.round(hi / q))
        return Steps(0, k_lo, q, k_hi - k_lo + 1, isinstance(q, int) and not isinstance(q, bool))
    return None


def extreme_values(name, spec) -> list:
    """The smallest and the largest value the engine can draw for a distribution, in its own
    scale and quantisation (log_uniform's exp, q rounding): its PPF at 0 and 1 (a beta, whose
    support is open, at its one-in-a-million quantiles). An int_uniform gives min and max (scipy's
    randint PPF(0) is min − 1)."""
    hp = _hyperparameter(name, spec)
    H = type(hp)
    if hp.type == H.CONSTANT:
        return [hp.config["value"]]
    if hp.type in (H.CATEGORICAL, H.CATEGORICAL_PROB):
        return list(hp.config["values"])
    if hp.type == H.INT_UNIFORM:
        return [int(hp.config["min"]), int(hp.config["max"])]
    ends = (1e-6, 1 - 1e-6) if hp.type in (H.BETA, H.Q_BETA) else (0.0, 1.0)   # a beta's ends: never drawn
    values = [_plain(hp.ppf(p)) for p in ends]
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return values or [_plain(hp.ppf(0.5))]


def grid_size(config) -> int:
    """How many points W&B's grid over `config` has (the product of each parameter's count,
    computed exactly without listing any); 0 when a parameter is not finite."""
    size = 1
    for name, spec in (config.get("parameters") or {}).items():
        values = parameter_values(name, spec, "grid")
        if values is None:
            return 0
        size *= len(values)
    return size


def finite_space(config):
    """([parameter names], [values per parameter], [weights per parameter, None = uniform]) when
    every parameter of the sweep takes finitely many values (`value`, `values` — with
    `probabilities` as weights —, `int_uniform`), else None (continuous or nested: the engine
    draws with replacement, as W&B's does). An int_uniform's values are a `range`: never listed."""
    names, choices, weights = [], [], []
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict) or "parameters" in spec:
            return None
        if "value" in spec:
            values, probs = [spec["value"]], None
        elif "values" in spec:
            values = list(spec["values"])
            probs = list(spec["probabilities"]) if spec.get("probabilities") else None
        elif spec.get("distribution") == "int_uniform":
            values, probs = range(int(spec["min"]), int(spec["max"]) + 1), None
        else:
            return None
        names.append(name)
        choices.append(values)
        weights.append(probs)
    return names, choices, weights


def _draw_unused(space, runs, rng):
    """A config of the finite space that no run of the sweep has, drawn with the weights; None
    when every one has been run. A space of at most ENUMERATE_UP_TO configurations is listed;
    a larger one is drawn from one parameter at a time until an unused configuration comes up
    (memory: the listed `values` only, never the product nor an int_uniform's range)."""
    import itertools

    import numpy as np

    names, choices, weights = space
    seen = {_key(r["params"], names) for r in runs}
    if math.prod(len(c) for c in choices) > ENUMERATE_UP_TO:   # too many to list: draw until unused
        # uniform weights as an explicit vector where one was always made (the same draws as before
        # for such spaces); a range too long for one is drawn from by index
        p = [np.asarray(w, dtype=float) / sum(w) if w is not None else
             np.full(len(c), 1.0 / len(c)) if len(c) <= ENUMERATE_UP_TO else None for c, w in zip(choices, weights)]
        for _ in range(1000):
            params = {n: c[int(rng.integers(len(c)) if q is None else rng.choice(len(c), p=q))]
                      for n, c, q in zip(names, choices, p)}
            if _key(params, names) not in seen:
                return params
        return None
    unused, probs = [], []
    for combo in itertools.product(*(range(len(c)) for c in choices)):
        params = {n: choices[i][k] for i, (n, k) in enumerate(zip(names, combo))}
        weight = float(np.prod([1.0 if weights[i] is None else weights[i][k] for i, k in enumerate(combo)]))
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


def dry_run_propose(config, proposals: int = 3) -> None:
    """Let the search propose for `config` exactly as an agent will (`propose`), with no runs and
    then with finished ones: a config the engine would crash on (grid values with probabilities,
    bayes on weighted values, …) raises here, before anything is written. The global generators
    the engine draws from are left as they were."""
    import numpy as np

    metric = (config.get("metric") or {}).get("name") or "val_accuracy"
    runs, histories = [], {}
    state = random.getstate(), np.random.get_state()
    try:
        for i in range(proposals):
            params = propose(config, runs, 0, lambda rid: histories.get(rid, []))
            if params is None:
                return
            rid = f"dry{i}"
            value = 0.5 + 0.1 * i
            histories[rid] = [{"epoch": 1, metric: value}]
            runs.append({"id": rid, "state": "finished", "summary": {metric: value}, "params": params,
                         "stopped_by": None})
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


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
