"""The command line, on top of everything else (nothing imports it): `train.py` / `mlp train`
and the `mlp` subcommands.

Bad input never shows a traceback: argparse errors and UsageError both print one line,
`error: ...`, and exit with code 2. SIGTERM is treated like Ctrl-C (SIGINT) everywhere.
"""
import signal
import sys
import threading

from mlp.cli.commands import COMMANDS, command_parsers
from mlp.cli.flags import accept_sigint, parse_train_args, run_main, train_parser

__all__ = ["main", "train_main", "parse_train_args", "train_parser"]


def _sigterm_is_interrupt():
    """SIGTERM (what `kill`, schedulers and systemd send) stops like Ctrl-C: runs in flight are
    recorded as killed, agents stop their children and exit 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def train_main(argv=None, prog="train.py"):
    accept_sigint()
    _sigterm_is_interrupt()

    def body(args):
        from mlp.runs.experiment import run
        return run(parse_train_args(args, prog)).exit_code
    return run_main(body, sys.argv[1:] if argv is None else argv)


def main(argv=None):
    accept_sigint()
    _sigterm_is_interrupt()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: mlp COMMAND [options]   (mlp COMMAND --help for its options)", ""]
        lines += [f"  {name:<8} {text}" for name, (text, _) in COMMANDS.items()]
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
