#!/usr/bin/env python3
"""Writes tests/reference/torch_layers.npz: what PyTorch's conv2d, max_pool2d, avg_pool2d,
adaptive_avg_pool2d and batch_norm compute, forward and backward, on fixed float64 inputs — so the
suite checks mlp's image layers against PyTorch without needing torch installed.

    python tests/reference/make_layer_reference.py      # needs torch (the `torch` extra)

Every case stores its inputs (drawn from a NumPy generator, seed 0), the upstream gradient and
torch's outputs and gradients. The cases cover odd sizes, stride 2, padding 'same' and explicit
padding, rectangular kernels, overlapping pooling windows and ties in max pooling (inputs on a
coarse grid, so windows often hold equal maxima). The torch version is recorded in the file;
regenerate after a torch upgrade and review the diff (the suite also compares against a live torch
when it is installed: `pytest -m torch`).
"""
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("torch_layers.npz")

# name: (batch, channels, height, width, spec of the mlp layer)
CASES = {
    "conv_odd_valid": (3, 2, 7, 9, {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 0}),
    "conv_same_5x5": (2, 3, 9, 8, {"type": "conv2d", "out_channels": 5, "kernel_size": 5, "stride": 1,
                                   "padding": "same"}),
    "conv_stride2_pad1": (3, 3, 9, 7, {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2,
                                       "padding": 1}),
    "conv_rect_stride": (2, 2, 8, 11, {"type": "conv2d", "out_channels": 3, "kernel_size": [2, 3], "stride": [2, 1],
                                       "padding": [1, 0]}),
    "conv_pad_k_minus_1": (2, 2, 5, 5, {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 1,
                                        "padding": 2}),
    "conv_1x1_pad_more_than_kernel": (2, 3, 4, 5, {"type": "conv2d", "out_channels": 2, "kernel_size": 1,
                                                   "stride": 1, "padding": 1}),
    "conv_no_bias_one_channel": (2, 1, 28, 28, {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 1,
                                                "padding": "same", "bias": False}),
    "max_2x2": (3, 4, 8, 6, {"type": "max_pool2d", "kernel_size": 2}),
    "max_2x2_odd_ties": (3, 3, 7, 9, {"type": "max_pool2d", "kernel_size": 2}),
    "max_3x3_stride2_ties": (2, 3, 9, 8, {"type": "max_pool2d", "kernel_size": 3, "stride": 2}),
    "max_rect_overlap_ties": (2, 2, 7, 8, {"type": "max_pool2d", "kernel_size": [2, 3], "stride": [1, 2]}),
    "avg_2x2_odd": (3, 3, 7, 9, {"type": "avg_pool2d", "kernel_size": 2}),
    "avg_3x3_stride2": (2, 3, 9, 8, {"type": "avg_pool2d", "kernel_size": 3, "stride": 2}),
    "global_avg": (3, 5, 7, 6, {"type": "global_avg_pool2d"}),
    "batch_norm2d": (4, 3, 5, 7, {"type": "batch_norm2d", "momentum": 0.1, "eps": 1e-5}),
}
TIES = ("max_2x2_odd_ties", "max_3x3_stride2_ties", "max_rect_overlap_ties")


def inputs(name):
    """The input, parameters and upstream gradient of a case (float64, NumPy seed 0 + case index)."""
    n, c, h, w, spec = CASES[name]
    rng = np.random.default_rng(list(CASES).index(name))
    x = rng.standard_normal((n, c, h, w))
    if name in TIES:
        x = np.round(x * 2) / 2              # a coarse grid: equal maxima in many windows
    params = {}
    if spec["type"] == "conv2d":
        kh, kw = (spec["kernel_size"],) * 2 if isinstance(spec["kernel_size"], int) else spec["kernel_size"]
        params["W"] = rng.standard_normal((spec["out_channels"], c, kh, kw)) * 0.3
        if spec.get("bias", True):
            params["b"] = rng.standard_normal(spec["out_channels"])
    if spec["type"] == "batch_norm2d":
        params["gamma"] = 1 + 0.5 * rng.standard_normal(c)
        params["beta"] = rng.standard_normal(c)
    return x, params, rng


def torch_case(name):
    """{x, params..., grad_out, y, dx, d<param>...} as torch computes them (float64)."""
    import torch
    import torch.nn.functional as F
    n, c, h, w, spec = CASES[name]
    x, params, rng = inputs(name)
    xt = torch.tensor(x, requires_grad=True)
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    kind = spec["type"]
    extra = {}
    if kind == "conv2d":
        y = F.conv2d(xt, pt["W"], pt.get("b"), stride=spec["stride"], padding=spec["padding"])
    elif kind == "max_pool2d":
        y = F.max_pool2d(xt, spec["kernel_size"], spec.get("stride"))
    elif kind == "avg_pool2d":
        y = F.avg_pool2d(xt, spec["kernel_size"], spec.get("stride"))
    elif kind == "global_avg_pool2d":
        y = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    else:
        mean, var = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
        y = F.batch_norm(xt, mean, var, pt["gamma"], pt["beta"], training=True, momentum=spec["momentum"],
                         eps=spec["eps"])
        extra = {"running_mean": mean.numpy().copy(), "running_var": var.numpy().copy()}
        with torch.no_grad():
            extra["y_eval"] = F.batch_norm(xt, mean, var, pt["gamma"], pt["beta"], training=False,
                                           eps=spec["eps"]).numpy().copy()
    grad_out = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(grad_out))
    out = {"x": x, "grad_out": grad_out, "y": y.detach().numpy().copy(), "dx": xt.grad.numpy().copy(), **extra}
    for k, v in params.items():
        out[k] = v
        out[f"d{k}"] = pt[k].grad.numpy().copy()
    return out


def main():
    import torch
    arrays = {}
    for name in CASES:
        for key, value in torch_case(name).items():
            arrays[f"{name}.{key}"] = value
    meta = {"torch": torch.__version__, "cases": {k: list(v[:4]) + [v[4]] for k, v in CASES.items()}}
    np.savez_compressed(OUT, __meta__=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {OUT} (torch {torch.__version__}, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
