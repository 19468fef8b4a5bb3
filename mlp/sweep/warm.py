"""Warm runs: the offline agent forks each run from a process that has already imported what a
run needs, instead of starting a fresh Python for it.

A forked run is still a process of its own — its own pid, session, RNGs, W&B run, store row and
log — so everything the agent does with a subprocess still holds: SIGINT stops exactly that run
(hyperband, Ctrl-C), kill -9 of the run cannot take the agent down, the agent reaps and records
it. What it saves is the start-up: Python, NumPy, the mlp package, and W&B's client with the
modules its first `wandb.init` pulls in (launch, telemetry, pandas, requests …, about 650
modules). The agent learns that last list from the runs themselves: each forked run reports the
modules it had to import, and the agent imports them before the next fork, so from the second
run on a run starts with nothing left to import. The data needs no warming: `load_dataset`
memory-maps its split cache.

Only the project's own `train.py` can be run this way — the file the CLI names when it makes the
launcher, whose body is the `entry` it hands in (`mlp.cli.train_main`) — with the argv `wandb
agent` would build (`${env} ${interpreter} ${program} ${args}`); any other program or command
(a copy of train.py elsewhere included) runs as a subprocess, exactly as before.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["ForkedRun", "WarmLauncher", "can_fork"]

def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


class ForkedRun:
    """The parent's handle on a forked run, shaped like subprocess.Popen (poll, wait, send_signal,
    kill, returncode: the exit code, or minus the signal number)."""

    def __init__(self, pid: int, report_fd: int, on_modules):
        self.pid, self.returncode = pid, None
        self._report_fd, self._on_modules = report_fd, on_modules

    def _reap(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        try:
            chunks = []
            while chunk := os.read(self._report_fd, 1 << 16):
                chunks.append(chunk)
            names = b"".join(chunks).decode("utf-8", "replace").split()
        except OSError:
            names = []
        finally:
            os.close(self._report_fd)
        self._on_modules(names)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._reap(status)
        return self.returncode

    def wait(self, timeout=None):
        if timeout is None:
            if self.returncode is None:
                self._reap(os.waitpid(self.pid, 0)[1])
            return self.returncode
        end, pause = time.monotonic() + timeout, 0.001
        while self.poll() is None:
            left = end - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout)
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.02)
        return self.returncode

    def send_signal(self, sig) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WarmLauncher:
    """Forks runs of the project's train.py from this (warmed-up) process. `entry(args) -> exit
    code` is what that file calls, `program` the file (the CLI hands in `mlp.cli.train_main` and the
    project's train.py: nothing below the CLI imports it)."""

    def __init__(self, entry, program=None):
        self.entry = entry
        self.program = Path(program).resolve() if program is not None else None
        self.learned: set[str] = set()

    def eligible(self, argv: list[str], program: Path) -> bool:
        """True when argv is `env python train.py ARGS` and the sweep's program is the project's
        own train.py (the same file, not a copy or another program)."""
        if self.program is None or len(argv) < 3 or Path(argv[0]).name != "env" or argv[1] != sys.executable:
            return False
        if Path(argv[2]) != Path(program.name) and Path(argv[2]).resolve() != program.resolve():
            return False
        try:
            return program.resolve() == self.program and program.is_file()
        except OSError:
            return False

    def _learn(self, names) -> None:
        """Import in this process what a run had to import, so the next run finds it loaded."""
        for name in names:
            if name in sys.modules or name in self.learned:
                continue
            self.learned.add(name)
            try:
                importlib.import_module(name)
            except Exception:          # a module that only imports as part of another: skip it
                pass

    def start(self, args: list[str], env: dict, cwd: Path, log, threads: int | None = None) -> ForkedRun:
        """Fork one run: `train.py ARGS` in `cwd` with `env`, output appended to the open file
        `log`, in a session of its own (like start_new_session)."""
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        # Ctrl-C/SIGTERM wait until the fork is done: the child must not take the parent's handler's
        # KeyboardInterrupt before it has its own. The caller holds them (interrupts.held) until it
        # has kept the handle, as the agent does, so a stop never loses a forked run.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:                    # the run
                os.close(read_fd)
                _run_child(self.entry, args, env, cwd, log.fileno(), threads, write_fd, blocked)
            os.close(write_fd)
            return ForkedRun(pid, read_fd, self._learn)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _run_child(entry, args, env, cwd, log_fd, threads, report_fd, mask) -> None:
    """The forked run's whole life: never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        if threads:                     # --jobs J: this run's BLAS pool, as the env does for a subprocess
            from threadpoolctl import threadpool_limits
            threadpool_limits(threads)
        before = set(sys.modules)
        sys.argv = ["train.py", *args]
        code = entry(args)
        os.write(report_fd, "\n".join(sorted(set(sys.modules) - before)).encode())
    except KeyboardInterrupt:           # stopped before train.py's own handler existed: as run_main does
        code = 130
        print("interrupted", file=sys.stderr)
    except BaseException:               # what a crashing subprocess would print, in the run's log
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if "wandb" in sys.modules:
                sys.modules["wandb"].teardown()
        except BaseException:
            pass
        os._exit(code if isinstance(code, int) else 1)
