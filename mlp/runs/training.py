"""The fit loop: shuffled mini-batches, one history row per epoch, early stopping, divergence.

Per-epoch rows use the fixed metric names: epoch, train_loss, train_accuracy, val_loss,
val_accuracy. Losses are the data loss (without the L2 term) so train and validation compare;
train_* are means over the epoch's mini-batches in training mode (no extra pass over the data).
A regression network (the autoencoder: targets are float arrays, loss regression_squared_error)
logs epoch, train_loss, val_loss and val_r2 (R² over all validation outputs, mlp.core.metrics)
instead, and no accuracy.
"""
import contextlib
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mlp.core.metrics import r2_score


class Diverged(Exception):
    """The loss became NaN or infinite: training stops at once."""

    def __init__(self, epoch, batch, loss):
        super().__init__(f"loss became {loss} at epoch {epoch}, batch {batch}; lower the learning rate")
        self.epoch, self.batch, self.loss = epoch, batch, loss


def batches(n, batch_size, rng):
    """Index arrays of one shuffled epoch; the last batch may be smaller."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class FitOptions:
    """How to train: epochs and batch size, the seed of the loop's generator (shuffling and
    augmentation), early stopping (`patience` epochs without a better validation score; the best
    epoch's weights are restored), a learning-rate `schedule(step)`, an `augment(batch, rng)`, an
    `averager` (mlp.core.averaging: EMA/SWA weights are the ones validated, restored and left in the
    network) and `progress` (None: a bar on a terminal, else a line per epoch; False: silent)."""

    epochs: int
    batch_size: int
    seed: int = 0
    patience: int | None = None
    schedule: Callable | None = None
    augment: Callable | None = None
    averager: object | None = None
    progress: bool | None = None


@dataclass
class FitState:
    """Where the loop stands at the end of an epoch, enough to continue it exactly: epochs done,
    optimizer steps taken, its generator's state (the next epoch's shuffle and augmentation), the
    history so far and early stopping's best (score, epoch, weights). The network, its own
    generator (dropout), the optimizer and the averager hold the rest (mlp.runs.checkpoint)."""

    epoch: int
    global_step: int
    rng: dict
    history: list = field(default_factory=list)
    best: tuple | None = None


def fit(net, optimizer, train, val, options: FitOptions, on_epoch=None, on_step=None, on_checkpoint=None,
        state: FitState | None = None):
    """Train `net` in place on `train` = (x, y), validating on `val` = (x, y) (empty: no
    validation), as `options` say; returns the history (a list of per-epoch metric dicts).

    on_epoch(row) is called after every epoch (trackers log there; it may raise to stop);
    on_step(step) after every optimizer step; on_checkpoint(FitState) at the end of every epoch,
    before on_epoch (so an epoch the trackers saw is always one a checkpoint holds). `state` (a FitState from on_checkpoint) continues an interrupted fit: the
    remaining epochs then train exactly as they would have without the interruption, given the
    network, optimizer and averager restored to that epoch (and the same BLAS threads).

    Overflow on the way to a NaN/infinite loss is not warned about: it is the divergence that
    the loop detects and reports (Diverged) at the batch where it happens.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _fit(net, optimizer, train, val, options, on_epoch, on_step, on_checkpoint, state)


def _fit(net, optimizer, train, val, options, on_epoch, on_step, on_checkpoint, state):
    o = options
    rng = np.random.default_rng([o.seed, 1])  # a stream of its own: init and dropout use others
    x_train = np.asarray(train[0], dtype=net.dtype)
    y_train = np.asarray(train[1])
    x_val, y_val = val
    n = len(x_train)
    # Each batch is gathered into the same two arrays (contiguous rows, no allocation); the
    # network is done with a batch before the next one is gathered.
    width = min(o.batch_size, n)
    x_batch = np.empty((width,) + x_train.shape[1:], x_train.dtype)
    y_batch = np.empty((width,) + y_train.shape[1:], y_train.dtype)
    history, best, global_step, first = [], None, 0, 1
    if state is not None:
        rng.bit_generator.state = state.rng
        history, best, global_step, first = list(state.history), state.best, state.global_step, state.epoch + 1
    progress = True if o.progress is None else o.progress
    bar_factory = _progress_bar if progress and sys.stderr.isatty() else None
    averager = o.averager
    stop = bool(o.patience and best is not None and first - 1 - best[1] >= o.patience)
    for epoch in range(first, o.epochs + 1):
        if stop:
            break
        start = time.perf_counter()
        loss_sum = correct = 0.0
        index_sets = batches(n, o.batch_size, rng)
        bar = bar_factory(len(index_sets), epoch, o.epochs) if bar_factory else None
        for b, idx in enumerate(index_sets):
            xb = np.take(x_train, idx, axis=0, out=x_batch[:len(idx)], mode="clip")
            yb = np.take(y_train, idx, axis=0, out=y_batch[:len(idx)], mode="clip")
            if o.augment is not None:
                xb = o.augment(xb, rng)
            if o.schedule is not None:
                optimizer.learning_rate = o.schedule(global_step)
            step = net.train_pass(xb, yb)
            loss = step.data_loss + step.l2
            if not math.isfinite(loss):
                if bar:
                    bar.close()
                raise Diverged(epoch, b + 1, loss)
            optimizer.step(net.params, step.grads, loss=loss)
            if averager is not None:
                averager.after_step(net)
            if on_step is not None:
                on_step(global_step)
            global_step += 1
            loss_sum += step.data_loss * len(idx)
            if net.is_classifier:
                correct += np.count_nonzero(step.outputs.argmax(axis=1) == yb)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        if averager is not None:
            averager.after_epoch(net, epoch, o.epochs)
        with _averaged_weights(net, averager):
            if len(x_val):
                val_loss, val_accuracy, outputs = net.evaluate(x_val, y_val)
            else:  # no validation set (e.g. inside a scikit-learn cross-validation)
                val_loss = val_accuracy = float("nan")
            # what early stopping watches: accuracy, or R² for a regression network
            score = val_accuracy if net.is_classifier else r2_score(y_val, outputs) if len(x_val) else float("nan")
            if o.patience and (best is None or score > best[0]):
                best = (score, epoch, {k: v.copy() for k, v in net.state_dict().items()})
        if net.is_classifier:
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / n,
                "train_accuracy": correct / n,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "epoch_seconds": time.perf_counter() - start,
            }
        else:
            row = {"epoch": epoch, "train_loss": loss_sum / n, "val_loss": val_loss, "val_r2": score,
                   "epoch_seconds": time.perf_counter() - start}
        if len(x_val) and not math.isfinite(val_loss):
            raise Diverged(epoch, len(index_sets), val_loss)
        history.append(row)
        if progress:
            print(format_row(row, o.epochs), file=sys.stderr, flush=True)
        if on_checkpoint:      # first: an interruption while the epoch is being logged keeps it
            on_checkpoint(FitState(epoch, global_step, copy.deepcopy(rng.bit_generator.state), list(history), best))
        if on_epoch:
            on_epoch(row)
        stop = bool(o.patience and epoch - best[1] >= o.patience)
    if o.patience and best is not None:
        net.load_state_dict(best[2])       # the best epoch's (averaged) weights
    elif averager is not None and averager.state(net.dtype) is not None:
        net.load_state_dict(averager.state(net.dtype))
    return history


@contextlib.contextmanager
def _averaged_weights(net, averager):
    """Evaluate with the averaged weights, then put the training weights back."""
    state = averager.state(net.dtype) if averager is not None else None
    if state is None:
        yield
        return
    training = {k: v.copy() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    try:
        yield
    finally:
        net.load_state_dict(training)


def format_row(row, epochs):
    if "val_r2" in row:
        return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  "
                f"val_loss {row['val_loss']:.4f}  val_r2 {row['val_r2']:.4f}  ({row['epoch_seconds']:.1f}s)")
    return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  "
            f"train_acc {row['train_accuracy']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_accuracy']:.4f}  ({row['epoch_seconds']:.1f}s)")


def _progress_bar(total, epoch, epochs):
    from tqdm import tqdm
    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, file=sys.stderr)
