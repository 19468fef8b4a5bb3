"""What the launcher of a run tells it, read once from the environment into a typed value.

`wandb agent` and `mlp agent` launch train.py the same way: `WANDB_RUN_ID` names the run,
`WANDB_SWEEP_PARAM_PATH` is a YAML file with the sweep's parameters for it, and `wandb agent`
also sets `WANDB_SWEEP_ID` (with `WANDB_ENTITY` / `WANDB_PROJECT`). This module is the only place
that reads those variables; everything downstream gets a `RunContext`. Every value is checked
here, before anything is written: a run id with path separators, a parameter file that is
missing, binary or not a mapping, an unknown `WANDB_MODE` — one line, exit code 2.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from mlp.config import expand_configuration
from mlp.errors import UsageError

__all__ = ["RunContext", "read_sweep_params"]

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PARAM_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class RunContext:
    run_id: str | None = None                 # WANDB_RUN_ID: the id the launcher chose for this run
    sweep_id: str | None = None               # WANDB_SWEEP_ID: the W&B sweep this run belongs to
    entity: str | None = None                 # WANDB_ENTITY / WANDB_PROJECT: where that sweep lives
    project: str | None = None
    sweep_params: Mapping = field(default_factory=dict)   # from WANDB_SWEEP_PARAM_PATH: {name: value}

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
                   sweep_params=read_sweep_params(path) if path else {})


def _identifier(value: str | None, name: str) -> str | None:
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise UsageError(f"{name}={value[:80]!r} is not a W&B id (letters, digits, - and _, at most 64); unset it "
                         f"or fix the launcher")
    return value


def read_sweep_params(path) -> dict:
    """{name: value} from a W&B sweep parameter file (`name: {value: v}` entries; W&B's own
    `wandb_version` and `_wandb` keys are skipped; a `configuration` entry, a whole configuration
    chosen by a grid over configurations, is spread into its parameters)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PARAM_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"WANDB_SWEEP_PARAM_PATH={path}: cannot read the sweep's parameter file ({e.strerror or e}); "
                         f"unset it or start the run from its agent") from None
    if len(raw) > MAX_PARAM_FILE_BYTES:
        raise UsageError(f"WANDB_SWEEP_PARAM_PATH={path} is larger than 1 MiB; it is not a sweep parameter file")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise UsageError(f"WANDB_SWEEP_PARAM_PATH={path} is not a YAML text file of sweep parameters") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"WANDB_SWEEP_PARAM_PATH={path} must hold a mapping `name: {{value: ...}}`")
    params = {}
    for key, entry in doc.items():
        if key in ("wandb_version", "_wandb"):
            continue
        if not isinstance(entry, dict) or "value" not in entry:
            raise UsageError(f"WANDB_SWEEP_PARAM_PATH={path}: entry {key!r} must be `{{value: ...}}`")
        params[str(key)] = entry["value"]
    return expand_configuration(params, f"WANDB_SWEEP_PARAM_PATH={path}")
