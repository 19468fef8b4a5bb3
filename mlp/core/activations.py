"""Hidden-layer activations: one registry, each entry a forward/backward pair.

`forward(z)` returns a = f(z). `backward(z, a, grad_a)` returns dL/dz given dL/da; it gets both
z and a so each derivative can use whichever is cheaper (sigmoid and tanh reuse a).
Backward functions may overwrite `grad_a` in place: the network never reuses it.

To add an activation, write its two functions and add one line to ACTIVATIONS.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlp.core.registry import resolve

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0


def identity(z):
    return z


def identity_grad(z, a, grad):
    return grad


def sigmoid(z):
    # σ(z) = (1 + tanh(z/2)) / 2 exactly; tanh never overflows, so neither does this, for any z
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def sigmoid_grad(z, a, grad):
    return grad * a * (1.0 - a)


def tanh(z):
    return np.tanh(z)


def tanh_grad(z, a, grad):
    return grad * (1.0 - a * a)


def relu(z):
    return np.maximum(z, 0)


def relu_grad(z, a, grad):
    grad[z <= 0] = 0
    return grad


def leaky_relu(z):
    return np.where(z > 0, z, LEAKY_SLOPE * z).astype(z.dtype, copy=False)


def leaky_relu_grad(z, a, grad):
    return np.where(z > 0, grad, LEAKY_SLOPE * grad).astype(grad.dtype, copy=False)


_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def gelu(z):
    """Exact GELU: z·Φ(z), Φ the standard normal CDF (the erf form, not the tanh approximation)."""
    from scipy.special import erf  # imported on first use: scipy costs start-up time for every run
    return (0.5 * z * (1.0 + erf(z * _SQRT_HALF))).astype(z.dtype, copy=False)


def gelu_grad(z, a, grad):
    from scipy.special import erf
    cdf = 0.5 * (1.0 + erf(z * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    return (grad * (cdf + z * pdf)).astype(grad.dtype, copy=False)


def elu(z):
    # expm1 only of the non-positive part, so large positive z cannot overflow.
    return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


def elu_grad(z, a, grad):
    # for z <= 0: d/dz α(e^z − 1) = α e^z = a + α
    return np.where(z > 0, grad, grad * (a + ELU_ALPHA)).astype(grad.dtype, copy=False)


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable
    backward: Callable


ACTIVATIONS = {
    "identity": Activation("identity", identity, identity_grad),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_grad),
    "tanh": Activation("tanh", tanh, tanh_grad),
    "relu": Activation("relu", relu, relu_grad),
    "leaky_relu": Activation("leaky_relu", leaky_relu, leaky_relu_grad),
    "gelu": Activation("gelu", gelu, gelu_grad),
    "elu": Activation("elu", elu, elu_grad),
}


def canonical_name(name: str) -> str:
    """'ReLU', 'leaky-relu', 'LeakyReLU' all work."""
    return resolve(name, ACTIVATIONS, "activation")


def get(name: str) -> Activation:
    return ACTIVATIONS[canonical_name(name)]
