"""Issue-7 training features: schedules, augmentation, weight averaging, early stopping."""
import math


import numpy as np
import pytest

from mlp import MLP, UsageError, optimizers
from mlp.core import augment, averaging, schedules
from mlp.runs.training import FitOptions, fit
from helpers.paths import REFERENCE


# ---- schedules ---------------------------------------------------------------------------------

def test_constant_and_warmup():
    lr = schedules.build("constant", 0.1, total_steps=100, steps_per_epoch=10, warmup_steps=10)
    assert [lr(s) for s in (0, 4, 9, 10, 99)] == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.1])


def test_warmup_then_step_decay():
    # 10 warmup steps, then the step schedule over the remaining 300 steps (30 epochs of 10):
    # ×0.1 after 10 and 20 epochs counted from the end of warmup
    lr = schedules.build("step", 1.0, total_steps=310, steps_per_epoch=10, warmup_steps=10)
    assert [lr(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert [lr(s) for s in (10, 109, 110, 209, 210, 309)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_then_cosine():
    # 10 warmup steps, then half a cosine over the remaining 101 steps: 0.2 → 0.1 (midway) → 0
    lr = schedules.build("cosine", 0.2, total_steps=111, steps_per_epoch=10, warmup_steps=10)
    assert [lr(s) for s in (0, 1, 9)] == pytest.approx([0.02, 0.04, 0.2])
    assert lr(10) == pytest.approx(0.2) and lr(60) == pytest.approx(0.1) and lr(110) == pytest.approx(0.0, abs=1e-12)
    assert all(lr(s) > lr(s + 1) for s in range(10, 110))


def test_step_decay_at_thirds_of_the_run():
    lr = schedules.build("step", 1.0, total_steps=300, steps_per_epoch=10)  # 30 epochs: decays at 10, 20
    assert [lr(s) for s in (0, 99, 100, 199, 200, 299)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_ends_at_zero_and_halves_midway():
    lr = schedules.build("cosine", 0.2, total_steps=101, steps_per_epoch=10)
    assert lr(0) == pytest.approx(0.2) and lr(50) == pytest.approx(0.1) and lr(100) == pytest.approx(0.0, abs=1e-12)


def test_onecycle_matches_torch_shape():
    total = 1000
    lr = schedules.build("onecycle", 1.0, total_steps=total, steps_per_epoch=100)
    values = [lr(s) for s in range(total)]
    assert values[0] == pytest.approx(1 / 25)
    assert max(values) == pytest.approx(1.0) and int(np.argmax(values)) == 299
    assert values[-1] == pytest.approx(1 / 25 / 1e4)
    # torch's OneCycleLR on the same cycle, recorded by tests/reference/make_torch_reference.py
    with np.load(REFERENCE / "torch_twins.npz", allow_pickle=False) as ref:
        np.testing.assert_allclose(values, ref["onecycle_lr"], rtol=1e-9, atol=1e-12)


@pytest.mark.torch
def test_onecycle_matches_live_torch():
    torch = pytest.importorskip("torch", reason="the live comparison needs torch (pip install '.[torch]')")
    total = 1000
    lr = schedules.build("onecycle", 1.0, total_steps=total, steps_per_epoch=100)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, cycle_momentum=False)
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose([lr(s) for s in range(total)], theirs, rtol=1e-9, atol=1e-12)


def test_unknown_schedule():
    with pytest.raises(UsageError, match="onecycle"):
        schedules.build("triangular", 0.1, 10, 1)


# ---- augmentation --------------------------------------------------------------------------------

def centred_images(n, rng):
    """Random images whose ink stays 3+ pixels from every edge, so a ±2 shift loses nothing."""
    images = np.zeros((n, 28, 28), dtype=np.float32)
    images[:, 3:25, 3:25] = rng.random((n, 22, 22), dtype=np.float32)
    return images.reshape(n, 784)


def test_shift_preserves_pixel_mass_and_moves_content():
    rng = np.random.default_rng(0)
    batch = centred_images(64, rng)
    before = batch.copy()
    shifted = augment.random_shift(batch, 2, np.random.default_rng(1))
    assert shifted.shape == batch.shape and shifted.dtype == batch.dtype
    np.testing.assert_allclose(shifted.sum(axis=1), batch.sum(axis=1), rtol=1e-6)   # mass preserved
    assert not np.array_equal(shifted, batch)
    # every image is an exact translate of its original by some (dy, dx) in [-2, 2]²
    for original, moved in zip(batch.reshape(-1, 28, 28), shifted.reshape(-1, 28, 28)):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), moved)]
        assert len(matches) == 1
    np.testing.assert_array_equal(batch, before)   # the input batch is not modified in place


def test_flip_mirrors_about_half():
    batch = centred_images(400, np.random.default_rng(2))
    flipped = augment.random_flip(batch, np.random.default_rng(3))
    imgs, out = batch.reshape(-1, 28, 28), flipped.reshape(-1, 28, 28)
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for i, o in zip(imgs, out)])
    same = np.array([np.array_equal(o, i) for i, o in zip(imgs, out)])
    assert (mirrored | same).all() and 150 < mirrored.sum() < 250


# ---- early stopping, averaging, schedules inside fit -------------------------------------------------

def toy_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + 2 * (X[:, 3] > 0)
    return X[:400], y[:400], X[400:], y[400:]


def test_early_stopping_restores_the_best_epoch():
    Xt, yt, Xv, yv = toy_data()
    net = MLP([20, 64, 4], seed=0)
    # a learning rate high enough that validation accuracy wanders after its peak
    history = fit(net, optimizers.get("sgd", learning_rate=0.8), (Xt, yt), (Xv, yv),
                  FitOptions(epochs=40, batch_size=16, patience=3, progress=False))
    best = max(history, key=lambda r: r["val_accuracy"])
    assert len(history) == best["epoch"] + 3 or len(history) == 40
    _, accuracy, _ = net.evaluate(Xv, yv)
    assert accuracy == pytest.approx(best["val_accuracy"])


def test_schedule_drives_the_optimizer():
    Xt, yt, Xv, yv = toy_data()
    net = MLP([20, 8, 4], seed=0)
    opt = optimizers.get("sgd", learning_rate=0.1)
    seen = []
    fit(net, opt, (Xt, yt), (Xv, yv),
        FitOptions(epochs=2, batch_size=100, progress=False,
                   schedule=schedules.build("cosine", 0.1, total_steps=8, steps_per_epoch=4)),
        on_step=lambda step: seen.append(opt.learning_rate))
    assert seen == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * s / 7)) for s in range(8)])


@pytest.mark.parametrize("kind", ["ema", "swa"])
def test_averaged_weights_are_what_is_evaluated(kind):
    """Each epoch's val metrics are those of the averaged weights, here averaged independently of
    mlp.averaging (EMA from the weights after every step, SWA from the end-of-epoch weights), and
    the network ends holding them."""
    Xt, yt, Xv, yv = toy_data()
    epochs = 8
    net = MLP([20, 16, 4], seed=0, dtype="float64")
    averager = averaging.build(kind, net)
    ema = {k: v.copy() for k, v in net.state_dict().items()}
    snapshots, expected = [], []

    def on_step(step):  # after the optimizer step and the averager's own update
        for key, value in net.state_dict().items():
            ema[key] = 0.999 * ema[key] + 0.001 * value

    def on_epoch(row):  # the training weights are back in the network here
        weights = {k: v.copy() for k, v in net.state_dict().items()}
        if row["epoch"] > 0.75 * epochs:
            snapshots.append(weights)
        if kind == "ema":
            average = ema
        elif snapshots:
            average = {k: np.mean([s[k] for s in snapshots], axis=0) for k in weights}
        else:  # SWA has not started: the training weights are validated
            average = weights
        probe = MLP([20, 16, 4], seed=1, dtype="float64")
        probe.load_state_dict(average)
        expected.append((probe.evaluate(Xv, yv)[:2], average))

    history = fit(net, optimizers.get("adam", learning_rate=1e-2), (Xt, yt), (Xv, yv),
                  FitOptions(epochs=epochs, batch_size=50, progress=False, averager=averager),
                  on_step=on_step, on_epoch=on_epoch)
    assert len(snapshots) == 2
    for row, ((loss, accuracy), _) in zip(history, expected):
        assert row["val_loss"] == pytest.approx(loss, rel=1e-9) and row["val_accuracy"] == accuracy
    # the averaged weights differ from the last training weights, so this is not vacuous
    final_average = expected[-1][1]
    assert not np.allclose(final_average["0.W"], snapshots[-1]["0.W"])
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value, final_average[key], rtol=1e-9, atol=1e-12)


def test_swa_is_the_mean_of_end_of_epoch_weights():
    net = MLP([3, 2], seed=0)
    swa = averaging.SWA(net, start_fraction=0.5)
    snapshots = []
    for epoch in range(1, 5):
        net.params[0][...] = epoch
        swa.after_epoch(net, epoch, 4)
        if epoch > 2:
            snapshots.append(epoch)
    assert swa.count == 2 and np.all(swa.state(np.float32)["0.W"] == np.mean(snapshots))


def test_ema_update_rule():
    net = MLP([3, 2], seed=0)
    ema = averaging.EMA(net, decay=0.9)
    start = net.params[0].copy()
    net.params[0][...] = start + 1.0
    ema.after_step(net)
    np.testing.assert_allclose(ema.average["0.W"], start + 0.1, rtol=1e-6)
