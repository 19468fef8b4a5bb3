"""IDX files: parsing (every header field checked against the data that follows), encoding, and
reading a file plain or gzipped, size-limited."""
from __future__ import annotations

import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from mlp.errors import UsageError
from mlp.paths import kind_of
from mlp.runs.data.catalogue import _MAX_FILE_BYTES, DataError


_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}
_FIX_FILE = "fix: replace it with an intact copy of the official file"
_MAX_DIMS = 8


def _idx_view(raw: bytes, what: str) -> np.ndarray:
    """Validate an IDX blob and return a read-only uint8 view of its data, in its shape."""
    n = len(raw)
    if n < 4:
        raise DataError(f"{what} is not an IDX file: only {n} bytes; {_FIX_FILE}")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{what} is not an IDX file: magic number 0x{bytes(raw[:4]).hex()} does not "
                        f"start with 0x0000; {_FIX_FILE}")
    code, ndim = raw[2], raw[3]
    if code != 0x08:
        kind = _IDX_TYPES.get(code, "unknown")
        raise DataError(f"{what} has IDX type code 0x{code:02x} ({kind}); only 0x08 (unsigned "
                        f"byte) is supported, as in (Fashion-)MNIST; {_FIX_FILE}")
    if not 1 <= ndim <= _MAX_DIMS:
        raise DataError(f"{what} declares {ndim} dimensions; an IDX image or label file has 1 to {_MAX_DIMS} "
                        f"(these have 3 and 1); {_FIX_FILE}")
    header = 4 + 4 * ndim
    if n < header:
        raise DataError(f"{what} is truncated: its {ndim}-d IDX header needs {header} bytes, the "
                        f"file has {n}; {_FIX_FILE}")
    dims = struct.unpack(f">{ndim}I", bytes(raw[4:header]))
    size = math.prod(dims)
    if n - header < size:
        raise DataError(f"{what} is truncated: shape {dims} needs {size} data bytes, the file has "
                        f"{n - header}; {_FIX_FILE}")
    if n - header > size:
        raise DataError(f"{what} has {n - header - size} unexpected bytes after the {size} data "
                        f"bytes of shape {dims}; {_FIX_FILE}")
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(dims)


def parse_idx(raw: bytes, what: str = "IDX data") -> np.ndarray:
    """Parse an uncompressed IDX blob of unsigned bytes into a (writable) uint8 array.

    Checks the magic number (0x0000, type code 0x08, number of dimensions), the dimensions and
    that the data is exactly as long as they declare. Raises `DataError` naming `what`.
    """
    return _idx_view(raw, what).copy()


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (type 0x08) of a uint8 array: the inverse of `parse_idx`."""
    a = np.asarray(array)
    if a.dtype != np.uint8 or not 1 <= a.ndim <= 255:
        raise UsageError(f"encode_idx needs a uint8 array with 1..255 dimensions, got {a.dtype} "
                         f"with {a.ndim}; fix: convert it with .astype(np.uint8)")
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + np.ascontiguousarray(a).tobytes()


def _gunzip(data: bytes, what: str, limit: int = _MAX_FILE_BYTES) -> bytes:
    """Decompress gzip data (possibly several members), bounded by `limit` output bytes."""
    out: list[bytes] = []
    total = 0
    rest = data
    while True:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise DataError(f"{what} is not a valid gzip file ({exc}); {_FIX_FILE}") from None
        total += len(chunk)
        out.append(chunk)
        if total > limit or d.unconsumed_tail:
            raise DataError(f"{what} decompresses to more than {limit // 2**20} MiB, far more than "
                            f"any (Fashion-)MNIST file; {_FIX_FILE}")
        if not d.eof:
            raise DataError(f"{what} is a truncated gzip file (the stream ends early); {_FIX_FILE}")
        rest = d.unused_data
        if not rest.strip(b"\0"):  # like gzip(1), tolerate zero padding after the last member
            break
        if rest[:2] != b"\x1f\x8b":
            raise DataError(f"{what} has {len(rest)} bytes of garbage after its gzip data; "
                            f"{_FIX_FILE}")
    return out[0] if len(out) == 1 else b"".join(out)


def _read_idx_bytes(path: Path) -> bytes:
    """The decompressed IDX bytes of `path` (gzip recognised by its magic number). Only a regular
    file is read (a FIFO would block), and only one no larger than any (Fashion-)MNIST file could
    be — checked before a byte is read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path} is {kind_of(st.st_mode)}, not a data file; fix: put the IDX file itself there")
        if st.st_size > _MAX_FILE_BYTES:
            raise DataError(f"{path} is {st.st_size / 2**20:,.0f} MiB, far more than any (Fashion-)MNIST file "
                            f"({_MAX_FILE_BYTES // 2**20} MiB at most); {_FIX_FILE}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; fix: check the path") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); fix: check the file and "
                        f"its permissions") from None
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data, str(path))
    if path.suffix == ".gz":
        raise DataError(f"{path} is not a valid gzip file (no gzip magic number); {_FIX_FILE}")
    return data


def read_idx(path) -> np.ndarray:
    """Read an IDX file, gzip-compressed (.gz) or raw, into a uint8 array of its shape.

    A corrupt gzip stream, a truncated file or a wrong magic number raises `DataError` naming
    the file.
    """
    path = Path(path)
    return parse_idx(_read_idx_bytes(path), str(path))
