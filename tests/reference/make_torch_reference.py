#!/usr/bin/env python3
"""Writes tests/reference/torch_twins.npz: what PyTorch's optimizers and OneCycleLR do on fixed
inputs, so the suite checks our optimizers against PyTorch without needing torch installed.

    python tests/reference/make_torch_reference.py      # needs torch (the `torch` extra)

For each optimizer twin: the starting parameters, 25 steps of gradients (NumPy generator seed 0)
and the parameters torch holds after every step, all float64. For OneCycleLR: the learning rate
of every step of a 1,000-step cycle. The torch version is recorded in the file; regenerate after
a torch upgrade and review the diff (the tests also compare against live torch when it is
installed: `pytest -m torch`).
"""
import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("torch_twins.npz")
STEPS = 25
HYPER = {"learning_rate": 0.01, "momentum": 0.8, "beta": 0.95, "beta1": 0.85, "beta2": 0.99, "epsilon": 1e-6}
TWINS = {
    "sgd": lambda ps, h: torch.optim.SGD(ps, lr=h["learning_rate"]),
    "momentum": lambda ps, h: torch.optim.SGD(ps, lr=h["learning_rate"], momentum=h["momentum"]),
    "nag": lambda ps, h: torch.optim.SGD(ps, lr=h["learning_rate"], momentum=h["momentum"], nesterov=True),
    "rmsprop": lambda ps, h: torch.optim.RMSprop(ps, lr=h["learning_rate"], alpha=h["beta"], eps=h["epsilon"]),
    "adam": lambda ps, h: torch.optim.Adam(ps, lr=h["learning_rate"], betas=(h["beta1"], h["beta2"]), eps=h["epsilon"]),
    "nadam": lambda ps, h: torch.optim.NAdam(ps, lr=h["learning_rate"], betas=(h["beta1"], h["beta2"]),
                                             eps=h["epsilon"]),
}


def inputs():
    """The starting parameters and the gradients of every step (the same for every optimizer)."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(STEPS)]
    return params, grads


def trajectory(name):
    params, grads = inputs()
    tensors = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for p in params]
    opt = TWINS[name](tensors, HYPER)
    after = []
    for step in grads:
        for t, g in zip(tensors, step):
            t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        after.append([t.detach().numpy().copy() for t in tensors])
    return after


def onecycle(total=1000):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, cycle_momentum=False)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


def main():
    torch.set_default_dtype(torch.float64)   # torch keeps scalar state (NAdam's μ product) in it
    arrays = {"onecycle_lr": onecycle()}
    for name in TWINS:
        for step, params in enumerate(trajectory(name)):
            for i, p in enumerate(params):
                arrays[f"{name}.step{step}.param{i}"] = p
    meta = {"torch": torch.__version__, "steps": STEPS, "hyper": HYPER, "twins": list(TWINS)}
    np.savez_compressed(OUT, __meta__=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {OUT} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
