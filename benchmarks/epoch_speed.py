#!/usr/bin/env python3
"""One epoch of training on the 54,000-image Fashion-MNIST training split: mlp vs PyTorch vs
scikit-learn, for three MLPs. Needs the `bench` extra (torch, threadpoolctl) and scikit-learn.

    python benchmarks/epoch_speed.py                          # 3 repeats, table on stdout
    python benchmarks/epoch_speed.py --repeats 5 --out benchmarks/results.md
    python benchmarks/epoch_speed.py --quick                  # a few batches: smoke test only

Configurations: (a) 784-128×4-10, batch 16, Adam; (b) 784-1024-1024-10, batch 128, Adam;
(c) the default configuration of train.py (`mlp.config.DEFAULTS`), with its optimizer.

Method (see benchmarks/README.md): every run is a fresh subprocess (so its peak RSS is its own)
that loads the data, warms up on a throwaway model for a few batches, then times one epoch of a
new model. The frameworks' runs alternate (the order rotates every repeat) so that load from other
processes hits them alike; the table shows medians. All three use the same number of threads.
The float32 GEMM rate is np.matmul on exactly the matrix products of one training step of (b),
measured in the same alternation.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this tree's mlp, installed or not

FRAMEWORKS = ("ours", "torch", "sklearn")
WARMUP_BATCHES = 5
QUICK_BATCHES = 30
# Issue 5's targets, and issue 16's for (b) (speed relative to PyTorch, share of the GEMM rate).
TARGETS = {"a_vs_torch": 2.0, "b_vs_torch": 1.5, "b_gemm_fraction": 0.60, "b_rss_mb": 600}
TARGETS_16 = {"b_vs_torch": 1.2, "b_gemm_fraction": 0.70}


# ---- configurations -----------------------------------------------------------------------

def configurations():
    """The three benchmarked networks; (c) is read from train.py's defaults."""
    from mlp.config import DEFAULTS as d
    from mlp import optimizers

    widths = list(d["hidden_sizes"]) if d.get("hidden_sizes") else [int(d["hidden_size"])] * int(d["num_layers"])
    default_opt = optimizers.canonical_name(d["optimizer"])
    common = {"activation": "relu", "weight_init": "xavier", "loss": "cross_entropy"}
    adam = {"optimizer": "adam", "hyper": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}}
    shape = "-".join(str(w) for w in widths) if len(set(widths)) > 1 else f"{widths[0]}×{len(widths)}"
    return {
        "a": {**common, **adam, "name": "(a) 784-128×4-10, batch 16, adam",
              "sizes": [784, 128, 128, 128, 128, 10], "batch_size": 16, "weight_decay": 0.0},
        "b": {**common, **adam, "name": "(b) 784-1024-1024-10, batch 128, adam",
              "sizes": [784, 1024, 1024, 10], "batch_size": 128, "weight_decay": 0.0},
        "c": {"name": f"(c) default: 784-{shape}-10, batch {d['batch_size']}, {default_opt}, "
                      f"weight decay {d['weight_decay']:g}",
              "sizes": [784, *widths, 10], "batch_size": int(d["batch_size"]),
              "activation": d["activation"], "weight_init": d["weight_init"], "loss": d["loss"],
              "weight_decay": float(d["weight_decay"]), "optimizer": default_opt,
              "hyper": {k: d[k] for k in optimizers.hyperparameter_names(default_opt) if d.get(k) is not None}},
    }


def exact_flops(sizes, n):
    """FLOPs of the matrix products of one epoch over n samples: per layer 2·n·fan_in·fan_out for
    the forward pass and as much for the weight gradient, plus as much for the input gradient
    except in the first layer (nobody needs the gradient w.r.t. the pixels)."""
    per = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    return 2 * n * (2 * sum(per) + sum(per[1:]))


# ---- the three training loops (run inside a child process) --------------------------------

def limit_threads(threads):
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)  # kept alive by the caller


def run_ours(cfg, x, y, threads):
    from mlp import MLP, optimizers
    from mlp.runs.training import FitOptions, fit

    def build():
        net = MLP(cfg["sizes"], activation=cfg["activation"], weight_init=cfg["weight_init"],
                  loss=cfg["loss"], weight_decay=cfg["weight_decay"], seed=0, dtype="float32")
        return net, optimizers.get(cfg["optimizer"], **cfg["hyper"])

    bs = cfg["batch_size"]
    net, opt = build()  # warm-up on a throwaway model
    fit(net, opt, (x[:WARMUP_BATCHES * bs], y[:WARMUP_BATCHES * bs]), (x[:0], y[:0]),
        FitOptions(epochs=1, batch_size=bs, seed=1, progress=False))
    net, opt = build()
    start = time.perf_counter()
    fit(net, opt, (x, y), (x[:0], y[:0]), FitOptions(epochs=1, batch_size=bs, seed=0, progress=False))
    return time.perf_counter() - start


def _torch_twin(torch, cfg):
    """The same network in PyTorch: same initialisation scheme, zero biases, the optimizer's
    PyTorch twin with weight decay on the weights only (as mlp does)."""
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
            "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "gelu": nn.GELU}
    inits = {"xavier": nn.init.xavier_normal_, "xavier_uniform": nn.init.xavier_uniform_,
             "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
             "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
             "random": lambda w: nn.init.uniform_(w, -w.shape[1] ** -0.5, w.shape[1] ** -0.5),
             "normal": lambda w: nn.init.normal_(w, 0.0, 0.01), "zero": nn.init.zeros_}
    from mlp import activations, initializers
    act = acts[activations.canonical_name(cfg["activation"])]
    init = inits[initializers.canonical_name(cfg["weight_init"])]
    layers, linears = [], []
    sizes = cfg["sizes"]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            init(lin.weight)
            lin.bias.zero_()
        layers.append(lin)
        linears.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
    net = nn.Sequential(*layers)
    h = cfg["hyper"]
    groups = [{"params": [m.weight for m in linears], "weight_decay": cfg["weight_decay"]},
              {"params": [m.bias for m in linears], "weight_decay": 0.0}]
    lr = h["learning_rate"]
    name = cfg["optimizer"]
    if name in ("adam", "nadam"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.NAdam
        opt = cls(groups, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["epsilon"])
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=h["beta"], eps=h["epsilon"])
    elif name in ("sgd", "momentum", "nag"):
        opt = torch.optim.SGD(groups, lr=lr, momentum=h.get("momentum", 0.0), nesterov=name == "nag")
    else:
        raise SystemExit(f"optimizer {name!r} has no PyTorch twin")
    return net, opt


def torch_epoch_seconds(torch, make_twin, x, y, batch_size, loss_fn):
    """Seconds of one training epoch of a fresh PyTorch twin (`make_twin()` -> (net, optimizer)),
    after a warm-up of WARMUP_BATCHES batches on a throwaway one. The loop mirrors
    mlp.runs.training.fit: shuffle, gather each batch, step, and keep the epoch's running loss and
    accuracy. (benchmarks/cnn_speed.py times its CNN with it too.)"""
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(net, opt, n):
        net.train()
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(dim=1) == yb).sum())
        return loss_sum / n, correct / n

    net, opt = make_twin()  # warm-up on a throwaway model
    epoch(net, opt, min(len(X), WARMUP_BATCHES * batch_size))
    net, opt = make_twin()
    start = time.perf_counter()
    epoch(net, opt, len(X))
    return time.perf_counter() - start


def run_torch(cfg, x, y, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if cfg["loss"] != "cross_entropy":
        raise SystemExit("the PyTorch loop implements cross_entropy only")
    return torch_epoch_seconds(torch, lambda: _torch_twin(torch, cfg), x, y, cfg["batch_size"],
                               torch.nn.CrossEntropyLoss())


def _sklearn_model(cfg, max_iter=1):
    from sklearn.neural_network import MLPClassifier
    acts = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity"}
    from mlp import activations
    act = activations.canonical_name(cfg["activation"])
    if act not in acts:
        raise SystemExit(f"scikit-learn has no {act} activation")
    h = cfg["hyper"]
    # scikit-learn has adam and sgd only: nadam/rmsprop configurations run with adam. Its
    # alpha·W is added to the batch *sum* of gradients: alpha = λ·batch_size matches λ.
    return MLPClassifier(hidden_layer_sizes=tuple(cfg["sizes"][1:-1]), activation=acts[act],
                         solver="adam", alpha=cfg["weight_decay"] * cfg["batch_size"],
                         batch_size=cfg["batch_size"], learning_rate_init=h["learning_rate"],
                         beta_1=h.get("beta1", 0.9), beta_2=h.get("beta2", 0.999),
                         epsilon=h.get("epsilon", 1e-8), max_iter=max_iter, shuffle=True,
                         random_state=0)


def run_sklearn(cfg, x, y, threads):
    from sklearn.exceptions import ConvergenceWarning
    bs = cfg["batch_size"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 is the point
        _sklearn_model(cfg).fit(x[:WARMUP_BATCHES * bs], y[:WARMUP_BATCHES * bs])  # warm-up
        model = _sklearn_model(cfg)
        start = time.perf_counter()
        model.fit(x, y)
        return time.perf_counter() - start


RUNNERS = {"ours": run_ours, "torch": run_torch, "sklearn": run_sklearn}

PHASES = {
    "Dense.forward": "Dense forward (GEMM x·W, + bias)",
    "Dense.backward": "Dense backward (GEMMs xᵀ·g and g·Wᵀ, bias gradient)",
    "Activation.forward": "activation forward",
    "Activation.backward": "activation backward (ReLU mask)",
    "loss": "loss (softmax cross-entropy and its gradient)",
    "optimizer.step": "optimizer step",
    "other": "other: batch gather, weight decay, per-batch loss/accuracy, Python",
}


def profile_ours(cfg, x, y, threads):
    """Where one epoch of mlp's training goes: timers around every layer's forward and backward,
    the loss and the optimizer step (a few µs of timer overhead per batch land in "other")."""
    import collections
    from mlp import MLP, optimizers
    from mlp.runs.training import FitOptions, fit

    net = MLP(cfg["sizes"], activation=cfg["activation"], weight_init=cfg["weight_init"],
              loss=cfg["loss"], weight_decay=cfg["weight_decay"], seed=0, dtype="float32")
    opt = optimizers.get(cfg["optimizer"], **cfg["hyper"])
    spent = collections.Counter()

    def timed(name, f):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    for layer in net.layers:
        kind = type(layer).__name__
        layer.forward = timed(f"{kind}.forward", layer.forward)
        layer.backward = timed(f"{kind}.backward", layer.backward)
    net._loss = timed("loss", net._loss)
    opt.step = timed("optimizer.step", opt.step)
    start = time.perf_counter()
    fit(net, opt, (x, y), (x[:0], y[:0]), FitOptions(epochs=1, batch_size=cfg["batch_size"], seed=0, progress=False))
    total = time.perf_counter() - start
    spent["other"] = total - sum(spent.values())
    return {"total": total, "phases": dict(spent)}


def gemm_rate(threads, seconds):
    """GFLOP/s of np.matmul (float32) on the matrix products of one training step of (b), in the
    layouts the Dense layers use them: x@W, x.T@g and g@W.T."""
    import numpy as np
    sizes, n = configurations()["b"]["sizes"], configurations()["b"]["batch_size"]
    rng = np.random.default_rng(0)
    products, flops = [], 0
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        x = rng.standard_normal((n, fan_in), dtype=np.float32)
        W = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        g = rng.standard_normal((n, fan_out), dtype=np.float32)
        products.append((x, W, np.empty((n, fan_out), np.float32)))
        products.append((x.T, g, np.empty((fan_in, fan_out), np.float32)))
        flops += 4 * n * fan_in * fan_out
        if i > 0:
            products.append((g, W.T, np.empty((n, fan_in), np.float32)))
            flops += 2 * n * fan_in * fan_out

    def one_step():
        for a, b, out in products:
            np.matmul(a, b, out=out)

    one_step()
    rates, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        for _ in range(5):
            one_step()
        rates.append(5 * flops / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def child(spec):
    """Run one measurement in this (fresh) process and print one JSON line."""
    threads = spec["threads"]
    keep = limit_threads(threads)  # noqa: F841  (the limit holds while `keep` lives)
    if spec["framework"] == "gemm":
        out = {"gflops": gemm_rate(threads, spec["gemm_seconds"])}
    elif spec["framework"] == "profile":
        from mlp import load_dataset
        data = load_dataset("fashion_mnist", data_dir=spec["data_dir"])
        cfg = configurations()[spec["configs"][0]]
        n = spec["batches"] * cfg["batch_size"] if spec["batches"] else len(data.x_train)
        out = profile_ours(cfg, data.x_train[:n], data.y_train[:n], threads)
    else:
        from mlp import load_dataset
        data = load_dataset("fashion_mnist", data_dir=spec["data_dir"])
        x, y = data.x_train, data.y_train
        del data
        out = {"seconds": {}}
        for key in spec["configs"]:
            cfg = configurations()[key]
            n = spec["batches"] * cfg["batch_size"] if spec["batches"] else len(x)
            out["seconds"][key] = RUNNERS[spec["framework"]](cfg, x[:n], y[:n], threads)
            out.setdefault("samples", {})[key] = min(n, len(x))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(out), flush=True)


def run_child(spec, script=__file__):
    """Run `script --child SPEC` (this benchmark, or another built on it) in a fresh Python; its
    last line of output, parsed as JSON."""
    proc = subprocess.run([sys.executable, str(Path(script).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {spec['framework']} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the report ----------------------------------------------------------------------------

def machine():
    """The CPU's model name."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    return cpu


def versions():
    import numpy
    import sklearn
    out = {"python": platform.python_version(), "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "not installed"
    return out


def fmt_runs(values):
    return ", ".join(f"{v:.2f}" for v in values)


def report(args, cfgs, times, rss, samples, gemm):
    med = {k: statistics.median(v) for k, v in times.items()}
    v = versions()
    lines = [
        f"# Epoch speed: mlp vs PyTorch vs scikit-learn{' (QUICK smoke run, not a measurement)' if args.quick else ''}",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {machine()} ({os.cpu_count()} logical CPUs); load average at start {args.load_at_start}",
        f"- python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, scikit-learn {v['scikit-learn']}",
        f"- threads: {args.threads} for every framework (BLAS via threadpoolctl, torch.set_num_threads)",
        f"- {args.repeats} run(s) per cell, alternated, each in a fresh process; medians; "
        + (f"at most {QUICK_BATCHES} batches per run (--quick)" if args.quick
           else f"one epoch = {max(samples.values()):,} training images"),
        "",
        "| configuration | mlp (s) | PyTorch (s) | scikit-learn (s) | mlp vs PyTorch | mlp vs scikit-learn "
        "| peak RSS mlp / PyTorch / scikit-learn (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, cfg in cfgs.items():
        cells = [cfg["name"]]
        for fw in FRAMEWORKS:
            cells.append(f"{med[(key, fw)]:.2f}" if (key, fw) in med else "n/a")
        for fw in ("torch", "sklearn"):
            cells.append(f"{med[(key, fw)] / med[(key, 'ours')]:.2f}× faster" if (key, fw) in med else "n/a")
        cells.append(" / ".join(f"{statistics.median(rss[(key, fw)]):.0f}" if (key, fw) in rss else "n/a"
                                for fw in FRAMEWORKS))
        lines.append("| " + " | ".join(cells) + " |")

    b = cfgs["b"]
    flops = exact_flops(b["sizes"], samples["b"])
    flops6 = 6 * samples["b"] * sum(i * o + o for i, o in zip(b["sizes"][:-1], b["sizes"][1:]))
    achieved = flops / med[("b", "ours")] / 1e9
    gemm_med = statistics.median(gemm)
    lines += [
        "",
        f"float32 GEMM rate of this machine: **{gemm_med:.1f} GFLOP/s** (np.matmul on the matrix products "
        f"of one (b) training step, {args.threads} threads; runs: {fmt_runs(gemm)}).",
        f"(b) does {flops / 1e12:.3f} TFLOP of matrix products per epoch (exact count; 6·N·params would "
        f"say {flops6 / 1e12:.3f}), i.e. {achieved:.1f} GFLOP/s = **{100 * achieved / gemm_med:.0f}% of the "
        f"GEMM rate**.",
        "",
        "Targets (issue 5):",
        "",
    ]
    ra = med[("a", "torch")] / med[("a", "ours")]
    rb = med[("b", "torch")] / med[("b", "ours")]
    rss_b = statistics.median(rss[("b", "ours")])

    def check(ok):
        return "met" if ok else "NOT met"

    lines += [
        f"- (a) ≥ {TARGETS['a_vs_torch']}× faster than PyTorch: {ra:.2f}× — {check(ra >= TARGETS['a_vs_torch'])}",
        f"- (b) ≥ {TARGETS['b_vs_torch']}× faster than PyTorch: {rb:.2f}× — {check(rb >= TARGETS['b_vs_torch'])}",
        f"- (b) ≥ {100 * TARGETS['b_gemm_fraction']:.0f}% of the GEMM rate: {100 * achieved / gemm_med:.0f}% — "
        f"{check(achieved / gemm_med >= TARGETS['b_gemm_fraction'])}",
        f"- (b) peak RSS ≤ {TARGETS['b_rss_mb']} MB: {rss_b:.0f} MB — {check(rss_b <= TARGETS['b_rss_mb'])}",
        "",
        "Targets (issue 16; also: (a) and (c) no slower, peak RSS no higher than before):",
        "",
        f"- (b) ≥ {TARGETS_16['b_vs_torch']}× faster than PyTorch: {rb:.2f}× — {check(rb >= TARGETS_16['b_vs_torch'])}",
        f"- (b) ≥ {100 * TARGETS_16['b_gemm_fraction']:.0f}% of the GEMM rate: {100 * achieved / gemm_med:.0f}% — "
        f"{check(achieved / gemm_med >= TARGETS_16['b_gemm_fraction'])}",
        "",
        "All runs (seconds):",
        "",
    ]
    for key in cfgs:
        lines.append(f"- {key}: " + "; ".join(f"{fw} {fmt_runs(times[(key, fw)])}" for fw in FRAMEWORKS
                                               if (key, fw) in times))
    return "\n".join(lines) + "\n"


def profile_report(args, cfgs, runs):
    lines = [f"# Where mlp's training epoch goes ({args.threads} threads, "
             f"{'%d batches' % QUICK_BATCHES if args.quick else 'one epoch'}, run with the median total of "
             f"{args.repeats}; load average at start {args.load_at_start})", ""]
    for key, cfg in cfgs.items():
        run = sorted(runs[key], key=lambda r: r["total"])[len(runs[key]) // 2]
        lines += [f"{cfg['name']}: {run['total']:.2f} s", "", "| phase | seconds | share |", "|---|---:|---:|"]
        for name, sec in sorted(run["phases"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {PHASES.get(name, name)} | {sec:.2f} | {100 * sec / run['total']:.0f}% |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per framework and configuration (median)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_BATCHES} batches per run and one process per framework: a smoke test")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every framework")
    p.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset of "
                   + ",".join(FRAMEWORKS) + " (ours is always run)")
    p.add_argument("--profile", action="store_true",
                   help="instead of comparing, show where mlp's epoch goes (time per phase)")
    p.add_argument("--data_dir", help="folder with the Fashion-MNIST IDX files (default: mlp's usual sources)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be ≥ 1")
    frameworks = ["ours"] + [f for f in args.frameworks.split(",") if f in FRAMEWORKS and f != "ours"]
    args.load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cfgs = configurations()
    batches = QUICK_BATCHES if args.quick else 0
    times, rss, samples, gemm = {}, {}, {}, []
    base = {"threads": args.threads, "batches": batches, "data_dir": args.data_dir}
    if args.profile:
        runs = {key: [run_child({**base, "framework": "profile", "configs": [key]}) for _ in range(args.repeats)]
                for key in cfgs}
        table = profile_report(args, cfgs, runs)
        print(table)
        if args.out:
            args.out.write_text(table)
        return 0
    # Quick: one process per framework for all configurations. Full: one per (configuration,
    # framework), so each peak RSS belongs to one configuration.
    groups = [list(cfgs)] if args.quick else [[k] for k in cfgs]
    for r in range(args.repeats):
        for gi, group in enumerate(groups):
            k = (r + gi) % len(frameworks)
            for fw in frameworks[k:] + frameworks[:k]:  # rotate the order every time
                out = run_child({**base, "framework": fw, "configs": group})
                for key in group:
                    times.setdefault((key, fw), []).append(out["seconds"][key])
                    rss.setdefault((key, fw), []).append(out["peak_rss_mb"])
                    samples[key] = out["samples"][key]
                print(f"repeat {r + 1}/{args.repeats} {fw:8s} " + " ".join(
                    f"{key}={out['seconds'][key]:.2f}s" for key in group)
                    + f" rss={out['peak_rss_mb']:.0f}MB", file=sys.stderr, flush=True)
        gemm.append(run_child({**base, "framework": "gemm", "gemm_seconds": 0.3 if args.quick else 2.0})["gflops"])
    table = report(args, cfgs, times, rss, samples, gemm)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
