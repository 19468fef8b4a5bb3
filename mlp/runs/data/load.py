"""`load_dataset`: a dataset located, verified and split (see mlp.runs.data)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from mlp.runs.data.catalogue import SPLIT_SEED, SPLITS, DataError, Dataset
from mlp.runs.data.sources import _local_source, _locate, _spec
from mlp.runs.data.splits import (_check_pair, _read_split_cache, _split_cache_dir, _stratified, _to_float,
                                  _write_split_cache)


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
        cached = _read_split_cache(entry, len(spec.class_names))
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
