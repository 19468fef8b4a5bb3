"""Splits: stratified validation (and 80-10-10) draws with a fixed seed, pixels as float32 / 255,
and the split cache: the finished split kept as .npy files in the user cache and memory-mapped by
later loads."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mlp.runs.data.catalogue import DataError, DatasetSpec
from mlp.runs.data.sources import _cache_root


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


def _read_split_cache(entry: Path, n_classes: int) -> dict[str, np.ndarray] | None:
    """The cached split (x_* memory-mapped, read-only), or None if absent, stale or damaged — an
    entry that is not exactly what `_write_split_cache` writes is converted again, never trusted.
    (Its meta.json also records where the files were found when it was written; a load names
    where they are found now.)"""
    try:
        meta = json.loads(_small_text(entry / "meta.json"))
        if not isinstance(meta, dict) or meta.get("version") != SPLIT_CACHE_VERSION or \
                not isinstance(meta.get("files"), dict) or \
                any(_stamp(entry / f"{part}.npy") != meta["files"].get(part) for part in _PARTS):
            return None
        arrays = {part: np.load(entry / f"{part}.npy", mmap_mode="r" if part.startswith("x_") else None,
                                allow_pickle=False) for part in _PARTS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, MemoryError):
        return None
    return arrays if _well_formed(arrays, n_classes) else None


def _small_text(path: Path, limit: int = 1 << 20) -> str:
    if not path.is_file() or path.stat().st_size > limit:
        raise ValueError(f"{path} is not a small file")
    return path.read_text()


def _well_formed(arrays: Mapping[str, np.ndarray], n_classes: int) -> bool:
    """Images (n, pixels) of floats and labels (n,) of integers in range, per part; the same
    pixels per image in every part; the validation indices a vector of integers."""
    widths = set()
    for part in ("train", "val", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 2 or x.dtype.kind != "f" or y.ndim != 1 or y.dtype.kind not in "iu" or len(x) != len(y):
            return False
        if len(y) and not (0 <= int(y.min()) and int(y.max()) < n_classes):
            return False
        widths.add(x.shape[1])
    index = arrays["val_index"]
    return len(widths) == 1 and index.ndim == 1 and index.dtype.kind in "iu"


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
        if entry.exists():                   # damaged (or just written by another process): replaced
            stale = entry.with_name(f".{entry.name}.{os.getpid()}.stale")
            os.replace(entry, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
