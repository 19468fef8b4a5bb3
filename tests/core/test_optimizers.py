"""Optimizer updates: hand-computed values, and step-by-step equality with the PyTorch twins."""
import json
import math

import numpy as np
import pytest

from mlp import UsageError, optimizers
from helpers.paths import REFERENCE


def run(name, grads, p0=1.0, loss=None, **hyper):
    opt = optimizers.get(name, **hyper)
    p = np.array([p0])
    out = []
    for i, g in enumerate(grads):
        opt.step([p], [np.array([g])], loss=None if loss is None else loss[i])
        out.append(p[0])
    return out


def test_sgd_by_hand():
    assert run("sgd", [0.5, -1.0], learning_rate=0.1) == pytest.approx([0.95, 1.05])


def test_momentum_by_hand():
    # v1 = 0.5, p = 1 − 0.05 = 0.95; v2 = 0.9·0.5 + 0.5 = 0.95, p = 0.95 − 0.095 = 0.855
    assert run("momentum", [0.5, 0.5], learning_rate=0.1, momentum=0.9) == pytest.approx([0.95, 0.855])


def test_nag_by_hand():
    # v1 = 0.5, step g + m·v = 0.95 → p = 0.905; v2 = 0.95, step 0.5 + 0.855 = 1.355 → p = 0.7695
    assert run("nag", [0.5, 0.5], learning_rate=0.1, momentum=0.9) == pytest.approx([0.905, 0.7695])


def test_rmsprop_by_hand():
    # s1 = 0.1·0.25 = 0.025, p = 1 − 0.01·0.5/(√0.025 + 1e-8)
    s1 = 0.025
    p1 = 1 - 0.01 * 0.5 / (math.sqrt(s1) + 1e-8)
    s2 = 0.9 * s1 + 0.1 * 4.0
    p2 = p1 - 0.01 * 2.0 / (math.sqrt(s2) + 1e-8)
    assert run("rmsprop", [0.5, 2.0], learning_rate=0.01, beta=0.9, epsilon=1e-8) == pytest.approx([p1, p2], rel=1e-12)
    assert p1 == pytest.approx(0.968377, abs=1e-6)


def test_adam_first_step_is_learning_rate_times_sign():
    # bias correction makes the first step lr·g/|g| (up to ε)
    out = run("adam", [0.5, 0.5, 0.5], learning_rate=0.001)
    assert out == pytest.approx([0.999, 0.998, 0.997], abs=1e-8)


def test_adam_by_hand_second_step():
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    m1, v1 = 0.1 * 1.0, 0.001 * 1.0
    p1 = 1 - lr / (1 - b1) * m1 / (math.sqrt(v1) / math.sqrt(1 - b2) + eps)
    m2, v2 = b1 * m1 + 0.1 * -3.0, b2 * v1 + 0.001 * 9.0
    p2 = p1 - lr / (1 - b1 ** 2) * m2 / (math.sqrt(v2) / math.sqrt(1 - b2 ** 2) + eps)
    assert run("adam", [1.0, -3.0], learning_rate=lr) == pytest.approx([p1, p2], rel=1e-12)


def test_nadam_by_hand_first_step():
    b1, psi, lr = 0.9, 4e-3, 0.1
    mu1 = b1 * (1 - 0.5 * 0.96 ** (1 * psi))
    mu2 = b1 * (1 - 0.5 * 0.96 ** (2 * psi))
    g = 0.5
    m, v = 0.1 * g, 0.001 * g * g
    denom = math.sqrt(v / 0.001) + 1e-8
    p1 = 1 - lr * (1 - mu1) / (1 - mu1) * g / denom - lr * mu2 / (1 - mu1 * mu2) * m / denom
    assert run("nadam", [g], learning_rate=lr) == pytest.approx([p1], rel=1e-12)


def test_eve_follows_the_paper():
    """Hayashi et al. 2016, Algorithm 1, by hand: p after every step, and d, f̂ where they are
    easy to read off."""
    lr, b1, b2, b3, eps, k, K = 0.1, 0.9, 0.999, 0.999, 1e-8, 0.1, 10.0
    opt = optimizers.get("eve", learning_rate=lr)
    p = np.array([1.0, -2.0])
    grads = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-0.5, 0.1]), np.array([1.5, -0.3]),
             np.array([0.2, 0.2]), np.array([-1.0, 0.4]), np.array([0.3, -2.0])]
    # f/f̂ in range, clipped at 1/(K+1) twice, at 1/(k+1), at k+1, then in range again
    step_losses = [1.0, 2.0, 0.02, 0.01, 0.016, 0.0159, 0.03]
    m = v = np.zeros(2)
    theta, d, f_hat = p.copy(), None, None
    for t, (g, f) in enumerate(zip(grads, step_losses), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if t == 1:
            d, f_hat = 1.0, f
        else:
            delta, Delta = (k + 1, K + 1) if f >= f_hat else (1 / (K + 1), 1 / (k + 1))
            c = min(max(delta, f / f_hat), Delta)
            new_f_hat = c * f_hat
            r = abs(new_f_hat - f_hat) / min(new_f_hat, f_hat)
            d, f_hat = b3 * d + (1 - b3) * r, new_f_hat
        theta = theta - lr * m_hat / (d * np.sqrt(v_hat) + eps)
        opt.step([p], [g.copy()], loss=f)
        np.testing.assert_allclose(p, theta, rtol=1e-13)
        assert opt.d == pytest.approx(d, rel=1e-13) and opt.f_hat == pytest.approx(f_hat, rel=1e-13)
        if t == 2:  # the loss doubled: c = 2, r = 1
            assert opt.f_hat == pytest.approx(2.0) and opt.d == pytest.approx(0.999 + 0.001)
        if t == 3:  # the loss fell 100×: c clipped at 1/(K+1), r = (1 − 1/11)/(1/11) = 10
            assert opt.f_hat == pytest.approx(2.0 / 11) and opt.d == pytest.approx(0.999 * 1.0 + 0.001 * 10)
        if t == 5:  # the loss fell by 3%: c clipped at 1/(k+1), r = 0.1
            assert opt.f_hat == pytest.approx(2.0 / 121 / 1.1)
        if t == 6:  # the loss rose by 6%: c clipped at k+1, r = 0.1
            assert opt.f_hat == pytest.approx(2.0 / 121)
    # the step really is Adam's divided by d: d ≠ 1 changed p
    assert opt.d != 1.0
    with pytest.raises(ValueError, match="loss"):
        opt.step([p], [np.array([0.5, 0.5])])


@pytest.mark.parametrize("name,hyper", [
    ("sgd", {"learning_rate": 0.0}), ("adam", {"learning_rate": float("nan")}),
    ("adam", {"beta1": 1.0}), ("rmsprop", {"beta": -0.1}), ("adam", {"epsilon": 0.0}),
    ("momentum", {"momentum": 1.5}),
])
def test_bad_hyperparameters_are_usage_errors(name, hyper):
    with pytest.raises(UsageError):
        optimizers.get(name, **hyper)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(UsageError, match="nadam"):
        optimizers.get("adagrad")


def test_from_config_takes_only_relevant_flags():
    opt = optimizers.from_config("momentum", {"learning_rate": 0.2, "momentum": 0.5, "beta1": 0.3, "epsilon": 1e-6})
    assert opt.hyperparameters == {"learning_rate": 0.2, "momentum": 0.5}      # beta1 and epsilon left out


# ---- PyTorch twins -------------------------------------------------------------------------
# tests/reference/torch_twins.npz holds what torch's optimizers do on fixed inputs (written by
# tests/reference/make_torch_reference.py, torch version inside): the default suite compares with
# it in plain NumPy; `-m torch` also compares with a live torch when it is installed.

TWINS = REFERENCE / "torch_twins.npz"
HYPER = {"learning_rate": 0.01, "momentum": 0.8, "beta": 0.95, "beta1": 0.85, "beta2": 0.99, "epsilon": 1e-6}
TWIN_NAMES = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]


def reference_inputs(steps=25):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]
    return params, grads


def our_trajectory(name):
    params, grads = reference_inputs()
    opt = optimizers.from_config(name, HYPER)
    after = []
    for step in grads:
        opt.step(params, step)
        after.append([p.copy() for p in params])
    return after


def test_reference_file_is_what_its_script_says():
    with np.load(TWINS, allow_pickle=False) as ref:
        meta = json.loads(str(ref["__meta__"]))
        assert meta["hyper"] == HYPER and meta["twins"] == TWIN_NAMES and meta["torch"].startswith("2.")
        assert len([k for k in ref.files if k.startswith("adam.")]) == 2 * meta["steps"]


@pytest.mark.parametrize("name", TWIN_NAMES)
def test_equals_pytorch_reference_trajectory(name):
    """Every step of 25 equals what torch.optim's twin did (float64, rtol 1e-12)."""
    with np.load(TWINS, allow_pickle=False) as ref:
        for step, params in enumerate(our_trajectory(name)):
            for i, p in enumerate(params):
                np.testing.assert_allclose(p, ref[f"{name}.step{step}.param{i}"], rtol=1e-12, atol=1e-14,
                                           err_msg=f"{name} step {step} param {i}")


@pytest.mark.torch
@pytest.mark.parametrize("name", TWIN_NAMES)
def test_equals_live_pytorch_twin(name):
    torch = pytest.importorskip("torch", reason="the live comparison needs torch (pip install '.[torch]')")
    import sys
    sys.path.insert(0, str(TWINS.parent))
    try:
        import make_torch_reference as live
    finally:
        sys.path.pop(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # torch keeps scalar state (NAdam's μ product) in it
    try:
        theirs = live.trajectory(name)
    finally:
        torch.set_default_dtype(default)
    for step, (ours, t) in enumerate(zip(our_trajectory(name), theirs)):
        for p, q in zip(ours, t):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14, err_msg=f"{name} step {step}")


def test_float32_state_stays_float32():
    p = np.ones(3, dtype=np.float32)
    for name in ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]:
        opt = optimizers.get(name)
        opt.step([p], [np.full(3, 0.1, dtype=np.float32)])
        assert p.dtype == np.float32 and all(a.dtype == np.float32 for a in opt.state_of(p).values())


@pytest.mark.parametrize("name", ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "eve"])
def test_flat_buffer_path_equals_per_parameter_path(name, monkeypatch):
    """The network's params/grads tile one flat array each, and optimizers then update them in
    cache-sized pieces; the result must equal the plain per-parameter update, bit for bit,
    including across piece boundaries and when a step's state carries over."""
    from mlp import MLP
    net = MLP([37, 29, 23, 5], activation="tanh", batch_norm=True, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((16, 37)), rng.integers(0, 5, 16)
    copies = [p.copy() for p in net.params]
    flat_opt = optimizers.from_config(name, HYPER)
    flat_opt.chunk = 100  # force several pieces, with boundaries inside parameters
    list_opt = optimizers.from_config(name, HYPER)
    for _ in range(4):
        loss, grads = net.loss_and_grads(X, y)
        list_opt.step(copies, [g.copy() for g in grads], loss=loss)
        flat_opt.step(net.params, grads, loss=loss)
        assert flat_opt._flat is not None, "the flat path was not taken"
        for p, q in zip(net.params, copies):
            np.testing.assert_array_equal(p, q)
        for p, q in zip(net.params, copies):  # the next gradients are taken at the same point
            q[...] = p


# ---- state keyed by parameter; checkpoints -----------------------------------------------------

ALL = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "eve"]


def test_state_follows_the_array_not_its_position():
    a, b = np.ones(3), np.full(2, 5.0)
    ga, gb = np.full(3, 0.5), np.full(2, -1.0)
    ref_a, ref_b = a.copy(), b.copy()
    opt, ref = optimizers.get("adam", learning_rate=0.1), optimizers.get("adam", learning_rate=0.1)
    for i in range(4):
        ref.step([ref_a, ref_b], [ga, gb])
        opt.step([a, b] if i % 2 == 0 else [b, a], [ga, gb] if i % 2 == 0 else [gb, ga])
    np.testing.assert_array_equal(a, ref_a)
    np.testing.assert_array_equal(b, ref_b)
    assert opt.state_of(a)["m"].shape == (3,) and opt.state_of(np.ones(3)) is None


def network_and_optimizer(name, seed=0, hyper=HYPER):
    from mlp import MLP
    net = MLP([37, 29, 23, 5], activation="tanh", batch_norm=True, weight_decay=0.01, seed=seed, dtype="float32")
    opt = optimizers.from_config(name, hyper)
    opt.chunk = 100  # several pieces, with boundaries inside parameters
    return net, opt


def train(net, opt, data):
    for X, y in data:
        step = net.train_pass(X, y)
        opt.step(net.params, step.grads, loss=step.data_loss + step.l2)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_and_resume_is_bit_identical(name, tmp_path):
    rng = np.random.default_rng(7)
    data = [(rng.standard_normal((16, 37)).astype(np.float32), rng.integers(0, 5, 16)) for _ in range(9)]
    n = 5
    straight, straight_opt = network_and_optimizer(name)
    train(straight, straight_opt, data)

    net, opt = network_and_optimizer(name)
    train(net, opt, data[:n])
    np.savez(tmp_path / "ckpt.npz", **{f"net/{k}": v for k, v in net.state_dict().items()},
             **{f"opt/{k}": v for k, v in opt.state_dict().items()})
    # a fresh network (another seed) and a fresh optimizer (default hyperparameters) restored
    fresh, fresh_opt = network_and_optimizer(name, seed=99, hyper={})
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        fresh.load_state_dict({k[4:]: f[k] for k in f.files if k.startswith("net/")})
        fresh_opt.load_state_dict({k[4:]: f[k] for k in f.files if k.startswith("opt/")})
    assert fresh_opt.t == n and fresh_opt.hyperparameters == straight_opt.hyperparameters
    train(fresh, fresh_opt, data[n:])
    for key, value in straight.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value, err_msg=key)
    assert fresh_opt.state_dict().keys() == straight_opt.state_dict().keys()
    for key, value in straight_opt.state_dict().items():
        np.testing.assert_array_equal(fresh_opt.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_of_separate_arrays(name):
    """The per-parameter path (arrays that do not tile one buffer) resumes exactly too."""
    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal((4, 3)), rng.standard_normal(3)] for _ in range(6)]
    start = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    losses = [2.0, 1.5, 1.7, 0.9, 1.1, 1.0]
    straight, opt = [p.copy() for p in start], optimizers.from_config(name, HYPER)
    for g, f in zip(grads, losses):
        opt.step(straight, g, loss=f)
    params, first = [p.copy() for p in start], optimizers.from_config(name, HYPER)
    for g, f in zip(grads[:3], losses[:3]):
        first.step(params, g, loss=f)
    resumed = optimizers.get(name)
    resumed.load_state_dict(first.state_dict())
    params = [p.copy() for p in params]  # new arrays: the state binds by position
    for g, f in zip(grads[3:], losses[3:]):
        resumed.step(params, g, loss=f)
    for p, q in zip(params, straight):
        np.testing.assert_array_equal(p, q)


def test_state_dict_is_plain_and_checked():
    opt = optimizers.get("nadam")
    p = np.ones((2, 2))
    opt.step([p], [np.ones((2, 2))])
    sd = opt.state_dict()
    assert sd["optimizer"] == "nadam" and sd["step"] == 1 and sd["n_params"] == 1
    assert set(sd) >= {"mu_product", "learning_rate", "state.0.m", "state.0.v"}
    assert all(isinstance(v, (int, float, str, np.ndarray)) for v in sd.values())
    with pytest.raises(UsageError, match="nadam"):
        optimizers.get("adam").load_state_dict(sd)
    with pytest.raises(UsageError, match="lacks"):
        optimizers.get("nadam").load_state_dict({k: v for k, v in sd.items() if k != "mu_product"})
    with pytest.raises(UsageError, match="beta1"):
        optimizers.get("nadam").load_state_dict({**sd, "beta1": 1.5})
    other = optimizers.get("nadam")
    other.load_state_dict(sd)
    with pytest.raises(UsageError, match="1 parameters; this step has 2"):
        other.step([p, p.copy()], [p, p])
    other.load_state_dict(sd)
    with pytest.raises(UsageError, match="does not fit"):
        other.step([np.ones(3)], [np.ones(3)])
