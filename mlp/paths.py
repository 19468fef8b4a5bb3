"""Paths a user names — flags, environment variables, sweep files — checked once, and files
written so that nothing half-done is ever left at them.

Every path a user gives goes through `expand` (``~`` and ``~user`` expanded; a name too long, a
NUL byte, an unknown user or a file used as a folder is one-line UsageError, not an OSError from
deep inside). Then, by what the program does with it:

* `input_file`: it must exist and be a regular file (a FIFO given as a file would block the read
  forever; a device is not data);
* `output_file`: where a file will be written — absent or a regular file, in a writable folder,
  not inside /proc, /sys or /dev, and not one of the command's inputs. Symlinks are followed, so
  a link keeps pointing at the new file instead of being replaced;
* `write_atomically`: the bytes go to a temporary file beside the target, which
  replaces the target only once complete (a crash, a full disk or Ctrl-C leaves the old file or
  none, and never the temporary one); the target is checked again just before, so a device or
  folder that appeared there meanwhile is never replaced;
* `staged_folder`: several files (a report) written into a hidden folder inside the output
  folder and moved into place only when all of them are complete.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from mlp.errors import UsageError

__all__ = ["expand", "input_file", "output_file", "write_atomically", "staged_folder", "kind_of", "under_kernel_interface"]

PSEUDO_ROOTS = ("/proc", "/sys", "/dev")     # kernel interfaces: never a place for our files


def _show(path) -> str:
    text = os.fspath(path)
    return text if len(text) <= 120 else text[:60] + "…" + text[-40:]


def _os_problem(e: OSError) -> str:
    if e.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    if e.errno == errno.ENOTDIR:
        return "a part of it is a file, not a folder"
    if e.errno == errno.ELOOP:
        return "it is a loop of symbolic links"
    return e.strerror or str(e)


def expand(text, what: str) -> Path:
    """The path `text` (a str or PathLike), ``~`` expanded, with one-line errors for a path that
    cannot name anything: empty, a NUL byte, an unknown ``~user``, a name too long, a file used
    as a folder, a symlink loop."""
    raw = os.fspath(text)
    if not raw.strip():
        raise UsageError(f"{what}: the path is empty; give a file or folder path")
    if "\x00" in raw:
        raise UsageError(f"{what} {_show(raw)!r}: a path cannot contain a NUL byte")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:         # ~user of no such user, or no HOME for ~
        raise UsageError(f"{what} {_show(raw)}: cannot expand {raw.split('/')[0]!r} (no such user or no home "
                         f"folder); give the path without ~") from None
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP):
            raise UsageError(f"{what} {_show(raw)}: {_os_problem(e)}; give another path") from None
    return path


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a regular file"


def _stat(path: Path, what: str, raw) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"{what} {_show(raw)}: {_os_problem(e)}") from None


def input_file(text, what: str) -> Path:
    """An existing, readable regular file (symlinks followed)."""
    path = expand(text, what)
    st = _stat(path, what, text)
    if st is None:
        raise UsageError(f"{what} {_show(text)} does not exist")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {_show(text)} is {kind_of(st.st_mode)}, not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} {_show(text)} is not readable; check its permissions")
    return path


def under_kernel_interface(path) -> bool:
    """Whether `path` (resolved: symlinks followed) lies in /proc, /sys or /dev, where no output goes."""
    text = os.path.realpath(path)
    return any(text == root or text.startswith(root + "/") for root in PSEUDO_ROOTS)


def output_file(text, what: str, inputs: Iterable = (), folders: Iterable = ()) -> Path:
    """Where a file will be written: the resolved path (symlinks followed, so a link keeps
    pointing at the new file). Refused, before any work: a folder, device, FIFO or socket at the
    path; a path in /proc, /sys or /dev; a folder that cannot be written; one of `inputs` (the
    command's own input files, e.g. the model features are computed from); a path inside one of
    `folders` (folders the program manages itself, made or not yet, e.g. the checkpoint folder)."""
    path = expand(text, what)
    if os.fspath(text).endswith(("/", "/.")):
        raise UsageError(f"{what} {_show(text)} names a folder (it ends with /); give a file path")
    target = Path(os.path.realpath(path))
    if under_kernel_interface(target):
        raise UsageError(f"{what} {_show(text)} is inside {target.parts[1] and '/' + target.parts[1]}, a kernel "
                         f"interface, not a place for files; give another path")
    st = _stat(target, what, text)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {_show(text)} is {kind_of(st.st_mode)}; give a file path")
    if st is not None and not os.access(target, os.W_OK):
        raise UsageError(f"{what} {_show(text)} exists and is not writable; give another path")
    probe = target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {_show(text)}: cannot write in {probe}; give a writable path")
    for other in inputs:
        if other is None:
            continue
        same = (os.path.samefile(target, other) if st is not None and os.path.exists(other)
                else os.path.realpath(os.path.expanduser(other)) == str(target))   # e.g. a store not made yet
        if same:
            raise UsageError(f"{what} {_show(text)} is the input file {_show(other)}; writing it would destroy "
                             f"the input — give another path")
    for folder in folders:
        inside = os.path.realpath(os.path.expanduser(folder))
        if str(target).startswith(inside.rstrip("/") + "/"):
            raise UsageError(f"{what} {_show(text)} is inside {_show(folder)}, a folder this program manages "
                             f"(its files are replaced and removed); give another path")
    return target


def write_atomically(path, write: Callable) -> Path:
    """Call `write(binary file)` on a temporary file beside `path`, then put it in place. On any
    failure (full disk, Ctrl-C) the temporary file is removed and `path` is as it was; the
    error (OSError, KeyboardInterrupt) propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())        # on disk before it replaces the old file
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} is now {kind_of(st.st_mode)}; not replaced")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


@contextlib.contextmanager
def staged_folder(out: Path):
    """Yield a hidden folder inside `out` to write files into; when the block ends without an
    error they move into `out` (in the order they were written: the last one, e.g. an index,
    appears last), else they are removed. An interrupted or failed write leaves `out`'s files as
    they were."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))
    try:
        yield stage
        for f in sorted(stage.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            target = out / f.name
            if (target.exists() or target.is_symlink()) and not target.is_file():
                raise OSError(errno.EEXIST, f"{target} is {kind_of(os.lstat(target).st_mode)}; not replaced")
            os.replace(f, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
