"""Ctrl-C and SIGTERM inside a run's life: both become a KeyboardInterrupt (the CLI's entry points
set that up), and these two blocks decide where it may land.

* `handled_by(int_handler, term_handler)`: other handlers for a block (e.g. ignore both while a
  finished run is tested, saved and recorded), the previous ones back afterwards;
* `held()`: an interrupt that arrives during the block lands right after it (a store transaction,
  a claimed run not yet handed to the code that records it);
* `finishing()`: neither lands in the block (a run being tested, saved and recorded); in a
  program (train.py) they stay blocked to the end of the process, whose result is then decided;
* `interrupt_once`: train.py's handler — the first signal is the KeyboardInterrupt, later ones
  are ignored, so a burst of Ctrl-C stops a run once and never cuts its recording short;
* `settle()`: a program's outcome is decided — block both signals until it exits.

Python runs signal handlers in the main thread only; elsewhere both blocks do nothing.
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["handled_by", "held", "interrupt_once", "finishing", "settle", "as_program"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_program = [False]           # [True] in a command-line program (as_program)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class handled_by:
    """Set SIGINT/SIGTERM handlers for a block (main thread only; None keeps one), restoring them after."""

    def __init__(self, handler_int, handler_term):
        self.handlers = {signal.SIGINT: handler_int, signal.SIGTERM: handler_term}
        self.previous = {}

    def __enter__(self):
        if _main_thread():
            for sig, handler in self.handlers.items():
                if handler is not None:
                    self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held():
    """Ctrl-C/SIGTERM that arrive during the block land right after it, never inside it.

    Used around store transactions: both signals become a KeyboardInterrupt between two Python instructions; one raised between BEGIN and
    COMMIT would leave the connection inside a transaction that the caller's own clean-up (record
    the run killed) could not start — a row stuck `pending`/`running` and "cannot start a
    transaction within a transaction". Only the main thread runs Python signal handlers, so only
    it holds them; a handler that is not Python's (SIG_IGN, SIG_DFL) raises nothing to hold."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    holding = [sig for sig, handler in saved.items() if callable(handler)]
    for sig in holding:
        signal.signal(sig, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for sig in holding:
            signal.signal(sig, saved[sig])
        if caught:
            saved[caught[0]](caught[0], None)     # e.g. KeyboardInterrupt, now the block is over


def interrupt_once(signum, frame):
    """SIGINT/SIGTERM as one KeyboardInterrupt: the first raises it, and both are ignored from then
    on (set inside the handler, so no second signal can slip in before the stop is handled)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def as_program() -> None:
    """This process is a command-line program (train.py, `python -m mlp`, a forked run), not a
    library caller: `finishing` and `settle` may then block the signals for good."""
    _program[0] = True


def settle() -> None:
    """A program's outcome is decided (recorded, printed): block SIGINT/SIGTERM until the process
    exits, so a late one cannot kill it with the signal's exit code. Nothing for a library caller."""
    if _program[0] and _main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))


@contextlib.contextmanager
def finishing():
    """Neither signal lands in the block. In a program they stay blocked afterwards (`settle`);
    a library caller gets its handlers back when the block ends."""
    if _program[0]:
        settle()
        yield
        return
    with handled_by(signal.SIG_IGN, signal.SIG_IGN):
        yield
