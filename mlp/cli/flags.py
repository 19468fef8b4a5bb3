"""The train.py flag table, generated from the config schema (`mlp.config.PARAMS`).

Flags only collect what the user typed; `mlp.config.resolve` turns that into the full config
(defaults or a preset underneath, every value checked), the same function that sweep files and
W&B's config go through.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from mlp import config as C
from mlp.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line UsageErrors (exit 2 in `run_main`), never SystemExit."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# The project's train.py (beside the package): its body is `train_main`, so a sweep whose program is
# this file can have its runs forked from a warm agent (mlp.sweep.warm).
TRAIN_PY = Path(__file__).resolve().parents[2] / "train.py"

def _flag_type(param: C.Param):
    def parse(text):
        try:
            return param.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = param.kind
    return parse


def _help(param: C.Param) -> str:
    parts = [param.help]
    if param.choice_names and param.kind == "choice":
        parts.append("one of: " + ", ".join(param.choice_names) + " (case-insensitive)")
    elif param.range_text():
        parts.append(param.range_text())
    default = param.default
    if isinstance(default, list):
        default = "[" + ", ".join(map(str, default)) + "]"
    parts.append(f"default: {default if default is not None else 'not set'}")
    return "; ".join(parts)


def train_parser(prog: str = "train.py") -> Parser:
    p = Parser(prog=prog, description="Train a NumPy MLP on Fashion-MNIST or MNIST, logging to W&B and the local "
                                      "store. W&B agents' forms --key=value, --flag=True and --hidden_sizes=[128, 64] "
                                      "are accepted.")
    groups = {"assignment": p, "beyond": p.add_argument_group("beyond the assignment")}
    for param in C.PARAMS.values():
        flags = ([param.short] if param.short else []) + [f"--{param.name}"]
        extra = {"nargs": "?", "const": True} if param.kind == "bool" else {}
        metavar = None if param.kind == "choice" else param.kind.upper()
        groups[param.group].add_argument(*flags, dest=param.name, type=_flag_type(param), default=argparse.SUPPRESS,
                                         help=_help(param), metavar=metavar, **extra)
    return p


def _number(x) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def flag_table(group: str) -> str:
    """The Markdown table of train.py's flags of one group ("assignment" or "beyond"), from the
    schema itself (what `--help` shows): the README's tables are this text, which the test that
    keeps them so prints when they differ."""
    rows = ["| flag | meaning | values | default |", "|---|---|---|---|"]
    for param in C.PARAMS.values():
        if param.group != group:
            continue
        flags = ", ".join(f"`{f}`" for f in ([param.short] if param.short else []) + [f"--{param.name}"])
        if param.kind == "choice" and param.choice_names:
            values = ", ".join(f"`{n}`" for n in param.choice_names)
        elif param.kind == "bool":
            values = "flag (`--x`, `--x=False`)"
        else:
            values = {"int": "integer", "float": "number", "str": "text", "int_list": "list of integers"}[param.kind]
            bounds = [f"{'>' if param.low_open else '≥'} {_number(param.low)}" if param.low is not None else "",
                      f"{'<' if param.high_open else '≤'} {_number(param.high)}" if param.high is not None else ""]
            values = " ".join(filter(None, [values, ", ".join(filter(None, bounds))]))
        default = param.default
        if isinstance(default, list):
            default = "[" + ", ".join(map(str, default)) + "]"
        rows.append(f"| {flags} | {_cell(param.help)} | {_cell(values)} | "
                    f"{'—' if default is None else f'`{default}`'} |")
    return "\n".join(rows)


def parse_train_args(argv, prog: str = "train.py") -> dict:
    """argv -> the complete config (see mlp.config.resolve): explicit flags over the preset
    (if --preset is given) over the defaults."""
    given = vars(train_parser(prog).parse_args(list(argv)))
    return C.resolve(given)


def run_main(fn, argv):
    """Run a command body; bad input becomes one line on stderr and exit code 2 (a store locked
    too long: 75); Ctrl-C or SIGTERM before anything was started: 130, without a traceback."""
    try:
        return fn(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def accept_sigint():
    """Turn SIGINT into KeyboardInterrupt even if it was ignored at start-up.

    A shell starts background jobs (`nohup mlp agent ... &`, cluster scripts) with SIGINT ignored,
    and Python then never installs its handler — but SIGINT is how an agent stops a run (hyperband,
    Ctrl-C) without losing its offline W&B data, so it must always work."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def sigterm_is_interrupt():
    """SIGTERM (what `kill`, schedulers and systemd send) stops like Ctrl-C: runs in flight are
    recorded as killed, agents stop their children and exit 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def train_main(argv=None, prog="train.py"):
    accept_sigint()
    sigterm_is_interrupt()

    def body(args):
        from mlp.runs.experiment import run
        from mlp.runs.store import default_store_path
        config = parse_train_args(args, prog)
        config["store"] = config["store"] or default_store_path()     # --store, else MLP_STORE, else ./
        return run(config).exit_code
    return run_main(body, sys.argv[1:] if argv is None else argv)
