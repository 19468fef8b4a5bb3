"""Layers as forward/backward pairs.

Every layer has `params` and, after `backward`, `grads` (same order and shapes); `decay` says which
params take weight decay; `buffers` holds non-trained state that a saved model must keep.
`forward(x, training)` caches what `backward(grad_out)` needs; `backward` returns dL/dx.
"""
import numpy as np

from . import activations


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

    @property
    def W(self):
        return self.params[0]

    def forward(self, x, training):
        self.x = x
        out = x @ self.W
        if len(self.params) == 2:
            out += self.params[1]
        return out

    def backward(self, grad_out, need_input_grad=True):
        self.grads = [self.x.T @ grad_out]
        if len(self.params) == 2:
            self.grads.append(grad_out.sum(axis=0))
        # The first layer's input gradient (w.r.t. the pixels) is never used: skip that GEMM.
        return grad_out @ self.W.T if need_input_grad else None


class Activation(Layer):
    def __init__(self, name):
        super().__init__()
        self.fn = activations.get(name)
        self.name = self.fn.name

    def forward(self, x, training):
        self.z = x
        self.a = self.fn.forward(x)
        return self.a

    def backward(self, grad_out, need_input_grad=True):
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
        self.grads = [np.einsum("ij,ij->j", grad_out, xhat), grad_out.sum(axis=0)]
        dxhat = grad_out * gamma
        n = grad_out.shape[0]
        # dx = inv_std/n · (n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * np.einsum("ij,ij->j", dxhat, xhat))
