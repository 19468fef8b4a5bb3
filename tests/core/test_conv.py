"""The image layers (conv2d, pools, flatten, reshape, batch_norm2d) and CNNs: equal to PyTorch,
gradient-checked in float64, fast paths equal to plain ones, buffers reused, shapes checked.

PyTorch's results are recorded once in tests/reference/torch_layers.npz (written by
tests/reference/make_layer_reference.py, torch version inside) and checked here in NumPy; with
torch installed, `-m torch` also compares with a live torch.
"""
import json

import numpy as np
import pytest

from mlp import MLP, UsageError, initializers
from mlp.core import layers as L
from mlp.core.builders import cnn_layers, layer_shapes, stack, training_bytes
from mlp.core.model_file import load_model
from mlp.core.network import Network

from helpers.gradients import check_network, numeric_grad, relative_error
from helpers.paths import REFERENCE
import make_layer_reference as ref  # (tests/reference, on the path by conftest: the case table; torch is imported only to write)

TOLERANCE = 1e-8


def built(spec, input_shape, dtype="float64", seed=0):
    layer = L.from_spec(spec)
    layer.build(input_shape, np.random.default_rng(seed), np.dtype(dtype), initializers.get("he"))
    return layer


def run_case(name, case):
    """mlp's forward (training mode), backward and gradients for a reference case."""
    n, c, h, w, spec = ref.CASES[name]
    layer = built(spec, (c, h, w))
    for key in layer.params:
        layer.params[key][...] = case[key]
    y = layer.forward(case["x"].copy(), training=True)
    out = {"y": np.array(y)}
    if spec["type"] == "batch_norm2d":
        out.update({k: layer.buffers[k].copy() for k in ("running_mean", "running_var")})
    out["dx"] = np.array(layer.backward(case["grad_out"].copy()))
    out.update({f"d{k}": g.copy() for k, g in layer.grads.items()})
    if spec["type"] == "batch_norm2d":
        out["y_eval"] = np.array(layer.forward(case["x"].copy(), training=False))
    return out


def reference(name):
    with np.load(REFERENCE / "torch_layers.npz") as f:
        return {key.split(".", 1)[1]: f[key] for key in f.files if key.startswith(name + ".")}


def test_reference_file_is_what_its_script_says():
    with np.load(REFERENCE / "torch_layers.npz") as f:
        meta = json.loads(str(f["__meta__"]))
        assert meta["torch"].startswith("2.") and list(meta["cases"]) == list(ref.CASES)
        for name in ref.CASES:   # the inputs are the script's, so the script can be rerun
            x, params, _ = ref.inputs(name)
            np.testing.assert_array_equal(f[f"{name}.x"], x)
            for key, value in params.items():
                np.testing.assert_array_equal(f[f"{name}.{key}"], value)


@pytest.mark.parametrize("name", list(ref.CASES))
def test_equals_pytorch_reference(name):
    """Forward and backward equal torch.nn.functional's (float64, relative error < 1e-8)."""
    case = reference(name)
    ours = run_case(name, case)
    expected = {k: v for k, v in case.items() if k not in ("x", "grad_out", "W", "b", "gamma", "beta")}
    assert set(expected) <= set(ours)
    for key, value in expected.items():
        assert ours[key].shape == value.shape, (name, key)
        assert relative_error(ours[key], value) < TOLERANCE, (name, key, relative_error(ours[key], value))


@pytest.mark.torch
@pytest.mark.parametrize("name", list(ref.CASES))
def test_equals_live_pytorch(name):
    pytest.importorskip("torch", reason="the live comparison needs torch (pip install '.[torch]')")
    case = ref.torch_case(name)
    ours = run_case(name, case)
    for key in ("y", "dx", *[f"d{k}" for k in ("W", "b", "gamma", "beta") if k in case]):
        assert relative_error(ours[key], case[key]) < TOLERANCE, (name, key)


def test_max_pool_ties_go_to_the_first_maximum():
    """Equal maxima: the gradient goes to the first in row-major order of the window (PyTorch's)."""
    layer = built({"type": "max_pool2d", "kernel_size": 2}, (1, 2, 4))
    x = np.array([[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.5, 2.0, 2.0]]]])
    layer.forward(x, True)
    dx = layer.backward(np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(dx, [[[[10.0, 0.0, 0.0, 20.0], [0.0, 0.0, 0.0, 0.0]]]])


# ---- finite differences ---------------------------------------------------------------------------

LAYER_SPECS = [
    ({"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same"}, (2, 5, 6)),
    ({"type": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "stride": 2, "padding": 1}, (3, 7, 6)),
    ({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 0, "bias": False}, (2, 5, 5)),
    ({"type": "max_pool2d", "kernel_size": 2}, (2, 5, 7)),
    ({"type": "max_pool2d", "kernel_size": 3, "stride": 2}, (2, 7, 6)),
    ({"type": "avg_pool2d", "kernel_size": 2}, (2, 5, 7)),
    ({"type": "avg_pool2d", "kernel_size": [3, 2], "stride": 1}, (2, 5, 4)),
    ({"type": "global_avg_pool2d"}, (3, 4, 5)),
    ({"type": "flatten"}, (2, 3, 4)),
    ({"type": "reshape", "shape": [2, 2, 3]}, (12,)),
    ({"type": "batch_norm2d"}, (3, 4, 3)),
]


@pytest.mark.parametrize("spec,shape", LAYER_SPECS, ids=[s["type"] + str(i) for i, (s, _) in enumerate(LAYER_SPECS)])
def test_layer_gradients_by_finite_differences(spec, shape):
    rng = np.random.default_rng(5)
    layer = built(spec, shape)
    for p in layer.params.values():
        p += rng.standard_normal(p.shape) * 0.1
    x = rng.standard_normal((3,) + shape)
    upstream = rng.standard_normal((3,) + layer.shapes(shape)[0])

    def f():
        return float((np.asarray(layer.forward(x, True)) * upstream).sum())

    f()
    dx = np.array(layer.backward(upstream.copy()))
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert relative_error(dx, numeric_grad(f, x)) < 1e-6
    for key, p in layer.params.items():
        assert relative_error(grads[key], numeric_grad(f, p)) < 1e-6, key


@pytest.mark.parametrize("pool", ["max", "avg", "global", "none"])
def test_cnn_network_gradients(pool):
    """A whole CNN (conv, batch norm over channels, pools, flatten, dense head with batch norm and
    weight decay), every parameter, in float64."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((4, 64)), rng.integers(0, 3, 4)
    net = Network(cnn_layers((1, 8, 8), [3, 4], pool=pool, hidden=[5], n_outputs=3, batch_norm=True,
                             activation="tanh"), input_shape=(64,), weight_decay=0.01, seed=0, dtype="float64")
    check_network(net, X, y)


def test_cnn_with_dropout_gradients():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((3, 36)), rng.integers(0, 3, 3)
    net = Network(cnn_layers((1, 6, 6), [2], kernel_size=3, padding="valid", pool="avg", hidden=[4], n_outputs=3,
                             dropout=0.3, activation="elu"), input_shape=(36,), seed=0, dtype="float64")

    def reseed():
        for layer in net.layers:
            if isinstance(layer, L.Dropout):
                layer.rng = np.random.default_rng(7)
    check_network(net, X, y, before_each=reseed)


# ---- fast paths, layouts and buffers ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                                  {"type": "max_pool2d", "kernel_size": 2}, {"type": "avg_pool2d", "kernel_size": 2},
                                  {"type": "batch_norm2d"}, {"type": "global_avg_pool2d"}, {"type": "flatten"}])
def test_memory_layout_does_not_change_results(spec):
    """NCHW and channels-last inputs (and gradients) give the same numbers."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 6, 6))
    last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    results = []
    for inp in (x, last):
        layer = built(spec, (2, 6, 6))
        y = np.array(layer.forward(inp, True))
        g = rng.standard_normal(y.shape) if not results else results[0][2]
        g_in = g if len(results) == 0 else (np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                                            if g.ndim == 4 else g)
        dx = np.array(layer.backward(g_in.copy()))
        results.append((y, dx, g, {k: v.copy() for k, v in layer.grads.items()}))
    (y1, dx1, _, g1), (y2, dx2, _, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-12, atol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-12)


def test_buffers_are_reused_across_batch_sizes():
    """A full batch, a smaller last batch, a full batch again: same results as a fresh layer each
    time (zero borders survive) and no new allocation once the largest batch has been seen."""
    rng = np.random.default_rng(4)
    spec = {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "same"}
    layer = built(spec, (2, 5, 5), dtype="float32")
    buffers = None
    for n in (6, 4, 6, 4):
        x = rng.standard_normal((n, 2, 5, 5)).astype(np.float32)
        g = rng.standard_normal((n, 4, 5, 5)).astype(np.float32)
        fresh = built(spec, (2, 5, 5), dtype="float32")
        y, dx = np.array(layer.forward(x, True)), np.array(layer.backward(g.copy()))
        np.testing.assert_array_equal(y, fresh.forward(x, True))
        np.testing.assert_array_equal(dx, fresh.backward(g.copy()))
        now = {k: id(v) for k, v in layer._scratch[True]._buffers.items()}
        if buffers is not None:
            assert now == buffers
        buffers = now


def test_evaluation_between_forward_and_backward_leaves_the_gradients_alone():
    rng = np.random.default_rng(6)
    spec = {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}
    a, b = built(spec, (2, 6, 6)), built(spec, (2, 6, 6))
    x, g = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((5, 3, 6, 6))
    a.forward(x, True)
    b.forward(x, True)
    b.forward(rng.standard_normal((9, 2, 6, 6)), False)
    np.testing.assert_array_equal(a.backward(g.copy()), b.backward(g.copy()))
    np.testing.assert_array_equal(a.grads["W"], b.grads["W"])


def test_batch_norm2d_equals_batch_norm_on_the_channel_table():
    """Per channel over (N, H, W) is the flat batch norm of the (N·H·W, C) table."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 2)) * 2 + 1
    g = rng.standard_normal(x.shape)
    a, b = built({"type": "batch_norm2d"}, (4, 5, 2)), built({"type": "batch_norm"}, (4,))
    table = lambda t: t.transpose(0, 2, 3, 1).reshape(-1, 4)
    np.testing.assert_allclose(table(a.forward(x, True)), b.forward(table(x), True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(table(a.backward(g.copy())), b.backward(table(g)), rtol=1e-11, atol=1e-12)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(a.buffers[key], b.buffers[key], rtol=1e-12)


# ---- declarations, bad specs ---------------------------------------------------------------------

@pytest.mark.parametrize("spec,shape,match", [
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 4, "padding": "same"}, (1, 8, 8), "odd kernel"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "padding": "same"}, (1, 8, 8), "odd kernel"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}, (1, 8, 8), "stride 1"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 5}, (1, 4, 8), "smaller than the 5×5 kernel"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "full"}, (1, 8, 8), "padding"),
    ({"type": "conv2d", "out_channels": 0}, (1, 8, 8), "out_channels"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": [3, 3, 3]}, (1, 8, 8), "pair"),
    ({"type": "conv2d", "out_channels": 4, "stride": 0}, (1, 8, 8), "stride"),
    ({"type": "conv2d", "out_channels": 4}, (64,), "feature maps"),
    ({"type": "max_pool2d", "kernel_size": 2}, (3, 1, 4), "smaller than the 2×2 kernel"),
    ({"type": "avg_pool2d", "kernel_size": 2}, (16,), "feature maps"),
    ({"type": "global_avg_pool2d"}, (4, 4), "feature maps"),
    ({"type": "batch_norm2d"}, (16,), "feature maps"),
    ({"type": "batch_norm"}, (2, 4, 4), "flat"),
    ({"type": "reshape", "shape": [1, 5, 5]}, (24,), "cannot make"),
    ({"type": "reshape", "shape": [0, 5]}, (24,), "positive"),
])
def test_bad_image_layers_are_usage_errors(spec, shape, match):
    with pytest.raises(UsageError, match=match):
        L.from_spec(spec).shapes(shape)


def test_conv_weights_use_conv_fans_and_torch_layout():
    """W is (out, in, kh, kw); He draws N(0, 2/fan_in) with fan_in = in·kh·kw, Xavier uses
    fan_in + fan_out = (in + out)·kh·kw, 'random' is torch's default U(±1/√fan_in)."""
    spec = {"type": "conv2d", "out_channels": 64, "kernel_size": 5}
    for init, std in (("he", np.sqrt(2 / (32 * 25))), ("xavier", np.sqrt(2 / ((32 + 64) * 25))),
                      ("random", 1 / np.sqrt(32 * 25) / np.sqrt(3))):
        layer = L.from_spec(spec)
        layer.build((32, 9, 9), np.random.default_rng(0), np.dtype("float64"), initializers.get(init))
        assert layer.params["W"].shape == (64, 32, 5, 5) and layer.params["b"].shape == (64,)
        assert layer.params["W"].std() == pytest.approx(std, rel=0.02), init
    # a dense layer's draws are what they were before shapes were given to initialisers
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(initializers.he(7, 5, rng1, np.float32),
                                  (rng2.standard_normal((7, 5)) * np.sqrt(2.0 / 7)).astype(np.float32))


def test_cnn_spec_shapes_and_evaluation_chunks():
    layers = cnn_layers((1, 28, 28), [32, 64], hidden=[128], batch_norm=True, dropout=0.25)
    rows = layer_shapes(layers, (784,))
    kinds = [layer.kind for layer, *_ in rows]
    assert kinds == ["reshape", "conv2d", "batch_norm2d", "activation", "max_pool2d", "conv2d", "batch_norm2d",
                     "activation", "max_pool2d", "flatten", "dropout", "dense", "batch_norm", "activation",
                     "dropout", "dense"]
    assert [shape for _, shape, *_ in rows][:10] == [(1, 28, 28), (32, 28, 28), (32, 28, 28), (32, 28, 28),
                                                     (32, 14, 14), (64, 14, 14), (64, 14, 14), (64, 14, 14),
                                                     (64, 7, 7), (3136,)]
    assert rows[1][2] == {"W": (32, 1, 3, 3)}        # no bias before batch norm
    net = Network(layers, input_shape=(784,))
    assert net.eval_batch_size < 4096 and net.eval_batch_size * 14 * 14 * 9 * 32 <= 1 << 25
    assert MLP([784, 128, 10]).eval_batch_size == 4096
    assert 50e6 < training_bytes(layers, (784,), 128) < 2e9
    global_net = Network(cnn_layers((1, 8, 8), [4], pool="global", n_outputs=3), input_shape=(64,))
    assert global_net.layer_shapes[-2] == (4,)


def test_chunked_evaluation_equals_one_batch():
    rng = np.random.default_rng(9)
    net = Network(cnn_layers((1, 10, 10), [4, 6], hidden=[8], batch_norm=True), input_shape=(100,), seed=0)
    X = rng.random((37, 100), dtype=np.float32)
    np.testing.assert_allclose(net.predict_outputs(X, batch_size=5), net.predict_outputs(X, batch_size=37),
                               rtol=1e-5, atol=1e-6)


def test_cnn_saves_and_loads(tmp_path):
    rng = np.random.default_rng(10)
    net = Network(cnn_layers((1, 8, 8), [3, 5], pool="avg", hidden=[6], batch_norm=True), input_shape=(64,), seed=2)
    X, y = rng.random((16, 64), dtype=np.float32), rng.integers(0, 10, 16)
    net.train_pass(X, y)                 # running statistics move off their start
    net.save(tmp_path / "cnn.npz")
    again = load_model(tmp_path / "cnn.npz")
    assert again.spec() == net.spec() and type(again) is Network
    np.testing.assert_array_equal(again.predict_outputs(X), net.predict_outputs(X))
    with np.load(tmp_path / "cnn.npz") as f:
        assert f["1.W"].shape == (3, 1, 3, 3)


# ---- features and stacks ------------------------------------------------------------------------------

def small_cnn(seed=0):
    return Network(cnn_layers((1, 8, 8), [3, 4], hidden=[6], batch_norm=True, dropout=0.2), input_shape=(64,),
                   seed=seed)


def test_layer_names_and_indices():
    net = small_cnn()
    names = net.layer_names()
    assert names[:4] == ["reshape_1", "conv2d_1", "batch_norm2d_1", "activation_1"] and names[-1] == "dense_2"
    assert net.layer_index("flatten_1") == names.index("flatten_1")
    assert net.layer_index(-1) == len(names) - 1 == net.layer_index(str(len(names) - 1))
    assert net.layer_index("penultimate") == len(names) - 2
    assert net.layer_index(" conv2d_2 ") == names.index("conv2d_2")
    for bad, match in (("conv2d_9", "no layer named"), (len(names), "does not exist"), (-len(names) - 1, "does not exist")):
        with pytest.raises(UsageError, match=match):
            net.layer_index(bad)


def test_features_are_the_layer_outputs_in_evaluation_mode():
    rng = np.random.default_rng(11)
    net = small_cnn()
    X = rng.random((9, 64), dtype=np.float32)
    i = net.layer_index("max_pool2d_2")
    h = X
    for layer in net.layers[:i + 1]:
        h = layer.forward(h, False)
    np.testing.assert_array_equal(net.features(X, "max_pool2d_2", batch_size=4), h)
    np.testing.assert_array_equal(X, net._as_input(X))     # the caller's array is untouched


def test_stack_equals_the_head_on_the_features():
    rng = np.random.default_rng(12)
    net = small_cnn()
    X = rng.random((11, 64), dtype=np.float32)
    feats = net.features(X, "max_pool2d_2")
    head = MLP([feats[0].size, 7, 10], seed=1)
    stacked = stack(net, "max_pool2d_2", head)
    assert stacked.layer_names()[-4:] == ["flatten_1", "dense_1", "activation_3", "dense_2"]
    np.testing.assert_allclose(stacked.predict_outputs(X), head.predict_outputs(feats.reshape(11, -1)),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="head takes"):
        stack(net, "conv2d_1", head)


def test_crafted_cnn_files_are_refused_before_allocation(tmp_path):
    net = Network(cnn_layers((1, 8, 8), [3], hidden=[4]), input_shape=(64,), seed=0)
    net.save(tmp_path / "ok.npz")

    def rewrite(name, change):
        with np.load(tmp_path / "ok.npz") as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("__meta__")))
        change(meta)
        np.savez(tmp_path / name, __meta__=np.array(json.dumps(meta)), **arrays)
        return tmp_path / name

    def wider(meta):
        meta["network"]["layers"][1]["out_channels"] = 5

    def huge(meta):
        meta["network"]["layers"][1]["out_channels"] = 1 << 30

    def odd(meta):
        meta["network"]["layers"][1]["kernel_size"] = 4
        meta["network"]["layers"][1]["padding"] = "same"

    for name, change, match in (("wider.npz", wider, "shape"), ("huge.npz", huge, "refuses sizes that large"),
                                ("odd.npz", odd, "odd kernel")):
        with pytest.raises(UsageError, match=match):
            load_model(rewrite(name, change))
    back = load_model(tmp_path / "ok.npz")                       # the untouched file still loads as it was
    x = np.random.default_rng(3).random((4, 64), dtype=np.float32)
    np.testing.assert_array_equal(back.predict_proba(x), net.predict_proba(x))
