"""What the launcher of a run tells it, read once from the environment into a typed value.

`wandb agent` and `mlp agent` launch train.py the same way: `WANDB_RUN_ID` names the run,
`WANDB_SWEEP_PARAM_PATH` is a YAML file with the sweep's parameters for it, and `wandb agent`
also sets `WANDB_SWEEP_ID` (with `WANDB_ENTITY` / `WANDB_PROJECT`). This module is the only place
that reads those variables; everything downstream gets a `RunContext`. Every value is checked
here, before anything is written: a run id with path separators, a parameter file that is
missing, binary or not a mapping, an unknown `WANDB_MODE` — one line, exit code 2.

The parameter file holds what a sweep may sweep and nothing else: the keys `sweepable` accepts
(train.py's hyperparameters, plus `data_dir`, the one piece of plumbing a sweep may set — the
same rule `mlp.sweep.files` applies to a sweep file's parameters), and a `configuration` made of
them. Plumbing such as `store`, `save_model`, `resume` or `preset` would redirect where a run
writes or what it trains behind the sweep's back, so it is refused. The file must be a regular
file (opened without blocking: a FIFO is refused, not waited on), at most 1 MiB, and nested at
most MAX_PARAM_DEPTH deep (a parameter's value is a number, a string or a list of widths).
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from mlp.config import PARAMS, expand_configuration
from mlp.errors import UsageError

__all__ = ["RunContext", "read_sweep_params", "sweepable", "SWEEPABLE_PLUMBING"]

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PARAM_FILE_BYTES = 1 << 20
MAX_PARAM_DEPTH = 8            # the deepest real one: file → entry → configuration → a list of widths (4)
# Parameters that may appear in a sweep although they are not hyperparameters: where the data is.
SWEEPABLE_PLUMBING = ("data_dir",)


def sweepable(name) -> bool:
    """Whether a sweep may set parameter `name`: one of train.py's hyperparameters, or the
    plumbing in SWEEPABLE_PLUMBING (never the store, output files, W&B settings, a preset or a
    resume). Sweep files and the parameter file a sweep's agent writes both follow this rule."""
    param = PARAMS.get(name)
    return param is not None and (not param.plumbing or name in SWEEPABLE_PLUMBING)


@dataclass(frozen=True)
class RunContext:
    run_id: str | None = None                 # WANDB_RUN_ID: the id the launcher chose for this run
    sweep_id: str | None = None               # WANDB_SWEEP_ID: the W&B sweep this run belongs to
    entity: str | None = None                 # WANDB_ENTITY / WANDB_PROJECT: where that sweep lives
    project: str | None = None
    sweep_params: Mapping = field(default_factory=dict)   # from WANDB_SWEEP_PARAM_PATH: {name: value}
    param_path: str | None = None             # ...that file, an input no output may overwrite

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "RunContext":
        env = os.environ if environ is None else environ
        run_id = _identifier(env.get("WANDB_RUN_ID"), "WANDB_RUN_ID")
        sweep_id = _identifier(env.get("WANDB_SWEEP_ID"), "WANDB_SWEEP_ID")
        path = env.get("WANDB_SWEEP_PARAM_PATH") or None
        mode = (env.get("WANDB_MODE") or "").strip().lower()
        if mode and mode not in ("online", "offline", "disabled", "dryrun", "run"):
            raise UsageError(f"WANDB_MODE={env.get('WANDB_MODE')!r} is not a W&B mode; use online, offline or "
                             f"disabled (or unset it)")
        return cls(run_id=run_id, sweep_id=sweep_id, entity=env.get("WANDB_ENTITY") or None,
                   project=env.get("WANDB_PROJECT") or None,
                   sweep_params=read_sweep_params(path) if path else {}, param_path=path)


def _identifier(value: str | None, name: str) -> str | None:
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise UsageError(f"{name}={value[:80]!r} is not a W&B id (letters, digits, - and _, at most 64); unset it "
                         f"or fix the launcher")
    return value


def _read_regular(path: Path) -> bytes:
    """At most MAX_PARAM_FILE_BYTES + 1 bytes of a regular file; opened without blocking and
    checked on the open descriptor, so a FIFO or device is refused instead of waited on."""
    where = f"WANDB_SWEEP_PARAM_PATH={path}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UsageError(f"{where}: cannot read the sweep's parameter file ({e.strerror or e}); unset it or start "
                         f"the run from its agent") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
            raise UsageError(f"{where} is {kind}; it must be the YAML file of the sweep's parameters that the "
                             f"agent writes")
        with os.fdopen(fd, "rb") as f:
            fd = None
            return f.read(MAX_PARAM_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{where}: cannot read the sweep's parameter file ({e.strerror or e}); unset it or start "
                         f"the run from its agent") from None
    finally:
        if fd is not None:
            os.close(fd)


def _too_deep(doc, limit: int) -> bool:
    """Whether `doc` nests lists/mappings more than `limit` levels (walked without recursion)."""
    todo = [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            todo.extend((child, depth + 1) for child in children)
    return False


def read_sweep_params(path) -> dict:
    """{name: value} from a W&B sweep parameter file (`name: {value: v}` entries; W&B's own
    `wandb_version` and `_wandb` keys are skipped; a `configuration` entry, a whole configuration
    chosen by a grid over configurations, is spread into its parameters). Only what a sweep may
    sweep is accepted (`sweepable`); anything else is one line, exit code 2."""
    path = Path(path)
    where = f"WANDB_SWEEP_PARAM_PATH={path}"
    raw = _read_regular(path)
    if len(raw) > MAX_PARAM_FILE_BYTES:
        raise UsageError(f"{where} is larger than 1 MiB; it is not a sweep parameter file")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, ValueError, OverflowError):   # ValueError: a 5,000-digit int
        raise UsageError(f"{where} is not a YAML text file of sweep parameters") from None
    except RecursionError:
        raise UsageError(f"{where} is nested too deeply to be a sweep parameter file") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"{where} must hold a mapping `name: {{value: ...}}`")
    params = {}
    for key, entry in doc.items():
        if key in ("wandb_version", "_wandb"):     # W&B's own bookkeeping, not parameters
            continue
        if _too_deep(entry, MAX_PARAM_DEPTH - 1):
            raise UsageError(f"{where}: entry {str(key)[:80]!r} is nested more than {MAX_PARAM_DEPTH} levels deep; a "
                             f"sweep's parameter values are numbers, text or lists of widths")
        if not isinstance(entry, dict) or "value" not in entry:
            raise UsageError(f"{where}: entry {str(key)[:80]!r} must be `{{value: ...}}`")
        params[str(key)] = entry["value"]
    params = expand_configuration(params, where)
    for key in params:
        if not sweepable(key):
            what = "is not a train.py parameter" if key not in PARAMS else \
                "says where things go or how to start, not what is trained, and a sweep cannot set it"
            raise UsageError(f"{where}: {key[:80]!r} {what}; a sweep's parameters are train.py's hyperparameters "
                             f"(and data_dir)")
    return params
