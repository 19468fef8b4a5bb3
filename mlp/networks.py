"""Config → network: the one place a run's network is made from its config (`build_network`).

A config (a mapping of train.py's parameters, as mlp.config resolves them) describes one of three
networks, each a list of layer specs (`layer_specs`) on flat pixels:

* an MLP — per hidden width Dense → [BatchNorm] → activation → [Dropout], then the output Dense
  (mlp.core.network.mlp_layers; built as an `MLP`, whose saved file rebuilds it as one);
* a CNN (`conv_filters`) — [Dropout(pixels)], reshape to the image, per entry of `conv_filters`
  Conv2D(k×k) → [BatchNorm2D] → activation → [2×2 max/avg pool], global average pooling or a
  flatten, [Dropout], then the dense head of an MLP (mlp.core.builders.cnn_layers);
* an autoencoder (`task: autoencoder`) — the MLP of the same flags with as many outputs as inputs,
  then the output activation as a layer of its own; the narrowest hidden layer's activation is
  tagged "bottleneck" (the first when several are), the last layer "reconstruction".

`check_memory` refuses, before anything is allocated, a network whose training would not fit in
this machine's memory. This module reads configs but not the schema (mlp.config, which checks a
CNN's shapes with `layer_specs`, sits above it).
"""
from __future__ import annotations

import os
from typing import Mapping

from mlp.core.builders import cnn_layers, training_bytes

from mlp.core.network import MLP, mlp_config, mlp_layers, Network
from mlp.errors import UsageError

__all__ = ["IMAGE_SHAPE", "BOTTLENECK", "RECONSTRUCTION", "MEMORY_FRACTION", "hidden_widths", "n_outputs",
           "layer_specs", "build_network", "check_memory", "physical_memory"]

IMAGE_SHAPE = (1, 28, 28)     # both datasets: 28×28 grey images, stored as rows of 784 pixels
BOTTLENECK = "bottleneck"
RECONSTRUCTION = "reconstruction"
MEMORY_FRACTION = 0.8         # refuse a network whose training needs more than this share of the RAM


def hidden_widths(config: Mapping) -> list[int]:
    """The hidden layers' widths: `hidden_sizes`, else `num_layers` × `hidden_size`."""
    return list(config["hidden_sizes"]) if config.get("hidden_sizes") else [config["hidden_size"]] * config["num_layers"]


def n_outputs(config: Mapping, n_inputs: int = 784, n_classes: int = 10) -> int:
    """The network's outputs: one score per class, or (an autoencoder) one value per input."""
    return n_inputs if config.get("task") == "autoencoder" else n_classes


def layer_specs(config: Mapping, n_inputs: int = 784, n_classes: int = 10) -> list[dict]:
    """The layer specs of the config's network (see the module docstring)."""
    hidden = hidden_widths(config)
    if config.get("conv_filters"):
        return cnn_layers(IMAGE_SHAPE, config["conv_filters"], kernel_size=config["kernel_size"],
                          padding=config["padding"], pool=config["pool"], hidden=hidden, n_outputs=n_classes,
                          activation=config["activation"], batch_norm=config["batch_norm"],
                          dropout=config["dropout"], input_dropout=config["input_dropout"])
    specs = mlp_layers(_mlp_config(config, [n_inputs, *hidden, n_outputs(config, n_inputs, n_classes)]))
    if config.get("task") == "autoencoder":
        if config["output_activation"] != "identity":
            specs.append({"type": "activation", "name": config["output_activation"]})
        specs[-1]["tag"] = RECONSTRUCTION
        if hidden:
            activations = [i for i, s in enumerate(specs) if s["type"] == "activation"]
            specs[activations[hidden.index(min(hidden))]]["tag"] = BOTTLENECK
    return specs


def _mlp_config(config: Mapping, sizes: list[int]) -> dict:
    return mlp_config(sizes, activation=config["activation"], weight_init=config["weight_init"], loss=config["loss"],
                      weight_decay=config["weight_decay"], dropout=config["dropout"],
                      batch_norm=config["batch_norm"], input_dropout=config["input_dropout"],
                      label_smoothing=config.get("label_smoothing", 0.0))


def build_network(config: Mapping, n_inputs: int = 784, n_classes: int = 10, check: bool = True) -> Network:
    """The config's network with its initial weights drawn from `seed` (checked against this
    machine's memory first, unless `check` is False). A plain MLP is an `MLP`; its weights, and an
    autoencoder's, are drawn in the same order as the MLP of the same widths."""
    if check:
        check_memory(config, n_inputs, n_classes)
    if config.get("conv_filters") or config.get("task") == "autoencoder":
        smoothing = config.get("label_smoothing", 0.0) if config.get("task") != "autoencoder" else 0.0
        return Network(layer_specs(config, n_inputs, n_classes), input_shape=(n_inputs,), loss=config["loss"],
                       weight_decay=config["weight_decay"], label_smoothing=smoothing, seed=config["seed"],
                       weight_init=config["weight_init"])
    return MLP([n_inputs, *hidden_widths(config), n_classes], activation=config["activation"],
               weight_init=config["weight_init"], loss=config["loss"], weight_decay=config["weight_decay"],
               dropout=config["dropout"], batch_norm=config["batch_norm"], seed=config["seed"],
               input_dropout=config["input_dropout"], label_smoothing=config.get("label_smoothing", 0.0))


# ---- memory ---------------------------------------------------------------------------------------------

def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _mlp_bytes(widths: list[int], batch: int, itemsize: int = 4) -> int:
    """Training memory of an MLP, roughly: parameters × (value, gradient, 2 optimizer moments,
    scratch) plus a few activation arrays per layer for one batch and for evaluation chunks."""
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    activations = sum(widths) * (batch + 4096) * 3
    return (params * 6 + activations) * itemsize


def check_memory(config: Mapping, n_inputs: int = 784, n_classes: int = 10) -> None:
    """Refuse, before any allocation, a network whose training cannot fit in this machine's memory."""
    have = physical_memory()
    if not have:
        return
    if config.get("conv_filters"):
        need = training_bytes(layer_specs(config, n_inputs, n_classes), (n_inputs,), config["batch_size"])
        if need > MEMORY_FRACTION * have:
            raise UsageError(f"this CNN needs about {need / 2**30:.1f} GiB to train (--conv_filters "
                             f"{config['conv_filters']}, batch {config['batch_size']}), more than this machine's "
                             f"{have / 2**30:.1f} GiB; use fewer filters or a smaller batch")
        return
    hidden = hidden_widths(config)
    need = _mlp_bytes([n_inputs, *hidden, n_outputs(config, n_inputs, n_classes)], config["batch_size"])
    if need > MEMORY_FRACTION * have:
        raise UsageError(f"this network needs about {need / 2**30:.1f} GiB to train (hidden widths "
                         f"{hidden[:4]}{'…' if len(hidden) > 4 else ''}, batch {config['batch_size']}), more than this "
                         f"machine's {have / 2**30:.1f} GiB; use narrower or fewer layers")

