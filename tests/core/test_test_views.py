"""Test-time augmentation: the views of an image, a network that averages its probabilities over
them, and model files that keep the setting."""
import json

import numpy as np
import pytest

from mlp import MLP, UsageError, load_model
from mlp.core import augment, losses, npz


def images(n, seed=0):
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


@pytest.mark.parametrize("dy,dx", [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (2, -3)])
def test_a_shifted_view_is_the_image_moved_with_zeros_coming_in(dy, dx):
    x = images(3)
    moved = augment.shifted(x, dy, dx).reshape(3, 28, 28)
    expected = np.roll(x.reshape(3, 28, 28), (dy, dx), axis=(1, 2))
    if dy > 0:
        expected[:, :dy] = 0
    elif dy < 0:
        expected[:, dy:] = 0
    if dx > 0:
        expected[:, :, :dx] = 0
    elif dx < 0:
        expected[:, :, dx:] = 0
    np.testing.assert_array_equal(moved, expected)


@pytest.mark.parametrize("shift,flip,n", [(0, True, 2), (1, False, 5), (3, False, 5), (1, True, 10)])
def test_views_are_the_one_pixel_shifts_and_mirror_images(shift, flip, n):
    x = images(2)
    got = list(augment.views(x, shift, flip))
    assert len(got) == n and got[0] is x                      # the image itself first, uncopied
    keys = {v.tobytes() for v in got}
    assert len(keys) == n                                      # all different
    if flip:
        assert augment.mirrored(x).tobytes() in keys
    if shift:
        assert augment.shifted(x, 0, -1).tobytes() in keys
        assert augment.shifted(x, -1, 1).tobytes() not in keys   # no diagonal moves


def test_a_network_with_views_predicts_the_mean_probability_over_them():
    net = MLP([784, 32, 10], activation="relu", weight_init="he", seed=3)
    x, y = images(50, 1), np.arange(50) % 10
    plain = net.predict_proba(x)
    by_hand = np.mean([losses.softmax(net.forward(v)) for v in augment.views(x, 1, True)], axis=0)
    net.set_test_views(1, True)
    np.testing.assert_allclose(net.predict_proba(x), by_hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(plain, by_hand)
    loss, accuracy, pred = net.evaluate(x, y, batch_size=7)   # chunked like any evaluation
    np.testing.assert_allclose(loss, -np.mean(np.log(by_hand[np.arange(50), y])), rtol=1e-5)
    np.testing.assert_array_equal(pred, by_hand.argmax(axis=1))
    assert accuracy == np.mean(by_hand.argmax(axis=1) == y)
    net.set_test_views(0, False)                               # off again
    np.testing.assert_allclose(net.predict_proba(x), plain, rtol=1e-6)


def test_views_change_no_training_step():
    a = MLP([784, 16, 10], seed=0)
    b = MLP([784, 16, 10], seed=0)
    b.set_test_views(1, True)
    x, y = images(20, 2), np.arange(20) % 10
    sa, sb = a.train_pass(x, y), b.train_pass(x, y)
    assert sa.data_loss == sb.data_loss
    for ga, gb in zip(sa.grads, sb.grads):
        np.testing.assert_array_equal(ga, gb)


@pytest.mark.parametrize("make,why", [
    (lambda: MLP([20, 8, 10]), "784 inputs"),
    (lambda: MLP([784, 8, 784], loss="regression_squared_error"), "classifier"),
])
def test_views_need_a_classifier_of_28x28_images(make, why):
    with pytest.raises(UsageError, match="classifier of 28×28"):
        make().set_test_views(1, False)


@pytest.mark.parametrize("shift,flip", [(-1, False), (1.5, True), (True, False), (1, "yes")])
def test_bad_view_settings_are_refused(shift, flip):
    with pytest.raises(UsageError, match="test views need"):
        MLP([784, 8, 10]).set_test_views(shift, flip)


def test_a_saved_model_keeps_its_views(tmp_path):
    net = MLP([784, 16, 10], seed=1)
    net.set_test_views(1, True)
    net.save(tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert back.test_views == {"shift": 1, "flip": True}
    x = images(30, 4)
    np.testing.assert_array_equal(back.predict(x), net.predict(x))
    plain = MLP([784, 16, 10], seed=1)
    plain.save(tmp_path / "p.npz")
    assert load_model(tmp_path / "p.npz").test_views is None


def rewrite_meta(path, change):
    """A copy of the model file with its JSON header changed by `change(meta)`."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.keys()}
    meta = json.loads(str(arrays.pop("__meta__")))
    change(meta)
    return npz.write(path.with_name("changed.npz"), meta, arrays)


@pytest.mark.parametrize("views", [{"shift": 1}, {"shift": "1", "flip": True}, {"shift": -1, "flip": False},
                                   {"shift": 1, "flip": 1}, [1, True], {"shift": 1, "flip": True, "x": 0}])
def test_a_file_with_malformed_views_is_one_error(tmp_path, views):
    net = MLP([784, 8, 10])
    net.set_test_views(1, True)
    net.save(tmp_path / "m.npz")
    target = rewrite_meta(tmp_path / "m.npz", lambda meta: meta.update(test_views=views))
    with pytest.raises(UsageError, match="test_views must be"):
        load_model(target)


def test_a_file_with_views_on_a_network_that_cannot_have_them_is_one_error(tmp_path):
    MLP([20, 8, 10]).save(tmp_path / "m.npz")
    target = rewrite_meta(tmp_path / "m.npz", lambda meta: meta.update(test_views={"shift": 1, "flip": False}))
    with pytest.raises(UsageError, match="classifier of 28×28"):
        load_model(target)
