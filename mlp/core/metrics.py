"""Metrics on a network's outputs that are not losses.

`confusion_matrix(y_true, y_pred, n_classes)` counts: rows are true classes, columns predictions.

`r2_score(y_true, y_pred)` is the coefficient of determination over all outputs at once, as
scikit-learn's `r2_score(y_true, y_pred, multioutput="variance_weighted")`:

    R² = 1 − Σ_j SSE_j / Σ_j SST_j,   SSE_j = Σ_i (y_ij − ŷ_ij)²,   SST_j = Σ_i (y_ij − ȳ_j)²,

summed over the outputs j (the pixels, for an autoencoder) whose variance over the samples is not
zero — an output that is constant over the set (a border pixel that is black in every image) has
no variance to explain and is left out, as scikit-learn's weights leave it out. If every output is
constant, each scores 1 when predicted exactly and 0 otherwise, and R² is their mean (again as
scikit-learn). Fewer than two samples: NaN. Sums are taken in float64, in row chunks, so float32
inputs of any size need no float64 copy.
"""
import numpy as np

CHUNK = 4096


def r2_score(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    n = len(y_true)
    if n < 2:
        return float("nan")
    y_true = y_true.reshape(n, -1)
    y_pred = y_pred.reshape(n, -1)
    mean = np.zeros(y_true.shape[1])
    for i in range(0, n, CHUNK):
        mean += y_true[i:i + CHUNK].sum(axis=0, dtype=np.float64)
    mean /= n
    sst = np.zeros_like(mean)
    sse = np.zeros_like(mean)
    for i in range(0, n, CHUNK):
        t = y_true[i:i + CHUNK].astype(np.float64)
        sse += np.square(t - y_pred[i:i + CHUNK]).sum(axis=0)
        t -= mean
        sst += np.square(t).sum(axis=0)
    varying = sst != 0
    if not varying.any():
        return float(np.mean(np.where(sse == 0, 1.0, 0.0)))
    return float(1.0 - sse[varying].sum() / sst[varying].sum())


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts of (true class, predicted class) as an (n_classes, n_classes) integer array."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes ** 2) \
        .reshape(n_classes, n_classes)
