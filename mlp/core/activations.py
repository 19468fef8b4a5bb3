"""Hidden-layer activations: one registry, each entry a forward/backward pair.

`forward(z)` returns a = f(z). `backward(z, a, grad_a)` returns dL/dz given dL/da; it gets both
z and a so each derivative can use whichever is cheaper (sigmoid and tanh reuse a).
Backward functions may overwrite `grad_a` in place: the network never reuses it.

An activation whose derivative is a function of its output alone may also supply an in-place
pair: `forward_inplace(z)` overwrites z with f(z) and returns it, and `backward_from_output(a,
grad_a, work)` returns dL/dz from a alone (it may overwrite grad_a and `work`, a scratch array of
a's shape and dtype). The network uses the pair where it knows z is a temporary it owns; both
must give the same numbers, bit for bit, as the plain pair.

To add an activation, write its two (or four) functions and add one line to ACTIVATIONS.
"""
from dataclasses import dataclass
from typing import Callable, Optional

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


def sigmoid_inplace(z):
    # the operations of `sigmoid`, in the same order, into z
    np.multiply(z, 0.5, out=z)
    np.tanh(z, out=z)
    np.add(z, 1.0, out=z)
    return np.multiply(z, 0.5, out=z)


def sigmoid_grad_from_output(a, grad, work):
    np.subtract(1.0, a, out=work)
    np.multiply(grad, a, out=grad)
    return np.multiply(grad, work, out=grad)


def tanh(z):
    return np.tanh(z)


def tanh_grad(z, a, grad):
    return grad * (1.0 - a * a)


def tanh_inplace(z):
    return np.tanh(z, out=z)


def tanh_grad_from_output(a, grad, work):
    np.multiply(a, a, out=work)
    np.subtract(1.0, work, out=work)
    return np.multiply(grad, work, out=grad)


def relu(z):
    return np.maximum(z, 0)


def relu_grad(z, a, grad):
    grad[z <= 0] = 0
    return grad


def relu_inplace(z):
    return np.maximum(z, 0, out=z)


def relu_grad_from_output(a, grad, work):
    # a = max(z, 0) is positive exactly where z is: dL/dz = dL/da there, else 0
    np.greater(a, 0, out=work)
    return np.multiply(grad, work, out=grad)


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
    forward_inplace: Optional[Callable] = None        # z -> f(z), written into z
    backward_from_output: Optional[Callable] = None   # (a, grad_a, work) -> dL/dz

    @property
    def inplace(self):
        return self.forward_inplace is not None and self.backward_from_output is not None


ACTIVATIONS = {
    "identity": Activation("identity", identity, identity_grad),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_grad, sigmoid_inplace, sigmoid_grad_from_output),
    "tanh": Activation("tanh", tanh, tanh_grad, tanh_inplace, tanh_grad_from_output),
    "relu": Activation("relu", relu, relu_grad, relu_inplace, relu_grad_from_output),
    "leaky_relu": Activation("leaky_relu", leaky_relu, leaky_relu_grad),
    "gelu": Activation("gelu", gelu, gelu_grad),
    "elu": Activation("elu", elu, elu_grad),
}


def canonical_name(name: str) -> str:
    """'ReLU', 'leaky-relu', 'LeakyReLU' all work."""
    return resolve(name, ACTIVATIONS, "activation")


def get(name: str) -> Activation:
    return ACTIVATIONS[canonical_name(name)]
