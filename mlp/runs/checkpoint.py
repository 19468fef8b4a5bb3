"""A run's state at the end of its last epoch, so an interrupted run (Ctrl-C, or SIGTERM from a
scheduler that preempts it) continues exactly where it stopped: `train.py --resume RUN_ID`, or the
run W&B requeues under `wandb agent` after it marked itself preempting.

`take` copies, at every epoch end, everything the rest of training depends on: the network's
arrays (parameters and buffers such as batch-norm statistics), its generator (dropout), the
optimizer's state_dict, the averager's (EMA/SWA), and the fit loop's FitState (epoch, step, its
generator — shuffling and augmentation —, the history, early stopping's best). `save` writes a
snapshot only when a run is interrupted, as one .npz whose header is JSON (no pickle), atomically;
`load` reads it back with every entry checked, and `restore` puts it into a freshly built network,
optimizer and averager. With the same BLAS threads, the resumed run's numbers are bit for bit those
of a run that was never interrupted.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp.errors import UsageError
from mlp.runs.training import FitState

__all__ = ["Snapshot", "take", "save", "load", "restore", "FORMAT"]

FORMAT = "mlp-sweeps-checkpoint"
VERSION = 1


@dataclass
class Snapshot:
    net: dict               # "{layer}.{name}" -> array (Network.state_dict)
    net_rng: dict           # the network's generator state (dropout draws)
    optimizer: dict         # Optimizer.state_dict()
    averager: dict | None   # EMA/SWA state_dict, None without averaging
    fit: FitState


def take(net, optimizer, averager, fit: FitState) -> Snapshot:
    """Copies of the state at the end of `fit.epoch` (the fit loop's own FitState is fresh)."""
    best = fit.best and (fit.best[0], fit.best[1], {k: v.copy() for k, v in fit.best[2].items()})
    return Snapshot({k: v.copy() for k, v in net.state_dict().items()}, dict(net.rng.bit_generator.state),
                    optimizer.state_dict(), averager.state_dict() if averager is not None else None,
                    FitState(fit.epoch, fit.global_step, fit.rng, list(fit.history), best))


def _split(values: dict, prefix: str, arrays: dict) -> dict:
    """Arrays of `values` into `arrays` under prefix; the rest (numbers, text) returned for JSON."""
    plain = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}{key}"] = value
        else:
            plain[key] = value.item() if isinstance(value, np.generic) else value
    return plain


def save(path, snap: Snapshot, run_id: str, config: dict) -> Path:
    """Write the snapshot to `path` (atomically: a crash mid-write leaves the old file or none)."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "run_id": run_id, "config": config, "net_rng": snap.net_rng,
            "optimizer": _split(snap.optimizer, "opt/", arrays),
            "averager": None if snap.averager is None else _split(snap.averager, "avg/", arrays),
            "fit": {"epoch": snap.fit.epoch, "global_step": snap.fit.global_step, "rng": snap.fit.rng,
                    "history": snap.fit.history,
                    "best": None if snap.fit.best is None else [snap.fit.best[0], snap.fit.best[1]]}}
    _split(snap.net, "net/", arrays)
    if snap.fit.best is not None:
        _split(snap.fit.best[2], "best/", arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path) -> tuple[Snapshot, dict]:
    """(snapshot, header) of a checkpoint file; anything malformed is a one-line UsageError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise UsageError(f"checkpoint {path} is not a checkpoint written by mlp-sweeps ({str(e)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UsageError(f"checkpoint {path} is not a version-{VERSION} checkpoint of mlp-sweeps")

    def group(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    try:
        fit = meta["fit"]
        best = fit["best"] and (float(fit["best"][0]), int(fit["best"][1]), group("best/"))
        snap = Snapshot(group("net/"), meta["net_rng"], {**meta["optimizer"], **group("opt/")},
                        None if meta["averager"] is None else {**meta["averager"], **group("avg/")},
                        FitState(int(fit["epoch"]), int(fit["global_step"]), fit["rng"], list(fit["history"]), best))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise UsageError(f"checkpoint {path} is incomplete ({type(e).__name__}: {str(e)[:80]})") from None
    return snap, meta


def restore(snap: Snapshot, net, optimizer, averager, source: str = "the checkpoint") -> FitState:
    """Put the snapshot into a network, optimizer and averager built from the run's config (their
    shapes and kinds are checked); returns the FitState to continue `fit` from."""
    net.load_state_dict(snap.net, source)
    try:
        net.rng.bit_generator.state = snap.net_rng
    except (TypeError, ValueError, KeyError) as e:
        raise UsageError(f"{source} holds no usable generator state ({e})") from None
    optimizer.load_state_dict(snap.optimizer)
    if (averager is None) != (snap.averager is None):
        raise UsageError(f"{source} was written with other weight averaging than this run's")
    if averager is not None:
        averager.load_state_dict(snap.averager)
    return snap.fit
