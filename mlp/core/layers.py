"""Layers: forward/backward pairs that declare their parameters (CS231n / torch.nn style).

A layer is built from a JSON-able spec, `{"type": "dense", "units": 128}`, by `from_spec`; its
`spec()` gives that dict back. `build(input_shape, rng, dtype, init)` allocates its arrays and
returns its output shape, so a network infers every shape layer by layer from its input shape
(shapes are per sample, without the batch axis: (784,) for pixels, (C, H, W) for NCHW images).
What a layer allocates it first declares in `shapes(input_shape)` — (output shape, parameter
shapes, buffer shapes) — so a model file can be checked against a spec before anything is read.

Named arrays, all dicts in a fixed order: `params` (trained), `grads` (same keys; every `backward`
overwrites them in place — the network points them into one flat buffer and never copies them
back), `buffers` (not trained but saved, e.g. batch-norm running statistics). `decay` names the
params that take weight decay.

`forward(x, training, inplace=False)` caches what `backward(grad_out, need_input_grad)` needs;
`backward` returns dL/dx. `inplace=True` is the network's promise that x is a temporary it owns
and no other layer reads later; a layer with `can_overwrite_input` may then write its output
into x. To make that decision the network reads two declarations: `aliases_input` (the output may
be the input array itself) and `backward_reads(inplace)` (which of the forward's input and output
arrays backward reads).

Speed: a training step allocates nothing in Dense and the in-place activations: they keep one
output / input-gradient / scratch array per batch shape, reused by the next training step — so
arrays a training pass returns are only valid until the next one. Evaluation returns fresh arrays.

Any layer spec may carry a `"tag"`: a name for that layer's output (e.g. "bottleneck"), kept in
the spec and so in saved models, by which tools address the layer (the autoencoder tags its
narrowest hidden activation "bottleneck"). A tag is 1-64 characters, not all digits (a number
addresses a layer by index). `spec_of(layer)` is the layer's spec with its tag.

To add a layer type: one class here and one line in LAYERS.
"""
import inspect
import math
import numbers

import numpy as np

from mlp.core import activations
from mlp.errors import UsageError


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


def _integer(kind, name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise UsageError(f"{kind} layer: {name} must be an integer ≥ {low}; got {value!r}")
    return int(value)


def _real(kind, name, value, low, high, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not (low < value if low_open else low <= value) or not (value < high if high_open else value <= high):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise UsageError(f"{kind} layer: {name} must be a number in {lo}{low}, {high}{hi}; got {value!r}")
    return float(value)


class Layer:
    kind = None              # its name in LAYERS (set there)
    tag = None               # an optional name for this layer's output (see the module docstring)
    decay = ()               # names of params that take weight decay
    aliases_input = False    # forward may return its input array itself (or write into it)
    can_overwrite_input = False

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}

    # ---- declaration and construction ------------------------------------------------------
    def shapes(self, input_shape):
        """(output_shape, {param: shape}, {buffer: shape}) for a per-sample input shape; a shape
        this layer cannot take is a UsageError. Allocates nothing."""
        return tuple(input_shape), {}, {}

    def initial_param(self, name, shape, rng, dtype, init):
        """The starting value of a parameter (rng draws happen here, in declaration order)."""
        return np.zeros(shape, dtype)

    def initial_buffer(self, name, shape, dtype):
        return np.zeros(shape, dtype)

    def build(self, input_shape, rng, dtype, init):
        """Allocate params, grads and buffers for `input_shape`; return the output shape."""
        output_shape, param_shapes, buffer_shapes = self.shapes(tuple(input_shape))
        self.params = {k: self.initial_param(k, s, rng, dtype, init) for k, s in param_shapes.items()}
        self.grads = {k: np.zeros(s, dtype) for k, s in param_shapes.items()}
        self.buffers = {k: self.initial_buffer(k, s, dtype) for k, s in buffer_shapes.items()}
        return output_shape

    def spec(self):
        """The JSON-able dict that rebuilds this layer with `from_spec`."""
        return {"type": self.kind}

    # ---- computation ------------------------------------------------------------------------
    def backward_reads(self, inplace):
        """Which arrays of the last forward pass `backward` reads: a subset of {"input", "output"}."""
        return ()

    def forward(self, x, training, inplace=False):
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad=True):
        raise NotImplementedError


class Dense(Layer):
    """y = x W + b with W of shape (fan_in, units). `bias=False` drops b: before a batch norm it
    would be cancelled by the mean subtraction (its gradient is exactly zero)."""

    decay = ("W",)

    def __init__(self, units, bias=True):
        super().__init__()
        self.units = _integer("dense", "units", units)
        if not isinstance(bias, bool):
            raise UsageError(f"dense layer: bias must be true or false; got {bias!r}")
        self.bias = bias
        self._out, self._dx = {}, {}  # per-shape workspaces: outputs, input gradients

    def shapes(self, input_shape):
        if len(input_shape) != 1:
            raise UsageError(f"a dense layer needs a flat input (one axis per sample); got shape {input_shape}")
        params = {"W": (input_shape[0], self.units)}
        if self.bias:
            params["b"] = (self.units,)
        return (self.units,), params, {}

    def initial_param(self, name, shape, rng, dtype, init):
        return init(shape[0], shape[1], rng, dtype) if name == "W" else np.zeros(shape, dtype)

    def spec(self):
        return {"type": self.kind, "units": self.units, "bias": self.bias}

    @property
    def W(self):
        return self.params["W"]

    def backward_reads(self, inplace):
        return ("input",)

    def forward(self, x, training, inplace=False):
        W = self.params["W"]
        if training:
            self.x = x
            dtype = W.dtype if x.dtype == W.dtype else np.result_type(x, W)
            out = np.matmul(x, W, out=workspace(self._out, (x.shape[0], W.shape[1]), dtype))
        else:  # evaluation: a fresh array, nothing cached for a backward pass
            out = x @ W
        if self.bias:
            np.add(out, self.params["b"], out=out)
        return out

    def backward(self, grad_out, need_input_grad=True):
        gW = self.grads["W"]
        np.matmul(self.x.T, grad_out, out=gW)
        if self.bias:
            np.add.reduce(grad_out, axis=0, out=self.grads["b"])
        if not need_input_grad:
            # The first layer's input gradient (w.r.t. the pixels) is never used: skip that GEMM.
            return None
        W = self.params["W"]
        dx = workspace(self._dx, (grad_out.shape[0], W.shape[0]), gW.dtype)
        return np.matmul(grad_out, W.T, out=dx)


class Activation(Layer):
    """An activation from the registry (mlp.core.activations). Where the registry entry has an
    in-place pair and the network allows it, z is overwritten by a and backward works from a."""

    aliases_input = True  # identity returns z itself; the in-place form writes into z

    def __init__(self, name):
        super().__init__()
        if not isinstance(name, str):
            raise UsageError(f"activation layer: name must be a string; got {name!r}")
        self.fn = activations.get(name)
        self.name = self.fn.name
        self._work = {}

    @property
    def can_overwrite_input(self):
        return self.fn.inplace

    def spec(self):
        return {"type": self.kind, "name": self.name}

    def backward_reads(self, inplace):
        return ("output",) if inplace else ("input", "output")

    def forward(self, x, training, inplace=False):
        if inplace:
            out = self.fn.forward_inplace(x)
            if training:
                self.z, self.a = None, out
            return out
        if not training:
            return self.fn.forward(x)
        self.z = x
        self.a = self.fn.forward(x)
        return self.a

    def backward(self, grad_out, need_input_grad=True):
        if self.z is None:  # the in-place form: dL/dz from a alone
            work = workspace(self._work, self.a.shape, self.a.dtype)
            return self.fn.backward_from_output(self.a, grad_out, work)
        return self.fn.backward(self.z, self.a, grad_out)


class Dropout(Layer):
    """Inverted dropout: at training time keep each unit with probability 1−rate and scale by
    1/(1−rate), so evaluation needs no rescaling. Masks come from the generator given to `build`
    (the network's: seeded, reproducible), kept as `self.rng`."""

    aliases_input = True  # evaluation (and rate 0) pass the input through

    def __init__(self, rate):
        super().__init__()
        self.p = _real("dropout", "rate", rate, 0.0, 1.0, high_open=True)
        self.rng = None

    def build(self, input_shape, rng, dtype, init):
        self.rng = rng
        return super().build(input_shape, rng, dtype, init)

    def spec(self):
        return {"type": self.kind, "rate": self.p}

    def forward(self, x, training, inplace=False):
        if not training or self.p == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad_out, need_input_grad=True):
        return grad_out if self.mask is None else grad_out * self.mask


class BatchNorm(Layer):
    """Batch normalisation over the batch axis (Ioffe & Szegedy 2015), per feature.

    Training uses the batch statistics and updates running estimates as PyTorch does
    (running = (1−momentum)·running + momentum·batch, unbiased variance for the running value);
    evaluation uses the running estimates.
    """

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = _real("batch_norm", "momentum", momentum, 0.0, 1.0)
        self.eps = _real("batch_norm", "eps", eps, 0.0, math.inf, low_open=True, high_open=True)

    def shapes(self, input_shape):
        if len(input_shape) != 1:
            raise UsageError(f"batch_norm normalises flat inputs (one axis per sample); got shape {input_shape}")
        width = input_shape
        return width, {"gamma": width, "beta": width}, {"running_mean": width, "running_var": width}

    def initial_param(self, name, shape, rng, dtype, init):
        return np.ones(shape, dtype) if name == "gamma" else np.zeros(shape, dtype)

    def initial_buffer(self, name, shape, dtype):
        return np.ones(shape, dtype) if name == "running_var" else np.zeros(shape, dtype)

    def spec(self):
        return {"type": self.kind, "momentum": self.momentum, "eps": self.eps}

    def forward(self, x, training, inplace=False):
        gamma, beta = self.params["gamma"], self.params["beta"]
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
        gamma = self.params["gamma"]
        xhat = self.xhat
        np.einsum("ij,ij->j", grad_out, xhat, out=self.grads["gamma"])
        np.add.reduce(grad_out, axis=0, out=self.grads["beta"])
        if not need_input_grad:
            return None
        dxhat = grad_out * gamma
        n = grad_out.shape[0]
        # dx = inv_std/n · (n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * np.einsum("ij,ij->j", dxhat, xhat))


LAYERS = {"dense": Dense, "activation": Activation, "dropout": Dropout, "batch_norm": BatchNorm}
for _name, _cls in LAYERS.items():
    _cls.kind = _name


MAX_TAG = 64


def check_tag(tag):
    """A layer tag as given, or a UsageError: text of 1-64 characters that is not all digits."""
    if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG or tag.isdigit() or tag != tag.strip() \
            or ":" in tag:
        raise UsageError(f"a layer tag must be 1-{MAX_TAG} characters, not all digits, without ':' or surrounding "
                         f"spaces; got {tag!r:.80}")
    return tag


def spec_of(layer):
    """The layer's spec dict, with its tag when it has one."""
    spec = layer.spec()
    if layer.tag is not None:
        spec["tag"] = layer.tag
    return spec


def from_spec(spec):
    """The (unbuilt) layer a spec dict describes; anything malformed is a UsageError."""
    if not isinstance(spec, dict):
        raise UsageError(f"a layer spec must be a dict such as {{'type': 'dense', 'units': 128}}; got {spec!r:.80}")
    kind = spec.get("type")
    cls = LAYERS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UsageError(f"unknown layer type {kind!r:.40}; choose one of: {', '.join(LAYERS)}")
    tag = check_tag(spec["tag"]) if "tag" in spec else None
    args = {k: v for k, v in spec.items() if k not in ("type", "tag")}
    accepted = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    unknown = sorted(set(args) - set(accepted), key=str)
    if unknown:
        raise UsageError(f"{kind} layer takes {accepted}; not {unknown!r:.80}")
    try:
        layer = cls(**args)
    except TypeError as e:  # a required argument is missing
        raise UsageError(f"{kind} layer: {e}") from None
    if tag is not None:
        layer.tag = tag
    return layer
