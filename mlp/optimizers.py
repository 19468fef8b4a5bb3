"""Optimizers: one class per method, per-parameter state, hyperparameters in the constructor.

Each update equals its PyTorch twin with the same hyperparameters (the tests compare them step by
step). `step(params, grads)` updates the arrays in place; state is kept per parameter index.

Adding an optimizer touches only this file: subclass `Optimizer`, implement `update` (and
`begin_step` if it needs the loss, like Eve), decorate it with `@register("name")`.
"""
import inspect
import math

import numpy as np

from .errors import UsageError
from .registry import resolve

OPTIMIZERS = {}


def register(name):
    def add(cls):
        OPTIMIZERS[name] = cls
        cls.name = name
        return cls
    return add


def _check(name, value, low, high, low_open=False, high_open=True):
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise UsageError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")
    return value


class Optimizer:
    needs_loss = False

    def __init__(self, learning_rate=1e-3):
        self.learning_rate = _check("learning_rate", learning_rate, 0.0, math.inf, low_open=True)
        self.t = 0          # steps taken
        self.state = {}     # parameter index -> dict of arrays

    def step(self, params, grads, loss=None):
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} params but {len(grads)} grads")
        self.t += 1
        self.begin_step(loss)
        for i, (p, g) in enumerate(zip(params, grads)):
            state = self.state.get(i)
            if state is None:
                state = self.state[i] = self.init_state(p)
            self.update(p, g, state)

    def begin_step(self, loss):
        """Hook for optimizers with global (not per-parameter) state."""

    def init_state(self, p):
        return {}

    def update(self, p, g, state):
        raise NotImplementedError

    @property
    def hyperparameters(self):
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


@register("sgd")
class SGD(Optimizer):
    """p ← p − lr·g  (torch.optim.SGD(lr))."""

    def update(self, p, g, state):
        p -= self.learning_rate * g


@register("momentum")
class Momentum(Optimizer):
    """v ← m·v + g; p ← p − lr·v  (torch.optim.SGD(lr, momentum=m), dampening 0)."""

    def __init__(self, learning_rate=1e-3, momentum=0.9):
        super().__init__(learning_rate)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)

    def init_state(self, p):
        return {"velocity": np.zeros_like(p)}

    def update(self, p, g, state):
        v = state["velocity"]
        v *= self.momentum
        v += g
        p -= self.learning_rate * v


@register("nag")
class Nesterov(Momentum):
    """v ← m·v + g; p ← p − lr·(g + m·v)  (torch.optim.SGD(lr, momentum=m, nesterov=True))."""

    def update(self, p, g, state):
        v = state["velocity"]
        v *= self.momentum
        v += g
        p -= self.learning_rate * (g + self.momentum * v)


@register("rmsprop")
class RMSprop(Optimizer):
    """s ← β·s + (1−β)·g²; p ← p − lr·g/(√s + ε)  (torch.optim.RMSprop(lr, alpha=β, eps=ε))."""

    def __init__(self, learning_rate=1e-3, beta=0.9, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta = _check("beta", beta, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0, math.inf, low_open=True)

    def init_state(self, p):
        return {"square_avg": np.zeros_like(p)}

    def update(self, p, g, state):
        s = state["square_avg"]
        s *= self.beta
        s += (1.0 - self.beta) * g * g
        p -= self.learning_rate * g / (np.sqrt(s) + self.epsilon)


@register("adam")
class Adam(Optimizer):
    """Kingma & Ba (2015), as torch.optim.Adam(lr, betas=(β1, β2), eps=ε):
    m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
    p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)."""

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0, math.inf, low_open=True)

    def init_state(self, p):
        return {"m": np.zeros_like(p), "v": np.zeros_like(p)}

    def update_moments(self, g, state):
        m, v = state["m"], state["v"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * g * g
        return m, v

    def update(self, p, g, state):
        m, v = self.update_moments(g, state)
        denom = np.sqrt(v) / math.sqrt(1.0 - self.beta2 ** self.t) + self.epsilon
        p -= (self.learning_rate / (1.0 - self.beta1 ** self.t)) * m / denom


@register("nadam")
class NAdam(Adam):
    """Dozat (2016), as torch.optim.NAdam(lr, betas=(β1, β2), eps=ε, momentum_decay=ψ):
    μₜ = β1·(1 − ½·0.96^(t·ψ)), Πₜ = μ₁⋯μₜ, d = √(v/(1−β2ᵗ)) + ε;
    p ← p − lr·(1−μₜ)/(1−Πₜ)·g/d − lr·μₜ₊₁/(1−Πₜ·μₜ₊₁)·m/d."""

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, momentum_decay=4e-3):
        super().__init__(learning_rate, beta1, beta2, epsilon)
        self.momentum_decay = _check("momentum_decay", momentum_decay, 0.0, math.inf)
        self.mu_product = 1.0

    def _mu(self, t):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def begin_step(self, loss):
        # μ schedule is shared by all parameters (torch keeps equal copies per parameter).
        self.mu, self.mu_next = self._mu(self.t), self._mu(self.t + 1)
        self.mu_product *= self.mu

    def update(self, p, g, state):
        m, v = self.update_moments(g, state)
        denom = np.sqrt(v / (1.0 - self.beta2 ** self.t)) + self.epsilon
        lr = self.learning_rate
        p -= (lr * (1.0 - self.mu) / (1.0 - self.mu_product)) * g / denom
        p -= (lr * self.mu_next / (1.0 - self.mu_product * self.mu_next)) * m / denom


@register("eve")
class Eve(Adam):
    """Eve (Hayashi et al. 2016, arXiv:1611.01505, Algorithm 1): Adam whose step is divided by d,
    a smoothed measure of the relative change of the loss — the "add your own optimizer" example.

    Needs the (positive) loss of the batch: `step(params, grads, loss=f)`.
    t = 1: d = 1, f̂ = f.  t > 1: (δ, Δ) = (k+1, K+1) if f ≥ f̂ else (1/(K+1), 1/(k+1));
    c = min(max(δ, f/f̂), Δ); f̂' = c·f̂; r = |f̂' − f̂| / min(f̂', f̂); d ← β3·d + (1−β3)·r.
    p ← p − lr · m̂ / (d·√v̂ + ε).
    """
    needs_loss = True

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, beta3=0.999, k=0.1, K=10.0):
        super().__init__(learning_rate, beta1, beta2, epsilon)
        self.beta3 = _check("beta3", beta3, 0.0, 1.0)
        self.k, self.K = float(k), float(K)
        self.d, self.f_hat = 1.0, None

    def begin_step(self, loss):
        if loss is None or not math.isfinite(loss) or loss <= 0:
            raise ValueError(f"eve needs the positive finite batch loss: step(params, grads, loss=...); got {loss}")
        if self.f_hat is None:
            self.f_hat = float(loss)
            return
        if loss >= self.f_hat:
            low, high = self.k + 1.0, self.K + 1.0
        else:
            low, high = 1.0 / (self.K + 1.0), 1.0 / (self.k + 1.0)
        c = min(max(low, loss / self.f_hat), high)
        new_f_hat = c * self.f_hat
        r = abs(new_f_hat - self.f_hat) / min(new_f_hat, self.f_hat)
        self.d = self.beta3 * self.d + (1.0 - self.beta3) * r
        self.f_hat = new_f_hat

    def update(self, p, g, state):
        m, v = self.update_moments(g, state)
        m_hat = m / (1.0 - self.beta1 ** self.t)
        v_hat = v / (1.0 - self.beta2 ** self.t)
        p -= self.learning_rate * m_hat / (self.d * np.sqrt(v_hat) + self.epsilon)


def canonical_name(name):
    return resolve(name, OPTIMIZERS, "optimizer")


def hyperparameter_names(name):
    """The constructor arguments of an optimizer, e.g. ['learning_rate', 'beta1', ...]."""
    cls = OPTIMIZERS[canonical_name(name)]
    return [k for k in inspect.signature(cls.__init__).parameters if k != "self"]


def get(name, **hyperparameters):
    """Build an optimizer by name; unknown hyperparameters for that optimizer are an error."""
    cls = OPTIMIZERS[canonical_name(name)]
    unknown = set(hyperparameters) - set(hyperparameter_names(name))
    if unknown:
        raise UsageError(f"optimizer {name!r} takes {hyperparameter_names(name)}; not {sorted(unknown)}")
    return cls(**hyperparameters)


def from_config(name, config):
    """Build an optimizer from a flat config (train.py flags), taking only the keys it uses."""
    names = hyperparameter_names(name)
    return get(name, **{k: config[k] for k in names if config.get(k) is not None})
