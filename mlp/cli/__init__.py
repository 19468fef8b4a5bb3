"""The command line, on top of everything else (nothing imports it): `train.py` / `mlp train`
and the `mlp` subcommands.

Bad input never shows a traceback: argparse errors and UsageError both print one line,
`error: ...`, and exit with code 2. SIGTERM is treated like Ctrl-C (SIGINT) everywhere.
"""
import sys

from mlp.cli.commands import COMMANDS, command_parsers
from mlp.cli.flags import accept_sigint, parse_train_args, run_main, sigterm_is_interrupt, train_main, train_parser

__all__ = ["main", "train_main", "parse_train_args", "train_parser"]


def main(argv=None):
    accept_sigint()
    sigterm_is_interrupt()
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
