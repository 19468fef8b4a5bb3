"""Layers as forward/backward pairs.

Every layer has `params` and, after `backward`, `grads` (same order and shapes); `decay` says which
params take weight decay; `buffers` holds non-trained state that a saved model must keep.
`forward(x, training)` caches what `backward(grad_out)` needs; `backward` returns dL/dx.

Speed: a training step allocates nothing. `grads` are arrays that every `backward` overwrites in
place (the network points them into one flat buffer), and Dense keeps one output and one
input-gradient array per batch shape, reused by the next training step — so arrays a training
pass returns are only valid until the next one. Evaluation (`training=False`) returns fresh arrays.
"""
import numpy as np

from mlp.core import activations


def workspace(cache, shape, dtype):
    """A reusable (uninitialised) array of `shape` and `dtype`, kept in the dict `cache`.

    Training reuses one or two batch shapes (full batches and the last, smaller one), so after
    the first epoch every call is a dictionary hit instead of an allocation.
    """
    key = (shape, dtype)
    buf = cache.get(key)
    if buf is None:
        if len(cache) >= 8:  # e.g. a caller cycling through many batch sizes: do not hoard
            cache.clear()
        buf = cache[key] = np.empty(shape, dtype)
    return buf


class Layer:
    def __init__(self):
        self.params, self.grads, self.decay, self.buffers = [], [], [], {}

    def forward(self, x, training):
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad=True):
        raise NotImplementedError


class Dense(Layer):
    """y = x W + b with W of shape (fan_in, fan_out). `b=None` drops the bias: before a batch
    norm it would be cancelled by the mean subtraction (its gradient is exactly zero)."""

    def __init__(self, W, b=None):
        super().__init__()
        self.params = [W] if b is None else [W, b]
        self.decay = [True, False][:len(self.params)]
        self.grads = [np.zeros_like(p) for p in self.params]  # overwritten in place by backward
        self._out, self._dx = {}, {}  # per-shape workspaces: outputs, input gradients

    @property
    def W(self):
        return self.params[0]

    def forward(self, x, training):
        W = self.params[0]
        if training:
            self.x = x
            dtype = W.dtype if x.dtype == W.dtype else np.result_type(x, W)
            out = np.matmul(x, W, out=workspace(self._out, (x.shape[0], W.shape[1]), dtype))
        else:  # evaluation: a fresh array, nothing cached for a backward pass
            out = x @ W
        if len(self.params) == 2:
            np.add(out, self.params[1], out=out)
        return out

    def backward(self, grad_out, need_input_grad=True):
        gW = self.grads[0]
        np.matmul(self.x.T, grad_out, out=gW)
        if len(self.params) == 2:
            np.add.reduce(grad_out, axis=0, out=self.grads[1])
        if not need_input_grad:
            # The first layer's input gradient (w.r.t. the pixels) is never used: skip that GEMM.
            return None
        W = self.params[0]
        dx = workspace(self._dx, (grad_out.shape[0], W.shape[0]), gW.dtype)
        return np.matmul(grad_out, W.T, out=dx)


class Activation(Layer):
    """An activation from the registry.

    `inplace=True` (the network sets it: it only feeds its activations arrays it owns) lets ReLU
    overwrite its input: its derivative needs only where a = max(z, 0) is positive, which is
    where z is, so z need not be kept.
    """

    def __init__(self, name, inplace=False):
        super().__init__()
        self.fn = activations.get(name)
        self.name = self.fn.name
        self.inplace = inplace
        self._mask = {}

    def forward(self, x, training):
        if self.inplace and self.name == "relu":
            out = np.maximum(x, 0, out=x)
            if training:
                self.z, self.a = None, out
            return out
        if not training:
            return self.fn.forward(x)
        self.z = x
        self.a = self.fn.forward(x)
        return self.a

    def backward(self, grad_out, need_input_grad=True):
        if self.z is None:  # in-place ReLU: dL/dz = dL/da where a > 0, else 0
            mask = workspace(self._mask, self.a.shape, np.bool_)
            np.greater(self.a, 0, out=mask)
            return np.multiply(grad_out, mask, out=grad_out)
        return self.fn.backward(self.z, self.a, grad_out)


class Dropout(Layer):
    """Inverted dropout: at training time keep each unit with probability 1−p and scale by 1/(1−p),
    so evaluation needs no rescaling. `rng` is the network's generator (seeded, reproducible)."""

    def __init__(self, p, rng):
        super().__init__()
        self.p, self.rng = p, rng

    def forward(self, x, training):
        if not training or self.p == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad_out, need_input_grad=True):
        return grad_out if self.mask is None else grad_out * self.mask


class BatchNorm(Layer):
    """Batch normalisation over the batch axis (Ioffe & Szegedy 2015).

    Training uses the batch statistics and updates running estimates as PyTorch does
    (running = (1−momentum)·running + momentum·batch, unbiased variance for the running value);
    evaluation uses the running estimates.
    """

    def __init__(self, width, dtype, momentum=0.1, eps=1e-5):
        super().__init__()
        self.params = [np.ones(width, dtype=dtype), np.zeros(width, dtype=dtype)]
        self.decay = [False, False]
        self.buffers = {"running_mean": np.zeros(width, dtype=dtype), "running_var": np.ones(width, dtype=dtype)}
        self.momentum, self.eps = momentum, eps

    def forward(self, x, training):
        gamma, beta = self.params
        if training:
            n = x.shape[0]
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            m = self.momentum
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += m * var * (n / max(n - 1, 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (x - mean) * self.inv_std
        return self.xhat * gamma + beta

    def backward(self, grad_out, need_input_grad=True):
        gamma = self.params[0]
        xhat = self.xhat
        if len(self.grads) != 2:
            self.grads = [np.empty_like(p) for p in self.params]
        np.einsum("ij,ij->j", grad_out, xhat, out=self.grads[0])
        np.add.reduce(grad_out, axis=0, out=self.grads[1])
        dxhat = grad_out * gamma
        n = grad_out.shape[0]
        # dx = inv_std/n · (n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * np.einsum("ij,ij->j", dxhat, xhat))
