"""Sweep files: read a W&B sweep YAML and refuse, before anything is written, every file that
could only fail later.

Checked here: the file itself (bounded size, UTF-8, safe YAML, no alias bomb), W&B's own JSON
schema, the metric (logged, never a test metric), the `program` (inside the sweep's folder), and
every parameter against the config schema (`mlp.config`): known to train.py, a hyperparameter
(not plumbing such as `store` or `save_model`), a spec mapping, each `value`/`values` and each
distribution bound valid for its type and range, a distribution that fits its type, and
hyperband settings that give at least one bracket.

The task. A sweep's task is the value of its `task` parameter (`value: autoencoder`, or `values`
with that one value); without one it is `classify`, train.py's default. The task must be a sweep
parameter because that is all a sweep file says for certain about its runs: a `--task` written
into the `command` is refused, and so is a sweep over several tasks (its runs would log different
metrics, so no metric could rank them all). The metric must be one the task logs: classify
val_accuracy, val_loss, train_accuracy, train_loss; autoencoder val_r2, val_loss, train_loss
(no accuracy). Each value of every parameter must also be valid together with the task (no
classification loss in an autoencoder sweep, no --output_activation in a classifier sweep). A
goal given for a metric must be its direction (accuracy and R² maximize, losses minimize); bayes and
hyperband need it for accuracy and R², since W&B's default goal is minimize.

The file. It must be a regular file (a FIFO, device or socket is refused before it is read, so
nothing blocks), at most 1 MiB of UTF-8 YAML.

The command. Each part is a literal or a whole macro W&B's agent expands (`engine.MACROS`: ${env},
${interpreter}, ${program}, ${args}, ${args_no_equals}, ${args_no_hyphens},
${args_no_boolean_flags}, ${args_json}, ${args_json_file}, ${args_append_hydra},
${args_override_hydra}); W&B drops any other `${…}` silently and passes a part that only holds
one literally, so both are refused. The first part is what runs, so it is not an args macro.

The size of the search. W&B's engine lists a grid in full on every proposal, so a grid of more
than `MAX_GRID_POINTS` (10,000) points — counted as the product of each parameter's count, never
listed — is refused, naming its largest parameters. `probabilities` weight random draws only:
grid and bayes (on which W&B's engine fails) refuse them. Finally the search is asked for a few
proposals exactly as an agent will ask (`engine.dry_run_propose`): whatever else the engine
cannot search fails here.

Parameters together. Each parameter gives its *representative values*: every entry of `value`
/ `values` (of a numeric parameter with more than 32 different numbers: the smallest and the
largest), every value of an `int_uniform` / `q_uniform` range that has at most 32 (so a range of
kernel sizes shows its even ones), else the range's two ends; a continuous distribution gives
the two extreme values the engine can draw, in its own scale and quantisation. Each
representative is checked alone first (a q_uniform can round outside min/max). Then, when the
representatives make at most `MAX_COMBINATIONS` (4,096) combinations, every combination is
resolved as a run would be (`mlp.config.resolve`: the task's loss, label smoothing, augmentation,
features, conv shapes, even kernels with `same` padding, …) and, for a sweep that runs on this
machine (`mlp sweep`, `mlp agent`), checked against its memory as train.py checks it before
building the network (`mlp.networks.check_memory`), and its `features` models must load with
the layer they name. A larger space is checked on every pair of
representatives of two parameters with all the others at their first values, and again with all
the others at their largest (the biggest network), or — if that is more than 4,096 checks too —
on each representative alone against those two bases. The rules grow monotonically with sizes
(more layers, wider, bigger batches and kernels: more memory, smaller feature maps), so the ends
stand for a range; only a clash of three or more parameters in a space of more than 4,096
combinations can still reach the runs, and an agent whose runs all fail before their first epoch
exits 1.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import stat
from pathlib import Path

import yaml

from mlp import config as C
from mlp.errors import UsageError
from mlp.networks import check_memory
from mlp.runs.context import SWEEPABLE_PLUMBING, sweepable
from mlp.runs.features import load_frozen
from mlp.sweep.engine import (ARGS_MACROS, MACROS, MAX_GRID_POINTS, dry_run_propose, dry_run_stop, engine,
                              engine_config, extreme_values, grid_size, hyperband_brackets, parameter_values)

__all__ = ["load_sweep_file", "validate_sweep_config", "check_program", "METRICS", "MAX_FILE_BYTES", "sweep_task",
           "TASK_METRICS", "task_of", "objective", "MAX_COMBINATIONS", "ALL_VALUES_UP_TO", "representatives"]

METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "val_r2")
TASK_METRICS = {"classify": ("val_accuracy", "val_loss", "train_accuracy", "train_loss"),
                "autoencoder": ("val_r2", "val_loss", "train_loss")}
GOALS = {"val_accuracy": "maximize", "train_accuracy": "maximize", "val_r2": "maximize",
         "val_loss": "minimize", "train_loss": "minimize"}
MAX_FILE_BYTES = 1 << 20          # a sweep file is a few hundred bytes; this bounds what is read
MAX_NODES = 100_000               # YAML nodes after alias expansion (an alias bomb is refused)
# What W&B's grid search takes (sweeps.grid_search: every other distribution raises there).
GRID_DISTRIBUTIONS = ("int_uniform", "q_uniform", "categorical", "constant")
MAX_COMBINATIONS = 4096           # combinations of representative values checked together (see the docstring)
ALL_VALUES_UP_TO = 32             # a range or numeric list this short gives every value, else its two ends
UNBOUNDED = ("normal", "q_normal", "log_normal", "q_log_normal")


def _read_bounded(path: Path) -> str:
    """The file's text: a regular file (opened without blocking, so a FIFO cannot hang us, and
    checked on the open descriptor), at most MAX_FILE_BYTES, UTF-8, no NUL."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise UsageError(f"sweep file {path} is a directory; give the path of a .yaml file") from None
    except OSError as e:
        raise UsageError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UsageError(f"sweep file {path} is a directory; give the path of a .yaml file")
        if not stat.S_ISREG(mode):
            raise UsageError(f"sweep file {path} is not a regular file (a FIFO, device or socket); give the path of "
                             f"a .yaml file")
        with os.fdopen(fd, "rb") as f:
            fd = None
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"sweep file {path} is larger than {MAX_FILE_BYTES // 1024} KiB; a sweep file is a short "
                         f"YAML mapping (method, metric, parameters)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"sweep file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8 YAML") from None
    if "\x00" in text:
        raise UsageError(f"sweep file {path} holds NUL bytes; it is not a YAML text file")
    return text


def _count_nodes(obj, budget: list) -> None:
    """Walk the loaded YAML counting nodes (aliases expand here); stop once over MAX_NODES."""
    budget[0] -= 1
    if budget[0] < 0:
        raise UsageError(f"the sweep file expands to more than {MAX_NODES} YAML nodes (an alias bomb?); a sweep "
                         f"file is a short mapping")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _count_nodes(k, budget)
            _count_nodes(v, budget)
    elif isinstance(obj, list):
        for v in obj:
            _count_nodes(v, budget)


class _SafeUniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only), except that a key given twice in one mapping is an
    error: plain YAML keeps the last one, so a second `learning_rate:` would silently replace the
    first."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()                        # the mapping's own keys (one may override a merged `<<` one)
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:               # an unhashable key: construct_mapping reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"key {str(key)[:80]!r} is given twice",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_sweep_file(path, machine_memory: bool = True) -> tuple[dict, str]:
    """Read and validate a sweep YAML to run on this machine; returns (config dict, YAML text).
    Bad files -> UsageError. `machine_memory`: also refuse networks this machine cannot train."""
    path = Path(path)
    text = _read_bounded(path)
    try:
        config = yaml.load(text, Loader=_SafeUniqueKeys)     # safe: SafeLoader's plain data only
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"sweep file {path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise UsageError(f"sweep file {path} is nested too deeply to be a sweep config") from None
    except (ValueError, OverflowError) as e:    # a scalar YAML cannot build: a 5,000-digit int, a 13th month
        what = "an integer of thousands of digits" if "digits" in str(e) else str(e).splitlines()[0][:200]
        raise UsageError(f"sweep file {path} holds a value YAML cannot read: {what}") from None
    validate_sweep_config(config, str(path), machine_memory=machine_memory)
    return config, text


def validate_sweep_config(config, source: str = "sweep config", machine_memory: bool = False) -> None:
    """W&B's JSON schema, then what W&B checks only server-side or not at all (see the module
    docstring). `machine_memory`: the sweep runs here, so every network it can build must fit
    this machine's memory."""
    try:
        _count_nodes(config, [MAX_NODES])
    except RecursionError:
        raise UsageError(f"{source} is nested too deeply to be a sweep config") from None
    if not isinstance(config, dict):
        raise UsageError(f"{source} must be a YAML mapping with method, metric and parameters")
    for name, spec in (config.get("parameters") or {}).items() if isinstance(config.get("parameters"), dict) else ():
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: parameter {name!r} needs a mapping such as `{name}: {{value: {spec!r}}}` or "
                             f"`{{values: [...]}}`, not a bare {type(spec).__name__}")
    try:
        violations = engine().schema_violations_from_proposed_config(engine_config(config))
    except Exception as e:  # the engine raises for shapes its schema cannot even express
        raise UsageError(f"{source} is not a valid W&B sweep config: {str(e)[:300]}") from None
    if violations:
        first = str(violations[0]).replace("Additional properties are not allowed", "unknown top-level key")
        raise UsageError(f"{source} is not a valid W&B sweep config: {first[:300]}")
    params = config.get("parameters") or {}
    if not isinstance(params, dict) or not params:
        raise UsageError(f"{source} has no parameters to search")
    _check_command(config, source)
    task = sweep_task(config, source)
    _check_metric(config, source)
    _check_task_metric(config, task, source)
    for name, spec in params.items():
        if name == C.CONFIGURATION:
            _check_configuration(config, spec, source)
        else:
            _check_parameter(config["method"], str(name), spec, source)
    _check_with_task(config, task, source)
    if "run_cap" in config:
        cap = config["run_cap"]
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise UsageError(f"{source}: run_cap must be a whole number ≥ 1; got {cap!r}")
    _check_early_terminate(config, source)
    _check_grid_size(config, source)
    _check_together(config, source, machine_memory)
    try:
        dry_run_propose(engine_config(config))
    except UsageError:
        raise
    except Exception as e:  # whatever W&B's engine raises on a config its schema let through
        raise UsageError(f"{source}: W&B's search engine cannot propose runs for this config "
                         f"({type(e).__name__}: {str(e)[:200]})") from None


def _check_command(config: dict, source: str) -> None:
    """A list of strings, each a literal or one whole macro W&B's agent expands, starting with
    what runs (see the module docstring)."""
    command = config.get("command")
    if command is None:
        return
    example = "[\"${env}\", \"${interpreter}\", \"${program}\", \"${args}\"]"
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise UsageError(f"{source}: command must be a list of strings such as {example}")
    known = ", ".join(f"${{{m}}}" for m in MACROS)
    for part in command:
        if "${" not in part:
            continue
        name = part[2:-1] if part.startswith("${") and part.endswith("}") else None
        if name is None:
            raise UsageError(f"{source}: command part {part[:80]!r} holds a macro inside other text; W&B's agent "
                             f"expands a macro only as a whole part (one of {known})")
        if name not in MACROS:
            raise UsageError(f"{source}: command part {part[:80]!r} is not a macro W&B's agent expands (it would "
                             f"silently drop it); use {known}")
    if command and (not command[0].strip() or command[0] in (f"${{{m}}}" for m in (*ARGS_MACROS, "args_json_file"))):
        raise UsageError(f"{source}: command starts with {command[0]!r}, but its first part is the program to run; "
                         f"start it with ${{env}} ${{interpreter}} ${{program}}, e.g. {example}")


def _count_text(n: int) -> str:
    return f"{n:,}" if n < 10 ** 12 else f"about 10^{len(str(n)) - 1}"


def _check_grid_size(config: dict, source: str) -> None:
    """A grid W&B's engine can list: at most MAX_GRID_POINTS points, counted without listing."""
    if config.get("method") != "grid":
        return
    try:
        size = grid_size(config)
        counts = sorted(((len(parameter_values(n, spec, "grid")), str(n)) for n, spec in config["parameters"].items()),
                        reverse=True)
    except Exception as e:  # a spec the schema let through but the engine cannot read
        raise UsageError(f"{source}: W&B's engine cannot read this grid ({type(e).__name__}: {str(e)[:200]})") from None
    if size <= MAX_GRID_POINTS:
        return
    counts = [(k, name) for k, name in counts if k > 1]
    shown = " × ".join(f"{name} ({_count_text(k)})" for k, name in counts[:6]) + (" × …" if len(counts) > 6 else "")
    raise UsageError(f"{source}: a grid over {shown} has {_count_text(size)} points; W&B's engine lists every point "
                     f"on each proposal, so a grid may have at most {MAX_GRID_POINTS:,}: give fewer values, or use "
                     f"method random")


def _check_metric(config: dict, source: str) -> None:
    metric_spec = config.get("metric") or {}
    metric = metric_spec.get("name") if isinstance(metric_spec, dict) else None
    if config["method"] == "bayes" or "early_terminate" in config:
        if not metric:
            raise UsageError(f"{source}: method bayes and early_terminate need `metric: {{name: val_accuracy, goal: "
                             f"maximize}}`")
    if metric and str(metric).startswith("test_"):
        raise UsageError(f"{source} optimises {metric}: selecting on the test set is not allowed; use val_accuracy "
                         f"(val_r2 for an autoencoder)")
    if metric and metric not in METRICS:
        raise UsageError(f"{source}: metric {metric!r} is never logged; choose one of {', '.join(METRICS)}")
    if metric and not metric_spec.get("goal") and GOALS.get(metric) == "maximize" and \
            (config["method"] == "bayes" or "early_terminate" in config):
        raise UsageError(f"{source}: metric {metric} has no goal, and W&B's default goal is minimize: bayes and "
                         f"hyperband would look for the worst runs; add goal: maximize")


def sweep_task(config: dict, source: str = "sweep config") -> str:
    """The task every run of this sweep trains (see the module docstring); UsageError if the
    file leaves it unclear."""
    for part in config.get("command") or ():
        if isinstance(part, str) and (part == "--task" or part.startswith("--task=")):
            raise UsageError(f"{source}: the command sets --task; give it as a parameter instead "
                             f"(`task: {{value: autoencoder}}`), so the sweep's metric can be checked against it")
    spec = (config.get("parameters") or {}).get("task")
    if spec is None:
        # a grid over whole configurations (`mlp rerun`) carries the task in each configuration
        bundle = (config.get("parameters") or {}).get(C.CONFIGURATION)
        entries = (bundle.get("values") or [bundle.get("value")]) if isinstance(bundle, dict) else []
        values = sorted({str(e.get("task", "classify")) for e in entries if isinstance(e, dict)}) or ["classify"]
    elif isinstance(spec, dict) and "values" in spec and isinstance(spec["values"], list):
        values = spec["values"]
    elif isinstance(spec, dict) and "value" in spec:
        values = [spec["value"]]
    else:
        raise UsageError(f"{source}: parameter 'task' takes `value` (classify or autoencoder), not a distribution")
    tasks = set()
    for value in values:
        try:
            tasks.add(C.parse_value("task", value))
        except UsageError as e:
            raise UsageError(f"{source}: parameter 'task': {str(e).split(': ', 1)[-1]}") from None
    if len(tasks) != 1:
        raise UsageError(f"{source}: a sweep trains one task; it lists {', '.join(sorted(tasks))} (their runs log "
                         f"different metrics, so none could rank them all); make one sweep per task")
    return tasks.pop()


def task_of(config: dict) -> str:
    """`sweep_task`, read leniently: `classify` when the config leaves the task unclear (a sweep
    seen through W&B may be loosely described)."""
    try:
        return sweep_task(config)
    except UsageError:
        return "classify"


def objective(config: dict) -> tuple[str, str]:
    """(metric, goal) the sweep optimises: its `metric`, else its task's validation metric
    (val_accuracy; an autoencoder's val_r2). A metric without a goal (only grid and random
    sweeps may leave it out) goes its own way: accuracy and R² up, losses down."""
    spec = config.get("metric") or {}
    name = spec.get("name") or TASK_METRICS[task_of(config)][0]
    return name, spec.get("goal") or GOALS.get(name, "maximize")


def _check_task_metric(config: dict, task: str, source: str) -> None:
    metric_spec = config.get("metric") or {}
    metric = metric_spec.get("name") if isinstance(metric_spec, dict) else None
    if not metric:
        return
    if metric not in TASK_METRICS[task]:
        logged = ", ".join(TASK_METRICS[task])
        why = "an autoencoder logs no accuracy" if task == "autoencoder" else "val_r2 is logged by --task autoencoder"
        raise UsageError(f"{source}: metric {metric!r} does not apply to task {task} ({why}); choose one of {logged}")
    goal = metric_spec.get("goal")
    if goal is not None and goal != GOALS[metric]:
        raise UsageError(f"{source}: metric {metric} with goal {goal!r} would search for the worst runs; use goal: "
                         f"{GOALS[metric]}")


def _check_with_task(config: dict, task: str, source: str) -> None:
    """Every value of every parameter must be valid together with the sweep's task."""
    for name, spec in (config.get("parameters") or {}).items():
        if name == "task" or not isinstance(spec, dict):
            continue
        values = spec["values"] if "values" in spec else [spec["value"]] if "value" in spec else []
        for value in values:
            entry = dict(value) if name == C.CONFIGURATION and isinstance(value, dict) else {name: value}
            for key in SWEEPABLE_PLUMBING:
                entry.pop(key, None)
            try:
                C.resolve({"task": task, **entry})
            except UsageError as e:
                raise UsageError(f"{source}: parameter {name!r}: value {value!r} does not fit task {task}: {e}") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _distinct(values) -> list:
    """`values` without repeats (compared as JSON), in order."""
    seen, out = set(), []
    for value in values:
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def representatives(method: str, name: str, spec) -> list:
    """The values of a parameter that stand for all it can take when parameters are checked
    together (see the module docstring): listed values (a long numeric list: its ends), every
    value of a short range, else a range's ends or a distribution's extreme draws."""
    values = parameter_values(name, spec, method)
    if values is not None and ("value" in spec or "values" in spec):
        values = _distinct(values)
        if len(values) > ALL_VALUES_UP_TO and all(_is_number(v) for v in values):
            return [min(values), max(values)]
        return values
    if values is not None:                  # a range: counted, listed only when short
        return list(values) if len(values) <= ALL_VALUES_UP_TO else [values[0], values[-1]]
    return _distinct(extreme_values(name, spec))


def _size(value) -> float:
    """How big a value makes a network, roughly, to pick each parameter's largest value."""
    if _is_number(value) or isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)):
        return float(sum(v for v in value if _is_number(v))) + len(value) * 1e-6
    return 0.0


def _check_together(config: dict, source: str, machine_memory: bool) -> None:
    """Combinations of the parameters' representative values, resolved as runs would be (and
    sized against this machine's memory when it runs them); see the module docstring."""
    method = config["method"]
    names, reps = [], []
    for name, spec in config["parameters"].items():
        if name in SWEEPABLE_PLUMBING:
            continue
        try:
            values = representatives(method, name, spec)
        except Exception as e:  # a spec the schema let through but the engine cannot read
            raise UsageError(f"{source}: parameter {name!r}: W&B's engine cannot read it ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
        if name != C.CONFIGURATION:
            for value in values:
                _check_value(name, value, f"{source}: parameter {name!r} (a value the search can draw)")
        names.append(name)
        reps.append(values)
    sizes = [len(r) for r in reps]
    if math.prod(sizes) <= MAX_COMBINATIONS:
        combos = itertools.product(*(range(k) for k in sizes))
    else:
        combos = _cover(reps)
    frozen_checked: set = set()
    for combo in combos:
        values = {}
        for name, options, i in zip(names, reps, combo):
            value = options[i]
            if name == C.CONFIGURATION:
                values.update({k: v for k, v in value.items() if k not in SWEEPABLE_PLUMBING})
            else:
                values[name] = value
        try:
            resolved = C.resolve(values)
            if machine_memory:
                check_memory(resolved)
                _check_features_model(resolved["features"], frozen_checked)
        except UsageError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            shown = shown if len(shown) <= 240 else shown[:239] + "…"
            raise UsageError(f"{source}: runs with {shown} would fail: {e}") from None


def _check_features_model(text, checked: set) -> None:
    """A sweep that runs here must name a features model that loads and has the layer (each value
    once): else every run would fail at its start."""
    if not text or text in checked:
        return
    checked.add(text)
    load_frozen(text)


def _cover(reps: list) -> list:
    """Index tuples for a space too large to check whole: every pair of representatives of two
    parameters on two bases (all others at their first values; all at their largest), or, when
    that is more than MAX_COMBINATIONS checks, each representative alone on those bases."""
    first = tuple(0 for _ in reps)
    largest = tuple(max(range(len(r)), key=lambda i, r=r: _size(r[i])) for r in reps)
    sizes = [len(r) for r in reps]
    pairs = sum(a * b for i, a in enumerate(sizes) for b in sizes[i + 1:])
    out, seen = [], set()

    def add(combo):
        if combo not in seen:
            seen.add(combo)
            out.append(combo)

    for base in (first, largest):
        add(base)
        if 2 * pairs <= MAX_COMBINATIONS:
            for i, j in itertools.combinations(range(len(reps)), 2):
                for a in range(sizes[i]):
                    for b in range(sizes[j]):
                        combo = list(base)
                        combo[i], combo[j] = a, b
                        add(tuple(combo))
        else:
            for i in range(len(reps)):
                for a in range(sizes[i]):
                    combo = list(base)
                    combo[i] = a
                    add(tuple(combo))
    return out


def _check_parameter(method: str, name: str, spec, source: str) -> None:
    param = C.PARAMS.get(name)
    if param is None:
        raise UsageError(f"{source}: parameter {name!r} is not a train.py flag; see `python train.py --help`")
    if not sweepable(name):
        raise UsageError(f"{source}: parameter {name!r} says where things go, not what is trained; it cannot be "
                         f"swept (set it on the command line or in the environment instead)")
    if not isinstance(spec, dict):
        raise UsageError(f"{source}: parameter {name!r} needs a mapping such as `{name}: {{value: {spec!r}}}` or "
                         f"`{{values: [...]}}`, not a bare {type(spec).__name__}")
    if "parameters" in spec:
        raise UsageError(f"{source}: parameter {name!r} has nested parameters; train.py flags are flat values")
    where = f"{source}: parameter {name!r}"
    if "probabilities" in spec and method != "random":
        why = "a grid runs every value once" if method == "grid" else f"W&B's {method} search fails on them"
        raise UsageError(f"{where}: `probabilities` weight random draws only ({why}); remove them or use method "
                         f"random")
    values = spec["values"] if "values" in spec else [spec["value"]] if "value" in spec else None
    if values is not None:
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}: `values` must be a non-empty list")
        for value in values:
            _check_value(name, value, where)
        return
    distribution = spec.get("distribution") or ("int_uniform" if isinstance(spec.get("min"), int)
                                                and isinstance(spec.get("max"), int) else "uniform")
    if method == "grid" and distribution not in GRID_DISTRIBUTIONS:
        raise UsageError(f"{where}: grid search needs `values` (or `value`, int_uniform, q_uniform) for "
                         f"{name!r}, not a {distribution} distribution; use method random or bayes")
    if param.kind not in ("int", "float"):
        raise UsageError(f"{where}: a {param.kind} parameter takes `value` or `values`, not a {distribution} "
                         f"distribution")
    if distribution in UNBOUNDED and (param.low is not None or param.high is not None):
        raise UsageError(f"{where}: a {distribution} distribution can draw any number, but {name} must be "
                         f"{param.range_text()}; use uniform, log_uniform_values or int_uniform with min/max")
    if param.kind == "int" and distribution not in ("int_uniform", "q_uniform", "q_log_uniform", "q_log_uniform_values"):
        raise UsageError(f"{where}: {name} is a whole number; use int_uniform (or q_uniform with an integer q), "
                         f"not {distribution}")
    if param.kind == "int" and distribution.startswith("q_") and not float(spec.get("q", 1.0)).is_integer():
        raise UsageError(f"{where}: {name} is a whole number; q must be an integer, got {spec.get('q')!r}")
    for bound in ("min", "max"):
        if bound in spec:
            value = spec[bound]
            if distribution in ("log_uniform", "q_log_uniform"):   # W&B: min/max are natural logs here
                try:
                    value = math.exp(float(value))
                except (TypeError, ValueError, OverflowError):
                    raise UsageError(f"{where}: {bound} {spec[bound]!r} of log_uniform is the natural log of the "
                                     f"value and must be a moderate number") from None
                if param.kind == "int":
                    value = round(value)
            _check_value(name, value, f"{where} ({bound})")
    if "min" in spec and "max" in spec:
        try:
            if not float(spec["min"]) < float(spec["max"]):
                raise UsageError(f"{where}: min {spec['min']!r} must be below max {spec['max']!r}")
        except (TypeError, ValueError):
            raise UsageError(f"{where}: min and max must be numbers") from None


def _check_configuration(config: dict, spec, source: str) -> None:
    """The `configuration` parameter (a grid over whole configurations): `value` or `values`, each
    a mapping of hyperparameters with valid values, none also a parameter of its own; and train.py
    gets it from W&B's parameter file, so the command passes no `${args}` (W&B would write the
    mapping into argv as Python text)."""
    where = f"{source}: parameter {C.CONFIGURATION!r}"
    values = spec.get("values") if isinstance(spec, dict) and "values" in spec else \
        [spec["value"]] if isinstance(spec, dict) and "value" in spec else None
    if not isinstance(values, list) or not values:
        raise UsageError(f"{where} needs `values`: a list of mappings such as {{learning_rate: 0.001, optimizer: "
                         f"adam}}, one per configuration")
    others = set(config.get("parameters") or {}) - {C.CONFIGURATION}
    for entry in values:
        if not isinstance(entry, dict) or not entry:
            raise UsageError(f"{where}: each value must be a non-empty mapping of parameters, not {entry!r}")
        for name, value in entry.items():
            param = C.PARAMS.get(name)
            if param is None or not sweepable(name):
                raise UsageError(f"{where}: {name!r} is not a hyperparameter train.py takes")
            if name in others:
                raise UsageError(f"{where}: {name!r} is also a parameter of its own; give it in one place")
            _check_value(name, value, where)
    macros = [part for part in config.get("command") or ["${args}"] if str(part).startswith("${args")]
    if macros:
        raise UsageError(f"{where}: the command passes {macros[0]}, which cannot carry a configuration; leave the "
                         f"args macros out (train.py reads the sweep's values from W&B's parameter file)")


def _check_value(name: str, value, where: str) -> None:
    try:
        C.parse_value(name, value)
    except UsageError as e:
        reason = str(e).split(": ", 1)[-1]
        raise UsageError(f"{where}: value {value!r} is rejected by train.py ({reason})") from None


def _check_early_terminate(config: dict, source: str) -> None:
    et = config.get("early_terminate")
    if not et:
        return
    if et.get("type") != "hyperband":
        raise UsageError(f"{source}: early_terminate type {et.get('type')!r} is not supported; use hyperband")
    try:
        brackets = hyperband_brackets(config)
        dry_run_stop(config)
    except Exception as e:  # the engine raises many types (ValueError, IndexError, OverflowError, jsonschema's)
        raise UsageError(f"{source}: early_terminate has hyperband settings the engine cannot use ({e}); give "
                         f"min_iter (≥ 1) and eta (≥ 2), or max_iter, s and eta") from None
    if not brackets:
        raise UsageError(f"{source}: early_terminate's hyperband settings give no bracket of at least one epoch, so "
                         f"no run could ever be stopped; use e.g. min_iter: 3, eta: 2")


def check_program(config: dict, workdir: Path, path) -> Path:
    """The sweep's `program` as a file inside `workdir` (W&B runs it from there); UsageError otherwise."""
    program = config.get("program", "train.py")
    if not isinstance(program, str) or not program:
        raise UsageError(f"{path}: program must be the path of a Python file, e.g. train.py")
    candidate = (workdir / program).resolve()
    try:
        candidate.relative_to(workdir.resolve())
    except ValueError:
        raise UsageError(f"program {program!r} of {path} is outside the sweep's folder {workdir}; W&B runs the "
                         f"program from the folder the sweep is started in") from None
    if not candidate.is_file():
        raise UsageError(f"program {program!r} of {path} is not in {workdir}; run `mlp sweep` from the folder that "
                         f"holds it")
    return candidate
