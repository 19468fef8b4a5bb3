"""The command line, on top of everything else (nothing imports it): `train.py` / `mlp train`
and the `mlp` subcommands.

Bad input never shows a traceback: argparse errors and UsageError both print one line,
`error: ...`, and exit with code 2. SIGTERM is treated like Ctrl-C (SIGINT) everywhere.

Importing this package loads nothing else (its names are imported on first use): train.py and
`python -m mlp` install their start-up signal handling (mlp.cli.startup) before the heavy imports.
"""
import importlib

__all__ = ["main", "train_main", "parse_train_args", "train_parser"]

_HOMES = {"main": "mlp.cli.commands", "train_main": "mlp.cli.flags", "parse_train_args": "mlp.cli.flags",
          "train_parser": "mlp.cli.flags"}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'mlp.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
