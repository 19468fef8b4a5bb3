"""Command-line parsing: the train.py flag table and the `mlp` subcommands.

Bad input never shows a traceback: argparse errors and UsageError both print one line,
`error: ...`, and exit with code 2.
"""
import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

from mlp.core import activations, initializers, losses, optimizers, schedules
from mlp.errors import UsageError
from mlp.core.registry import resolve

DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("standard", "80-10-10")
WANDB_MODES = ("auto", "online", "offline", "disabled")

# The best validation configuration of the offline sweeps/fashion.yaml sweep (README, "Results").
DEFAULTS = {
    "wandb_project": "mlp-sweeps",
    "wandb_entity": None,
    "dataset": "fashion_mnist",
    "epochs": 10,
    "batch_size": 64,
    "loss": "cross_entropy",
    "optimizer": "nadam",
    "learning_rate": 5e-4,
    "momentum": 0.9,
    "beta": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "epsilon": 1e-8,
    "weight_decay": 0.0,
    "weight_init": "xavier",
    "num_layers": 5,
    "hidden_size": 128,
    "activation": "relu",
    "seed": 0,
    "dropout": 0.0,
    "batch_norm": False,
    "hidden_sizes": None,
    "val_fraction": 0.1,
    "split": "standard",
    "data_dir": None,
    "wandb_mode": "auto",
    "store": None,
    "save_model": None,
    "summary_json": None,
    # training features beyond the assignment (off by default)
    "lr_schedule": "constant",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "input_dropout": 0.0,
    "augment_shift": 0,
    "augment_flip": False,
    "early_stopping": 0,
    "weight_averaging": "none",
    "preset": None,
}

# Named configurations (`--preset NAME`); flags given explicitly override a preset's values.
PRESETS = {
    # the strongest plain MLP found for Fashion-MNIST, selected on validation (README, "Accuracy")
    "best": {
        "hidden_sizes": [1024, 1024, 1024], "batch_norm": True, "dropout": 0.2, "label_smoothing": 0.1,
        "optimizer": "adam", "learning_rate": 2e-3, "lr_schedule": "onecycle", "batch_size": 128,
        "weight_init": "he", "activation": "relu", "weight_decay": 0.0, "epochs": 40, "augment_flip": True,
    },
}
# Per-dataset changes to a preset: a mirrored digit is another digit (or none), so no flips.
PRESET_DATASET_CHANGES = {("best", "mnist"): {"augment_flip": False}}

# ---- value parsers (each raises ArgumentTypeError with a message that names the fix) ----------

def _number(text, kind):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError("NaN is not allowed")
    if kind is int:
        if not value.is_integer():
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        return int(value)
    return value


def bounded(kind, low=None, high=None, low_open=False, high_open=False):
    """A parser for int/float values in a range, e.g. bounded(float, 0, low_open=True) for > 0."""
    def parse(text):
        value = _number(text, kind)
        if (low is not None and (value <= low if low_open else value < low)) or \
           (high is not None and (value >= high if high_open else value > high)):
            lo = "" if low is None else f"{'>' if low_open else '≥'} {low}"
            hi = "" if high is None else f"{'<' if high_open else '≤'} {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range; it must be {' and '.join(filter(None, [lo, hi]))}")
        return value
    parse.__name__ = kind.__name__
    return parse


def boolean(text):
    """W&B agents pass booleans as --flag=True / --flag=False."""
    key = str(text).strip().lower()
    if key in ("true", "1", "yes", "on"):
        return True
    if key in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use True or False")


def int_list(text):
    """'[128, 64]' (W&B's form), '128,64' or '128 64' -> [128, 64]."""
    parts = [p for p in re.split(r"[\s,]+", str(text).strip().strip("[]()")) if p]
    if not parts:
        raise argparse.ArgumentTypeError("give at least one layer width, e.g. [128, 64]")
    sizes = [_number(p, int) for p in parts]
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be ≥ 1; got {sizes}")
    return sizes


def choice(registry_lookup, choices):
    """Case-insensitive choice through a registry's canonical_name (e.g. 'ReLU' -> 'relu')."""
    def parse(text):
        try:
            return registry_lookup(text)
        except UsageError:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(choices)})") from None
    parse.__name__ = "choice"
    return parse


def plain_choice(choices):
    """Case-insensitive choice among fixed strings ('Fashion_MNIST' -> 'fashion_mnist')."""
    return choice(lambda t: resolve(t, dict.fromkeys(choices), "value"), choices)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def train_parser(prog="train.py"):
    p = Parser(prog=prog, description="Train a NumPy MLP on Fashion-MNIST or MNIST, logging to W&B and the local store.",
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = DEFAULTS
    positive_float = bounded(float, 0, low_open=True)
    unit = bounded(float, 0, 1, high_open=True)
    a = p.add_argument
    a("-wp", "--wandb_project", default=d["wandb_project"], help="W&B project")
    a("-we", "--wandb_entity", default=d["wandb_entity"], help="W&B entity (user or team)")
    a("-d", "--dataset", type=plain_choice(DATASETS), default=d["dataset"], help=f"one of {DATASETS}")
    a("-e", "--epochs", type=bounded(int, 0), default=d["epochs"], help="passes over the training set")
    a("-b", "--batch_size", type=bounded(int, 1), default=d["batch_size"], help="mini-batch size")
    a("-l", "--loss", type=choice(losses.canonical_name, list(losses.CLASSIFICATION)), default=d["loss"],
      help="mean_squared_error or cross_entropy")
    a("-o", "--optimizer", type=choice(optimizers.canonical_name, list(optimizers.OPTIMIZERS)),
      default=d["optimizer"], help=f"one of {list(optimizers.OPTIMIZERS)}")
    a("-lr", "--learning_rate", type=positive_float, default=d["learning_rate"], help="step size, > 0")
    a("-m", "--momentum", type=unit, default=d["momentum"], help="momentum and nag")
    a("-beta", "--beta", type=unit, default=d["beta"], help="rmsprop")
    a("-beta1", "--beta1", type=unit, default=d["beta1"], help="adam, nadam, eve")
    a("-beta2", "--beta2", type=unit, default=d["beta2"], help="adam, nadam, eve")
    a("-eps", "--epsilon", type=positive_float, default=d["epsilon"], help="rmsprop, adam, nadam, eve")
    a("-w_d", "--weight_decay", type=bounded(float, 0), default=d["weight_decay"], help="L2: adds (λ/2)·ΣW² to the loss")
    a("-w_i", "--weight_init", type=choice(initializers.canonical_name, list(initializers.INITIALIZERS)),
      default=d["weight_init"], help=f"one of {list(initializers.INITIALIZERS)} (case-insensitive)")
    a("-nhl", "--num_layers", type=bounded(int, 0), default=d["num_layers"], help="hidden layers")
    a("-sz", "--hidden_size", type=bounded(int, 1), default=d["hidden_size"], help="width of every hidden layer")
    a("-a", "--activation", type=choice(activations.canonical_name, list(activations.ACTIVATIONS)),
      default=d["activation"], help=f"one of {list(activations.ACTIVATIONS)} (case-insensitive)")
    a("--seed", type=int, default=d["seed"], help="seed of initialisation, shuffling and dropout")
    a("--dropout", type=unit, default=d["dropout"], help="dropout after every hidden layer")
    a("--batch_norm", type=boolean, nargs="?", const=True, default=d["batch_norm"], help="batch norm in hidden layers")
    a("--hidden_sizes", type=int_list, default=d["hidden_sizes"],
      help="per-layer widths such as [256, 128]; overrides --num_layers/--hidden_size")
    a("--val_fraction", type=bounded(float, 0, 1, low_open=True, high_open=True), default=d["val_fraction"],
      help="stratified validation share of the training set (standard split)")
    a("--split", type=plain_choice(SPLITS), default=d["split"],
      help="standard: official test set; 80-10-10: stratified over all 70,000 images")
    a("--data_dir", default=d["data_dir"], help="directory with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    a("--wandb_mode", type=plain_choice(WANDB_MODES), default=d["wandb_mode"],
      help="auto = online only when W&B credentials exist, else offline; never prompts")
    a("--store", default=d["store"], help="SQLite run store (else MLP_STORE, else ./mlp-runs.sqlite)")
    a("--save_model", default=d["save_model"], help="write the trained model to this .npz")
    a("--summary_json", default=d["summary_json"], help="write final metrics and config to this JSON file")
    g = p.add_argument_group("beyond the assignment")
    g.add_argument("--preset", type=plain_choice(list(PRESETS)), default=d["preset"],
                   help=f"a named configuration ({', '.join(PRESETS)}); explicit flags override it")
    g.add_argument("--lr_schedule", type=choice(schedules.canonical_name, list(schedules.SCHEDULES)),
                   default=d["lr_schedule"], help=f"one of {list(schedules.SCHEDULES)}")
    g.add_argument("--warmup_epochs", type=bounded(float, 0), default=d["warmup_epochs"],
                   help="linear warmup (constant, step, cosine schedules)")
    g.add_argument("--label_smoothing", type=unit, default=d["label_smoothing"], help="cross_entropy only")
    g.add_argument("--input_dropout", type=unit, default=d["input_dropout"], help="dropout on the input pixels")
    g.add_argument("--augment_shift", type=bounded(int, 0, 8), default=d["augment_shift"],
                   help="shift each training image by up to ±k pixels")
    g.add_argument("--augment_flip", type=boolean, nargs="?", const=True, default=d["augment_flip"],
                   help="mirror training images left-right (fashion_mnist only)")
    g.add_argument("--early_stopping", type=bounded(int, 0), default=d["early_stopping"],
                   help="patience in epochs on val_accuracy (0 = off); restores the best epoch's weights")
    g.add_argument("--weight_averaging", type=plain_choice(["none", "ema", "swa"]), default=d["weight_averaging"],
                   help="evaluate and save an average of the weights: ema (decay 0.999) or swa (last quarter)")
    return p


def parse_train_args(argv, prog="train.py"):
    """argv -> flat config dict with canonical names. `hidden_sizes`, when given, sets
    num_layers; otherwise it stays None and the widths are num_layers × hidden_size."""
    parser = train_parser(prog)
    first = vars(parser.parse_known_args(argv)[0]) if any("preset" in a for a in argv) else {}
    if first.get("preset"):  # a preset replaces the defaults; flags on the command line still win
        preset = first["preset"]
        parser.set_defaults(**{**PRESETS[preset], **PRESET_DATASET_CHANGES.get((preset, first["dataset"]), {})})
    config = vars(parser.parse_args(argv))
    if config["hidden_sizes"] is not None:
        config["num_layers"] = len(config["hidden_sizes"])
    return config


def run_main(fn, argv):
    """Run a command body; bad input becomes one line on stderr and exit code 2."""
    try:
        return fn(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def accept_sigint():
    """Turn SIGINT into KeyboardInterrupt even if it was ignored at start-up.

    A shell starts background jobs (`nohup mlp agent ... &`, cluster scripts) with SIGINT ignored,
    and Python then never installs its handler — but SIGINT is how an agent stops a run (hyperband,
    Ctrl-C) without losing its offline W&B data, so it must always work."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def train_main(argv=None, prog="train.py"):
    accept_sigint()
    from mlp.runs.experiment import run_from_argv
    return run_main(lambda a: run_from_argv(a, prog), sys.argv[1:] if argv is None else argv)


def _store_arg(p):
    p.add_argument("--store", default=None, help="SQLite store (else MLP_STORE, else ./mlp-runs.sqlite)")


def _positive(text):
    return bounded(int, 1)(text)


def command_parsers():
    parsers = {}
    p = parsers["sweep"] = Parser(prog="mlp sweep", description="Validate a W&B sweep YAML, create a local sweep and print its id; "
                                  "with --count also run it (offline, W&B's own search engine).")
    p.add_argument("file", help="sweep YAML (the same file `wandb sweep` takes)")
    p.add_argument("--name", help="sweep name (default: the YAML's name or file name)")
    p.add_argument("--seed", type=int, help="seed of the search (random and bayes are reproducible under it)")
    p.add_argument("--count", type=_positive, help="run this many runs now")
    p.add_argument("--jobs", type=_positive, default=1, help="agents in parallel (with --count)")
    _store_arg(p)
    p = parsers["agent"] = Parser(prog="mlp agent", description="Join a local sweep and run its runs.")
    p.add_argument("sweep_id")
    p.add_argument("--count", type=_positive, help="stop after this many runs (default: until the search is over)")
    p.add_argument("--jobs", type=_positive, default=1, help=argparse.SUPPRESS)  # BLAS threads = cores / jobs
    _store_arg(p)
    p = parsers["evaluate"] = Parser(prog="mlp evaluate", description="Score a saved model (.npz) on a dataset's test set.")
    p.add_argument("model", help="a model written by --save_model (or a sweep's mlp-models/SWEEP/RUN.npz)")
    p.add_argument("-d", "--dataset", type=plain_choice(DATASETS), default="fashion_mnist")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = parsers["sweeps"] = Parser(prog="mlp sweeps", description="List the local sweeps.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    p = parsers["runs"] = Parser(prog="mlp runs", description="List the runs of a sweep.")
    p.add_argument("sweep_id")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    p = parsers["sync"] = Parser(prog="mlp sync", description="Upload a sweep's offline W&B runs with `wandb sync`.")
    p.add_argument("sweep_id")
    p.add_argument("--dry_run", action="store_true", help="print the wandb sync command instead of running it")
    _store_arg(p)
    p = parsers["report"] = Parser(prog="mlp report", description="Write a sweep's report (index.html, report.md and "
                                   "one PNG per figure) from the local store, offline.")
    p.add_argument("sweep_id")
    p.add_argument("--out", help="output folder (default: reports/SWEEP_ID)")
    p.add_argument("--compare", metavar="SWEEP_ID", help="the cross-entropy vs squared-error sweep (default: found "
                   "in the store: a sweep whose loss values are cross_entropy and mean_squared_error)")
    p.add_argument("--data_dir", help="folder with the IDX files (default: the sweep's, else MLP_DATA_DIR, cache, "
                   "Debian, download)")
    _store_arg(p)
    p = parsers["rerun"] = Parser(prog="mlp rerun", description="Rerun a sweep's top-K validation configurations on "
                                  "another dataset as a linked sweep (its report then shows both).")
    p.add_argument("sweep_id")
    p.add_argument("--top", type=_positive, default=3, help="how many of the best configurations (default: 3)")
    p.add_argument("--dataset", type=plain_choice(DATASETS), default="mnist", help=f"one of {DATASETS} (default: mnist)")
    p.add_argument("--epochs", type=_positive, help="epochs per run (default: each config's own)")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    _store_arg(p)
    return parsers


def _open_store(path, create=False):
    from mlp.runs.store import Store, default_store_path
    return Store(path or default_store_path(), create=create)


def cmd_sweep(args):
    from mlp.sweep.agent import Agent, create_sweep, prepare_sweep, run_parallel_agents
    prepared = prepare_sweep(args.file)  # a bad file leaves no store behind
    store = _open_store(args.store, create=True)
    sweep_id = create_sweep(store, args.file, prepared, name=args.name, seed=args.seed)
    print(sweep_id, flush=True)
    print(f"created sweep {sweep_id} in {store.path}; run it with `mlp agent {sweep_id}`", file=sys.stderr, flush=True)
    if not args.count:
        return 0
    if args.jobs == 1:
        return Agent(store, sweep_id, count=args.count).run()
    return run_parallel_agents(store.path, sweep_id, args.count, args.jobs)


def cmd_agent(args):
    from mlp.sweep.agent import Agent
    return Agent(_open_store(args.store), args.sweep_id, count=args.count, jobs=args.jobs).run()


def _best(runs, metric="val_accuracy"):
    values = [r["summary"].get(metric) for r in runs if isinstance(r["summary"].get(metric), (int, float))]
    values = [v for v in values if v == v]
    return max(values) if values else None


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows])


def _fmt(value, spec=".4f"):
    return format(value, spec) if isinstance(value, float) else ("" if value is None else str(value))


def cmd_sweeps(args):
    from mlp.sweep.agent import dump_json
    store = _open_store(args.store)
    sweeps = store.list_sweeps()
    for s in sweeps:
        s["best_val_accuracy"] = _best(store.list_runs(s["id"]))
    if args.json:
        print(dump_json([{k: s[k] for k in ("id", "name", "state", "seed", "created_at", "run_counts", "best_val_accuracy")}
                         | {"config": s["config"], "summary": {"best_val_accuracy": s["best_val_accuracy"],
                                                                "runs": s["n_runs"]}} for s in sweeps]))
        return 0
    rows = [(s["id"], s["name"] or "", s["config"].get("method", ""), s["state"], s["n_runs"],
             " ".join(f"{k}:{v}" for k, v in s["run_counts"].items() if v), _fmt(s["best_val_accuracy"])) for s in sweeps]
    print(_table(("ID", "NAME", "METHOD", "STATE", "RUNS", "STATES", "BEST VAL_ACC"), rows) if rows else "no sweeps yet")
    return 0


def cmd_runs(args):
    from mlp.sweep.agent import dump_json
    store = _open_store(args.store)
    sweep = store.get_sweep(args.sweep_id)
    runs = store.list_runs(args.sweep_id)
    if args.json:
        print(dump_json([{k: r[k] for k in ("id", "seq", "name", "state", "config", "summary", "exit_code", "error",
                                            "created_at", "started_at", "finished_at", "wandb_dir", "model_path")}
                         | {"sweep_params": r["extra"].get("sweep_params", {}), "stopped_by": r["extra"].get("stopped_by")}
                         for r in runs]))
        return 0
    keys = list(sweep["config"].get("parameters", {}))
    rows = []
    for r in runs:
        duration = (r["finished_at"] or time.time()) - r["started_at"] if r["started_at"] else None
        params = r["extra"].get("sweep_params", {})
        state = r["state"] + ("*" if r["extra"].get("stopped_by") else "")
        rows.append((r["id"], state, *[_fmt(params.get(k), "g") for k in keys],
                     _fmt(r["summary"].get("val_accuracy")), _fmt(duration, ".0f")))
    print(_table(("ID", "STATE", *keys, "VAL_ACC", "SECONDS"), rows) if rows else f"sweep {args.sweep_id} has no runs yet")
    if any(r["extra"].get("stopped_by") for r in runs):
        print("* stopped early by hyperband")
    return 0


def cmd_sync(args):
    from mlp.runs.tracking import wandb_credentials_exist
    store = _open_store(args.store)
    store.get_sweep(args.sweep_id)
    dirs = [r["wandb_dir"] for r in store.list_runs(args.sweep_id) if r["wandb_dir"] and Path(r["wandb_dir"]).is_dir()]
    if not dirs:
        raise UsageError(f"sweep {args.sweep_id} has no offline W&B run directories to sync")
    argv = [sys.executable, "-m", "wandb", "sync", *dirs]
    if args.dry_run:
        print(" ".join(argv))
        return 0
    if not wandb_credentials_exist():
        raise UsageError("wandb sync needs W&B credentials: run `wandb login` (or set WANDB_API_KEY) first")
    return subprocess.run(argv).returncode


def cmd_report(args):
    from mlp.report import make_report
    result = make_report(_open_store(args.store), args.sweep_id, out=args.out, compare=args.compare,
                         data_dir=args.data_dir)
    print(result["html"], flush=True)
    return 0


def cmd_rerun(args):
    from mlp.report import rerun
    return rerun(_open_store(args.store), args.sweep_id, top=args.top, dataset=args.dataset, epochs=args.epochs,
                 data_dir=args.data_dir)["exit_code"]


def cmd_evaluate(args):
    from mlp.runs.data import load_dataset
    from mlp.runs.experiment import confusion_matrix
    from mlp.core.network import load_model
    net = load_model(args.model)
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    inputs, outputs = net.config["layer_sizes"][0], net.config["layer_sizes"][-1]
    if (inputs, outputs) != (data.x_test.shape[1], len(data.class_names)):
        raise UsageError(f"model {args.model} is of another architecture: it maps {inputs} inputs to {outputs} classes, "
                         f"{data.name} has {data.x_test.shape[1]} pixels and {len(data.class_names)} classes")
    loss, accuracy, pred = net.evaluate(data.x_test, data.y_test)
    if args.json:
        print(json.dumps({"model": args.model, "dataset": data.name, "test_loss": loss, "test_accuracy": accuracy,
                          "confusion_matrix": confusion_matrix(data.y_test, pred, len(data.class_names)).tolist()}))
    else:
        print(f"{data.name} test: accuracy {accuracy:.4f}, loss {loss:.4f} ({len(data.y_test)} images)")
    return 0


COMMANDS = {
    "train": ("train one network (the same flags as train.py)", None),
    "sweep": ("create a local sweep from a W&B sweep YAML (and run it with --count)", cmd_sweep),
    "agent": ("run the runs of a local sweep", cmd_agent),
    "evaluate": ("score a saved model on a test set", cmd_evaluate),
    "sweeps": ("list local sweeps", cmd_sweeps),
    "runs": ("list the runs of a sweep", cmd_runs),
    "sync": ("upload a sweep's offline runs to W&B", cmd_sync),
    "report": ("write a sweep's report: HTML, Markdown and figures, offline", cmd_report),
    "rerun": ("rerun a sweep's best configurations on another dataset", cmd_rerun),
}


def main(argv=None):
    accept_sigint()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: mlp COMMAND [options]   (mlp COMMAND --help for its options)", ""]
        lines += [f"  {name:<7} {text}" for name, (text, _) in COMMANDS.items()]
        print("\n".join(lines), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "train":
        return train_main(rest, prog="mlp train")
    parser = command_parsers()[command]
    handler = COMMANDS[command][1]
    return run_main(lambda a: handler(parser.parse_args(a)), rest)
