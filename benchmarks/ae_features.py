#!/usr/bin/env python3
"""Encoder features → a small classifier, measured directly (until `train.py --features` lands).

    python benchmarks/ae_features.py MODEL.npz [--layer bottleneck] [classifier flags ...]

Loads a saved network (e.g. an autoencoder from `train.py --task autoencoder --save_model
MODEL.npz`), takes the output of one layer — by tag ("bottleneck", "reconstruction") or by index
into the saved spec's layers — for the training, validation and test images of exactly the split
train.py uses, and trains a classifier on those features through the same `experiment.train`
path as train.py. Remaining arguments are train.py flags for the classifier (defaults below).
Prints the feature width, validation and test accuracy, and the seconds taken.

This is what `python train.py --features MODEL.npz:bottleneck ...` (issue 14) does as a run;
this script logs nothing and writes nothing.
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlp.cli.flags import parse_train_args  # noqa: E402
from mlp.core.model_file import load_model  # noqa: E402
from mlp.runs.data import load_dataset  # noqa: E402
from mlp.runs.experiment import train  # noqa: E402

CLASSIFIER = ["--hidden_sizes", "256", "-o", "adam", "-lr", "1e-3", "-b", "128", "-e", "20", "--dropout", "0.2"]


def layer_index(net, ref: str) -> int:
    if ref.lstrip("-").isdigit():
        index = int(ref)
        return index % len(net.layers)
    for i, layer in enumerate(net.layers):
        if layer.tag == ref:
            return i
    raise SystemExit(f"error: no layer tagged {ref!r}; tags: {[layer.tag for layer in net.layers if layer.tag]}")


def features(net, x, index, batch=4096):
    """The output of layer `index` in evaluation mode (what the frozen model computes there)."""
    out = []
    for i in range(0, len(x), batch):
        h = x[i:i + batch].astype(net.dtype)
        for layer in net.layers[:index + 1]:
            h = layer.forward(h, training=False)
        out.append(np.asarray(h, dtype=np.float32))
    return np.concatenate(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--layer", default="bottleneck", help="a layer tag or index (default: bottleneck)")
    args, rest = p.parse_known_args(argv)
    config = parse_train_args([*CLASSIFIER, *rest, "--wandb_mode", "disabled"])
    net = load_model(args.model)
    index = layer_index(net, args.layer)
    data = load_dataset(config["dataset"], data_dir=config["data_dir"], split=config["split"],
                        val_fraction=config["val_fraction"])
    started = time.perf_counter()
    encoded = replace(data, x_train=features(net, data.x_train, index), x_val=features(net, data.x_val, index),
                      x_test=features(net, data.x_test, index))
    print(f"layer {index} ({net.layers[index].spec()['type']}, tag {net.layers[index].tag}): "
          f"{encoded.x_train.shape[1]} features", flush=True)
    clf, history = train(config, encoded, progress=True)
    _, test_accuracy, _ = clf.evaluate(encoded.x_test, encoded.y_test)
    print(f"val_accuracy {history[-1]['val_accuracy']:.4f}  test_accuracy {test_accuracy:.4f}  "
          f"({time.perf_counter() - started:.1f}s, features included)")


if __name__ == "__main__":
    main()
