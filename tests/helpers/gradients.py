"""Finite-difference gradient checks shared by the core tests: the relative error, a numeric gradient
by central differences, a whole network checked parameter by parameter, and a small random batch."""
import numpy as np

TOLERANCE = 1e-6


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)


def numeric_grad(f, p, h=1e-6):
    """Central differences of scalar f() w.r.t. every entry of array p (perturbed in place)."""
    grad = np.zeros_like(p)
    it = np.nditer(p, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = p[i]
        p[i] = old + h
        plus = f()
        p[i] = old - h
        minus = f()
        p[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def check_network(net, X, y, before_each=lambda: None):
    before_each()
    _, grads = net.loss_and_grads(X, y)
    grads = [g.copy() for g in grads]

    def f():
        before_each()
        return net.loss_and_grads(X, y)[0]

    errors = [relative_error(g, numeric_grad(f, p)) for p, g in zip(net.params, grads)]
    assert max(errors) < TOLERANCE, errors
    return errors


def batch(n=6, d=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)
