"""One run, start to end: config → data → network → fit → test → W&B + store + files.

The life cycle, each step a short function:

1. `prepare` — everything a user can get wrong is checked before anything is written (no store
   row, no W&B directory, no file): the config with the sweep's parameters merged in, the
   network (and the memory it needs), the output paths, the data.
2. `open_run` — the store row (adopted when `mlp agent` made it, else created) and the W&B run,
   under one id.
3. `train` — the fit loop; divergence, Ctrl-C/SIGTERM and any error become a state.
4. `finish` — test, save, record: short, and shielded from a late SIGINT/SIGTERM, so a run is
   never left half-recorded. Whatever happens after the row exists, the row ends in a final
   state (never `running`) and what was computed is kept.

States and exit codes: finished 0 · failed 1 · bad input 2 · diverged 3 · killed 130.
"""
from __future__ import annotations

import math
import os
import sys
import stat
import tempfile
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlp import config as C, paths
from mlp.core import augment, averaging, optimizers, schedules
from mlp.core.metrics import confusion_matrix
from mlp.core.builders import stack
from mlp.errors import UsageError
from mlp.networks import MEMORY_FRACTION, build_network, n_outputs, physical_memory
from mlp.runs import autoencoder, checkpoint, interrupts
from mlp.runs.context import RunContext
from mlp.runs import features as F
from mlp.runs.data import load_dataset
from mlp.runs.store import (DEFAULT_STORE, Store, StoreError, checkpoint_path_for, encode_json, model_path_for,
                            rescue_path_for)
from mlp.runs.tracking import StoreTracker, WandbTracker, resolve_wandb_mode
from mlp.runs.training import Diverged, FitOptions, fit
from mlp.runs.wandb_access import check_wandb_environment
from mlp.runs.wandb_api import connect, describe_wandb_sweep

__all__ = ["EXIT_CODES", "RunResult", "build", "train", "run", "check_data", "check_output"]

EXIT_CODES = {"finished": 0, "failed": 1, "diverged": 3, "killed": 130}


@dataclass
class RunResult:
    run_id: str | None
    state: str
    summary: dict = field(default_factory=dict)
    error: str | None = None
    stopped_by: str | None = None       # stopped early by its sweep (hyperband): not a failure

    @property
    def exit_code(self) -> int:
        """EXIT_CODES of the state; 0 for a run its sweep stopped early, which W&B's agent must not
        count as a failure (its rule: any exit code above 0 is one)."""
        return 0 if self.stopped_by else EXIT_CODES[self.state]


# ---- building ---------------------------------------------------------------------------------------

def targets(config, data, part):
    """What the network learns to output for `part` (train, val, test): labels, or the images."""
    return getattr(data, f"x_{part}") if config["task"] == "autoencoder" else getattr(data, f"y_{part}")


def build(config, n_inputs=784, n_classes=10):
    """Network and optimizer for a config (raises UsageError for any invalid combination or a
    network that cannot fit in memory; mlp.networks.build_network). With --features the network
    is the MLP head, which takes the frozen layer's features."""
    config = C.resolve(base=config)         # configs stored before a flag existed get its default
    if config["features"]:
        frozen = F.load_frozen(config["features"], n_inputs)
        F.check_memory(frozen, have=physical_memory(), fraction=MEMORY_FRACTION)
        n_inputs = frozen.size
    net = build_network(config, n_inputs, n_classes)
    return net, optimizers.from_config(config["optimizer"], config)


def check_data(config, data) -> None:
    """The checks a config needs against its dataset (beyond what building the network checks)."""
    n_train = len(data.x_train)
    if config["batch_size"] > n_train:
        raise UsageError(f"batch size {config['batch_size']} is larger than the training set "
                         f"({n_train} images); use a smaller -b/--batch_size")
    missing = sorted(set(range(len(data.class_names))) - set(np.unique(data.y_train).tolist()))
    if missing:
        raise UsageError(f"the training split of {data.name} has no image of class "
                         f"{', '.join(data.class_names[c] for c in missing)}; use another --split/--val_fraction or "
                         f"complete data files")


def train(config, data, on_epoch=None, progress=None, built=None, resume=None, on_snapshot=None):
    """Build and train a config on a dataset: (net, history). The one training path — train.py,
    sweeps and the report's retraining all go through it. `built`: the (net, optimizer) of a
    caller that already validated the config, so it is not built twice. `resume`: a checkpoint
    Snapshot to continue from (the history returned then holds its epochs too); `on_snapshot`
    receives a Snapshot of the state at the end of every epoch (mlp.runs.checkpoint).

    With --features the MLP head trains on the frozen layer's features (computed once), and the
    network returned is the stack frozen layers → head: it takes images, like any other."""
    config = C.resolve(base=config)
    if built is None:
        check_data(config, data)
        built = build(config, data.x_train.shape[1], len(data.class_names))
    net, optimizer = built
    frozen = None
    if config["features"]:
        frozen = F.load_frozen(config["features"], data.x_train.shape[1])
        data = F.feature_dataset(data, frozen, log=progress is not False)
    steps_per_epoch = max(1, math.ceil(len(data.x_train) / config["batch_size"]))
    schedule = None
    if config["lr_schedule"] != "constant" or config["warmup_epochs"]:
        schedule = schedules.build(config["lr_schedule"], config["learning_rate"], config["epochs"] * steps_per_epoch,
                                   steps_per_epoch, warmup_steps=round(min(config["warmup_epochs"], config["epochs"])
                                                                       * steps_per_epoch))
    averager = averaging.build(config["weight_averaging"], net)
    options = FitOptions(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
                         patience=config["early_stopping"] or None, schedule=schedule,
                         augment=augment.augmenter(config["augment_shift"], config["augment_flip"]),
                         averager=averager, progress=progress)
    state = checkpoint.restore(resume, net, optimizer, averager) if resume is not None else None
    keep = (lambda fit_state: on_snapshot(checkpoint.take(net, optimizer, averager, fit_state))) if on_snapshot else None
    history = fit(net, optimizer, (data.x_train, targets(config, data, "train")),
                  (data.x_val, targets(config, data, "val")), options, on_epoch=on_epoch, on_checkpoint=keep,
                  state=state)
    if frozen is not None:
        net = stack(frozen.net, frozen.index, net)
        net.extra = {"features": frozen.describe()}
    if config["augment_test"]:          # after training: the epochs' validation stays one view
        net.set_test_views(config["augment_shift"], config["augment_flip"])
    return net, history


# ---- 1. prepare: every check, nothing written -------------------------------------------------------

@dataclass
class Prepared:
    config: dict
    context: RunContext
    data: object
    built: tuple
    wandb_mode: str
    store_path: str
    resume: checkpoint.Snapshot | None = None    # the checkpoint an interrupted run continues from
    resume_data: dict | None = None              # ...and the data it was trained on (data_identity)
    summary_written: bool = False                # --summary_json holds the run's outcome


def check_output(path, what: str, inputs=(), folders=()) -> None:
    """An output file must be creatable (mlp.paths.output_file: a regular file or none, in a
    writable folder, not one of the command's `inputs`, not inside one of `folders`). Checked
    before training, so a bad path loses no work."""
    if path is not None:
        paths.output_file(path, what, inputs, folders)


def store_files(store_path) -> list[str]:
    """The store and its SQLite side files (made or not yet): never an output."""
    return [str(store_path), *(str(store_path) + end for end in ("-journal", "-wal", "-shm"))]


def _check_outputs(config, store_path, context: RunContext) -> None:
    """--save_model and --summary_json: writable, distinct, and none of the run's inputs — the
    store (its side files and checkpoint folder too, made or not yet), the model the features
    come from, the data files, the sweep's parameter file."""
    checkpoints = checkpoint_path_for(store_path, "run").parent
    if checkpoints.exists() and not checkpoints.is_dir():
        raise UsageError(f"{checkpoints} is not a folder, but the store {store_path} keeps interrupted runs' "
                         f"checkpoints there; move it away")
    inputs = [*store_files(store_path), str(checkpoints), context.param_path, *data_files(config["data_dir"])]
    if config["features"]:
        inputs.append(C.split_features(config["features"])[0])
    check_output(config["save_model"], "--save_model", inputs, [str(checkpoints)])
    check_output(config["summary_json"], "--summary_json", inputs, [str(checkpoints)])
    if config["save_model"] and config["summary_json"] and \
            os.path.realpath(paths.expand(config["save_model"], "--save_model")) == \
            os.path.realpath(paths.expand(config["summary_json"], "--summary_json")):
        raise UsageError("--save_model and --summary_json name the same file; give two paths")


def data_files(data_dir) -> list[str]:
    """The files of a data folder (--data_dir, else MLP_DATA_DIR) and of its sub-folders."""
    folder, what = (data_dir, "--data_dir") if data_dir else (os.environ.get("MLP_DATA_DIR"), "MLP_DATA_DIR")
    found = []
    try:
        for entry in os.scandir(paths.expand(folder, what)) if folder else ():
            found.append(entry.path)
            if entry.is_dir():
                found += [inner.path for inner in os.scandir(entry.path)]
    except OSError:              # no such folder, or unreadable: the data loading says so
        pass
    return found


def prepare(config, context: RunContext) -> Prepared:

    if context.sweep_params:     # what the sweep chose for this run wins over argv (W&B's rule)
        config = C.resolve(context.sweep_params, base=config, source="the sweep's parameters (WANDB_SWEEP_PARAM_PATH)")
    config, context, resume, resume_data = resumption(config, context)
    built = build(config)        # a bad combination fails before the data loads
    mode = resolve_wandb_mode(config["wandb_mode"])
    if mode != "disabled":
        check_wandb_environment()
    store_path = config["store"] or DEFAULT_STORE
    _check_outputs(config, store_path, context)
    data = _load_data(config)
    check_data(config, data)
    inputs = built[0].input_shape if config["features"] else (data.x_train.shape[1],)   # a head takes features
    if (built[0].input_shape, built[0].n_outputs) != \
            (inputs, n_outputs(config, data.x_train.shape[1], len(data.class_names))):
        built = build(config, data.x_train.shape[1], len(data.class_names))
    if resume is not None:       # the checkpoint fits this data and this network, or nothing is reopened
        where = checkpoint_path_for(store_path, context.run_id)
        checkpoint.check_same_data(resume_data, config, data, where)
        net, optimizer = built
        checkpoint.restore(resume, net, optimizer, averaging.build(config["weight_averaging"], net), f"checkpoint {where}")
        print(f"run {context.run_id}: continuing from its checkpoint after epoch {resume.fit.epoch}", file=sys.stderr,
              flush=True)
    _check_sweep_id(context, store_path)
    return Prepared(config, context, data, built, mode, store_path, resume, resume_data)


def _check_sweep_id(context: RunContext, store_path) -> None:
    """A WANDB_SWEEP_ID must be a W&B sweep's (or a local sweep's that `mlp sync` uploaded): a
    local sweep id there is a stray variable, refused before W&B starts."""
    if not context.sweep_id or not os.path.exists(store_path):
        return
    with Store(store_path, create=True) as store:
        try:
            local = store.get_sweep(context.sweep_id)
        except StoreError:
            raise
        except UsageError:           # not in this store: a W&B sweep seen for the first time
            return
        if local["origin"] != "wandb" and len(store.find_wandb_sweeps(context.sweep_id)) != 1:
            raise UsageError(f"WANDB_SWEEP_ID={context.sweep_id} is a local sweep id in {store_path}; a run of "
                             f"`mlp agent` does not set it — unset it")


def resumption(config, context: RunContext):
    """(config, context, checkpoint Snapshot or None, its data identity or None): what an
    interrupted run continues with.
    `--resume RUN_ID` names it (its row and checkpoint must be in the store; its own config is
    trained, flags only say where things go); a launcher's WANDB_RUN_ID of an interrupted run of
    this store with a checkpoint is W&B requeueing a preempted run, which continues the same way."""
    run_id, asked = config["resume"] or context.run_id, bool(config["resume"])
    store_path = config["store"] or DEFAULT_STORE
    if not run_id or (not asked and not os.path.exists(store_path)):
        return config, context, None, None
    if asked and not os.path.exists(store_path):
        raise UsageError(f"--resume {run_id}: store {store_path} does not exist; pass the --store the run ran with")
    # a launcher's run may open the store while a sibling run is still creating it: create=True
    # then waits for (or does) the creation instead of calling the half-made file "empty"
    with Store(store_path, create=not asked) as store:
        row = store.find_run(run_id)
    path = checkpoint_path_for(store_path, run_id)
    why = ("is not in store " + store_path if row is None else
           f"is {row['state']}, not interrupted (only a run killed by Ctrl-C or SIGTERM continues)"
           if row["state"] != "killed" else
           f"was stopped early by {row['stopped_by']}: that short run is its sweep's result" if row["stopped_by"] else
           _no_checkpoint(path))
    if why:
        if asked:
            raise UsageError(f"--resume: run {run_id} {why}")
        return config, context, None, None
    snap, meta = checkpoint.load(path)
    if asked:
        given = {k: v for k, v in config.items() if k not in C.PLUMBING and v != C.DEFAULTS[k]
                 and row["config"].get(k) != v}
        if given:
            raise UsageError(f"--resume {run_id} continues the run with its own config; drop "
                             f"{', '.join('--' + k for k in sorted(given))}")
    plumbing = {k: config[k] for k in C.PLUMBING if k in config}
    trained_on = meta.get("data") or {}
    plumbing["data_dir"] = config["data_dir"] or trained_on.get("data_dir") or (row["params"] or {}).get("data_dir")
    resumed = C.resolve({**row["config"], **plumbing}, source=f"run {run_id}'s config")
    if C.hyperparameters(resumed) != C.hyperparameters(C.resolve(meta.get("config") or {}, base=resumed)):
        raise UsageError(f"checkpoint {path} is of another config than run {run_id}'s in the store")
    return resumed, dataclasses.replace(context, run_id=run_id), snap, meta.get("data")


def _no_checkpoint(path: Path) -> str | None:
    """Why an interrupted run's checkpoint cannot be read, or None when it is a file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"left no checkpoint ({path}): it stopped before its first epoch ended"
    except OSError as e:
        return f"has a checkpoint {path} that cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(mode):
        return f"has {paths.kind_of(mode)} where its checkpoint {path} should be, not a file; put the checkpoint back"
    return None


def _load_data(config):
    return load_dataset(config["dataset"], data_dir=config["data_dir"], split=config["split"],
                        val_fraction=config["val_fraction"])


# ---- 2. open the run: store row and W&B run under one id ---------------------------------------------

def open_run(p: Prepared):

    store = Store(p.store_path, create=True)
    # an interrupted run's row continues; else `mlp agent`'s row is adopted, else a new id
    record = StoreTracker.resume(store, p.context.run_id) if p.resume else StoreTracker.claim(store, p.context)
    wandb = WandbTracker(p.wandb_mode, p.config["wandb_project"], p.config["wandb_entity"])
    try:
        effective = wandb.start(C.hyperparameters(p.config), C.run_name(p.config), record.run_id,
                                resume=p.resume is not None)
        config = C.resolve(C.expand_configuration(effective, "W&B's config"), base=p.config, source="W&B's config")
        if config != p.config:            # W&B changed something: check and build again
            changed = [f"{k}={config[k]}" for k in C.DATA_KEYS if config[k] != p.config[k]]
            if changed:                   # train on the data W&B's config names, not the data loaded
                print(f"W&B's config asks for other data ({', '.join(changed)}); loading it", file=sys.stderr,
                      flush=True)
                p.data = _load_data(config)
            check_data(config, p.data)
            p.built = build(config, p.data.x_train.shape[1], len(p.data.class_names))
            p.config = config
            wandb.rename(C.run_name(config))
    except BaseException as e:
        with interrupts.finishing():
            state = "killed" if isinstance(e, KeyboardInterrupt) else "failed"
            code = EXIT_CODES["killed"] if state == "killed" else getattr(e, "exit_code", 1)
            error = "interrupted" if state == "killed" else str(e) or type(e).__name__
            record.start(C.hyperparameters(p.config), C.run_name(p.config), wandb.offline_dir, wandb.where)
            _write_summary(p, record.run_id, state, error, {"state": state})
            record.finish(state, exit_code=code, error=error)
            wandb.finish(state, exit_code=code)
        raise
    record.start(C.hyperparameters(p.config), C.run_name(p.config), wandb.offline_dir, wandb.where)
    if p.context.sweep_id and p.wandb_mode == "online":   # W&B can tell the sweep's real config
        describe_wandb_sweep(store, record.sweep_id, *wandb.where)
    return store, record, wandb


# ---- the whole run ------------------------------------------------------------------------------------

def run(config, context: RunContext | None = None, out=None) -> RunResult:
    """Train one configuration end to end; returns its RunResult (results go to `out`,
    default: the current sys.stdout)."""
    out = out or sys.stdout
    context = context or RunContext.from_environment()
    p = prepare(config, context)
    store, record, wandb = open_run(p)
    history, started = list(p.resume.fit.history) if p.resume else [], time.perf_counter()
    latest = [p.resume]          # the state at the end of the last epoch: what an interruption keeps
    try:
        print(f"run {record.run_id} ({C.run_name(p.config)}): {p.data.name} from {p.data.source}, "
              f"{len(p.data.x_train)} train / {len(p.data.x_val)} val / {len(p.data.x_test)} test; "
              f"W&B {p.wandb_mode}", file=sys.stderr, flush=True)
        for row in history:      # a resumed run's epochs: all in the store (one cut short while logging too)
            record.log(row)
        if p.wandb_mode != "disabled" and p.resume is None:
            first = [int(np.flatnonzero(p.data.y_train == c)[0]) for c in range(len(p.data.class_names))]
            wandb.log_samples(p.data.x_train[first], range(len(p.data.class_names)), p.data.class_names)

        def on_epoch(row):
            history.append(row)
            wandb.log(row)
            record.log(row)          # a store that fails now is reported once; training goes on

        net, state, error, diverged = None, "finished", None, None
        # SIGTERM stops a run like Ctrl-C (the CLI's entry points make both a KeyboardInterrupt;
        # train.py's handler raises it once and ignores the rest: interrupts.interrupt_once)
        try:
            net, _ = train(p.config, p.data, on_epoch=on_epoch, built=p.built, resume=p.resume,
                           on_snapshot=lambda snap: latest.__setitem__(0, snap))
        except Diverged as e:
            state, error, diverged = "diverged", str(e), e
        except KeyboardInterrupt:
            state, error = "killed", "interrupted"
        # test, save, record: a late SIGINT/SIGTERM (a hyperband stop racing the last epoch, a
        # second Ctrl-C) must not cut this short
        with interrupts.finishing():
            stopped_by = None
            if state == "killed":
                stopped_by = _stopped_early(p, record)
                if not stopped_by and latest[0] is not None and p.context.sweep_id and p.wandb_mode == "online":
                    wandb.mark_preempting()      # W&B's convention, said at once: it requeues the run
            return finish(p, record, wandb, net, state, error, history, started, out, diverged, latest[0], stopped_by)
    except BaseException as e:
        # anything else after the row exists: record it, keep what was computed, re-raise
        with interrupts.finishing():
            if record.open:
                state = "killed" if isinstance(e, KeyboardInterrupt) else "failed"
                message = "interrupted" if state == "killed" else f"{type(e).__name__}: {e}"
                summary = {**_summary(history, started), "state": state}
                if state == "killed":
                    _keep_checkpoint(p, record, latest[0])
                if not p.summary_written:    # (finish may have written the outcome before the store failed)
                    _write_summary(p, record.run_id, state, message, summary)
                record.finish(state, summary=summary, exit_code=EXIT_CODES[state], error=message)
                wandb.finish(state, exit_code=EXIT_CODES[state])
        raise
    finally:
        store.close()


# ---- 4. finish: test, save, record ---------------------------------------------------------------------

def finish(p: Prepared, record, wandb, net, state, error, history, started, out, diverged=None,
           snapshot=None, stopped_by=None) -> RunResult:

    config, data = p.config, p.data
    summary = _summary(history, started)
    confusion = model_path = None
    if diverged is not None:
        summary.update(diverged_epoch=diverged.epoch, diverged_batch=diverged.batch)
    if state == "finished" and config["task"] == "autoencoder":
        test_loss, test_r2, _ = autoencoder.evaluate(net, data.x_test)
        summary.update(test_loss=test_loss, test_r2=test_r2)
    elif state == "finished":
        if net.test_views is not None and len(data.x_val):   # the final model as it predicts: with its views
            summary["tta_val_loss"], summary["tta_val_accuracy"], _ = net.evaluate(data.x_val, data.y_val)
        test_loss, test_accuracy, pred = net.evaluate(data.x_test, data.y_test)
        summary.update(test_loss=test_loss, test_accuracy=test_accuracy,
                       confusion_matrix=confusion_matrix(data.y_test, pred, len(data.class_names)).tolist())
        confusion = (data.y_test, pred, data.class_names)
    if state == "finished":
        target = config["save_model"] or (record.sweep_id and model_path_for(record.store.path, record.sweep_id,
                                                                              record.run_id))
        if target:  # a sweep's run keeps its model beside the store, so a report can load the best one
            model_path, error = _save_model(net, config, record, target)
            if error:
                state = "failed"
        if net is not None:                  # trained: W&B gets the model even when its file could not be written
            _log_model(wandb, net, model_path, config, record.run_id, summary)
    if state == "finished":
        _drop_checkpoint(record)
    if stopped_by:
        summary["stopped_by"] = stopped_by
    elif state == "killed":
        _keep_checkpoint(p, record, snapshot)
    summary["state"] = state
    code = RunResult(record.run_id, state, stopped_by=stopped_by).exit_code
    # every output on its own: one that fails (a full disk, a damaged store) does not cost the others
    _write_summary(p, record.run_id, state, error, summary)
    wandb.finish(state, {k: v for k, v in summary.items() if _loggable(v)}, confusion, exit_code=code)
    _print_result(state, summary, error if not stopped_by else f"stopped early by {stopped_by}", out)
    if wandb.offline_dir:
        print(f"W&B offline run in {wandb.offline_dir}; upload it with `wandb sync {wandb.offline_dir}`",
              file=sys.stderr, flush=True)
    record.finish(state, summary=summary, exit_code=code, error=error, model_path=model_path, stopped_by=stopped_by)
    return RunResult(record.run_id, state, summary, error, stopped_by)


def _save_model(net, config, record, target) -> tuple[str | None, str | None]:
    """Write the trained model to `target`: (its path, None); or, when that fails (a full disk, a
    folder that went away), keep it beside the store (rescue_path_for) so the training is not lost:
    (where it went or None, the error that fails the run)."""
    extra = {**net.extra, "config": C.hyperparameters(config), "run_id": record.run_id}
    try:
        path = str(paths.output_file(target, "--save_model"))
        net.save(path, extra=extra)
        return path, None
    except (OSError, UsageError) as e:
        error = f"could not save the model to {target}: {getattr(e, 'strerror', None) or e}"
    rescue = rescue_path_for(record.store.path, record.run_id)
    try:
        rescue.parent.mkdir(parents=True, exist_ok=True)
        net.save(rescue, extra=extra)
    except OSError as e:
        return None, f"{error}; keeping it in {rescue} failed too ({e.strerror or e}): the model is lost"
    return str(rescue), f"{error}; the model was kept in {rescue} instead"


def _stopped_early(p: Prepared, record) -> str | None:
    """Why an interrupted run was stopped by its sweep, or None (Ctrl-C, a scheduler's SIGTERM).
    `mlp agent` records its hyperband stop in the run's row before it signals the run; under
    `wandb agent`, W&B's server says whether it asked for the stop (its early_terminate)."""
    marked = record.stopped_by()
    if marked:
        return marked
    if p.context.sweep_id and p.wandb_mode == "online":
        entity, project = p.context.entity, p.context.project
        try:
            if connect().run_should_stop(entity or p.config["wandb_entity"], project or p.config["wandb_project"],
                                         record.run_id):
                return "hyperband"
        except UsageError as e:
            print(f"warning: could not ask W&B whether its sweep stopped the run ({e})", file=sys.stderr, flush=True)
    return None


def _keep_checkpoint(p: Prepared, record, snapshot) -> None:
    """An interrupted run keeps its state at the end of its last epoch, to continue from (under a
    W&B sweep it has marked itself preempting, so W&B requeues it and the requeued run, launched
    under the same id, continues from here)."""
    if snapshot is None:
        return
    path = checkpoint_path_for(record.store.path, record.run_id)
    try:
        checkpoint.save(path, snapshot, record.run_id, C.hyperparameters(p.config),
                        p.resume_data or checkpoint.data_identity(p.config, p.data))
    except OSError as e:
        print(f"warning: could not keep a checkpoint in {path} ({e.strerror or e}); the run cannot be continued",
              file=sys.stderr, flush=True)
        return
    command = f"python train.py --resume {record.run_id}" + (f" --store {record.store.path}" if p.config["store"] else "")
    print(f"run {record.run_id} interrupted after epoch {snapshot.fit.epoch}; its checkpoint is {path}: continue it "
          f"with `{command}`", file=sys.stderr, flush=True)


def _drop_checkpoint(record) -> None:
    try:
        checkpoint_path_for(record.store.path, record.run_id).unlink(missing_ok=True)
    except OSError as e:         # e.g. its folder was replaced by a file during the run
        print(f"warning: could not remove run {record.run_id}'s old checkpoint ({e.strerror or e})", file=sys.stderr,
              flush=True)


def _log_model(wandb, net, model_path, config, run_id, summary) -> None:
    """Every run under W&B logs its model as an artifact (WandbTracker.log_model): the file it
    saved, else one written for W&B alone in a temporary folder (W&B copies it when it is added)."""
    if wandb.run is None:
        return
    metadata = {"run_id": run_id, "config": C.hyperparameters(config),
                **{k: summary[k] for k in ("val_accuracy", "test_accuracy", "val_r2", "test_r2") if k in summary}}
    if model_path:
        wandb.log_model(model_path, run_id, metadata)
        return
    with tempfile.TemporaryDirectory(prefix="mlp-model-") as folder:
        path = Path(folder) / "model.npz"
        try:
            net.save(path, extra={**net.extra, "config": C.hyperparameters(config), "run_id": run_id})
        except OSError as e:
            print(f"warning: the model could not be written for W&B ({e.strerror or e})", file=sys.stderr, flush=True)
            return
        wandb.log_model(path, run_id, metadata)


def _summary(history, started) -> dict:
    summary = {"epochs_run": len(history), "seconds": time.perf_counter() - started}
    if history and "val_r2" in history[-1]:      # an autoencoder
        last = history[-1]
        summary.update({k: last[k] for k in ("train_loss", "val_loss", "val_r2")})
        summary["best_val_r2"] = max(r["val_r2"] for r in history)
        summary["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for r in history]))
    elif history:
        last = history[-1]
        summary.update({k: last[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")})
        summary["best_val_accuracy"] = max(r["val_accuracy"] for r in history)
        summary["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for r in history]))
    return summary


def _loggable(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _write_summary(p: Prepared, run_id, state, error, summary) -> None:
    """--summary_json, if asked for: a failure to write it is a warning (the store and W&B hold the
    result), and it never leaves a half-written file."""
    config = p.config
    if not config["summary_json"]:
        return
    p.summary_written = True
    payload = {"run_id": run_id, "state": state, "error": error, "config": C.hyperparameters(config),
               "summary": summary}
    try:
        target = paths.output_file(config["summary_json"], "--summary_json")
        text = (encode_json(payload, indent=2) + "\n").encode()
        paths.write_atomically(target, lambda f: f.write(text))
    except (OSError, UsageError) as e:
        print(f"warning: could not write {config['summary_json']}: {getattr(e, 'strerror', None) or e}",
              file=sys.stderr, flush=True)


def _print_result(state, summary, error, out) -> None:
    if state == "finished" and "test_r2" in summary:
        print(f"val_r2 {summary['val_r2']:.4f}  test_r2 {summary['test_r2']:.4f}  test_loss {summary['test_loss']:.4f}  "
              f"({summary['epochs_run']} epochs, {summary['seconds']:.1f}s)", file=out, flush=True)
    elif state == "finished":
        views = f"tta_val_accuracy {summary['tta_val_accuracy']:.4f}  " if "tta_val_accuracy" in summary else ""
        print(f"val_accuracy {summary['val_accuracy']:.4f}  test_accuracy {summary['test_accuracy']:.4f}  {views}"
              f"({summary['epochs_run']} epochs, {summary['seconds']:.1f}s)", file=out, flush=True)
    elif state == "failed":     # the run's own fault (its model could not be written): one error line
        print(f"error: run failed: {error}", file=sys.stderr, flush=True)
    else:
        print(f"run {state}: {error}", file=out, flush=True)
