"""stdout and stderr that never fail a command.

A command's streams can break under it: stdout on a full disk or piped into a program that has
exited (`train.py ... | head -1`), stderr closed (`2>&-`) or on a full device. A run must not
turn into `failed` because its result line could not be printed — the store and W&B hold the
result. `guard()` wraps both streams: a write that fails is dropped (the stream is pointed at
/dev/null, so the interpreter's own flush at exit stays quiet too) and remembered; the command
then decides what a lost output means (`lost()`).
"""
from __future__ import annotations

import errno
import io
import os
import sys

__all__ = ["guard", "lost", "GuardedStream"]


class GuardedStream(io.TextIOBase):
    """A text stream whose write/flush never raise; `failure` keeps the first error."""

    def __init__(self, stream, name: str, closed_at_start: bool = False):
        super().__init__()
        self._stream, self.name, self.failure = stream, name, None
        self.closed_at_start = closed_at_start

    def _failed(self, e: BaseException) -> None:
        if self.failure is None:
            self.failure = e
        try:                        # from now on into /dev/null, the fd too (buffered bytes included)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        self._stream = None

    def write(self, text):
        if self.closed_at_start and text and self.failure is None:   # `mlp sweeps >&-`: the output goes nowhere
            self.failure = OSError(errno.EBADF, f"{self.name} was closed when the command started")
        if self._stream is not None:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as e:
                self._failed(e)
        return len(text)

    def flush(self):
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as e:
                self._failed(e)

    def isatty(self):
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self):
        if self._stream is None:
            raise io.UnsupportedOperation("the stream failed and is closed")
        return self._stream.fileno()

    def writable(self):
        return True

    def __getattr__(self, name):            # anything else a library asks of the real stream
        stream = self.__dict__.get("_stream")
        if stream is None:
            raise AttributeError(name)
        return getattr(stream, name)

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self):
        return getattr(self._stream, "errors", None) or "strict"


def guard() -> None:
    """Wrap sys.stdout and sys.stderr (once); a missing stream (fd closed at start) is /dev/null."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, GuardedStream):
            continue
        if current is None:
            setattr(sys, name, GuardedStream(open(os.devnull, "w"), name, closed_at_start=True))
        else:
            setattr(sys, name, GuardedStream(current, name))


def lost(name: str = "stdout") -> BaseException | None:
    """The error that made stdout (or stderr) drop output, or None."""
    stream = getattr(sys, name)
    if isinstance(stream, GuardedStream):
        stream.flush()
        return stream.failure
    return None
