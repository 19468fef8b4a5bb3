"""Weight initialisers: one registry, `init(fan_in, fan_out, rng, dtype, shape=None) -> W`.

The scale comes from the fans; `shape` is the array drawn, (fan_in, fan_out) when not given (a
dense layer). A convolution's weight (out, in, kh, kw) passes fan_in = in·kh·kw and
fan_out = out·kh·kw, as PyTorch's torch.nn.init computes them for a conv weight.
Biases always start at zero. To add a scheme, write one function and add one line to INITIALIZERS.
"""
import numpy as np

from mlp.core.registry import resolve


def random(fan_in, fan_out, rng, dtype, shape=None):
    """Uniform U(−a, a) with a = 1/√fan_in.

    "random" in the assignment's flag table; this is the rule PyTorch's nn.Linear uses by
    default. The scale shrinks with fan_in, so activations stay bounded for any width
    (a plain N(0, 1) would saturate sigmoid/tanh at 784 inputs).
    """
    a = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-a, a, size=shape or (fan_in, fan_out)).astype(dtype)


def xavier(fan_in, fan_out, rng, dtype, shape=None):
    """Glorot & Bengio (2010), normal form: N(0, 2/(fan_in+fan_out))."""
    return (rng.standard_normal(shape or (fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def xavier_uniform(fan_in, fan_out, rng, dtype, shape=None):
    """Glorot & Bengio (2010): U(−a, a) with a = √(6/(fan_in+fan_out))."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape or (fan_in, fan_out)).astype(dtype)


def he(fan_in, fan_out, rng, dtype, shape=None):
    """He et al. (2015), normal form for ReLU nets: N(0, 2/fan_in)."""
    return (rng.standard_normal(shape or (fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(fan_in, fan_out, rng, dtype, shape=None):
    """He et al. (2015): U(−a, a) with a = √(6/fan_in)."""
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=shape or (fan_in, fan_out)).astype(dtype)


def normal(fan_in, fan_out, rng, dtype, shape=None):
    """N(0, 0.01²): small fixed-scale Gaussian, as in early MLP tutorials."""
    return (rng.standard_normal(shape or (fan_in, fan_out)) * 0.01).astype(dtype)


def zero(fan_in, fan_out, rng, dtype, shape=None):
    """All zeros: every hidden unit stays identical — kept to show why symmetry breaking matters."""
    return np.zeros(shape or (fan_in, fan_out), dtype=dtype)


INITIALIZERS = {
    "random": random,
    "xavier": xavier,
    "xavier_uniform": xavier_uniform,
    "he": he,
    "he_uniform": he_uniform,
    "normal": normal,
    "zero": zero,
}
_ALIASES = {"glorot": "xavier", "xavier_normal": "xavier", "he_normal": "he", "kaiming": "he", "zeros": "zero"}


def canonical_name(name: str) -> str:
    return resolve(name, INITIALIZERS, "weight init", _ALIASES)


def get(name: str):
    return INITIALIZERS[canonical_name(name)]
