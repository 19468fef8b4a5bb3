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

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp.core import npz
from mlp.errors import UsageError
from mlp.runs.training import FitState

__all__ = ["Snapshot", "take", "save", "load", "restore", "data_identity", "check_same_data", "FORMAT"]

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


def save(path, snap: Snapshot, run_id: str, config: dict, data: dict | None = None) -> Path:
    """Write the snapshot to `path` (atomically: a crash mid-write leaves the old file or none).
    `data`: what identifies the data it was trained on (`data_identity`), checked on resume."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "run_id": run_id, "config": config, "data": data,
            "net_rng": snap.net_rng, "optimizer": _split(snap.optimizer, "opt/", arrays),
            "averager": None if snap.averager is None else _split(snap.averager, "avg/", arrays),
            "fit": {"epoch": snap.fit.epoch, "global_step": snap.fit.global_step, "rng": snap.fit.rng,
                    "history": snap.fit.history,
                    "best": None if snap.fit.best is None else [snap.fit.best[0], snap.fit.best[1]]}}
    _split(snap.net, "net/", arrays)
    if snap.fit.best is not None:
        _split(snap.fit.best[2], "best/", arrays)
    return npz.write(path, meta, arrays)


def data_identity(config: dict, data) -> dict:
    """What a checkpoint remembers of its run's data: the dataset, the folder it was read from (as
    an absolute path), the split sizes and a digest of the labels in split order — a resumed run
    must train on exactly these images, or its numbers are not the interrupted run's."""
    digest = hashlib.sha256()
    for part in ("train", "val", "test"):
        digest.update(np.ascontiguousarray(getattr(data, f"y_{part}")).tobytes())
        digest.update(np.ascontiguousarray(getattr(data, f"x_{part}")[:64]).tobytes())
    folder = config.get("data_dir")
    return {"dataset": data.name, "data_dir": None if folder is None else os.path.abspath(os.path.expanduser(folder)),
            "sizes": [len(data.x_train), len(data.x_val), len(data.x_test)], "digest": digest.hexdigest()[:32]}


def check_same_data(expected: dict | None, config: dict, data, path) -> None:
    """UsageError unless `data` is what the checkpoint at `path` was trained on."""
    if not expected:            # a checkpoint from before data identities: nothing to compare
        return
    found = data_identity(config, data)
    if (found["sizes"], found["digest"]) != (expected.get("sizes"), expected.get("digest")):
        raise UsageError(f"checkpoint {path} was trained on other data ({expected.get('dataset')} from "
                         f"{expected.get('data_dir') or 'the default location'}, sizes {expected.get('sizes')}); this "
                         f"run loaded {found['dataset']} with sizes {found['sizes']} — pass the run's --data_dir")


def load(path) -> tuple[Snapshot, dict]:
    """(snapshot, header) of a checkpoint file; anything malformed is a one-line UsageError, found
    here (before the run's row is reopened), not half-way through restoring it."""
    with npz.Reader(path, "checkpoint") as reader:
        meta = reader.meta()
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise UsageError(f"checkpoint {path} is not a version-{VERSION} checkpoint of mlp-sweeps")
        arrays = reader.arrays()

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
    _check_fit(snap.fit, path)
    for name, state in (("net_rng", snap.net_rng), ("fit.rng", snap.fit.rng)):
        _check_rng(state, f"checkpoint {path}: {name}")
    if meta.get("data") is not None and not isinstance(meta["data"], dict):
        raise UsageError(f"checkpoint {path}: its data identity is not an object")
    return snap, meta


def _check_rng(state, where: str) -> None:
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise UsageError(f"{where} is not a generator state ({str(e)[:80]})") from None


def _check_fit(fit: FitState, path) -> None:
    """The fit loop's state: epochs and steps counted from 0, and a history of one row per epoch
    (1..epoch), each an object of finite-or-NaN numbers."""
    if fit.epoch < 0 or fit.global_step < 0:
        raise UsageError(f"checkpoint {path}: epoch {fit.epoch} and step {fit.global_step} must not be negative")
    rows = fit.history
    if len(rows) != fit.epoch or any(not isinstance(r, dict) or r.get("epoch") != i + 1 for i, r in enumerate(rows)):
        raise UsageError(f"checkpoint {path}: its history must hold one object per epoch 1..{fit.epoch} with its "
                         f"'epoch'")
    for row in rows:
        if any(not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) for k, v in row.items()):
            raise UsageError(f"checkpoint {path}: history row {row.get('epoch')} holds a value that is not a number")
    if fit.best is not None and not 1 <= fit.best[1] <= max(fit.epoch, 1):
        raise UsageError(f"checkpoint {path}: its best epoch {fit.best[1]} is not one of its epochs")


def restore(snap: Snapshot, net, optimizer, averager, source: str = "the checkpoint") -> FitState:
    """Put the snapshot into a network, optimizer and averager built from the run's config (their
    shapes and kinds are checked); returns the FitState to continue `fit` from."""
    net.load_state_dict(snap.net, source)
    try:
        net.rng.bit_generator.state = snap.net_rng
    except (TypeError, ValueError, KeyError) as e:
        raise UsageError(f"{source} holds no usable generator state ({e})") from None
    if (averager is None) != (snap.averager is None):
        raise UsageError(f"{source} was written with other weight averaging than this run's")
    try:
        optimizer.load_state_dict(snap.optimizer)
        optimizer.check_state(net.params)
        if averager is not None:
            averager.load_state_dict(snap.averager)
    except UsageError as e:
        raise UsageError(f"{source}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{source}: its weight averaging state is incomplete ({type(e).__name__}: {e})") from None
    return snap.fit
