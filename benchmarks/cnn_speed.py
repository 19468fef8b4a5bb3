#!/usr/bin/env python3
"""One epoch of the `--preset cnn` network on the 54,000-image Fashion-MNIST training split: mlp vs
the same network in PyTorch (CPU), side by side. Needs the `bench` extra (torch, threadpoolctl).

    python benchmarks/cnn_speed.py --repeats 5 --out benchmarks/cnn_results.md
    python benchmarks/cnn_speed.py --quick                  # a few batches: a smoke test
    python benchmarks/cnn_speed.py --profile                # where mlp's epoch goes, layer by layer

Method, as benchmarks/epoch_speed.py: every run is a fresh process (its peak RSS is its own) that
loads the data, warms up on a throwaway network for a few batches, then times one epoch of a new
one: shuffle, gather each batch, forward, backward, optimizer step, running loss and accuracy.
The two alternate, the order rotating every repeat, so that load from other processes hits both
alike; the table shows medians. Both use the same number of threads. The network, optimizer and
batch size are the preset's (mlp.config.PRESETS["cnn"]); the learning-rate schedule and the flips
are left out of both (they cost next to nothing and are not what is compared). The GEMM floor is
np.matmul on exactly the matrix products of one training step, in the same alternation.
"""
import argparse
import collections
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this tree's mlp, installed or not

import epoch_speed  # noqa: E402  (this folder: the same method, loop and scaffolding)
from epoch_speed import WARMUP_BATCHES, machine, torch_epoch_seconds  # noqa: E402

FRAMEWORKS = ("ours", "torch")
QUICK_BATCHES = 20
TARGET = 0.5      # mlp's speed as a fraction of PyTorch's (issue 14)


def preset():
    from mlp import config as C
    return C.resolve({"preset": "cnn"})


def run_ours(config, x, y, threads):
    from mlp.runs.experiment import build
    from mlp.runs.training import FitOptions, fit
    bs = config["batch_size"]
    net, opt = build(config)  # warm-up on a throwaway network
    fit(net, opt, (x[:WARMUP_BATCHES * bs], y[:WARMUP_BATCHES * bs]), (x[:0], y[:0]),
        FitOptions(epochs=1, batch_size=bs, seed=1, progress=False))
    net, opt = build(config)
    start = time.perf_counter()
    fit(net, opt, (x, y), (x[:0], y[:0]), FitOptions(epochs=1, batch_size=bs, seed=0, progress=False))
    return time.perf_counter() - start


def torch_twin(torch, config):
    """The same layers as mlp's network for `config`, built from its layer specs."""
    from mlp.core.builders import layer_shapes
    from mlp.networks import layer_specs
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
            "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "gelu": nn.GELU}
    modules, shape = [], (784,)
    for layer, out_shape, params, _ in layer_shapes(layer_specs(config), (784,)):
        spec = layer.spec()
        kind = spec["type"]
        if kind == "reshape":
            modules.append(nn.Unflatten(1, tuple(spec["shape"])))
        elif kind == "conv2d":
            modules.append(nn.Conv2d(shape[0], spec["out_channels"], spec["kernel_size"], spec["stride"],
                                     spec["padding"] if isinstance(spec["padding"], (int, str)) else tuple(spec["padding"]),
                                     bias=spec["bias"]))
        elif kind == "batch_norm2d":
            modules.append(nn.BatchNorm2d(shape[0]))
        elif kind == "batch_norm":
            modules.append(nn.BatchNorm1d(shape[0]))
        elif kind == "activation":
            modules.append(acts[spec["name"]]())
        elif kind == "max_pool2d":
            modules.append(nn.MaxPool2d(spec["kernel_size"], spec["stride"]))
        elif kind == "avg_pool2d":
            modules.append(nn.AvgPool2d(spec["kernel_size"], spec["stride"]))
        elif kind == "global_avg_pool2d":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "dropout":
            modules.append(nn.Dropout(spec["rate"]))
        elif kind == "dense":
            modules.append(nn.Linear(shape[0], spec["units"], bias=spec["bias"]))
        else:
            raise SystemExit(f"no PyTorch twin for layer {kind}")
        shape = out_shape
    net = nn.Sequential(*modules)
    if config["optimizer"] != "adam":
        raise SystemExit("the PyTorch twin implements the preset's optimizer, adam, only")
    opt = torch.optim.Adam(net.parameters(), lr=config["learning_rate"], betas=(config["beta1"], config["beta2"]),
                           eps=config["epsilon"])
    return net, opt


def run_torch(config, x, y, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch_epoch_seconds(torch, lambda: torch_twin(torch, config), x, y, config["batch_size"],
                               torch.nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"]))


def gemm_products(config):
    """(a, b) operand shapes of every matrix product of one training step of mlp's network, as
    its layers run them, and their FLOPs."""
    from mlp.core.builders import layer_shapes
    from mlp.networks import layer_specs
    n, shape, products = config["batch_size"], (784,), []
    first = True
    for layer, out_shape, params, _ in layer_shapes(layer_specs(config), (784,)):
        spec = layer.spec()
        if spec["type"] == "conv2d":
            c, (f, oh, ow) = shape[0], out_shape
            k = layer.kernel[0] * layer.kernel[1]
            m = n * oh * ow
            products += [((m, k * c), (k * c, f)), ((f, m), (m, k * c))]        # forward, weight gradient
            if not first:
                products.append(((n * shape[1] * shape[2], k * f), (k * f, c)))  # input gradient
            first = False
        elif spec["type"] == "dense":
            products += [((n, shape[0]), (shape[0], out_shape[0])), ((shape[0], n), (n, out_shape[0])),
                         ((n, out_shape[0]), (out_shape[0], shape[0]))]
            first = False
        shape = out_shape
    flops = sum(2 * a[0] * a[1] * b[1] for a, b in products)
    return products, flops


def gemm_seconds(config, seconds):
    """Median time of np.matmul over one training step's matrix products (float32)."""
    import numpy as np
    products, _ = gemm_products(config)
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal(a, dtype=np.float32), rng.standard_normal(b, dtype=np.float32),
               np.empty((a[0], b[1]), np.float32)) for a, b in products]

    def step():
        for a, b, out in arrays:
            np.matmul(a, b, out=out)

    step()
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_ours(config, x, y):
    """Seconds per layer (forward, backward), loss, optimizer step and the rest for one epoch."""
    from mlp.runs.experiment import build
    from mlp.runs.training import FitOptions, fit
    net, opt = build(config)
    spent = collections.Counter()

    def timed(name, f):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    for name, layer in zip(net.layer_names(), net.layers):
        layer.forward = timed(f"{name} forward", layer.forward)
        layer.backward = timed(f"{name} backward", layer.backward)
    net._loss = timed("loss", net._loss)
    opt.step = timed("optimizer step", opt.step)
    start = time.perf_counter()
    fit(net, opt, (x, y), (x[:0], y[:0]), FitOptions(epochs=1, batch_size=config["batch_size"], seed=0, progress=False))
    total = time.perf_counter() - start
    spent["other (gather, Python)"] = total - sum(spent.values())
    return {"total": total, "phases": dict(spent)}


def child(spec):
    from threadpoolctl import threadpool_limits
    keep = threadpool_limits(limits=spec["threads"])  # noqa: F841
    config = preset()
    if spec["framework"] == "gemm":
        out = {"seconds": gemm_seconds(config, spec["gemm_seconds"])}
    else:
        from mlp import load_dataset
        data = load_dataset("fashion_mnist", data_dir=spec["data_dir"])
        n = spec["batches"] * config["batch_size"] if spec["batches"] else len(data.x_train)
        x, y = data.x_train[:n], data.y_train[:n]
        del data
        if spec["framework"] == "profile":
            out = profile_ours(config, x, y)
        else:
            out = {"seconds": {"ours": run_ours, "torch": run_torch}[spec["framework"]](config, x, y, spec["threads"]),
                   "samples": len(x)}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)


def run_child(spec):
    return epoch_speed.run_child(spec, __file__)


def describe_network(config):
    from mlp import config as C
    from mlp.core.builders import layer_shapes
    from mlp.networks import layer_specs
    rows = layer_shapes(layer_specs(config), (784,))
    params = sum(int(__import__("math").prod(s)) for _, _, p, _ in rows for s in p.values())
    return (f"conv {config['conv_filters']} (k{config['kernel_size']}, {config['padding']}, "
            f"{config['pool']} pool{', batch norm' if config['batch_norm'] else ''}) → dense "
            f"{C.hidden_widths(config)} → 10; {params:,} parameters; batch {config['batch_size']}, "
            f"{config['optimizer']}")


def report(args, times, rss, samples, gemm):
    import numpy
    import torch
    config = preset()
    med = {fw: statistics.median(v) for fw, v in times.items()}
    ratio = med["torch"] / med["ours"]
    _, flops = gemm_products(config)
    steps = -(-samples // config["batch_size"])
    floor = statistics.median(gemm) * steps
    lines = [
        f"# CNN epoch speed: mlp vs PyTorch{' (QUICK smoke run, not a measurement)' if args.quick else ''}",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {machine()} ({os.cpu_count()} logical CPUs); load average at start {args.load_at_start}",
        f"- python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}",
        f"- network (`--preset cnn`): {describe_network(config)}",
        f"- threads: {args.threads} for both; {args.repeats} run(s) each, alternated, fresh processes; medians; "
        f"one epoch = {samples:,} images",
        "",
        "| | mlp | PyTorch | mlp's speed vs PyTorch | peak RSS mlp / PyTorch |",
        "|---|---:|---:|---:|---:|",
        f"| one epoch | {med['ours']:.1f} s | {med['torch']:.1f} s | {ratio:.2f}× | "
        f"{statistics.median(rss['ours']):.0f} / {statistics.median(rss['torch']):.0f} MB |",
        "",
        f"Matrix products: {flops * steps / 1e12:.2f} TFLOP per epoch; np.matmul alone takes "
        f"**{floor:.1f} s** for them on this machine (the GEMM floor: {100 * floor / med['ours']:.0f}% of mlp's "
        f"epoch), the rest is memory-bound NumPy passes (im2col copies, batch norm, pooling, activations).",
        "",
        f"Target (issue 14): mlp ≥ {TARGET}× PyTorch's speed — {ratio:.2f}× — "
        f"{'met' if ratio >= TARGET else 'NOT met'}.",
        "",
        "All runs (seconds): " + "; ".join(f"{fw} {', '.join(f'{v:.1f}' for v in vals)}" for fw, vals in times.items()),
        f"GEMM floor per step (s): {', '.join(f'{v:.4f}' for v in gemm)}",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_BATCHES} batches per run: a smoke test")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", type=Path, help="also write the Markdown to this file")
    p.add_argument("--profile", action="store_true", help="time each layer of mlp's epoch instead")
    p.add_argument("--data_dir", help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    args.load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base = {"threads": args.threads, "batches": QUICK_BATCHES if args.quick else 0, "data_dir": args.data_dir}
    if args.profile:
        runs = sorted((run_child({**base, "framework": "profile"}) for _ in range(args.repeats)),
                      key=lambda r: r["total"])
        run = runs[len(runs) // 2]
        lines = [f"# Where mlp's CNN epoch goes ({args.threads} threads, median of {args.repeats}; load average "
                 f"at start {args.load_at_start}): {run['total']:.1f} s", "", "| phase | seconds | share |",
                 "|---|---:|---:|"]
        lines += [f"| {name} | {sec:.2f} | {100 * sec / run['total']:.0f}% |"
                  for name, sec in sorted(run["phases"].items(), key=lambda kv: -kv[1]) if sec >= 0.005 * run["total"]]
        table = "\n".join(lines) + "\n"
    else:
        times, rss, gemm, samples = {}, {}, [], 0
        for r in range(args.repeats):
            order = FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]
            for fw in order:
                out = run_child({**base, "framework": fw})
                times.setdefault(fw, []).append(out["seconds"])
                rss.setdefault(fw, []).append(out["peak_rss_mb"])
                samples = out["samples"]
                print(f"repeat {r + 1}/{args.repeats} {fw:6s} {out['seconds']:.1f}s rss={out['peak_rss_mb']:.0f}MB",
                      file=sys.stderr, flush=True)
            gemm.append(run_child({**base, "framework": "gemm", "gemm_seconds": 0.5 if args.quick else 3.0})["seconds"])
        table = report(args, times, rss, samples, gemm)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
