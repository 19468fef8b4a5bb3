"""The `mlp` subcommands: argument parsing and output only; the work lives in the layers below."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from mlp import config as C, paths
from mlp.cli.flags import Parser
from mlp.errors import UsageError

__all__ = ["COMMANDS", "command_parsers", "main"]


SWEEP_REF = "a sweep id, or a W&B sweep: its id if the store knows it, or ENTITY/PROJECT/SWEEP_ID"


def _store_path(text):
    """--store, else MLP_STORE, else ./mlp-runs.sqlite: decided here, at the edge, and passed down."""
    from mlp.runs.store import default_store_path
    return str(paths.expand(default_store_path() if text is None else text,
                            "the store (MLP_STORE)" if text is None else "--store"))


def _store_arg(p):
    p.add_argument("--store", default=None,
                   help="SQLite store (else MLP_STORE, else ./mlp-runs.sqlite)")


# Flags naming a file or folder: checked once parsed (mlp.paths.expand), so that a path that
# cannot name anything is the one-line error paths writes, not argparse's "invalid value".
PATH_FLAGS = ("data_dir", "out")


def _parse(parser, argv):
    args = parser.parse_args(argv)
    for name in PATH_FLAGS:
        if getattr(args, name, None) is not None:
            paths.expand(getattr(args, name), f"--{name}")
    return args


def _fresh_arg(p):
    p.add_argument("--fresh_process", action="store_true",
                   help="start every run as a new Python process, as `wandb agent` does (default: runs of the "
                        "project's train.py are forked from the warm agent, without the start-up cost)")


def _launcher(args):
    """The warm launcher (mlp.sweep.warm) with train.py's entry point, unless --fresh_process."""
    if args.fresh_process:
        return None
    from mlp.cli.flags import TRAIN_PY, train_main
    from mlp.sweep.warm import WarmLauncher
    return WarmLauncher(lambda args: train_main(args, program=True), TRAIN_PY)


def _positive(text):
    try:
        return C.Param("count", "int", None, "", low=1, high=10**9).parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _param(name):
    def parse(text):
        try:
            return C.PARAMS[name].parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


_dataset, _seed = _param("dataset"), _param("seed")


def command_parsers():
    parsers = {}
    p = parsers["sweep"] = Parser(prog="mlp sweep", description="Validate a W&B sweep YAML, create a local sweep and "
                                  "print its id; with --count also run it (offline, W&B's own search engine).")
    p.add_argument("file", help="sweep YAML (the same file `wandb sweep` takes)")
    p.add_argument("--name", help="sweep name (default: the YAML's name or file name)")
    p.add_argument("--seed", type=_seed, help="seed of the search (random and bayes are reproducible under it)")
    p.add_argument("--count", type=_positive, help="run this many runs now")
    p.add_argument("--jobs", type=_positive, default=1, help="agents in parallel (with --count)")
    _fresh_arg(p)
    _store_arg(p)
    p = parsers["agent"] = Parser(prog="mlp agent", description="Join a local sweep and run its runs.")
    p.add_argument("sweep_id", help="a local sweep id (or the W&B path it was synced as)")
    p.add_argument("--count", type=_positive, help="stop after this many runs (default: until the search is over)")
    p.add_argument("--jobs", type=_positive, default=1, help=argparse.SUPPRESS)  # BLAS threads = cores / jobs
    p.add_argument("--retry-failed", "--retry_failed", dest="retry_failed", action="store_true",
                   help="first run again the parameters of the sweep's crashed and failed runs (each once; not "
                        "diverged ones), then go on with the search")
    _fresh_arg(p)
    _store_arg(p)
    p = parsers["evaluate"] = Parser(prog="mlp evaluate", description="Score a saved model (.npz) on a dataset's test set.")
    p.add_argument("model", help="a model written by --save_model (or a sweep's mlp-models/SWEEP/RUN.npz)")
    p.add_argument("-d", "--dataset", type=_dataset, default="fashion_mnist", help="mnist or fashion_mnist")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = parsers["features"] = Parser(prog="mlp features", description="Write a saved model's layer outputs "
                                     "(features) for the train/val/test images to an .npz, or list its layers. "
                                     "`train.py --features MODEL.npz[:LAYER]` trains an MLP on the same features.")
    p.add_argument("model", help="a saved model (.npz), optionally MODEL.npz:LAYER")
    p.add_argument("--layer", help="layer index (negative counts from the end), name (see --list) or 'penultimate' "
                   "(default: the model's features layer, else penultimate: the last layer's input)")
    p.add_argument("--list", action="store_true", help="list the layers (index, name, output shape) and stop")
    p.add_argument("--out", help="output .npz (default: MODEL.LAYER.features.npz beside the model)")
    p.add_argument("-d", "--dataset", type=_dataset, default="fashion_mnist", help="mnist or fashion_mnist")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    p.add_argument("--split", type=_param("split"), default="standard", help="standard or 80-10-10")
    p.add_argument("--val_fraction", type=_param("val_fraction"), default=0.1, help="validation share (standard split)")
    p = parsers["sweeps"] = Parser(prog="mlp sweeps", description="List the sweeps in the store.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    p = parsers["runs"] = Parser(prog="mlp runs", description="List the runs of a sweep.")
    p.add_argument("sweep_id", help=SWEEP_REF)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    p = parsers["sync"] = Parser(prog="mlp sync", description="Upload a sweep's offline runs with `wandb sync`, then "
                                 "create the W&B sweep that holds them (once; its URL is printed).")
    p.add_argument("sweep_id")
    p.add_argument("--project", type=_param("wandb_project"),   # its message, not "invalid <lambda> value"
                   help="W&B project for the runs and the sweep (default: the one the runs logged to)")
    p.add_argument("--entity", type=_param("wandb_entity"),
                   help="W&B entity (default: the runs', else your default entity)")
    p.add_argument("--dry_run", action="store_true", help="print the wandb sync command instead of running it")
    _store_arg(p)
    p = parsers["import"] = Parser(prog="mlp import", description="Copy a W&B sweep and its finished runs (config, "
                                   "state, summary, per-epoch history) into the store; again later adds the runs "
                                   "finished since.")
    p.add_argument("path", help="ENTITY/PROJECT/SWEEP_ID (as `wandb sweep` prints it)")
    _store_arg(p)
    p = parsers["report"] = Parser(prog="mlp report", description="Write a sweep's report (index.html, report.md and "
                                   "one PNG per figure) from the local store, offline (a W&B sweep's runs are "
                                   "imported first when W&B is reachable).")
    p.add_argument("sweep_id", help=SWEEP_REF)
    p.add_argument("--out", help="output folder (default: reports/SWEEP_ID)")
    p.add_argument("--compare", metavar="SWEEP_ID", help="the cross-entropy vs squared-error sweep: a store id or a W&B "
                   "sweep (ENTITY/PROJECT/ID, its URL, or a bare id in the report's W&B project), imported like the "
                   "main one (default: found in the store: a sweep whose loss values are cross_entropy and "
                   "mean_squared_error)")
    p.add_argument("--data_dir", help="folder with the IDX files (default: the sweep's, else MLP_DATA_DIR, cache, "
                   "Debian, download)")
    _store_arg(p)
    p = parsers["rerun"] = Parser(prog="mlp rerun", description="Rerun a sweep's top-K validation configurations on "
                                  "another dataset as a linked sweep (its report then shows both): a W&B sweep's "
                                  "rerun is a W&B sweep for `wandb agent` when W&B is reachable, else it runs here.")
    p.add_argument("sweep_id", help=SWEEP_REF)
    p.add_argument("--top", type=_positive, default=3, help="how many of the best configurations (default: 3)")
    p.add_argument("--dataset", type=_dataset, default="mnist", help="mnist or fashion_mnist (default: mnist)")
    p.add_argument("--epochs", type=_positive, help="epochs per run (default: each config's own)")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    p.add_argument("--local", action="store_true", help="run the rerun here even for a W&B sweep")
    _store_arg(p)
    p = parsers["baselines"] = Parser(prog="mlp baselines", description="Train scikit-learn baselines (logistic "
                                      "regression, k-NN, random forest, MLPClassifier) and the PyTorch twin of a "
                                      "sweep's best run on exactly the split train.py uses; print the table and keep "
                                      "it in the store (mlp report shows it).")
    p.add_argument("-d", "--dataset", type=_dataset, default="fashion_mnist", help="mnist or fashion_mnist")
    p.add_argument("--data_dir", help="folder with the IDX files (else MLP_DATA_DIR, cache, Debian, download)")
    p.add_argument("--split", type=_param("split"), default="standard", help="standard or 80-10-10, as train.py")
    p.add_argument("--val_fraction", type=_param("val_fraction"), default=0.1, help="as train.py (default 0.1)")
    p.add_argument("--models", help="comma-separated subset of: logistic_regression, knn, random_forest, "
                   "sklearn_mlp, torch_twin (default: all; the twin only when torch is installed)")
    p.add_argument("--sweep", metavar="SWEEP_ID", help="twin this sweep's best run (default: train.py's defaults)")
    p.add_argument("--jobs", type=_positive, default=1, help="n_jobs of k-NN and the random forest, and PyTorch's "
                   "threads (default 1)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    return parsers


def _open_store(path, create=False):
    from mlp.runs.store import Store
    return Store(_store_path(path), create=create)


def _store_for(args):
    """The store; created if missing when the sweep is a W&B path W&B can give now."""
    from mlp.sweep.bridge import open_store
    return open_store(_store_path(args.store), args.sweep_id)


def _dump_json(obj) -> str:
    from mlp.runs.store import encode_json
    return encode_json(obj, indent=2)


def cmd_sweep(args):
    from mlp.sweep.agent import Agent, create_sweep, prepare_sweep, run_parallel_agents
    prepared = prepare_sweep(args.file)  # a bad file leaves no store behind
    with _open_store(args.store, create=True) as store:
        sweep_id = create_sweep(store, args.file, prepared, name=args.name, seed=args.seed)
        print(sweep_id, flush=True)
        print(f"created sweep {sweep_id} in {store.path}; run it with `mlp agent {sweep_id}`", file=sys.stderr,
              flush=True)
        if not args.count:
            return 0
        if args.jobs == 1:
            return Agent(store, sweep_id, count=args.count, launcher=_launcher(args)).run()
    return run_parallel_agents(store.path, sweep_id, args.count, args.jobs, fresh_process=args.fresh_process)


def cmd_agent(args):
    from mlp.sweep.agent import Agent
    from mlp.sweep.bridge import resolve
    with _open_store(args.store) as store:
        return Agent(store, resolve(store, args.sweep_id, fetch=False), count=args.count, jobs=args.jobs,
                     launcher=_launcher(args), retry_failed=args.retry_failed).run()


def _best(runs, metric="val_accuracy"):
    values = [r["summary"].get(metric) for r in runs if isinstance(r["summary"].get(metric), (int, float))]
    values = [v for v in values if v == v]
    return max(values) if values else None


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows])


def _fmt(value, spec=".4f"):
    return format(value, spec) if isinstance(value, float) else ("" if value is None else str(value))


def _is_autoencoder_sweep(sweep) -> bool:
    spec = (sweep["config"].get("parameters") or {}).get("task") or {}
    return isinstance(spec, dict) and (spec.get("value") == "autoencoder" or spec.get("values") == ["autoencoder"])


def cmd_sweeps(args):
    with _open_store(args.store) as store:
        return _list_sweeps(store, args)


def _list_sweeps(store, args):
    sweeps = store.list_sweeps()
    for s in sweeps:
        s["best_val_accuracy"] = _best(store.list_runs(s["id"]))
        if _is_autoencoder_sweep(s):                     # an autoencoder sweep: its best R² instead
            s["best_val_r2"] = _best(store.list_runs(s["id"]), "val_r2")
    if args.json:
        print(_dump_json([{k: s[k] for k in ("id", "name", "state", "seed", "created_at", "run_counts",
                                             "best_val_accuracy", "origin", "wandb_path", "parent_sweep_id")}
                          | ({"best_val_r2": s["best_val_r2"]} if "best_val_r2" in s else {})
                          | {"config": s["config"], "summary": {"best_val_accuracy": s["best_val_accuracy"],
                                                                 "runs": s["n_runs"]}} for s in sweeps]))
        return 0
    rows = [(s["id"], s["name"] or "", "W&B" if s["origin"] == "wandb" else "local", s["config"].get("method", ""),
             s["state"], s["n_runs"], " ".join(f"{k}:{v}" for k, v in s["run_counts"].items() if v),
             f"{_fmt(s['best_val_r2'])} (R²)" if s.get("best_val_r2") is not None else _fmt(s["best_val_accuracy"]),
             s["wandb_path"] or "") for s in sweeps]
    print(_table(("ID", "NAME", "ORIGIN", "METHOD", "STATE", "RUNS", "STATES", "BEST VAL_ACC", "IN W&B"), rows)
          if rows else "no sweeps yet")
    return 0


def cmd_runs(args):
    with _store_for(args) as store:
        return _list_runs(store, args)


def _list_runs(store, args):
    from mlp.sweep.bridge import resolve
    sweep = store.get_sweep(resolve(store, args.sweep_id))
    runs = store.list_runs(sweep["id"])
    if args.json:
        print(_dump_json([{k: r[k] for k in ("id", "seq", "name", "state", "config", "summary", "exit_code", "error",
                                             "created_at", "started_at", "finished_at", "wandb_dir", "model_path",
                                             "params", "stopped_by")} for r in runs]))
        return 0
    keys = list(sweep["config"].get("parameters", {}))
    score = "val_r2" if _is_autoencoder_sweep(sweep) else "val_accuracy"
    rows = []
    for r in runs:
        duration = (r["finished_at"] or time.time()) - r["started_at"] if r["started_at"] else None
        state = r["state"] + ("*" if r["stopped_by"] else "")
        rows.append((r["id"], state, *[_fmt(r["params"].get(k), "g") for k in keys],
                     _fmt(r["summary"].get(score)), _fmt(duration, ".1f")))
    print(_table(("ID", "STATE", *keys, "VAL_R2" if score == "val_r2" else "VAL_ACC", "SECONDS"), rows)
          if rows else f"sweep {sweep['id']} has no runs yet")
    if any(r["stopped_by"] for r in runs):
        print("* stopped early by hyperband")
    if sweep["origin"] == "wandb":
        print(f"W&B sweep {sweep['wandb_path'] or sweep['id']}: runs that ran here and runs imported from W&B")
    elif sweep["wandb_path"]:
        print(f"synced to W&B as sweep {sweep['wandb_path']}")
    return 0


def cmd_sync(args):
    from mlp.sweep.bridge import sync
    with _open_store(args.store) as store:
        return sync(store, args.sweep_id, project=args.project, entity=args.entity, dry_run=args.dry_run)


def cmd_import(args):
    from mlp.runs.wandb_api import SweepPath
    from mlp.sweep.bridge import import_sweep, open_store
    path = SweepPath.parse(args.path)
    if path is None:
        raise UsageError(f"{args.path!r} is not a W&B sweep path; give ENTITY/PROJECT/SWEEP_ID (as `wandb sweep` "
                         f"prints it)")
    with open_store(_store_path(args.store), args.path, importing=True) as store:
        result = import_sweep(store, path)
    print(result.sweep_id, flush=True)
    return 0


def _check_data_dir(args) -> None:
    """A --data_dir that is not a folder is refused before any work (a report loads its data only
    after importing and computing have begun; a rerun that trains here checks it the same way)."""
    if args.data_dir is not None:
        from mlp.runs.data import check_data_dir
        check_data_dir(args.data_dir)


def cmd_report(args):
    """Import (a W&B sweep, and a W&B comparison sweep), make the best model available (its file,
    its W&B artifact or a retrain), then write the report, which only reads."""
    from mlp.report import make_report
    from mlp.report.build import check_inputs
    from mlp.runs.wandb_api import SweepPath
    from mlp.sweep.bridge import resolve
    from mlp.sweep.models import ensure_best_model
    _check_data_dir(args)
    with _store_for(args) as store:
        sweep_id = resolve(store, args.sweep_id)
        where = store.get_sweep(sweep_id)["wandb_path"]      # a bare --compare id may live beside it in W&B
        compare = resolve(store, args.compare, near=SweepPath.parse(where) if where else None) if args.compare else None
        check_inputs(store, sweep_id, args.out, compare)
        ensure_best_model(store, sweep_id, data_dir=args.data_dir)
        result = make_report(store, sweep_id, out=args.out, compare=compare, data_dir=args.data_dir)
    print(result["html"], flush=True)
    return 0


def cmd_rerun(args):
    from mlp.sweep.rerun import rerun
    with _store_for(args) as store:
        return rerun(store, args.sweep_id, top=args.top, dataset=args.dataset, epochs=args.epochs,
                     data_dir=args.data_dir, local=args.local)["exit_code"]


def cmd_baselines(args):
    from mlp.sweep.baselines import run_baselines
    from mlp.runs.baseline_models import parse_models
    rows = run_baselines(_store_path(args.store), args.dataset, data_dir=args.data_dir, split=args.split,
                         val_fraction=args.val_fraction, models=parse_models(args.models), sweep=args.sweep,
                         jobs=args.jobs)
    if args.json:
        print(_dump_json(rows))
        return 0
    print(_table(("MODEL", "VAL_ACC", "TEST_ACC", "TRAIN_S", "LIBRARY"),
                 [(r["label"], _fmt(r["val_accuracy"]), _fmt(r["test_accuracy"]), _fmt(r["train_seconds"], ".1f"),
                   r["library"] or "") for r in rows]), flush=True)
    return 0


def cmd_evaluate(args):
    from mlp.core.model_file import load_model
    from mlp.runs.data import load_dataset
    from mlp.core.metrics import confusion_matrix
    from mlp.core.augment import view_offsets as augment_views
    net = load_model(args.model)
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    inputs, outputs = net.input_shape, net.n_outputs
    if not net.is_classifier and inputs == data.x_test.shape[1:] and outputs == data.x_test.shape[1]:
        return _evaluate_autoencoder(args, net, data)
    if (inputs, outputs) != (data.x_test.shape[1:], len(data.class_names)):
        raise UsageError(f"model {args.model} is of another architecture: it maps inputs of shape {inputs} to "
                         f"{outputs} classes, {data.name} has {data.x_test.shape[1]} pixels and "
                         f"{len(data.class_names)} classes")
    loss, accuracy, pred = net.evaluate(data.x_test, data.y_test)
    if args.json:
        print(_dump_json({"model": args.model, "dataset": data.name, "test_loss": loss, "test_accuracy": accuracy,
                          "confusion_matrix": confusion_matrix(data.y_test, pred, len(data.class_names)).tolist()}))
    else:
        views = net.test_views and len(augment_views(**net.test_views))
        how = f", each the mean over {views} shifted/mirrored views" if views else ""
        print(f"{data.name} test: accuracy {accuracy:.4f}, loss {loss:.4f} ({len(data.y_test)} images{how})")
    return 0


def cmd_features(args):
    from mlp.runs import features as F
    from mlp.runs.data import load_dataset
    from mlp.networks import physical_memory
    from mlp.runs.experiment import check_output, data_files, store_files
    from mlp.runs.store import default_store_path
    path, named = C.split_features(args.model)
    if named is not None and args.layer is not None:
        raise UsageError(f"the layer is given twice ({args.model} and --layer {args.layer}); give it once")
    frozen = F.load_frozen(args.model, layer=args.layer)
    if args.list:
        rows = [(i, name, "×".join(map(str, shape)), f"{params:,}") for i, name, shape, params in F.layer_table(frozen.net)]
        print(_table(("INDEX", "NAME", "OUTPUT", "PARAMETERS"), rows))
        print(f"default features layer: {frozen.index} ({frozen.name})")
        return 0
    # the default beside the model: the layer's name as a file-name part (a model file's tag is
    # data, and must not steer the path: no separators, no dots to climb with)
    out = args.out or str(Path(path).with_suffix("")) + "." + re.sub(r"[^A-Za-z0-9_-]", "_", frozen.name) + \
        ".features.npz"
    check_output(out, "--out", inputs=[path, *data_files(args.data_dir), *store_files(default_store_path())])
    F.check_memory(frozen, have=physical_memory())
    data = load_dataset(args.dataset, data_dir=args.data_dir, split=args.split, val_fraction=args.val_fraction)
    written = F.write_features(out, data, frozen)
    print(f"wrote {written}: layer {frozen.index} ({frozen.name}, {'×'.join(map(str, frozen.shape))} per image) of "
          f"{path} for {len(data.x_train):,} train / {len(data.x_val):,} val / {len(data.x_test):,} test images of "
          f"{data.name}")
    return 0


def _evaluate_autoencoder(args, net, data):
    from mlp.runs.autoencoder import evaluate
    loss, r2, _ = evaluate(net, data.x_test)
    if args.json:
        print(_dump_json({"model": args.model, "dataset": data.name, "test_loss": loss, "test_r2": r2}))
    else:
        print(f"{data.name} test: R² {r2:.4f}, loss {loss:.4f} (autoencoder, {len(data.x_test)} images)")
    return 0


COMMANDS = {
    "train": ("train one network (the same flags as train.py)", None),
    "sweep": ("create a local sweep from a W&B sweep YAML (and run it with --count)", cmd_sweep),
    "agent": ("run the runs of a local sweep", cmd_agent),
    "evaluate": ("score a saved model on a test set", cmd_evaluate),
    "features": ("write a saved model's layer outputs for the images (or list its layers)", cmd_features),
    "sweeps": ("list the sweeps in the store (local and W&B)", cmd_sweeps),
    "runs": ("list the runs of a sweep", cmd_runs),
    "sync": ("upload a sweep's offline runs to W&B, as a W&B sweep", cmd_sync),
    "import": ("copy a W&B sweep and its runs into the store", cmd_import),
    "report": ("write a sweep's report: HTML, Markdown and figures, offline", cmd_report),
    "rerun": ("rerun a sweep's best configurations on another dataset", cmd_rerun),
    "baselines": ("scikit-learn and PyTorch baselines on train.py's split, into the store", cmd_baselines),
}


def main(argv=None):
    """The `mlp` command. As a program (argv from sys.argv) its streams are guarded and a late
    signal cannot cut it short (mlp.cli.flags.run_main)."""
    from mlp.cli.flags import accept_sigint, run_main, sigterm_is_interrupt, train_main
    program = argv is None
    accept_sigint()
    sigterm_is_interrupt()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        lines = ["usage: mlp COMMAND [options]   (mlp COMMAND --help for its options)", ""]
        lines += [f"  {name:<8} {text}" for name, (text, _) in COMMANDS.items()]
        print("\n".join(lines))
        return 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {what}; choose one of: {', '.join(COMMANDS)} (`mlp --help` says what each does)",
              file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train_main(rest, prog="mlp train", program=program)
    parser = command_parsers()[command]
    handler = COMMANDS[command][1]
    return run_main(lambda a: handler(_parse(parser, a)), rest, program=program)
