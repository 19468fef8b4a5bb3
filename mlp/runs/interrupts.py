"""Ctrl-C and SIGTERM inside a run's life: both become a KeyboardInterrupt (the CLI's entry points
set that up), and these two blocks decide where it may land.

* `handled_by(int_handler, term_handler)`: other handlers for a block (e.g. ignore both while a
  finished run is tested, saved and recorded), the previous ones back afterwards;
* `held()`: an interrupt that arrives during the block lands right after it (a store transaction,
  a claimed run not yet handed to the code that records it).

Python runs signal handlers in the main thread only; elsewhere both blocks do nothing.
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["handled_by", "held"]


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
