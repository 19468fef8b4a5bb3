"""Fashion-MNIST and MNIST: IDX parsing, where the files come from, checksums, splits.

`load_dataset(name)` looks for the four standard IDX files (each as ``NAME`` or ``NAME.gz``) in
these places, in order, and the first place that holds all four wins:

1. ``data_dir`` (the ``--data_dir`` flag), else env ``MLP_DATA_DIR``: ``DIR/<name>/``, then
   ``DIR/`` itself (``DIR/fashion-mnist/`` is accepted as well as ``DIR/fashion_mnist/``).
   An explicit ``data_dir`` that does not hold the files is an error (a user who points at a
   directory means it); a ``MLP_DATA_DIR`` that lacks *this* dataset falls through to the next
   places, so one variable can serve a folder that holds only MNIST.
2. the user cache: ``cache_dir``, else env ``MLP_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/mlp-sweeps`` (``~/.cache/mlp-sweeps``), subfolder ``<name>/``.
3. the Debian dataset directory (``apt-get install dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist``).
4. a download (unless ``download=False``) of ``BASE + NAME.gz`` from ``mirrors``, else env
   ``MLP_DATA_MIRROR`` (one base URL), else the official mirrors. The decompressed files are
   verified and then written into the cache atomically (temporary file + ``os.replace``), and only
   once all four have been fetched and verified, so a failed download leaves nothing behind.

Every file from every source is checked against the SHA-256 of its *decompressed* IDX content
(the official values are in `DATASETS`); distributions recompress the ``.gz`` archives, so their
bytes differ while the content is identical. A folder holding a custom subset instead carries a
``checksums.sha256`` manifest (``sha256sum`` format, names without ``.gz``), which then replaces
the official table for that folder; ``tests/data/fashion_mnist`` is such a folder.

Every bad input raises `DataError` (a `UsageError`) with a one-line message that names the
problem and the fix.
"""

from __future__ import annotations

import hashlib
import json
import http.client
import math
import os
import re
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from mlp.errors import UsageError

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "SPLIT_SEED",
    "SPLITS",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "encode_idx",
    "load_dataset",
    "parse_idx",
    "read_idx",
]


class DataError(UsageError):
    """A data file or data source is missing, corrupt or not what was asked for."""


# The seed of the validation split. Fixed so that every run of a sweep validates on the same
# images; changing it changes every validation set and makes old runs incomparable.
SPLIT_SEED = 20240229

SPLITS = ("standard", "80-10-10")

# The four files of both datasets, by role; the names carry no ".gz".
_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MANIFEST_NAME = "checksums.sha256"

DOWNLOAD_TIMEOUT = 30.0  # seconds per connection attempt / socket read
_MAX_FILE_BYTES = 128 * 2**20  # the largest real file is 47 MB decompressed

CLASS_NAMES: dict[str, list[str]] = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything `load_dataset` knows about one dataset."""

    name: str
    class_names: tuple[str, ...]
    files: Mapping[str, str]  # role -> file name without .gz
    sha256: Mapping[str, str]  # file name -> SHA-256 of the decompressed content
    mirrors: tuple[str, ...]  # base URLs; a file is fetched from BASE + NAME.gz
    debian_dir: str | None = None
    debian_package: str | None = None
    dir_names: tuple[str, ...] = field(default=())  # sub-folder names accepted under a data dir

    @property
    def file_names(self) -> list[str]:
        return [self.files[role] for role in _ROLES]


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        class_names=tuple(CLASS_NAMES["fashion_mnist"]),
        files=dict(_FILES),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        debian_dir="/usr/share/datasets/fashion-mnist",
        debian_package="dataset-fashion-mnist",
        dir_names=("fashion_mnist", "fashion-mnist"),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(CLASS_NAMES["mnist"]),
        files=dict(_FILES),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        debian_dir="/usr/share/datasets/mnist",  # no package ships it today; used if present
        debian_package=None,
        dir_names=("mnist",),
    ),
}


@dataclass
class Dataset:
    """A loaded dataset: x float32 (n, 784) = pixels / 255, y int64 labels in 0..9."""

    name: str
    class_names: list[str]
    source: str  # where the files came from, for humans
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: str = "standard"
    # which rows were drawn for validation: indices into the official training file (standard
    # split) or into training + test files concatenated (80-10-10); None when not made by load_dataset
    val_index: np.ndarray | None = None

    @property
    def val_rows_sha256(self) -> str | None:
        """A digest naming exactly this validation set: the dataset, the split and the rows drawn
        (what `mlp baselines` stores, so a report pairs baselines with runs of the same split)."""
        if self.val_index is None:
            return None
        digest = hashlib.sha256(f"{self.name}/{self.split}/".encode())
        digest.update(np.ascontiguousarray(self.val_index, dtype="<i8").tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, source={self.source!r})")


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}
_FIX_FILE = "fix: replace it with an intact copy of the official file"


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
    if ndim == 0:
        raise DataError(f"{what} declares 0 dimensions; {_FIX_FILE}")
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
    """The decompressed IDX bytes of `path` (gzip recognised by its magic number)."""
    try:
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


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------

def _read_manifest(path: Path) -> dict[str, str]:
    """Parse a sha256sum-style manifest: `<hex>  <name>` per line -> {name without .gz: hex}."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the checksum manifest {path} ({exc}); fix: repair or "
                        f"delete it") from None
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DataError(f"{path}:{lineno} is not a '<sha256>  <file>' line; fix: regenerate "
                            f"it with sha256sum on the decompressed files")
        name = parts[1].strip().lstrip("*")
        name = name[:-3] if name.endswith(".gz") else name
        sums[Path(name).name] = parts[0].lower()
    return sums


def _expected_sums(spec: DatasetSpec, directory: Path | None) -> tuple[Mapping[str, str], str]:
    """The checksums that files in `directory` must match, and where they come from."""
    if directory is not None:
        manifest = directory / MANIFEST_NAME
        if manifest.is_file():
            return _read_manifest(manifest), f"manifest {manifest}"
    return spec.sha256, f"official {spec.name} checksum"


def _whose(digest: str) -> str:
    """' (it is mnist's train-images-idx3-ubyte)' when a digest belongs to a known file."""
    for spec in DATASETS.values():
        for fname, known in spec.sha256.items():
            if known == digest:
                return f" (it is {spec.name}'s {fname})"
    return ""


def _verified_view(data: bytes, what: str, fname: str, expected: Mapping[str, str],
                   origin: str, fix: str) -> np.ndarray:
    """Parse `data` (structural errors first: they say more) and check its SHA-256."""
    view = _idx_view(data, what)
    want = expected.get(fname)
    if want is None:
        raise DataError(f"{origin} has no entry for {fname}; fix: add the SHA-256 of its "
                        f"decompressed content, or remove the manifest")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        other = _whose(got)
        if other:
            fix = "fix: these are another dataset's files; point at the right folder or ask for that dataset"
        raise DataError(f"checksum mismatch for {what}: expected SHA-256 {want[:16]}... ({origin}), "
                        f"got {got[:16]}...{other}; {fix}")
    return view


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------

def _spec(name) -> DatasetSpec:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; fix: choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def _find_files(directory: Path, spec: DatasetSpec) -> tuple[dict[str, Path], list[str]]:
    """The dataset's files in `directory` (raw preferred over .gz) and the names missing."""
    found, missing = {}, []
    for fname in spec.file_names:
        for candidate in (directory / fname, directory / (fname + ".gz")):
            if candidate.is_file():
                found[fname] = candidate
                break
        else:
            missing.append(fname)
    return found, missing


def _read_local(spec: DatasetSpec, directory: Path, found: Mapping[str, Path],
                fix: str) -> dict[str, np.ndarray]:
    expected, origin = _expected_sums(spec, directory)
    return {fname: _verified_view(_read_idx_bytes(path), str(path), fname, expected, origin, fix)
            for fname, path in found.items()}


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MLP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlp-sweeps"


def _reporter(progress: Callable[[str], object] | None) -> Callable[[str], object]:
    if progress is not None:
        return progress
    return lambda msg: print(msg, file=sys.stderr, flush=True)


class _DownloadFailed(Exception):
    pass


def _fetch(url: str, report: Callable[[str], object]) -> bytes:
    """GET `url` into memory, reporting progress roughly every quarter of a large file."""
    request = urllib.request.Request(url, headers={"User-Agent": "mlp-sweeps"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        chunks, got, next_mark = [], 0, 0.25
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > _MAX_FILE_BYTES:
                raise _DownloadFailed(f"{url}: more than {_MAX_FILE_BYTES // 2**20} MiB, not a "
                                      f"(Fashion-)MNIST file")
            if total and total > 4 * 2**20 and got / total >= next_mark and got < total:
                report(f"  {url}: {got / 2**20:.1f} of {total / 2**20:.1f} MB")
                next_mark += 0.25
    if total is not None and got != total:
        raise _DownloadFailed(f"{url}: connection closed after {got} of {total} bytes")
    return b"".join(chunks)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete, never partial."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _describe(exc: BaseException, url: str) -> str:
    """A short reason for a failed fetch, naming the URL."""
    if isinstance(exc, (_DownloadFailed, DataError)):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"{url}: HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{url}: {exc.reason}"
    return f"{url}: {exc}"


def _download(spec: DatasetSpec, mirrors: Sequence[str], cache: Path,
              report: Callable[[str], object]) -> tuple[dict[str, np.ndarray], str]:
    """Fetch and verify all four files, then store them (decompressed) in `cache` atomically."""
    expected = spec.sha256
    fix = "fix: try another mirror (mirrors=[...] or MLP_DATA_MIRROR)"
    views: dict[str, np.ndarray] = {}
    fetched: dict[str, bytes] = {}
    used: list[str] = []
    # Files left in the cache by an earlier, partial attempt are reused if they verify.
    found = _find_files(cache, spec)[0] if cache.is_dir() else {}
    for fname in spec.file_names:
        if fname in found:
            try:
                views[fname] = _verified_view(_read_idx_bytes(found[fname]), str(found[fname]),
                                              fname, expected, "official checksum", fix)
                continue
            except DataError:
                pass
        errors = []
        for base in mirrors:
            url = base if base.endswith("/") else base + "/"
            url += fname + ".gz"
            report(f"downloading {spec.name} {fname}.gz from {url}")
            try:
                data = _gunzip(_fetch(url, report), url)
                views[fname] = _verified_view(data, url, fname, expected,
                                              f"official {spec.name} checksum", fix)
            except (OSError, http.client.HTTPException, ValueError, _DownloadFailed,
                    DataError) as exc:
                reason = _describe(exc, url)
                report(f"  failed: {reason}")
                errors.append(reason.split("; fix:")[0])
                continue
            fetched[fname] = data
            used.append(base)
            break
        else:
            raise _DownloadFailed("; ".join(errors) or "no download mirror configured")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for fname, data in fetched.items():
            _write_atomic(cache / fname, data)
            stale = cache / (fname + ".gz")
            if stale.exists():
                stale.unlink()
        where = f"cached in {cache}"
        report(f"{spec.name}: {len(fetched)} file(s) verified and {where}")
    except OSError as exc:
        where = f"not cached: {exc}"
        report(f"warning: could not write the {spec.name} files to {cache} ({exc}); they will "
               f"be downloaded again next time")
    mirror_list = ", ".join(dict.fromkeys(used)) or "an earlier partial download"
    return views, f"downloaded from {mirror_list} ({where})"


def _local_source(spec: DatasetSpec, data_dir, cache_dir) -> tuple[tuple | None, list[str]]:
    """The first local place holding all four files, found without reading them:
    ((directory, {file name: path}, source label, fix hint) or None, places searched)."""
    searched: list[str] = []
    fix_local = "fix: replace it with an intact copy, or remove the folder's files to use another source"

    # 1. --data_dir / MLP_DATA_DIR
    explicit = data_dir is not None
    raw_dir = data_dir if explicit else (os.environ.get("MLP_DATA_DIR") or None)
    if raw_dir is not None:
        label = "--data_dir" if explicit else "MLP_DATA_DIR"
        root = Path(raw_dir).expanduser()
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise DataError(f"data directory {root} ({label}) {what}; fix: point {label} at a "
                            f"folder holding the four IDX files (or their .gz), or drop it to "
                            f"use the cache, the Debian package or a download")
        best: tuple[Path, list[str]] | None = None
        for directory in [root / sub for sub in spec.dir_names] + [root]:
            if not directory.is_dir():
                continue
            found, missing = _find_files(directory, spec)
            if not missing:
                return (directory, found, f"{directory} ({label})", fix_local), searched
            if best is None or len(missing) < len(best[1]):
                best = (directory, missing)
        if explicit:
            directory, missing = best if best is not None else (root, spec.file_names)
            raise DataError(f"data directory {root} holds no complete {spec.name}: {directory} "
                            f"lacks {', '.join(m + '[.gz]' for m in missing)}; fix: put the four "
                            f"IDX files in {root / spec.name} or {root}, or drop --data_dir to "
                            f"use the cache, the Debian package or a download")
        searched.append(f"{root} (MLP_DATA_DIR)")

    # 2. the user cache
    cache = _cache_root(cache_dir) / spec.name
    if cache.is_dir():
        found, missing = _find_files(cache, spec)
        if not missing:
            fix = f"fix: delete {cache} and load again to download a fresh copy"
            return (cache, found, f"{cache} (cache)", fix), searched
    searched.append(str(cache))

    # 3. the Debian dataset directory
    if spec.debian_dir:
        deb = Path(spec.debian_dir)
        if deb.is_dir():
            found, missing = _find_files(deb, spec)
            if not missing:
                pkg = spec.debian_package or "Debian dataset directory"
                fix = f"fix: reinstall it (apt-get install --reinstall {pkg})"
                return (deb, found, f"{deb} (Debian package {pkg})", fix), searched
        searched.append(str(deb))
    return None, searched


def _locate(spec: DatasetSpec, data_dir, download: bool, mirrors, cache_dir,
            progress, local=None) -> tuple[dict[str, np.ndarray], str]:
    """Find the dataset (see the module docstring) -> ({file name: verified uint8 view}, source)."""
    if local is None:
        local = _local_source(spec, data_dir, cache_dir)
    found_local, searched = local
    if found_local is not None:
        directory, found, label, fix = found_local
        return _read_local(spec, directory, found, fix), label
    cache = _cache_root(cache_dir) / spec.name

    # 4. download
    if download:
        if mirrors is None:
            env = (os.environ.get("MLP_DATA_MIRROR") or "").strip()
            mirrors = [env] if env else list(spec.mirrors)
        elif isinstance(mirrors, str):
            mirrors = [mirrors]
        try:
            return _download(spec, list(mirrors), cache, _reporter(progress))
        except _DownloadFailed as exc:
            reason = f"the download failed ({exc})"
    else:
        reason = "downloading is disabled"

    options = ["pass --data_dir DIR (or set MLP_DATA_DIR) to a folder with the four IDX files",
               f"put them in {cache}"]
    if spec.debian_package:
        options.append(f"run `apt-get install {spec.debian_package}`")
    options.append("allow the download (needs network access, or a mirror via MLP_DATA_MIRROR)")
    raise DataError(f"{spec.name} not found (looked in {', '.join(searched)}) and {reason}; "
                    f"fix: {'; or '.join(options)}")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------

def _apportion(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Per-class sizes of a `fraction` sample: largest remainder, so the total is exact.

    The total is round(fraction * n); each class gets floor(fraction * n_c), and the classes with
    the largest fractional parts (ties: lower class first) get one more until the total is met.
    """
    quota = np.round(counts * fraction, 9)
    sizes = np.floor(quota).astype(np.int64)
    short = int(round(float(counts.sum()) * fraction)) - int(sizes.sum())
    if short > 0:
        order = np.argsort(-(quota - sizes), kind="stable")
        sizes[order[:short]] += 1
    return np.minimum(sizes, counts)


def _stratified(y: np.ndarray, fractions: Sequence[float], seed: int,
                n_classes: int) -> list[np.ndarray]:
    """Split indices of `y` into len(fractions) stratified parts plus the rest (last).

    One generator, `np.random.default_rng(seed)`, permutes each class in turn (class 0 first);
    part k takes the next `_apportion` share of every class. Each part is returned sorted, so it
    keeps the order of the files.
    """
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=n_classes)
    sizes = [_apportion(counts, f) for f in fractions]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in range(n_classes):
        perm = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, size in enumerate(sizes):
            parts[k].append(perm[start:start + size[c]])
            start += size[c]
        parts[-1].append(perm[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def _to_float(images: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """uint8 (n, 28, 28) [rows `index`] -> C-contiguous float32 (n, 784) = pixels / 255."""
    u8 = images if index is None else images[index]
    u8 = u8.reshape(len(u8), -1)
    return np.divide(u8, np.float32(255.0), dtype=np.float32)


def _check_pair(images: np.ndarray, labels: np.ndarray, what: str, source: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{what} images in {source} have shape {images.shape}, expected "
                        f"(n, 28, 28); fix: use the standard IDX files")
    if labels.ndim != 1:
        raise DataError(f"{what} labels in {source} have shape {labels.shape}, expected (n,); "
                        f"fix: use the standard IDX files")
    if len(images) != len(labels):
        raise DataError(f"{source} holds {len(images)} {what} images but {len(labels)} {what} "
                        f"labels; fix: use matching image and label files")
    if len(labels) == 0:
        raise DataError(f"{source} holds no {what} examples; fix: use non-empty IDX files")
    if labels.max() > 9:
        raise DataError(f"{what} labels in {source} go up to {labels.max()}, expected 0..9; "
                        f"fix: use the standard IDX files")


# --------------------------------------------------------------------------------------------
# The split cache
# --------------------------------------------------------------------------------------------
# Decompressing, verifying and converting the four files costs every run about half a second.
# The finished float32 split is kept once per (source files, split) in the user cache as .npy
# files and memory-mapped by later loads: pages are read from the OS cache on demand, and
# parallel runs share them. The key is the source folder and each source file's size and
# modification time (content verified by SHA-256 when the entry was written); an entry whose
# files changed size or time is not used and is rewritten.

SPLIT_CACHE_VERSION = 2
_PARTS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "val_index")


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _split_cache_dir(spec: DatasetSpec, local, split: str, val_fraction: float, split_seed: int,
                     cache_dir) -> Path:
    directory, found, _, _ = local
    key = {"version": SPLIT_CACHE_VERSION, "dataset": spec.name, "source": str(Path(directory).resolve()),
           "files": {fname: [str(Path(path).name), *_stamp(path)] for fname, path in sorted(found.items())},
           "split": split, "val_fraction": float(val_fraction) if split == "standard" else None,
           "split_seed": int(split_seed)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return _cache_root(cache_dir) / "splits" / f"{spec.name}-{digest}"


def _read_split_cache(entry: Path) -> dict[str, np.ndarray] | None:
    """The cached split (x_* memory-mapped, read-only), or None if absent or stale. (Its meta.json
    also records where the files were found when it was written; a load names where they are
    found now.)"""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("version") != SPLIT_CACHE_VERSION or any(
                _stamp(entry / f"{part}.npy") != meta["files"][part] for part in _PARTS):
            return None
        arrays = {part: np.load(entry / f"{part}.npy", mmap_mode="r" if part.startswith("x_") else None,
                                allow_pickle=False) for part in _PARTS}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arrays


def _write_split_cache(entry: Path, arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Write an entry atomically (a temporary folder renamed into place); a cache that cannot be
    written (read-only home, full disk) is skipped silently: the next run converts again."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        files = {}
        for part in _PARTS:
            np.save(tmp / f"{part}.npy", np.ascontiguousarray(arrays[part]), allow_pickle=False)
            files[part] = _stamp(tmp / f"{part}.npy")
        (tmp / "meta.json").write_text(json.dumps({"version": SPLIT_CACHE_VERSION, "source": source,
                                                   "files": files}))
        if entry.exists():
            return                           # another process got there first
        os.replace(tmp, entry)
    except OSError:
        pass
    finally:
        if tmp.exists():
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()


def load_dataset(name: str = "fashion_mnist", data_dir=None, split: str = "standard",
                 val_fraction: float = 0.1, split_seed: int = SPLIT_SEED, download: bool = True,
                 mirrors: Sequence[str] | None = None, cache_dir=None,
                 progress: Callable[[str], object] | None = None, use_cache: bool = True) -> Dataset:
    """Load Fashion-MNIST or MNIST, verified, split, as float32 pixels / 255 and int64 labels.

    split="standard": test = the official test set; validation = a stratified `val_fraction` of
    the official training set (every class contributes the same fraction; drawn with
    `split_seed`, so every call returns the same split); train = the rest.
    split="80-10-10": train and test are pooled (70,000 images) and split 80/10/10 into
    train/val/test, stratified, with `split_seed`; `val_fraction` is ignored.
    Where the files come from: see the module docstring. Bad input raises `DataError`.
    With `use_cache` the finished split is kept in the user cache and memory-mapped next time
    (see "The split cache"); the arrays are then read-only.
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; fix: choose one of {', '.join(SPLITS)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)) \
            or not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be a number strictly between 0 and 1, got "
                        f"{val_fraction!r}; fix: use e.g. 0.1")
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) \
            or split_seed < 0:
        raise DataError(f"split_seed must be a non-negative integer, got {split_seed!r}; fix: "
                        f"leave it at the default {SPLIT_SEED}")

    local = _local_source(spec, data_dir, cache_dir)
    entry = None
    if use_cache and local[0] is not None:
        entry = _split_cache_dir(spec, local[0], split, val_fraction, split_seed, cache_dir)
        cached = _read_split_cache(entry)
        if cached is not None:
            return Dataset(name=spec.name, class_names=list(spec.class_names), source=local[0][2], split=split,
                           **cached)
    views, source = _locate(spec, data_dir, download, mirrors, cache_dir, progress, local)
    f = spec.files
    train_x, train_y = views[f["train_images"]], views[f["train_labels"]]
    test_x, test_y = views[f["test_images"]], views[f["test_labels"]]
    _check_pair(train_x, train_y, "training", source)
    _check_pair(test_x, test_y, "test", source)
    n_classes = len(spec.class_names)

    if split == "standard":
        val_idx, train_idx = _stratified(train_y, [float(val_fraction)], int(split_seed),
                                         n_classes)
        parts = {"train": (train_x, train_y, train_idx), "val": (train_x, train_y, val_idx),
                 "test": (test_x, test_y, None)}
    else:
        pool_x = np.concatenate([train_x, test_x])
        pool_y = np.concatenate([train_y, test_y])
        test_idx, val_idx, train_idx = _stratified(pool_y, [0.1, 0.1], int(split_seed),
                                                   n_classes)
        parts = {"train": (pool_x, pool_y, train_idx), "val": (pool_x, pool_y, val_idx),
                 "test": (pool_x, pool_y, test_idx)}
    for part, (_, _, idx) in parts.items():
        if idx is not None and len(idx) == 0:
            raise DataError(f"the {split} split of {source} leaves no {part} examples; fix: use "
                            f"a val_fraction that leaves examples on both sides")

    out = {}
    for part, (x, y, idx) in parts.items():
        out["x_" + part] = _to_float(x, idx)
        out["y_" + part] = (y if idx is None else y[idx]).astype(np.int64)
    out["val_index"] = np.asarray(val_idx, dtype=np.int64)
    if use_cache:
        found_local, label = local[0], source
        if found_local is None:              # just downloaded: the files now sit in the cache
            found_local = _local_source(spec, data_dir, cache_dir)[0]
            label = found_local[2] if found_local else source   # where later loads will find them
            entry = found_local and _split_cache_dir(spec, found_local, split, val_fraction, split_seed, cache_dir)
        if entry:
            _write_split_cache(entry, out, label)
    return Dataset(name=spec.name, class_names=list(spec.class_names), source=source, split=split, **out)
