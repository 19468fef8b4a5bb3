"""The first thing `train.py` and `python -m mlp` do, before anything heavy is imported.

Until the command's own handling is in place (mlp.cli.flags.run_main), Ctrl-C or SIGTERM would
land inside some module's import — a KeyboardInterrupt traceback, or a misleading ImportError
from NumPy's half-imported package — or kill the process with the signal. Nothing has been
written that early, so the process just says so and exits 130, like any interrupted command.
"""
import os
import signal

__all__ = ["exit_quietly_on_interrupt"]


def _interrupted(signum, frame):
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    os._exit(130)


def exit_quietly_on_interrupt() -> None:
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
