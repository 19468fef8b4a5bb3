"""What goes into and comes out of the store besides rows: typed records (a rerun's plan, a retry),
run and sweep ids, the files kept beside the store (models, checkpoints), and the JSON text of its
JSON columns.

JSON convention for non-finite floats: strict JSON has no NaN or infinity, but a diverged run's
loss is NaN. The store writes ``float('nan')``, ``inf`` and ``-inf`` as the JSON *strings*
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (so the stored text stays valid JSON that SQLite's
``json_extract`` and other tools can read) and decodes exactly those three strings back to floats.
Consequence: a config value that genuinely is the string ``"NaN"`` comes back as a float NaN.
Tuples come back as lists; NumPy scalars and arrays are stored as their ``.tolist()`` value.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shlex
import string
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STORE", "default_store_path", "model_path_for", "checkpoint_path_for", "Retry", "RerunPlan",
           "new_id", "encode_json", "decode_json"]

DEFAULT_STORE = "mlp-runs.sqlite"
ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 8


def default_store_path() -> str:
    """The store used when no path is given: ``$MLP_STORE`` or ``./mlp-runs.sqlite``."""
    return os.environ.get("MLP_STORE") or DEFAULT_STORE


def model_path_for(store_path: str | os.PathLike, sweep_id: str, run_id: str) -> Path:
    """Where a sweep's run keeps its model: ``mlp-models/SWEEP/RUN.npz`` beside the store."""
    return Path(store_path).resolve().parent / "mlp-models" / sweep_id / f"{run_id}.npz"


def checkpoint_path_for(store_path: str | os.PathLike, run_id: str) -> Path:
    """Where an interrupted run keeps its checkpoint: ``mlp-checkpoints/RUN.npz`` beside the store."""
    return Path(store_path).resolve().parent / "mlp-checkpoints" / f"{run_id}.npz"


@dataclass(frozen=True)
class Retry:
    """A proposal that runs a failed run's parameters again (`mlp agent --retry-failed`)."""

    run_id: str
    params: dict


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun sweep (`mlp rerun`) runs: the parent's top configs, on another dataset, in order."""

    parent: str
    source_runs: list = field(default_factory=list)   # run ids of the parent, best first
    configs: list = field(default_factory=list)       # one full config per source run
    dataset: str = "mnist"
    epochs: int | None = None
    top: int = 0

    @classmethod
    def from_json(cls, value: dict | None) -> "RerunPlan | None":
        if not value:
            return None
        return cls(**{k: value.get(k) for k in ("parent", "source_runs", "configs", "dataset", "epochs", "top")
                      if k in value})

    def command(self) -> str:
        """The `mlp rerun` command that made this plan, with the options it was given: --top,
        --dataset, and --epochs / --data_dir when they were set (the data folder as the plan's
        configs hold it)."""
        argv = ["mlp", "rerun", self.parent, "--top", str(self.top or len(self.source_runs)), "--dataset", self.dataset]
        if self.epochs is not None:
            argv += ["--epochs", str(self.epochs)]
        data_dirs = {c.get("data_dir") for c in self.configs or []}
        if len(data_dirs) == 1 and None not in data_dirs:
            argv += ["--data_dir", data_dirs.pop()]
        return shlex.join(argv)


def new_id() -> str:
    """A random 8-character lowercase alphanumeric id (the shape W&B uses for runs and sweeps).

    Drawn from ``secrets`` (the OS entropy pool), so forked agents never repeat each other.
    """
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


_NONFINITE_OUT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_NONFINITE_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _to_jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):                       # includes numpy.float64
        if math.isfinite(obj):
            return float(obj)
        return _NONFINITE_OUT[repr(float(obj))]
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = key.item() if hasattr(key, "item") else str(key)
            out[key] = _to_jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(asdict(obj))
    if hasattr(obj, "tolist"):                       # numpy arrays and scalars
        return _to_jsonable(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def _from_jsonable(obj: Any) -> Any:
    if isinstance(obj, str):
        return _NONFINITE_IN.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    return obj


def encode_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text for ``obj``; NaN/inf become "NaN"/"Infinity"/"-Infinity" (so the output
    of `--json` commands is valid JSON whatever a config or a summary holds)."""
    if indent is None:
        return json.dumps(_to_jsonable(obj), allow_nan=False, separators=(",", ":"))
    return json.dumps(_to_jsonable(obj), allow_nan=False, indent=indent)


def decode_json(text: str | None, default: Any = None) -> Any:
    """Inverse of :func:`encode_json`; ``None``/empty text gives ``default``."""
    if not text:
        return default
    return _from_jsonable(json.loads(text))


def _one_line(text: Any) -> str | None:
    if text is None:
        return None
    line = " ".join(str(text).split())
    return line[:2000]
