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

Images (conv2d, pools, batch_norm2d) are NCHW per the declared shapes, (C, H, W) per sample, and
their weights are laid out as PyTorch's, so the two can be compared array for array. In memory the
feature maps these layers make are channels-last (NHWC): each is an (N, C, H, W) *view* of an
(N, H, W, C) array. Why: a convolution as im2col + GEMM multiplies the patch matrix
(N·OH·OW, kh·kw·C) by the weights and gets (N·OH·OW, F) — exactly the NHWC array, so the GEMM
writes the output in its final place (NCHW memory would cost a transpose of every output and
every incoming gradient); the patches of an NHWC map copy in runs of C contiguous values; batch
norm over channels is a plain (rows, C) batch norm of the same memory; and a pool, an activation
or dropout does not care about strides. Only `flatten` copies into NCHW order (PyTorch's order of
flattened features), once, at the end of the convolutional part.

Any layer spec may carry a `"tag"`: a name for that layer's output (e.g. "bottleneck"), kept in
the spec and so in saved models, by which tools address the layer (the autoencoder tags its
narrowest hidden activation "bottleneck"). A tag is 1-64 characters, not all digits (a number
addresses a layer by index). `spec_of(layer)` is the layer's spec with its tag.

To add a layer type: one class here, registered by name with `@register("name")`.
"""
import inspect
import math
import numbers

import numpy as np
from numpy.lib.stride_tricks import as_strided

from mlp.core import activations
from mlp.core.registry import resolve
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


class Scratch:
    """Named reusable arrays of one layer: each name keeps one flat buffer that grows to the largest
    size asked for and is viewed at each call's shape. The full batches and the last, smaller one
    of an epoch share one allocation per name (no per-batch allocation, no hoarding of one array
    per batch size). New memory is zeroed: a padded buffer whose interior alone is written keeps
    zero borders for every batch size, as long as the per-sample shape stays the same."""

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self._buffers[name] = np.zeros(size, dtype)
        return buf[:size].reshape(shape)

    def channels_last(self, name, shape, dtype):
        """An (N, C, H, W) view of an (N, H, W, C) buffer (see the module docstring)."""
        n, c, h, w = shape
        return self.get(name, (n, h, w, c), dtype).transpose(0, 3, 1, 2)


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


LAYERS = {}                  # layer type ("type" in a spec) -> class, filled by @register


def register(name):
    """Class decorator: the layer class is layer type `name` — its `kind`, what a spec's "type"
    says (matched case-insensitively, like every registry's names)."""
    def add(cls):
        LAYERS[name] = cls
        cls.kind = name
        return cls
    return add


class Layer:
    kind = None              # its layer type (set by @register)
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

    def scratch_size(self, input_shape):
        """Per-sample count of the temporary values a forward pass allocates beyond its output
        (a convolution's patch matrix); sizes evaluation chunks and the memory check."""
        return 0

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


@register("dense")
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


@register("activation")
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
            if not self.a.flags.c_contiguous and self.a.ndim == 4:   # a channels-last map: same layout
                n, c, h, w = self.a.shape
                work = workspace(self._work, (n, h, w, c), self.a.dtype).transpose(0, 3, 1, 2)
            return self.fn.backward_from_output(self.a, grad_out, work)
        return self.fn.backward(self.z, self.a, grad_out)


@register("dropout")
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


@register("batch_norm")
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


# ---- images: NCHW shapes, channels-last memory (see the module docstring) ----------------------

def _pair(kind, name, value, low):
    """An int or a pair [h, w] of ints ≥ low, as a tuple (h, w)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise UsageError(f"{kind} layer: {name} must be an integer or a pair [h, w]; got {value!r:.60}")
        return tuple(_integer(kind, name, v, low) for v in value)
    v = _integer(kind, name, value, low)
    return v, v


def _as_given(value, pair):
    """A size as the spec keeps it: an int as an int, a pair as a list (JSON's form), None or a
    name unchanged — so spec() round-trips through a model file whatever type was passed."""
    if value is None or isinstance(value, str):
        return value
    return list(pair) if isinstance(value, (list, tuple)) else int(value)


def _image(kind, input_shape):
    if len(input_shape) != 3:
        raise UsageError(f"a {kind} layer needs feature maps (channels, height, width) per sample; got shape "
                         f"{tuple(input_shape)} (reshape flat pixels first, e.g. {{'type': 'reshape', "
                         f"'shape': [1, 28, 28]}})")
    return tuple(input_shape)


def _windows(kind, what, size, kernel, stride, pad=(0, 0)):
    """Output (height, width) of sliding a kernel over `size` (checked: the kernel must fit)."""
    out = []
    for axis, s, k, st, p in zip(("height", "width"), size, kernel, stride, pad):
        if s + 2 * p < k:
            raise UsageError(f"{kind} layer: its {what} is {size[0]}×{size[1]}"
                             f"{f' (padded by {p})' if p else ''}, smaller than the {kernel[0]}×{kernel[1]} "
                             f"kernel; use fewer blocks{', padding or a smaller kernel' if kind == 'conv2d' else ''}")
        out.append((s + 2 * p - k) // st + 1)
    return tuple(out)


def _strided(x, i, j, out_hw, stride):
    """x[:, :, i + stride·r, j + stride·c] for every output position (r, c): a view."""
    (oh, ow), (sh, sw) = out_hw, stride
    return x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


@register("conv2d")
class Conv2D(Layer):
    """2-D cross-correlation as PyTorch's conv2d: weight (out_channels, in_channels, kh, kw), bias
    (out_channels,); in_channels is the input's channel count.

    `padding`: an int or [ph, pw] of zeros on each side, "valid" (= 0) or "same" (output as large as
    the input: odd kernels and stride 1 only — an even kernel cannot be centred, and PyTorch too
    refuses "same" for strided convolutions). `bias=False` before a batch norm.

    Forward: im2col + one GEMM. The input is zero-padded into a reused channels-last buffer, the
    (N, OH, OW, kh, kw, C) patches are a strided view of it, copied once into a reused patch matrix
    (N·OH·OW, kh·kw·C), and one matmul with the weights (permuted to (kh·kw·C, F), a small copy)
    gives the output, channels-last. Backward: one GEMM Gᵀ·patches for the weights; for the input,
    with stride 1, im2col of the (padded) output gradient and one GEMM with the kernel turned by
    180° (a plain convolution, measured faster here than scattering); with a larger stride, G·Wᵀ
    for the patches' gradient and col2im — one vectorised add per kernel offset (kh·kw of them).
    No Python loop over pixels or images either way.
    """

    decay = ("W",)

    def __init__(self, out_channels, kernel_size=3, stride=1, padding=0, bias=True):
        super().__init__()
        self.out_channels = _integer("conv2d", "out_channels", out_channels)
        self.kernel = _pair("conv2d", "kernel_size", kernel_size, 1)
        self.stride = _pair("conv2d", "stride", stride, 1)
        self.kernel_size, self.stride_arg = _as_given(kernel_size, self.kernel), _as_given(stride, self.stride)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise UsageError(f"conv2d layer: padding must be 'same', 'valid', an integer or [ph, pw]; got {padding!r:.40}")
            if padding == "same":
                if any(k % 2 == 0 for k in self.kernel):
                    raise UsageError(f"conv2d layer: padding 'same' needs an odd kernel size, got "
                                     f"{self.kernel[0]}×{self.kernel[1]}: an even kernel cannot be centred, so "
                                     f"the padding would be lopsided; use an odd kernel_size or padding 'valid'")
                if self.stride != (1, 1):
                    raise UsageError("conv2d layer: padding 'same' needs stride 1 (a strided convolution cannot "
                                     "keep the input's size); give the padding as a number")
                self.pad = tuple((k - 1) // 2 for k in self.kernel)
            else:
                self.pad = (0, 0)
        else:
            self.pad = _pair("conv2d", "padding", padding, 0)
        self.padding_arg = _as_given(padding, self.pad)
        if not isinstance(bias, bool):
            raise UsageError(f"conv2d layer: bias must be true or false; got {bias!r}")
        self.bias = bias
        self._scratch = {True: Scratch(), False: Scratch()}   # training / evaluation

    def _geometry(self, input_shape):
        c, h, w = _image("conv2d", input_shape)
        return c, _windows("conv2d", "input", (h, w), self.kernel, self.stride, self.pad)

    def shapes(self, input_shape):
        c, (oh, ow) = self._geometry(input_shape)
        params = {"W": (self.out_channels, c, *self.kernel)}
        if self.bias:
            params["b"] = (self.out_channels,)
        return (self.out_channels, oh, ow), params, {}

    def scratch_size(self, input_shape):
        c, h, w = input_shape
        _, (oh, ow) = self._geometry(input_shape)
        return oh * ow * self.kernel[0] * self.kernel[1] * c + (h + 2 * self.pad[0]) * (w + 2 * self.pad[1]) * c

    def initial_param(self, name, shape, rng, dtype, init):
        if name != "W":
            return np.zeros(shape, dtype)
        out, c, kh, kw = shape
        return init(c * kh * kw, out * kh * kw, rng, dtype, shape=shape)

    def spec(self):
        return {"type": self.kind, "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                "stride": self.stride_arg, "padding": self.padding_arg, "bias": self.bias}

    def forward(self, x, training, inplace=False):
        W = self.params["W"]
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        _, (oh, ow) = self._geometry((c, h, w))
        scratch = self._scratch[training]
        dtype = W.dtype
        if ph or pw or x.dtype != dtype:
            # the interior of a zero-bordered channels-last buffer (borders are never written)
            padded = scratch.get("padded", (n, h + 2 * ph, w + 2 * pw, c), dtype)
            np.copyto(padded[:, ph:ph + h, pw:pw + w, :], x.transpose(0, 2, 3, 1))
        else:
            padded = x.transpose(0, 2, 3, 1)    # a view, whatever x's memory layout
        s0, s1, s2, s3 = padded.strides
        patches = as_strided(padded, (n, oh, ow, kh, kw, c), (s0, sh * s1, sw * s2, s1, s2, s3), writeable=False)
        cols = scratch.get("cols", (n, oh, ow, kh, kw, c), dtype)
        np.copyto(cols, patches)
        cols = cols.reshape(n * oh * ow, kh * kw * c)
        # weights as (kh·kw·C, F), matching the patches' column order (a small copy)
        Wk = W.transpose(2, 3, 1, 0).reshape(kh * kw * c, self.out_channels)
        if training:
            self.cols, self.Wk, self.in_shape = cols, Wk, (n, c, h, w)
            out = np.matmul(cols, Wk, out=scratch.get("out", (n * oh * ow, self.out_channels), dtype))
        else:                                   # evaluation: a fresh output, nothing kept
            out = cols @ Wk
        if self.bias:
            np.add(out, self.params["b"], out=out)
        return out.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        n, c, h, w = self.in_shape
        f, oh, ow = grad_out.shape[1:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        scratch = self._scratch[True]
        g = grad_out.transpose(0, 2, 3, 1)
        if not g.flags.c_contiguous:            # a gradient that arrives in NCHW memory
            copy = scratch.get("g", g.shape, g.dtype)
            np.copyto(copy, g)
            g = copy
        g = g.reshape(n * oh * ow, f)
        # Gᵀ·patches is (F, kh·kw·C): the weight gradient in (F, kh, kw, C) order (this operand order
        # is also the faster GEMM here: a long shared dimension read along rows)
        gW = np.matmul(g.T, self.cols, out=scratch.get("gW", (f, kh * kw * c), g.dtype))
        np.copyto(self.grads["W"], gW.reshape(f, kh, kw, c).transpose(0, 3, 1, 2))
        if self.bias:
            np.add.reduce(g, axis=0, out=self.grads["b"])
        if not need_input_grad:
            return None
        qh, qw = kh - 1 - ph, kw - 1 - pw
        if (sh, sw) == (1, 1) and qh >= 0 and qw >= 0:
            # stride 1: dL/dx is the "full" correlation of G with the kernel turned by 180° —
            # im2col of G (padded by k−1−p) and one GEMM, no scatter-add
            gmap = g.reshape(n, oh, ow, f)
            if qh or qw:
                gpad = scratch.get("gpad", (n, oh + 2 * qh, ow + 2 * qw, f), g.dtype)
                np.copyto(gpad[:, qh:qh + oh, qw:qw + ow, :], gmap)
                gmap = gpad
            s0, s1, s2, s3 = gmap.strides
            gcols = scratch.get("gcols", (n, h, w, kh, kw, f), g.dtype)
            np.copyto(gcols, as_strided(gmap, (n, h, w, kh, kw, f), (s0, s1, s2, s1, s2, s3), writeable=False))
            Wt = self.params["W"][:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * f, c)
            dx = np.matmul(gcols.reshape(n * h * w, kh * kw * f), Wt, out=scratch.get("dx", (n * h * w, c), g.dtype))
            return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        # any stride: G·Wᵀ gives the patches' gradient; col2im adds it back, one add per kernel offset
        dcols = np.matmul(g, self.Wk.T, out=scratch.get("dcols", self.cols.shape, g.dtype))
        dcols = dcols.reshape(n, oh, ow, kh, kw, c)
        dpadded = scratch.get("dpadded", (n, h + 2 * ph, w + 2 * pw, c), g.dtype)
        dpadded.fill(0)
        for i in range(kh):
            for j in range(kw):
                dpadded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += dcols[:, :, :, i, j, :]
        return dpadded[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2)


class _Pool2D(Layer):
    """Shared by max and average pooling: a kernel sliding with a stride (default: the kernel, so
    windows tile the map), no padding; rows or columns that no window reaches are dropped, as
    PyTorch does (floor mode). Each op is one vectorised step per kernel offset."""

    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        self.kernel = _pair(self.kind, "kernel_size", kernel_size, 1)
        self.stride = self.kernel if stride is None else _pair(self.kind, "stride", stride, 1)
        self.kernel_size, self.stride_arg = _as_given(kernel_size, self.kernel), _as_given(stride, self.stride)
        self._scratch = {True: Scratch(), False: Scratch()}

    def shapes(self, input_shape):
        c, h, w = _image(self.kind, input_shape)
        return (c, *_windows(self.kind, "input", (h, w), self.kernel, self.stride)), {}, {}

    def spec(self):
        return {"type": self.kind, "kernel_size": self.kernel_size, "stride": self.stride_arg}

    def _offsets(self):
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    def _channels_last(self, grad_out):
        """The incoming gradient in channels-last memory, like every other array here (after a
        flatten it arrives in NCHW order; mixed layouts make each pass several times slower)."""
        if grad_out.transpose(0, 2, 3, 1).flags.c_contiguous:
            return grad_out
        g = self._scratch[True].channels_last("grad_out", grad_out.shape, grad_out.dtype)
        np.copyto(g, grad_out)
        return g

    def _input_grad(self):
        """A channels-last input-gradient buffer; zeroed unless the windows tile the input exactly."""
        n, c, h, w = self.in_shape
        dx = self._scratch[True].channels_last("dx", (n, c, h, w), self.dtype)
        oh, ow = self.out_hw
        if self.stride != self.kernel or oh * self.kernel[0] != h or ow * self.kernel[1] != w:
            dx.fill(0)
        return dx

    def _output(self, x, training):
        n, c = x.shape[:2]
        oh, ow = self.shapes(x.shape[1:])[0][1:]
        self.in_shape, self.out_hw, self.dtype = x.shape, (oh, ow), x.dtype
        if training:
            return self._scratch[True].channels_last("out", (n, c, oh, ow), x.dtype)
        return np.empty((n, oh, ow, c), x.dtype).transpose(0, 3, 1, 2)


@register("max_pool2d")
class MaxPool2D(_Pool2D):
    """As torch's max_pool2d (no padding, dilation 1). Ties: the gradient goes to the first
    maximum of the window in row-major order, as PyTorch's CPU kernel does (it keeps the first
    index whose value is greater than all before it)."""

    def forward(self, x, training, inplace=False):
        out = self._output(x, training)
        if self.kernel == self.stride == (2, 2):
            return self._forward_2x2(x, out, training)
        offsets = self._offsets()
        np.copyto(out, _strided(x, 0, 0, self.out_hw, self.stride))
        if training:
            self.argmax = self._scratch[True].channels_last("argmax", out.shape, np.uint8)
            self.argmax.fill(0)
            better = self._scratch[True].channels_last("better", out.shape, np.bool_)
        for k, (i, j) in enumerate(offsets[1:], 1):
            window = _strided(x, i, j, self.out_hw, self.stride)
            if training:
                np.greater(window, out, out=better)        # strictly greater: ties keep the first
                np.copyto(self.argmax, k, where=better)
            np.maximum(out, window, out=out)
        return out

    def _forward_2x2(self, x, out, training):
        """The common 2×2 / stride 2 case as a tournament: the max of each row pair, then of the
        two winners — 3 maxima and 3 comparisons instead of a pass per window position. Ties keep
        the first (left, then top) as the general path does."""
        a, b, c, d = (_strided(x, i, j, self.out_hw, self.stride) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        scratch = self._scratch[training]
        top, bottom = (scratch.channels_last(name, out.shape, x.dtype) for name in ("top", "bottom"))
        np.maximum(a, b, out=top)
        np.maximum(c, d, out=bottom)
        np.maximum(top, bottom, out=out)
        if training:
            right, lower_right, lower = (scratch.channels_last(name, out.shape, np.bool_)
                                         for name in ("right", "lower_right", "lower"))
            np.greater(b, a, out=right)                  # the top pair's winner is b
            np.greater(d, c, out=lower_right)            # the bottom pair's winner is d
            np.greater(bottom, top, out=lower)           # the bottom pair wins
            self.argmax = scratch.channels_last("argmax", out.shape, np.uint8)
            np.add(lower_right, 2, out=self.argmax, casting="unsafe")     # 2 or 3 where the bottom wins
            np.copyto(self.argmax, right, where=~lower)                   # else 0 or 1
        return out

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = self._input_grad()
        grad_out = self._channels_last(grad_out)
        overlap = self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]
        hit = self._scratch[True].channels_last("hit", grad_out.shape, np.bool_)
        part = self._scratch[True].channels_last("part", grad_out.shape, grad_out.dtype) if overlap else None
        for k, (i, j) in enumerate(self._offsets()):
            np.equal(self.argmax, k, out=hit)
            target = _strided(dx, i, j, self.out_hw, self.stride)
            if overlap:                          # windows share inputs: add up
                np.multiply(grad_out, hit, out=part)
                target += part
            else:
                np.multiply(grad_out, hit, out=target)
        return dx


@register("avg_pool2d")
class AvgPool2D(_Pool2D):
    """As torch's avg_pool2d (no padding): the mean of each window."""

    def forward(self, x, training, inplace=False):
        out = self._output(x, training)
        offsets = self._offsets()
        np.copyto(out, _strided(x, 0, 0, self.out_hw, self.stride))
        for i, j in offsets[1:]:
            np.add(out, _strided(x, i, j, self.out_hw, self.stride), out=out)
        np.multiply(out, out.dtype.type(1.0 / len(offsets)), out=out)
        return out

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = self._input_grad()
        grad_out = self._channels_last(grad_out)
        share = self._scratch[True].channels_last("share", grad_out.shape, grad_out.dtype)
        np.multiply(grad_out, grad_out.dtype.type(1.0 / (self.kernel[0] * self.kernel[1])), out=share)
        overlap = self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]
        for i, j in self._offsets():
            target = _strided(dx, i, j, self.out_hw, self.stride)
            if overlap:
                target += share
            else:
                np.copyto(target, share)
        return dx


@register("global_avg_pool2d")
class GlobalAvgPool2D(Layer):
    """The mean of each channel over the whole map: (C, H, W) → (C,), as torch's
    adaptive_avg_pool2d(x, 1) flattened — a dense head follows it directly."""

    def __init__(self):
        super().__init__()
        self._scratch = Scratch()

    def shapes(self, input_shape):
        c, _, _ = _image("global_avg_pool2d", input_shape)
        return (c,), {}, {}

    def forward(self, x, training, inplace=False):
        if training:
            self.in_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        n, c, h, w = self.in_shape
        dx = self._scratch.channels_last("dx", self.in_shape, grad_out.dtype)
        np.copyto(dx, (grad_out * grad_out.dtype.type(1.0 / (h * w)))[:, :, None, None])
        return dx


@register("reshape")
class Reshape(Layer):
    """A new per-sample shape for the same values (C order), e.g. 784 pixels → [1, 28, 28]."""

    aliases_input = True

    def __init__(self, shape):
        super().__init__()
        if not isinstance(shape, (list, tuple)) or not shape or len(shape) > 8 or any(
                isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
            raise UsageError(f"reshape layer: shape must be a list of positive integers; got {shape!r:.60}")
        self.shape = tuple(int(s) for s in shape)

    def shapes(self, input_shape):
        if math.prod(input_shape) != math.prod(self.shape):
            raise UsageError(f"reshape layer: cannot make {math.prod(input_shape)} values per sample (shape "
                             f"{tuple(input_shape)}) into shape {self.shape}")
        return self.shape, {}, {}

    def spec(self):
        return {"type": self.kind, "shape": list(self.shape)}

    def forward(self, x, training, inplace=False):
        if training:
            self.in_shape = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out.reshape(self.in_shape) if need_input_grad else None


@register("flatten")
class Flatten(Reshape):
    """(C, H, W) → (C·H·W,) in PyTorch's order (channel, then row, then column): a dense layer after
    it takes the same weights as after torch.flatten. Copies a channels-last map into that order."""

    def __init__(self):
        Layer.__init__(self)

    def shapes(self, input_shape):
        return (math.prod(input_shape),), {}, {}

    def spec(self):
        return {"type": self.kind}

    def forward(self, x, training, inplace=False):
        if training:
            self.in_shape = x.shape
        return x.reshape(x.shape[0], -1)


class _PerChannel:
    """Fast per-channel arithmetic on a (rows, C) table. A broadcast against a (C,) vector runs
    NumPy's inner loop C values at a time (32 for a typical map: slow); viewed as (rows/r, r·C)
    with the vector tiled r times, the same operations run in loops of r·C values, several times
    faster. Column sums are a GEMV on that view, then a sum over the r tiles."""

    def __init__(self, rows, c):
        r = 1
        while r * c < 1024 and rows % (2 * r) == 0:
            r *= 2
        self.r, self.c, self.shape = r, c, (rows // r, r * c)
        self.ones = None

    def view(self, table):
        return table.reshape(self.shape)

    def tile(self, vector):
        return np.tile(vector, self.r)

    def sums(self, table):
        """Σ over rows of each column: (C,)."""
        if self.ones is None or self.ones.dtype != table.dtype:
            self.ones = np.ones(self.shape[0], table.dtype)
        return (self.ones @ self.view(table)).reshape(self.r, self.c).sum(axis=0)

    def dots(self, a, b):
        """Σ over rows of a·b, per column: (C,)."""
        return np.einsum("ij,ij->j", self.view(a), self.view(b)).reshape(self.r, self.c).sum(axis=0)


@register("batch_norm2d")
class BatchNorm2D(BatchNorm):
    """Batch norm per channel over (batch, height, width), as torch's batch_norm on NCHW input
    (the running variance is unbiased over N·H·W values).

    A channels-last map is a (N·H·W, C) table in memory, so the statistics are column sums of
    that table (no copy), with the per-channel arithmetic of `_PerChannel`. Training keeps
    x̂ = (x − mean)/σ in a reused buffer; the output is γ·x̂ + β, and
    dx = (γ/σ)·(g − Σg/n − x̂·Σ(g·x̂)/n), computed as g·a + x̂·b + c with per-channel a, b, c."""

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__(momentum, eps)
        self._scratch = Scratch()
        self._channels = {}

    def shapes(self, input_shape):
        c, _, _ = _image("batch_norm2d", input_shape)
        return tuple(input_shape), {"gamma": (c,), "beta": (c,)}, {"running_mean": (c,), "running_var": (c,)}

    def _table(self, x, name=None):
        n, c, h, w = x.shape
        rows = x.transpose(0, 2, 3, 1)
        if not rows.flags.c_contiguous:          # a map in NCHW memory: one copy
            copy = self._scratch.get(name, rows.shape, x.dtype) if name else np.empty(rows.shape, x.dtype)
            np.copyto(copy, rows)
            rows = copy
        rows = rows.reshape(n * h * w, c)
        key = (n * h * w, c)
        if key not in self._channels:
            if len(self._channels) >= 4:
                self._channels.clear()
            self._channels[key] = _PerChannel(*key)
        return rows, self._channels[key]

    def forward(self, x, training, inplace=False):
        n, c, h, w = x.shape
        rows, pc = self._table(x, "x" if training else None)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if training:
            m = rows.shape[0]
            mean = pc.sums(rows) / m
            xhat = self._scratch.get("xhat", rows.shape, rows.dtype)
            np.subtract(pc.view(rows), pc.tile(mean), out=pc.view(xhat))
            var = pc.dots(xhat, xhat) / m
            mom = self.momentum
            self.buffers["running_mean"] *= 1 - mom
            self.buffers["running_mean"] += mom * mean
            self.buffers["running_var"] *= 1 - mom
            self.buffers["running_var"] += mom * var * (m / max(m - 1, 1))
            self.inv_std = (1.0 / np.sqrt(var + self.eps)).astype(rows.dtype)
            np.multiply(pc.view(xhat), pc.tile(self.inv_std), out=pc.view(xhat))
            self.xhat, self.pc = xhat, pc
            out = self._scratch.get("out", rows.shape, rows.dtype)
            np.multiply(pc.view(xhat), pc.tile(gamma), out=pc.view(out))
            np.add(pc.view(out), pc.tile(beta), out=pc.view(out))
        else:                                    # y = x·scale + shift with the running statistics
            scale = (gamma / np.sqrt(self.buffers["running_var"] + self.eps)).astype(rows.dtype)
            shift = (beta - self.buffers["running_mean"] * scale).astype(rows.dtype)
            out = np.multiply(pc.view(rows), pc.tile(scale))
            np.add(out, pc.tile(shift), out=out)
        return out.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        n, c, h, w = grad_out.shape
        g, pc = self._table(grad_out, "g")
        xhat, m = self.xhat, g.shape[0]
        dbeta, dgamma = pc.sums(g), pc.dots(g, xhat)
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dgamma
        if not need_input_grad:
            return None
        k = self.params["gamma"] * self.inv_std
        dx = self._scratch.get("dx", g.shape, g.dtype)
        work = self._scratch.get("work", g.shape, g.dtype)
        np.multiply(pc.view(g), pc.tile(k), out=pc.view(dx))
        np.multiply(pc.view(xhat), pc.tile((-k * dgamma / m).astype(g.dtype)), out=pc.view(work))
        np.add(pc.view(dx), pc.view(work), out=pc.view(dx))
        np.add(pc.view(dx), pc.tile((-k * dbeta / m).astype(g.dtype)), out=pc.view(dx))
        return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)

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
    if not isinstance(kind, str):
        raise UsageError(f"unknown layer type {kind!r:.40}; choose one of: {', '.join(LAYERS)}")
    kind = resolve(kind[:80], LAYERS, "layer type")
    cls = LAYERS[kind]
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
