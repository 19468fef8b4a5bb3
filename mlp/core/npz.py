"""The .npz container of model files, checkpoints and feature files: named arrays plus a JSON
header (`__meta__`), never a pickled object.

`write` puts it in place atomically (mlp.paths.write_atomically: a full disk or Ctrl-C leaves the
old file or none). `Reader` opens one for reading with every member's .npy header read and checked
first — that it is an array, not an object array, and that the data behind the header is exactly
the size it declares — so a damaged or hostile file is a one-line UsageError before a byte of
data is read or allocated (a 12-byte file declaring a 400 GB array is refused, not allocated).
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlp.errors import UsageError
from mlp.paths import input_file, write_atomically

__all__ = ["write", "Reader", "Header", "MAX_META_BYTES"]

MAX_META_BYTES = 4 << 20           # the JSON header


def _write_to(f, meta: dict | None, arrays: dict) -> None:
    entries = dict(arrays)
    if meta is not None:
        entries = {"__meta__": np.array(json.dumps(meta)), **entries}
    # closed whatever happens: np.savez leaves its zip open on a write error, to fail again at exit
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, value in entries.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)


def write(path, meta: dict | None, arrays: dict) -> Path:
    """`arrays` (and `meta` as JSON under __meta__) as an .npz at `path`, atomically. OSError on
    a write failure (nothing is left behind)."""
    return write_atomically(path, lambda f: _write_to(f, meta, arrays))


def short(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class Header:
    """One member's .npy header: its zip entry, shape, dtype and the bytes of data behind it."""

    def __init__(self, info, shape, dtype, data_bytes):
        self.info, self.shape, self.dtype, self.data_bytes = info, tuple(shape), dtype, data_bytes

    @property
    def declared_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class Reader:
    """An open .npz, every header checked; use as a context manager.

        with Reader(path, "model file") as r:
            meta = r.meta("mlp-sweeps")       # the JSON header, its "format" checked
            w = r.array("0.W")                # one array, its size checked first
    """

    def __init__(self, path, what: str):
        self.what = what
        self.path = input_file(path, what)
        self.label = f"{what} {self.path}"
        try:
            self._zf = zipfile.ZipFile(self.path)
            self.headers = self._read_headers()
        except UsageError:
            self.close()
            raise
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, RuntimeError,
                NotImplementedError, MemoryError) as e:
            self.close()
            raise UsageError(f"{self.label} is not an .npz written by mlp-sweeps ({short(e)})") from None

    def close(self) -> None:
        zf, self._zf = getattr(self, "_zf", None), None
        if zf is not None:
            zf.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_headers(self) -> dict[str, Header]:
        out = {}
        for info in self._zf.infolist():
            if not info.filename.endswith(".npy"):
                raise UsageError(f"{self.label} holds {info.filename!r:.60}, which is not an .npy array")
            with self._zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise UsageError(f"{self.label}: array {info.filename!r:.60} has .npy format {version}; "
                                     f"expected 1.0 or 2.0")
                data_bytes = info.file_size - f.tell()
            if dtype.hasobject:
                raise UsageError(f"{self.label} holds pickled objects ({info.filename:.60}); refusing to load it")
            out[info.filename[:-4]] = Header(info, shape, dtype, data_bytes)
        return out

    def check_size(self, key: str) -> Header:
        """The data behind a header must be exactly what it declares (checked before reading)."""
        h = self.headers[key]
        if h.declared_bytes != h.data_bytes:
            raise UsageError(f"{self.label}: array {key!r:.60} declares {h.dtype} of shape {h.shape} but holds "
                             f"{h.data_bytes:,} bytes of data")
        return h

    def array(self, key: str) -> np.ndarray:
        h = self.check_size(key)
        try:
            with self._zf.open(h.info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, MemoryError) as e:
            raise UsageError(f"{self.label}: array {key!r:.60} is damaged ({short(e)})") from None

    def arrays(self, keys=None) -> dict[str, np.ndarray]:
        """Arrays by name (all but __meta__ unless `keys` says), every size checked before any is read."""
        keys = [k for k in self.headers if k != "__meta__"] if keys is None else list(keys)
        for key in keys:
            self.check_size(key)
        return {key: self.array(key) for key in keys}

    def meta(self, fmt: str | None = None, hint: str = "") -> dict:
        """The JSON header as a dict; with `fmt`, its "format" must be that."""
        h = self.headers.get("__meta__")
        missing = f"{self.label} has no mlp-sweeps metadata{hint}"
        if h is None:
            raise UsageError(missing)
        if h.shape != () or h.dtype.kind != "U" or h.dtype.itemsize > MAX_META_BYTES:
            raise UsageError(f"{self.label}: its metadata is not a JSON string of at most {MAX_META_BYTES >> 20} MiB")
        try:
            meta = json.loads(str(self.array("__meta__")))
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict) or (fmt is not None and meta.get("format") != fmt):
            raise UsageError(missing)
        return meta
