"""The train.py flag table, generated from the config schema (`mlp.config.PARAMS`).

Flags only collect what the user typed; `mlp.config.resolve` turns that into the full config
(defaults or a preset underneath, every value checked), the same function that sweep files and
W&B's config go through.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from mlp import config as C, paths
from mlp.cli import streams
from mlp.errors import UsageError
from mlp.runs import interrupts


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


def run_main(fn, argv, program: bool = False, output_matters: bool = True):
    """Run a command body; bad input becomes one line on stderr and exit code 2 (a store locked
    too long: 75); Ctrl-C or SIGTERM before anything was started: 130, without a traceback.

    `program`: this process is the command (train.py, `python -m mlp`, a forked run), not a caller
    in Python. Its streams are then guarded (mlp.cli.streams: a broken stdout/stderr never fails
    the work), and once the command's outcome is decided SIGINT/SIGTERM are blocked for good, so a
    late signal cannot turn a recorded result into a killed process. A stdout that lost output is
    exit 1 (`error: ...` on stderr) when the output is the point of the command
    (`output_matters`); train.py's result is in the store and W&B, so there it is a warning."""
    if program:
        interrupts.as_program()
        streams.guard()
        logging.raiseExceptions = False   # a library's log handler on a full disk: dropped, not 1000 tracebacks
    try:
        code = fn(argv)
    except UsageError as e:
        interrupts.settle()
        print(f"error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        interrupts.settle()
        print("interrupted", file=sys.stderr)
        code = 130
    else:
        interrupts.settle()
    failure = streams.lost("stdout") if program else None
    if failure is not None:
        what = getattr(failure, "strerror", None) or failure
        if output_matters and code == 0:
            print(f"error: could not write the output to stdout ({what})", file=sys.stderr)
            code = 1
        else:
            print(f"warning: some output to stdout was lost ({what})", file=sys.stderr)
    streams.lost("stderr")
    return code


def accept_sigint(handler=signal.default_int_handler):
    """Turn SIGINT into KeyboardInterrupt even if it was ignored at start-up.

    A shell starts background jobs (`nohup mlp agent ... &`, cluster scripts) with SIGINT ignored,
    and Python then never installs its handler — but SIGINT is how an agent stops a run (hyperband,
    Ctrl-C) without losing its offline W&B data, so it must always work."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def sigterm_is_interrupt(handler=signal.default_int_handler):
    """SIGTERM (what `kill`, schedulers and systemd send) stops like Ctrl-C: runs in flight are
    recorded as killed, agents stop their children and exit 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def train_main(argv=None, prog="train.py", program=None):
    """train.py's body. As a program (argv from sys.argv, or `program=True`), the first SIGINT or
    SIGTERM stops the run and later ones are ignored (interrupts.interrupt_once): a burst of
    Ctrl-C or a scheduler's repeated SIGTERM stops the run once, and its recording is not cut."""
    program = argv is None if program is None else program
    handler = interrupts.interrupt_once if program else signal.default_int_handler
    accept_sigint(handler)
    sigterm_is_interrupt(handler)

    def body(args):
        from mlp.runs.experiment import run
        from mlp.runs.store import default_store_path
        config = parse_train_args(args, prog)
        store = config["store"] or default_store_path()     # --store, else MLP_STORE, else ./
        config["store"] = str(paths.expand(store, "--store" if config["store"] else "the store (MLP_STORE)"))
        return run(config).exit_code
    return run_main(body, sys.argv[1:] if argv is None else argv, program=program, output_matters=False)
