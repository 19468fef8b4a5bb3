"""Optimizers: one class per method, per-parameter state, hyperparameters in the constructor.

Each update equals its PyTorch twin with the same hyperparameters (the tests compare them step by
step). `step(params, grads)` updates the arrays in place; state is kept per parameter index.

Adding an optimizer touches only this file: subclass `Optimizer`, implement `update` (and
`begin_step` if it needs the loss, like Eve), decorate it with `@register("name")`.

Speed: updates run in place with reusable scratch arrays (`self.work`), no temporaries, in the
same order of operations as the plain formulas (so the results are bit for bit the same). An
optimizer whose update is elementwise with scalars shared by all parameters (it sets
`elementwise = True` in its own class body; all built-in ones do) updates parameters that tile one
flat array — as `MLP.params` and the grads of `MLP.train_pass` do — with one `update` per
cache-sized piece of the flat arrays instead of one per parameter; each parameter's state then
holds views of flat state arrays. The result is the same, bit for bit.
"""
import inspect
import math

import numpy as np

from mlp.errors import UsageError
from mlp.core.registry import resolve

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


def _tiling(arrays):
    """(base, offsets) when `arrays` are C-contiguous views that exactly tile one flat array
    `base` (no gaps, no overlaps, any order), else None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start, itemsize = base.__array_interface__["data"][0], base.itemsize
    offsets = []
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous:
            return None
        offsets.append((a.__array_interface__["data"][0] - start) // itemsize)
    end = 0
    for offset, size in sorted(zip(offsets, (a.size for a in arrays))):
        if offset != end:
            return None
        end += size
    return (base, offsets) if end == base.size else None


class Optimizer:
    needs_loss = False
    # True only where a class body says so (subclasses do not inherit it): `update` is
    # elementwise with scalars shared by all parameters, so it may run once on flat arrays.
    elementwise = False
    # Attributes that are state shared by all parameters (NAdam's μ product, Eve's d and f̂):
    # saved by state_dict with the step count and the per-parameter arrays.
    global_state = ()
    # Flat arrays are updated in pieces of this many elements: each piece's p, g, state and
    # scratch stay in cache across the update's dozen passes instead of streaming from memory
    # every pass (a large network's arrays do not fit in the cache), while the per-piece Python
    # overhead stays negligible.
    chunk = 1 << 18

    def __init__(self, learning_rate=1e-3):
        self.learning_rate = _check("learning_rate", learning_rate, 0.0, math.inf, low_open=True)
        self.t = 0          # steps taken
        self.state = {}     # id(parameter) -> dict of arrays; see state_of
        self._params = {}   # id(parameter) -> parameter: the reference keeps that id from being reused
        self._last = []     # the parameters of the last step, in order (state_dict's order)
        self._pending = None  # per-parameter state from load_state_dict, bound at the next step
        self._scratch = {}  # (dtype, k) -> flat scratch array, see `work`
        self._flat = None   # (params, grads, pieces) of the last flat step, see _flat_pieces

    def state_of(self, p):
        """The state dict of parameter array `p` (None before its first step)."""
        return self.state.get(id(p))

    def _set_state(self, p, state):
        self.state[id(p)] = state
        self._params[id(p)] = p
        return state

    def step(self, params, grads, loss=None):
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} params but {len(grads)} grads")
        if self._pending is not None:
            self._bind(params)
        self.t += 1
        self.begin_step(loss)
        self._last = list(params)
        pieces = self._flat_pieces(params, grads) if type(self).__dict__.get("elementwise") else None
        if pieces is not None:
            for p, g, state in pieces:
                self.update(p, g, state)
            return
        for p, g in zip(params, grads):
            state = self.state.get(id(p))
            if state is None:
                state = self._set_state(p, self.init_state(p))
            self.update(p, g, state)

    def _flat_pieces(self, params, grads):
        """[(p, g, state) for each piece of the flat arrays] when params and grads tile two flat
        arrays with the same layout, else None. Cached: the same arrays as last time cost one
        identity check each."""
        cached = self._flat
        if cached is not None and len(params) == len(cached[0]) \
                and all(a is b for a, b in zip(params, cached[0])) \
                and all(a is b for a, b in zip(grads, cached[1])):
            return cached[2]
        self._flat = None
        tp, tg = _tiling(params), _tiling(grads)
        if tp is None or tg is None or tp[1] != tg[1] or tp[0] is tg[0] or tp[0].dtype != tg[0].dtype \
                or any(p.shape != g.shape for p, g in zip(params, grads)):
            return None
        (flat_p, offsets), flat_g = tp, tg[0]
        flat_state = self.init_state(flat_p)
        for p, offset in zip(params, offsets):
            views = {k: a[offset:offset + p.size].reshape(p.shape) for k, a in flat_state.items()}
            old = self.state.get(id(p))
            if old is not None:  # carry state over from earlier (per-parameter) steps
                for k, view in views.items():
                    view[...] = old[k]
            self._set_state(p, views)
        pieces = [(flat_p[i:i + self.chunk], flat_g[i:i + self.chunk],
                   {k: a[i:i + self.chunk] for k, a in flat_state.items()})
                  for i in range(0, flat_p.size, self.chunk)]
        self._flat = (list(params), list(grads), pieces)
        return pieces

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self):
        """Everything needed to continue exactly: a flat dict of numbers, strings and arrays
        (copies), so it can go straight into np.savez. Keys: "optimizer", "step", the
        hyperparameters (with the current learning rate), the global state, "n_params" and
        "state.{i}.{key}" for parameter i of the last step."""
        out = {"optimizer": self.name, "step": self.t, **self.hyperparameters}
        for name in self.global_state:
            value = getattr(self, name)
            out[name] = math.nan if value is None else value
        if self._pending is not None:
            per_param = self._pending
        else:
            per_param = [self.state.get(id(p), {}) for p in self._last]
        out["n_params"] = len(per_param)
        for i, state in enumerate(per_param):
            for key, array in state.items():
                out[f"state.{i}.{key}"] = np.array(array, copy=True)
        return out

    def load_state_dict(self, state_dict):
        """Restore a `state_dict` (also after an .npz round trip, where numbers are 0-d arrays).
        The per-parameter state is bound by position to the params of the next `step`."""
        sd = dict(state_dict)
        name = str(sd.get("optimizer"))
        if name != self.name:
            raise UsageError(f"optimizer state is for {name!r}; this optimizer is {self.name!r}")
        names = list(self.hyperparameters)
        try:
            hyper = {k: _scalar(sd[k]) for k in names}
            step, n_params = int(_scalar(sd["step"])), int(_scalar(sd["n_params"]))
            globals_ = {k: _scalar(sd[k]) for k in self.global_state}
        except KeyError as e:
            raise UsageError(f"optimizer state lacks {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise UsageError(f"optimizer state holds a value that is not a number ({e})") from None
        if step < 0 or n_params < 0:
            raise UsageError(f"optimizer state has step {step} and {n_params} parameters")
        checked = type(self)(**hyper)  # the constructor's range checks
        pending = [{} for _ in range(n_params)]
        known = {"optimizer", "step", "n_params", *names, *self.global_state}
        for key, value in sd.items():
            if key in known:
                continue
            parts = str(key).split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() or int(parts[1]) >= n_params:
                raise UsageError(f"optimizer state has an unexpected entry {key!r:.60}")
            pending[int(parts[1])][parts[2]] = np.asarray(value)
        for k in names:
            setattr(self, k, getattr(checked, k))
        for k, value in globals_.items():
            setattr(self, k, None if math.isnan(value) else value)
        self.t = step
        self._pending = pending
        self._flat = None  # the next step rebuilds its flat state from the restored arrays

    def check_state(self, params):
        """UsageError unless the state from load_state_dict fits `params` (the ones the next step
        gets): found when a state is loaded, not at the first step of a run that already began."""
        if self._pending is not None:
            self._fitted(params)

    def _fitted(self, params):
        """[(param, fresh state filled from the loaded one)], every shape checked first."""
        pending = self._pending
        if len(pending) != len(params):
            raise UsageError(f"optimizer state is for {len(pending)} parameters; this step has {len(params)}")
        out = []
        for i, (p, saved) in enumerate(zip(params, pending)):
            fresh = self.init_state(p)
            if set(saved) != set(fresh) or any(np.shape(saved[k]) != a.shape for k, a in fresh.items()):
                raise UsageError(f"optimizer state of parameter {i} ({sorted(saved)}) does not fit a "
                                 f"parameter of shape {p.shape} ({sorted(fresh)})")
            out.append((p, fresh, saved))
        return out

    def _bind(self, params):
        fitted = self._fitted(params)
        self._pending = None
        for p, fresh, saved in fitted:
            for k, a in fresh.items():
                a[...] = saved[k]
            self._set_state(p, fresh)

    def work(self, like, k=0):
        """Scratch array number k with the shape and dtype of `like` (contents undefined)."""
        key = (like.dtype, k)
        buf = self._scratch.get(key)
        if buf is None or buf.size < like.size:
            buf = self._scratch[key] = np.empty(like.size, like.dtype)
        return buf[:like.size].reshape(like.shape)

    def begin_step(self, loss):
        """Hook for optimizers with global (not per-parameter) state."""

    def init_state(self, p):
        return {}

    def update(self, p, g, state):
        raise NotImplementedError

    @property
    def hyperparameters(self):
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


def _scalar(value):
    """A number from a state dict entry (a Python number or a 0-d array after np.load)."""
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "biuf":
        raise TypeError(f"{value!r:.40}")
    return array.item()


@register("sgd")
class SGD(Optimizer):
    """p ← p − lr·g  (torch.optim.SGD(lr))."""

    elementwise = True

    def update(self, p, g, state):
        p -= np.multiply(g, self.learning_rate, out=self.work(p))


@register("momentum")
class Momentum(Optimizer):
    """v ← m·v + g; p ← p − lr·v  (torch.optim.SGD(lr, momentum=m), dampening 0)."""

    elementwise = True

    def __init__(self, learning_rate=1e-3, momentum=0.9):
        super().__init__(learning_rate)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)

    def init_state(self, p):
        return {"velocity": np.zeros_like(p)}

    def update(self, p, g, state):
        v = state["velocity"]
        v *= self.momentum
        v += g
        p -= np.multiply(v, self.learning_rate, out=self.work(p))


@register("nag")
class Nesterov(Momentum):
    """v ← m·v + g; p ← p − lr·(g + m·v)  (torch.optim.SGD(lr, momentum=m, nesterov=True))."""

    elementwise = True

    def update(self, p, g, state):
        v = state["velocity"]
        v *= self.momentum
        v += g
        w = np.multiply(v, self.momentum, out=self.work(p))
        w += g
        w *= self.learning_rate
        p -= w


@register("rmsprop")
class RMSprop(Optimizer):
    """s ← β·s + (1−β)·g²; p ← p − lr·g/(√s + ε)  (torch.optim.RMSprop(lr, alpha=β, eps=ε))."""

    elementwise = True

    def __init__(self, learning_rate=1e-3, beta=0.9, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta = _check("beta", beta, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0, math.inf, low_open=True)

    def init_state(self, p):
        return {"square_avg": np.zeros_like(p)}

    def update(self, p, g, state):
        s = state["square_avg"]
        w = self.work(p)
        s *= self.beta
        np.multiply(g, 1.0 - self.beta, out=w)
        w *= g
        s += w
        denom = np.sqrt(s, out=w)
        denom += self.epsilon
        step = np.multiply(g, self.learning_rate, out=self.work(p, 1))
        step /= denom
        p -= step


@register("adam")
class Adam(Optimizer):
    """Kingma & Ba (2015), as torch.optim.Adam(lr, betas=(β1, β2), eps=ε):
    m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
    p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)."""

    elementwise = True

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0, math.inf, low_open=True)

    def init_state(self, p):
        return {"m": np.zeros_like(p), "v": np.zeros_like(p)}

    def update_moments(self, g, state):
        m, v = state["m"], state["v"]
        w = self.work(g)
        m *= self.beta1
        m += np.multiply(g, 1.0 - self.beta1, out=w)
        v *= self.beta2
        np.multiply(g, 1.0 - self.beta2, out=w)
        w *= g
        v += w
        return m, v

    def update(self, p, g, state):
        m, v = self.update_moments(g, state)
        denom = np.sqrt(v, out=self.work(p))
        denom /= math.sqrt(1.0 - self.beta2 ** self.t)
        denom += self.epsilon
        step = np.multiply(m, self.learning_rate / (1.0 - self.beta1 ** self.t), out=self.work(p, 1))
        step /= denom
        p -= step


@register("nadam")
class NAdam(Adam):
    """Dozat (2016), as torch.optim.NAdam(lr, betas=(β1, β2), eps=ε, momentum_decay=ψ):
    μₜ = β1·(1 − ½·0.96^(t·ψ)), Πₜ = μ₁⋯μₜ, d = √(v/(1−β2ᵗ)) + ε;
    p ← p − lr·(1−μₜ)/(1−Πₜ)·g/d − lr·μₜ₊₁/(1−Πₜ·μₜ₊₁)·m/d."""

    elementwise = True
    global_state = ("mu_product",)

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
        denom = np.divide(v, 1.0 - self.beta2 ** self.t, out=self.work(p))
        np.sqrt(denom, out=denom)
        denom += self.epsilon
        lr = self.learning_rate
        step = np.multiply(g, lr * (1.0 - self.mu) / (1.0 - self.mu_product), out=self.work(p, 1))
        step /= denom
        p -= step
        np.multiply(m, lr * self.mu_next / (1.0 - self.mu_product * self.mu_next), out=step)
        step /= denom
        p -= step


@register("eve")
class Eve(Adam):
    """Eve (Hayashi et al. 2016, arXiv:1611.01505, Algorithm 1): Adam whose step is divided by d,
    a smoothed measure of the relative change of the loss — the "add your own optimizer" example.

    Needs the (positive) loss of the batch: `step(params, grads, loss=f)`.
    t = 1: d = 1, f̂ = f.  t > 1: (δ, Δ) = (k+1, K+1) if f ≥ f̂ else (1/(K+1), 1/(k+1));
    c = min(max(δ, f/f̂), Δ); f̂' = c·f̂; r = |f̂' − f̂| / min(f̂', f̂); d ← β3·d + (1−β3)·r.
    p ← p − lr · m̂ / (d·√v̂ + ε).
    """

    elementwise = True
    needs_loss = True
    global_state = ("d", "f_hat")

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
        denom = np.divide(v, 1.0 - self.beta2 ** self.t, out=self.work(p))  # v̂
        np.sqrt(denom, out=denom)
        denom *= self.d
        denom += self.epsilon
        step = np.divide(m, 1.0 - self.beta1 ** self.t, out=self.work(p, 1))  # m̂
        step *= self.learning_rate
        step /= denom
        p -= step


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
