"""Layers built from specs, the general Network, the in-place plan and the flat gradient buffer."""
import numpy as np
import pytest

from mlp import MLP, UsageError, activations
from mlp.core import layers as L
from mlp.core.network import mlp_config, mlp_layers, Network

from helpers.gradients import batch, check_network, relative_error


def test_mlp_is_its_spec():
    net = MLP([5, 7, 6, 4], activation=["tanh", "relu"], batch_norm=True, dropout=0.1, input_dropout=0.2,
              seed=3, dtype="float64")
    assert [layer.spec()["type"] for layer in net.layers] == [
        "dropout", "dense", "batch_norm", "activation", "dropout", "dense", "batch_norm", "activation", "dropout", "dense"]
    assert net.input_shape == (5,) and net.n_outputs == 4 and net.output_shape == (4,)
    # the same spec through the general constructor gives the same initial network, array for array
    general = Network(**net.spec(), seed=3)
    assert general.spec() == net.spec()
    for a, b in zip(general.params, net.params):
        np.testing.assert_array_equal(a, b)
    assert net.config["layer_sizes"] == [5, 7, 6, 4]


def test_spec_round_trips_through_every_registered_layer():
    specs = [{"type": "dense", "units": 3, "bias": False}, {"type": "batch_norm", "momentum": 0.2, "eps": 1e-3},
             {"type": "activation", "name": "gelu"}, {"type": "dropout", "rate": 0.25},
             {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 5], "stride": 2, "padding": [1, 2], "bias": False},
             {"type": "max_pool2d", "kernel_size": 3, "stride": 2}, {"type": "avg_pool2d", "kernel_size": 2,
                                                                      "stride": None},
             {"type": "global_avg_pool2d"}, {"type": "flatten"}, {"type": "reshape", "shape": [1, 28, 28]},
             {"type": "batch_norm2d", "momentum": 0.1, "eps": 1e-5}]
    assert {s["type"] for s in specs} == set(L.LAYERS)
    for spec in specs:
        assert L.from_spec(spec).spec() == spec


@pytest.mark.parametrize("spec,match", [
    ({"type": "conv9d"}, "unknown layer type"),
    ({"type": "dense", "units": "128"}, "units"),
    ({"type": "dense", "units": True}, "units"),
    ({"type": "dense", "units": 0}, "units"),
    ({"type": "dense", "units": 4, "bias": "yes"}, "bias"),
    ({"type": "dense", "units": 4, "init": "he"}, "takes"),
    ({"type": "dense"}, "units"),
    ({"type": "dropout", "rate": 1.0}, "rate"),
    ({"type": "dropout", "rate": float("nan")}, "rate"),
    ({"type": "batch_norm", "eps": 0}, "eps"),
    ({"type": "activation", "name": "swish"}, "unknown activation"),
    ({"type": "activation", "name": ["relu"]}, "name"),
    (["dense", 4], "dict"),
])
def test_bad_layer_specs_are_usage_errors(spec, match):
    with pytest.raises(UsageError, match=match):
        L.from_spec(spec)


def test_shapes_are_inferred_and_checked():
    net = Network([{"type": "dense", "units": 6}, {"type": "activation", "name": "elu"},
                   {"type": "dense", "units": 3, "bias": False}], input_shape=[4], seed=0)
    assert [tuple(p.shape) for p in net.params] == [(4, 6), (6,), (6, 3)]
    with pytest.raises(UsageError, match="flat input"):
        Network([{"type": "dense", "units": 6}], input_shape=(1, 28, 28))
    with pytest.raises(UsageError, match="expects"):
        net.forward(np.zeros((2, 5)))


def test_general_network_gradients():
    """Consecutive activations, bias-free layers and dropout first: shapes and the in-place plan."""
    X, y = batch(n=7)
    net = Network([{"type": "dense", "units": 6}, {"type": "activation", "name": "tanh"},
                   {"type": "activation", "name": "sigmoid"}, {"type": "dense", "units": 5, "bias": False},
                   {"type": "batch_norm"}, {"type": "activation", "name": "relu"},
                   {"type": "activation", "name": "leaky_relu"}, {"type": "dense", "units": 4}],
                  input_shape=(5,), weight_decay=0.05, seed=2, dtype="float64")
    check_network(net, X, y)


def test_inplace_plan():
    net = Network([{"type": "activation", "name": "relu"}, {"type": "dense", "units": 6},
                   {"type": "activation", "name": "tanh"}, {"type": "activation", "name": "sigmoid"},
                   {"type": "dropout", "rate": 0.0}, {"type": "activation", "name": "relu"},
                   {"type": "dense", "units": 3}, {"type": "activation", "name": "gelu"}], input_shape=(4,))
    # training: not the caller's input; tanh may (the dense output is free), sigmoid may not
    # (tanh's backward reads it), nor relu behind a pass-through dropout; gelu has no in-place form
    assert net._plans[True] == [False, False, True, False, False, False, False, False]
    # evaluation: nothing is read later, so every array a layer made is free
    assert net._plans[False] == [False, False, True, True, False, True, False, False]


class Exp(L.Layer):
    """A layer outside the registry whose fresh output its backward reads (as a softmax would)."""

    def forward(self, x, training, inplace=False):
        self.out = np.exp(x)
        return self.out

    def backward_reads(self, inplace):
        return ("output",)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * self.out


def test_an_output_that_backward_reads_is_not_overwritten():
    X, y = batch(n=7)
    net = Network([{"type": "dense", "units": 6}, Exp(), {"type": "activation", "name": "tanh"},
                   {"type": "dense", "units": 4}], input_shape=(5,), seed=0, dtype="float64")
    assert net._plans[True] == [False, False, False, False] and net._plans[False] == [False, False, True, False]
    check_network(net, X, y)


@pytest.mark.parametrize("first", ["relu", "tanh", "sigmoid"])
def test_callers_input_is_never_overwritten(first):
    X, y = batch(n=6, d=4)
    X = X.astype(np.float32)
    keep = X.copy()
    net = Network([{"type": "activation", "name": first}, {"type": "dense", "units": 3}], input_shape=(4,))
    net.train_pass(X, y % 3)
    net.predict(X)
    np.testing.assert_array_equal(X, keep)


@pytest.mark.parametrize("name", sorted(n for n, a in activations.ACTIVATIONS.items() if a.inplace))
def test_inplace_pair_equals_plain_pair_bit_for_bit(name):
    act = activations.get(name)
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        z = (rng.standard_normal((50, 7)) * 3).astype(dtype)
        g = rng.standard_normal((50, 7)).astype(dtype)
        a = act.forward(z)
        plain = act.backward(z, a, g.copy())
        a2 = act.forward_inplace(z.copy())
        np.testing.assert_array_equal(a2, a)
        assert a2.dtype == dtype
        work = np.empty_like(a2)
        np.testing.assert_array_equal(act.backward_from_output(a2, g.copy(), work), plain)


def test_grads_are_written_in_place_into_the_flat_buffer():
    X, y = batch(n=8)
    net = MLP([5, 6, 6, 4], batch_norm=True, weight_decay=0.1, seed=0, dtype="float64")
    flat = net._flat_grads
    _, grads = net.loss_and_grads(X, y)
    for layer in net.layers:
        for name, g in layer.grads.items():
            assert g.base is flat and g.shape == layer.params[name].shape
    assert all(g.base is flat for g in grads)
    # the flat buffer holds exactly the returned gradients, the decaying weights first
    decaying = [g for layer in net.layers for n, g in layer.grads.items() if n in layer.decay]
    others = [g for layer in net.layers for n, g in layer.grads.items() if n not in layer.decay]
    np.testing.assert_array_equal(flat, np.concatenate([g.ravel() for g in decaying + others]))
    first = [g.copy() for g in grads]
    _, again = net.loss_and_grads(X, y)
    assert all(a is b for a, b in zip(grads, again))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_deepcopy_repacks():
    import copy
    X, y = batch()
    net = MLP([5, 6, 4], batch_norm=True, seed=0, dtype="float64")
    twin = copy.deepcopy(net)
    loss, grads = net.loss_and_grads(X, y)
    grads = [g.copy() for g in grads]
    twin_loss, twin_grads = twin.loss_and_grads(X, y)
    assert twin_loss == loss and all(g.base is twin._flat_grads for g in twin_grads)
    for a, b in zip(grads, twin_grads):
        np.testing.assert_array_equal(a, b)


def test_mlp_layers_order():
    config = mlp_config([3, 4, 2], batch_norm=True, dropout=0.5, input_dropout=0.1)
    assert mlp_layers(config) == [
        {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 4, "bias": False}, {"type": "batch_norm"},
        {"type": "activation", "name": "relu"}, {"type": "dropout", "rate": 0.5},
        {"type": "dense", "units": 2, "bias": True}]


def test_every_layer_gradient_checked_alone():
    """Each layer's backward against finite differences of its own forward (input and params)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5))
    for spec in [{"type": "dense", "units": 3}, {"type": "batch_norm"}, {"type": "activation", "name": "elu"},
                 {"type": "dropout", "rate": 0.4}]:
        layer = L.from_spec(spec)
        layer.build((5,), np.random.default_rng(0), np.dtype("float64"), lambda i, o, r, d: r.standard_normal((i, o)))
        for p in layer.params.values():
            p += rng.standard_normal(p.shape) * 0.1
        upstream = rng.standard_normal((6,) + layer.shapes((5,))[0])

        def f():
            if isinstance(layer, L.Dropout):
                layer.rng = np.random.default_rng(9)
            return float((layer.forward(x.copy(), True) * upstream).sum())

        f()
        dx = layer.backward(upstream.copy())
        grads = {k: g.copy() for k, g in layer.grads.items()}
        h, num = 1e-6, np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            plus = f()
            x[i] = old - h
            minus = f()
            x[i] = old
            num[i] = (plus - minus) / (2 * h)
        assert relative_error(dx, num) < 1e-6, spec
        from helpers.gradients import numeric_grad
        for k, p in layer.params.items():
            assert relative_error(grads[k], numeric_grad(f, p)) < 1e-6, (spec, k)
