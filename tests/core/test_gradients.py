"""Float64 finite-difference checks of every analytic gradient: relative error < 1e-6."""
import numpy as np
import pytest

from mlp import MLP, activations, losses
from mlp.core.layers import Dropout

from helpers.gradients import TOLERANCE, batch, check_network, relative_error


@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
@pytest.mark.parametrize("activation", sorted(activations.ACTIVATIONS))
def test_every_activation_and_loss(activation, loss):
    X, y = batch()
    net = MLP([5, 7, 6, 4], activation=activation, weight_init="xavier", loss=loss, seed=1, dtype="float64")
    # shift biases off zero so ReLU-family kinks are not sat on exactly
    for b in net.params[1::2]:
        b += 0.05
    check_network(net, X, y)


def test_regression_squared_error_with_identity_output():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    net = MLP([3, 4, 2], activation="tanh", loss="regression_squared_error", seed=0, dtype="float64")
    assert not net.is_classifier
    check_network(net, X, Y)
    # the value: batch mean of Σ_outputs (z − y)² on the raw outputs
    W1, b1, W2, b2 = net.params
    z = np.tanh(X @ W1 + b1) @ W2 + b2
    assert net.loss_and_grads(X, Y)[0] == pytest.approx(((z - Y) ** 2).sum(axis=1).mean(), rel=1e-12)


def test_mse_means_the_classification_loss():
    assert losses.canonical_name("mse") == "mean_squared_error"
    assert MLP([3, 2], loss="mse").is_classifier


def test_weight_decay_term_and_gradient():
    X, y = batch()
    lam = 0.3
    net = MLP([5, 6, 4], activation="tanh", weight_decay=lam, seed=2, dtype="float64")
    plain = MLP([5, 6, 4], activation="tanh", weight_decay=0.0, seed=2, dtype="float64")
    loss, _ = net.loss_and_grads(X, y)
    plain_loss, _ = plain.loss_and_grads(X, y)
    W1, W2 = net.params[0], net.params[2]
    # (λ/2)·ΣW² over weights only
    assert loss - plain_loss == pytest.approx(0.5 * lam * ((W1 ** 2).sum() + (W2 ** 2).sum()), rel=1e-12)
    check_network(net, X, y)


def test_dropout_with_fixed_mask():
    X, y = batch(n=8)
    net = MLP([5, 9, 7, 4], activation="relu", dropout=0.3, input_dropout=0.2, seed=4, dtype="float64")
    for b in net.params[1::2]:
        b += 0.05
    layers = [layer for layer in net.layers if isinstance(layer, Dropout)]
    assert len(layers) == 3

    def fix_mask():
        for i, layer in enumerate(layers):
            layer.rng = np.random.default_rng(100 + i)

    check_network(net, X, y, fix_mask)
    # the mask really drops units: some activations are exactly zero in training mode only
    fix_mask()
    net.forward(X, training=True)
    assert (layers[1].mask == 0).any() and layers[1].mask.max() == pytest.approx(1 / 0.7)


def test_dropout_is_identity_at_evaluation():
    X, _ = batch()
    net = MLP([5, 6, 4], dropout=0.5, input_dropout=0.3, seed=0, dtype="float64")
    W1, b1, W2, b2 = net.params
    by_hand = np.maximum(X @ W1 + b1, 0) @ W2 + b2  # no mask, no 1/(1−p) scaling
    np.testing.assert_allclose(net.forward(X), by_hand, rtol=1e-12, atol=1e-12)


def test_batch_norm_gradients_and_modes():
    X, y = batch(n=10)
    net = MLP([5, 6, 6, 4], activation="gelu", batch_norm=True, weight_decay=0.01, seed=5, dtype="float64")
    assert [p.shape for p in net.params] == [(5, 6), (6,), (6,), (6, 6), (6,), (6,), (6, 4), (4,)]  # W,γ,β ×2; W,b
    check_network(net, X, y)
    # training output is normalised per batch; evaluation uses running statistics
    bn = next(layer for layer in net.layers if type(layer).__name__ == "BatchNorm")
    h = X @ net.params[0]
    out = bn.forward(h, training=True)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-12) and np.allclose(out.var(axis=0), 1, atol=1e-3)
    before = bn.buffers["running_mean"].copy()
    bn.forward(h, training=False)
    assert np.array_equal(before, bn.buffers["running_mean"])


def test_label_smoothing_gradient():
    X, y = batch()
    net = MLP([5, 6, 4], activation="elu", label_smoothing=0.1, seed=6, dtype="float64")
    check_network(net, X, y)


def test_per_layer_activation_list():
    X, y = batch()
    net = MLP([5, 6, 6, 4], activation=["sigmoid", "leaky_relu"], seed=7, dtype="float64")
    assert [layer.name for layer in net.layers if hasattr(layer, "fn")] == ["sigmoid", "leaky_relu"]
    check_network(net, X, y)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_derivative_pointwise(name):
    z = np.linspace(-3, 3, 61) + 0.013  # avoid exact 0
    act = activations.get(name)
    a = act.forward(z)
    analytic = act.backward(z, a, np.ones_like(z))
    h = 1e-6
    numeric = (act.forward(z + h) - act.forward(z - h)) / (2 * h)
    assert relative_error(analytic, numeric) < TOLERANCE


def test_activation_definitions():
    z = np.array([-2.0, 0.5])
    assert np.allclose(activations.get("ReLU").forward(z), [0, 0.5])
    assert np.allclose(activations.get("leaky_relu").forward(z), [-0.02, 0.5])
    assert np.allclose(activations.get("elu").forward(z), [np.expm1(-2.0), 0.5])
    # exact erf GELU: 0.5·z·(1+erf(z/√2)); at z=1 it is 0.841344746..., the tanh form gives 0.841192
    assert activations.get("gelu").forward(np.array([1.0]))[0] == pytest.approx(0.8413447460685429, abs=1e-12)


def test_sigmoid_is_overflow_safe():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=np.float32)
    with np.errstate(all="raise"):
        s = activations.get("sigmoid").forward(z)
    assert s.dtype == np.float32
    assert s[0] == 0.0 and s[2] == 0.5 and s[4] == 1.0


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    y = np.array([1, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dz = losses.cross_entropy(z, y)
    # sample 0 is wrong by 2e4 nats, sample 1 right: mean = 1e4
    assert value == pytest.approx(1e4)
    assert np.allclose(dz, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]])


def test_mean_squared_error_value():
    z = np.zeros((1, 4))  # softmax = 0.25 each
    value, _ = losses.mean_squared_error(z, np.array([2]))
    assert value == pytest.approx(3 * 0.25 ** 2 + 0.75 ** 2)
