"""What goes into and comes out of the store besides rows: typed records (a rerun's plan, a retry),
run and sweep ids, the files kept beside the store (models, checkpoints), and the JSON text of its
JSON columns.

JSON convention for non-finite floats: strict JSON has no NaN or infinity, but a diverged run's
loss is NaN. The store writes ``float('nan')``, ``inf`` and ``-inf`` as the JSON *strings*
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (so the stored text stays valid JSON that SQLite's
``json_extract`` and other tools can read) and decodes exactly those three strings back to floats.
Consequence: a config value that genuinely is the string ``"NaN"`` comes back as a float NaN.
Tuples come back as lists; NumPy scalars and arrays are stored as their ``.tolist()`` value.

Reading back is strict (a store can be damaged: edited by hand, written by another program, hit by
a failing disk): `parse_json` takes only JSON text nested at most `MAX_JSON_DEPTH` deep and says in
one line what is wrong otherwise, and a value that is not what its column holds is a `DamagedRow`
(table, column, row), which the connection reports as a `StoreError` naming the store.
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

from mlp.errors import UsageError

__all__ = ["DEFAULT_STORE", "default_store_path", "model_path_for", "rescue_path_for", "checkpoint_path_for", "Retry",
           "RerunPlan", "new_id", "encode_json", "decode_json", "parse_json", "describe_value", "DamagedRow",
           "MAX_JSON_DEPTH"]

DEFAULT_STORE = "mlp-runs.sqlite"
ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 8
MAX_JSON_DEPTH = 64          # nesting of a stored JSON value; what the store writes stays under 10


def default_store_path() -> str:
    """The store used when no path is given: ``$MLP_STORE`` or ``./mlp-runs.sqlite``."""
    value = os.environ.get("MLP_STORE")
    if value is not None and not value.strip():
        raise UsageError("MLP_STORE is set but empty; give it a store path, or unset it")
    return value or DEFAULT_STORE


def model_path_for(store_path: str | os.PathLike, sweep_id: str, run_id: str) -> Path:
    """Where a sweep's run keeps its model: ``mlp-models/SWEEP/RUN.npz`` beside the store."""
    return Path(store_path).resolve().parent / "mlp-models" / sweep_id / f"{run_id}.npz"


def rescue_path_for(store_path: str | os.PathLike, run_id: str) -> Path:
    """Where a run keeps a model it could not write to --save_model: ``mlp-models/unsaved/RUN.npz``
    beside the store (sweep ids are 8 characters, so no sweep's folder is called that)."""
    return Path(store_path).resolve().parent / "mlp-models" / "unsaved" / f"{run_id}.npz"


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


_PLAIN = (int, float, bool, type(None))      # what json.loads gives that comes back as it is


def _from_jsonable(obj: Any, depth: int = MAX_JSON_DEPTH) -> Any:
    if isinstance(obj, str):
        return _NONFINITE_IN.get(obj, obj)
    if isinstance(obj, (dict, list)):
        if depth <= 0:
            raise ValueError(f"is JSON nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(obj, dict):
            return {k: v if type(v) in _PLAIN else _from_jsonable(v, depth - 1) for k, v in obj.items()}
        return [v if type(v) in _PLAIN else _from_jsonable(v, depth - 1) for v in obj]
    return obj


def encode_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text for ``obj``; NaN/inf become "NaN"/"Infinity"/"-Infinity" (so the output
    of `--json` commands is valid JSON whatever a config or a summary holds)."""
    if indent is None:
        return json.dumps(_to_jsonable(obj), allow_nan=False, separators=(",", ":"))
    return json.dumps(_to_jsonable(obj), allow_nan=False, indent=indent)


def decode_json(text: str | None, default: Any = None) -> Any:
    """Inverse of :func:`encode_json`; ``None``/empty text gives ``default``; anything else that is
    not JSON text (see `parse_json`) raises ValueError."""
    if not text:
        return default
    return parse_json(text)


def parse_json(text: Any) -> Any:
    """The value of JSON text read from the store, NaN/inf restored (the inverse of `encode_json`).
    ValueError, its message saying what is wrong (e.g. "is not valid JSON (Expecting value: line 1
    column 1 (char 0))"), unless `text` is a string of JSON nested at most MAX_JSON_DEPTH deep:
    deeper nesting would exhaust the recursion of everything that walks the value later."""
    if not isinstance(text, str):
        raise ValueError(f"is {describe_value(text)}, not JSON text")
    try:
        value = json.loads(text)
    except RecursionError:          # json's own limit (about 1000 levels)
        raise ValueError(f"is JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as e:         # json.JSONDecodeError, an integer of over 4300 digits
        raise ValueError(f"is not valid JSON ({_one_line(e)[:120]})") from None
    return _from_jsonable(value)


def describe_value(value: Any) -> str:
    """A value read from SQLite or decoded from JSON, for a message: its kind and (short) content."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"a {len(value)}-byte BLOB"
    if isinstance(value, bool):
        return f"the JSON boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        shown = repr(value)
        return f"the number {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON list"
    return f"a {type(value).__name__}"


class DamagedRow(ValueError):
    """A value read from the store is not what its column holds: ``table``, ``column``, the row
    (``where``, e.g. "run 'ab12cd34'") and what is wrong. The connection turns it into a
    `StoreError` that names the store and what to do."""

    def __init__(self, table: str, column: str, where: str, problem: str):
        self.table, self.column, self.where, self.problem = table, column, where, problem
        super().__init__(f"{table}.{column} of {where} {problem}")


def _one_line(text: Any) -> str | None:
    if text is None:
        return None
    line = " ".join(str(text).split())
    return line[:2000]
