"""One run, start to end: config → data → network → fit → test → W&B + store + files.

Everything a user can get wrong is checked before anything is written (no store row, no W&B
directory), so bad input leaves no trace. Run states and exit codes:
finished 0 · failed 1 · bad input 2 · diverged 3 · killed (Ctrl-C / SIGINT / SIGTERM) 130.
"""
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from mlp.core import augment, averaging, optimizers, schedules
from mlp.cli import DEFAULTS, parse_train_args
from mlp.errors import UsageError
from mlp.core.network import MLP
from mlp.runs.training import Diverged, fit

EXIT_CODES = {"finished": 0, "failed": 1, "diverged": 3, "killed": 130}
# Flags that say where things go, not what is trained: not part of the W&B/sweep config.
PLUMBING = ("wandb_project", "wandb_entity", "wandb_mode", "store", "save_model", "summary_json", "data_dir",
            "preset")


def hidden_widths(config):
    return list(config["hidden_sizes"]) if config.get("hidden_sizes") else [config["hidden_size"]] * config["num_layers"]


def run_name(config):
    """A readable W&B run name, e.g. hl_3_hs_128_bs_32_ac_relu_o_nadam."""
    widths = hidden_widths(config)
    size = widths[0] if len(set(widths)) == 1 else "-".join(map(str, widths))
    return (f"hl_{len(widths)}_hs_{size}_bs_{config['batch_size']}_ac_{config['activation']}"
            f"_o_{config['optimizer']}")


def build(config, n_inputs=784, n_classes=10):
    """Network and optimizer for a config (raises UsageError for any invalid combination)."""
    config = {**DEFAULTS, **config}  # configs stored before a flag existed get its default
    net = MLP([n_inputs, *hidden_widths(config), n_classes], activation=config["activation"],
              weight_init=config["weight_init"], loss=config["loss"], weight_decay=config["weight_decay"],
              dropout=config["dropout"], batch_norm=config["batch_norm"], seed=config["seed"],
              input_dropout=config["input_dropout"], label_smoothing=config["label_smoothing"])
    return net, optimizers.from_config(config["optimizer"], config)


def check_data(config, data):
    """The checks a config needs against its dataset (beyond what building the network checks)."""
    config = {**DEFAULTS, **config}
    if config["augment_flip"] and data.name != "fashion_mnist":
        raise UsageError("--augment_flip mirrors images, which changes what digits mean; use it with fashion_mnist only")
    if config["batch_size"] > len(data.x_train):
        raise UsageError(f"batch size {config['batch_size']} is larger than the training set "
                         f"({len(data.x_train)} images); use a smaller -b/--batch_size")


def validate(config, data):
    """Every check a config needs against its data; returns the built (net, optimizer)."""
    check_data(config, data)
    return build(config, data.x_train.shape[1], len(data.class_names))


def train(config, data, on_epoch=None, progress=None, built=None):
    """Build and train a config on a dataset: (net, history). The one training path — train.py,
    sweeps and the report's retraining all go through it. `built`: the (net, optimizer) of a
    caller that already validated the config, so it is not built twice."""
    config = {**DEFAULTS, **config}
    net, optimizer = built or validate(config, data)
    steps_per_epoch = max(1, math.ceil(len(data.x_train) / config["batch_size"]))
    schedule = None
    if config["lr_schedule"] != "constant" or config["warmup_epochs"]:
        schedule = schedules.build(config["lr_schedule"], config["learning_rate"], config["epochs"] * steps_per_epoch,
                                   steps_per_epoch, warmup_steps=round(config["warmup_epochs"] * steps_per_epoch))
    history = fit(net, optimizer, data.x_train, data.y_train, data.x_val, data.y_val, epochs=config["epochs"],
                  batch_size=config["batch_size"], seed=config["seed"], on_epoch=on_epoch, progress=progress,
                  patience=config["early_stopping"] or None, schedule=schedule,
                  augment=augment.augmenter(config["augment_shift"], config["augment_flip"]),
                  averager=averaging.build(config["weight_averaging"], net))
    return net, history


def hyperparameters(config):
    return {k: v for k, v in config.items() if k not in PLUMBING}


def config_from_mapping(mapping, base):
    """Re-validate a config that came back from W&B (a sweep may override any value) by passing
    it through the same parser as the command line."""
    merged = {**base, **mapping}
    argv = []
    for key, value in merged.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        argv.append(f"--{key}={value}")
    return parse_train_args(argv)


def run_from_argv(argv, prog="train.py"):
    config = parse_train_args(argv, prog)
    state, _ = run(config)
    return EXIT_CODES[state]


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so the run is recorded as killed."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(config, out=sys.stdout):
    """Train one configuration; returns (state, summary)."""
    from mlp.runs.data import load_dataset
    from mlp.runs.store import Store, default_store_path, new_id
    from mlp.runs.tracking import StoreTracker, WandbTracker, resolve_wandb_mode

    # 1. validate everything before writing anything (a bad combination fails before the data loads)
    built = build(config)
    mode = resolve_wandb_mode(config["wandb_mode"])
    data = load_dataset(config["dataset"], data_dir=config["data_dir"], split=config["split"],
                        val_fraction=config["val_fraction"])
    check_data(config, data)
    sizes = built[0].config["layer_sizes"]
    if (sizes[0], sizes[-1]) != (data.x_train.shape[1], len(data.class_names)):
        built = None  # a dataset of another shape: train() builds for it
    store = Store(config["store"] or default_store_path(), create=True)
    agent_run_id = os.environ.get("MLP_RUN_ID")  # `mlp agent` made the row already
    if agent_run_id:
        store.get_run(agent_run_id)
    run_id = agent_run_id or os.environ.get("WANDB_RUN_ID") or new_id()

    # 2. start tracking (one id for W&B and the store); in a sweep W&B's config wins
    wandb = WandbTracker(mode, config["wandb_project"], config["wandb_entity"])
    effective = wandb.start(hyperparameters(config), run_name(config), run_id)
    store_run = StoreTracker(store, run_id, existing=bool(agent_run_id))
    try:
        effective_config = config_from_mapping(effective, config)
        if effective_config != config:  # the sweep changed something: check and build again
            built = validate(effective_config, data)
        config = effective_config
        wandb.rename(run_name(config))
    except UsageError as e:
        store_run.start(hyperparameters(config), run_name(config), wandb.offline_dir)
        store_run.finish("failed", exit_code=2, error=str(e))
        wandb.finish("failed", exit_code=2)
        raise
    store_run.start(hyperparameters(config), run_name(config), wandb.offline_dir)
    print(f"run {run_id} ({run_name(config)}): {data.name} from {data.source}, "
          f"{len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test; "
          f"W&B {mode}", file=sys.stderr, flush=True)
    first_of_class = [int(np.flatnonzero(data.y_train == c)[0]) for c in range(len(data.class_names))]
    if mode != "disabled":
        wandb.log_samples(data.x_train[first_of_class], range(len(data.class_names)), data.class_names)

    # 3. train
    def on_epoch(row):
        wandb.log(row)
        store_run.log(row)

    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    started = time.perf_counter()
    history, error, net = [], None, None
    try:
        net, history = train(config, data, on_epoch=lambda row: (history.append(row), on_epoch(row)), built=built)
        state = "finished"
    except Diverged as e:
        state, error = "diverged", str(e)
    except (KeyboardInterrupt, _Terminated):
        state, error = "killed", "interrupted"
    except Exception as e:
        state, error = "failed", f"{type(e).__name__}: {e}"
        _finish(wandb, store_run, state, _summary(config, history, started), error)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    # 4. test, save, report — short, and not to be cut in half: a late SIGINT (a hyperband stop
    # racing the last epoch, a second Ctrl-C) must not leave the run half-recorded
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        return _finalize(config, data, net, wandb, store_run, run_id, state, error, history, started, out)
    finally:
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _finalize(config, data, net, wandb, store_run, run_id, state, error, history, started, out):
    confusion = model_path = None
    summary = _summary(config, history, started)
    if state == "finished":
        test_loss, test_accuracy, pred = net.evaluate(data.x_test, data.y_test)
        summary.update(test_loss=test_loss, test_accuracy=test_accuracy,
                       confusion_matrix=confusion_matrix(data.y_test, pred, len(data.class_names)).tolist())
        confusion = (data.y_test, pred, data.class_names)
        target = config["save_model"] or (os.environ.get("MLP_MODEL_DIR") and Path(os.environ["MLP_MODEL_DIR"]) / f"{run_id}.npz")
        if target:  # MLP_MODEL_DIR: set by `mlp agent`, so a report can load a sweep's best model
            model_path = str(Path(target).resolve())
            net.save(model_path, extra={"config": hyperparameters(config), "run_id": run_id})
    summary["state"] = state
    _finish(wandb, store_run, state, summary, error, confusion, model_path)
    if config["summary_json"]:
        _write_json(config["summary_json"], {"run_id": run_id, "state": state, "error": error,
                                              "config": hyperparameters(config), "summary": summary})
    _print_result(state, summary, error, out)
    return state, summary


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _summary(config, history, started):
    seconds = time.perf_counter() - started
    summary = {"epochs_run": len(history), "seconds": seconds}
    if history:
        last = history[-1]
        summary.update({k: last[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")})
        summary["best_val_accuracy"] = max(r["val_accuracy"] for r in history)
        summary["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for r in history]))
    return summary


def _finish(wandb, store_run, state, summary, error, confusion=None, model_path=None):
    code = EXIT_CODES[state]
    store_run.finish(state, summary=summary, exit_code=code, error=error, model_path=model_path)
    wandb.finish(state, {k: v for k, v in summary.items() if _loggable(v)}, confusion, exit_code=code)


def _loggable(value):
    return not isinstance(value, float) or math.isfinite(value)


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts: rows are true classes, columns predictions."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes ** 2) \
        .reshape(n_classes, n_classes)


def _write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=False) + "\n")
    tmp.replace(path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _print_result(state, summary, error, out):
    if state == "finished":
        print(f"val_accuracy {summary['val_accuracy']:.4f}  test_accuracy {summary['test_accuracy']:.4f}  "
              f"({summary['epochs_run']} epochs, {summary['seconds']:.1f}s)", file=out, flush=True)
    else:
        print(f"run {state}: {error}", file=out, flush=True)
