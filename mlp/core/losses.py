"""Losses on the network's output layer (logits): one registry.

Each loss is a function `loss(z, y) -> (value, dz)`: the batch-mean loss and its gradient with
respect to the logits z, computed together because they share the softmax. Classification losses
take integer labels; `regression_squared_error` takes float targets of z's shape (the outputs are
used as they are). `mse` is another name for `mean_squared_error`, the classification loss.

To add a loss, write one such function and add one line to LOSSES (and to CLASSIFICATION if its
outputs are class scores).
"""
import numpy as np

from mlp.core.registry import resolve


def softmax(z):
    """Row-wise softmax, shifted by the row max so exp never overflows (stable for |z| ~ 1e4)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(z, y, label_smoothing=0.0):
    """Mean over the batch of −log softmax(z)[y], fused with softmax.

    Gradient: (softmax(z) − target) / n, formed by subtracting at the label index — no one-hot
    matrix product. With label smoothing ε the target is (1−ε)·onehot + ε/k.
    """
    n, k = z.shape
    rows = np.arange(n)
    logp = log_softmax(z)
    picked = logp[rows, y]
    total = np.add.reduce(picked)  # the mean without ndarray.mean's Python overhead, same value
    value = -(total.dtype.type(total / np.intp(n)) if n else np.nan)
    if label_smoothing:
        value = (1.0 - label_smoothing) * value - label_smoothing * logp.mean(axis=1).mean()
    dz = np.exp(logp, out=logp)  # softmax, in log_softmax's array
    dz[rows, y] -= 1.0 - label_smoothing
    if label_smoothing:
        dz -= label_smoothing / k
    dz /= n
    return float(value), dz


def mean_squared_error(z, y):
    """Mean over the batch of Σ_classes (softmax(z) − onehot(y))².

    The gradient goes through the full softmax Jacobian: with g = dL/dp = 2(p − t)/n,
    dL/dz_i = p_i (g_i − Σ_j g_j p_j).
    """
    n = z.shape[0]
    rows = np.arange(n)
    p = softmax(z)
    diff = p.copy()
    diff[rows, y] -= 1.0
    value = float(np.einsum("ij,ij->", diff, diff) / n)
    g = diff * (2.0 / n)
    dz = p * (g - np.einsum("ij,ij->i", g, p)[:, None])
    return value, dz


def regression_squared_error(z, y):
    """Regression: mean over the batch of Σ_outputs (z − y)² on the raw outputs z (no softmax),
    for float targets y of z's shape. Gradient 2(z − y)/n."""
    n = z.shape[0]
    diff = z - y
    return float(np.einsum("ij,ij->", diff, diff) / n), diff * (2.0 / n)


LOSSES = {
    "cross_entropy": cross_entropy,
    "mean_squared_error": mean_squared_error,
    "regression_squared_error": regression_squared_error,
}
# Losses whose outputs are class scores read through a softmax.
CLASSIFICATION = {"cross_entropy", "mean_squared_error"}

_ALIASES = {"ce": "cross_entropy", "squared_error": "mean_squared_error", "mse": "mean_squared_error"}


def canonical_name(name: str) -> str:
    return resolve(name, LOSSES, "loss", _ALIASES)


def get(name: str):
    return LOSSES[canonical_name(name)]
