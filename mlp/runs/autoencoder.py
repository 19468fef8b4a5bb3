"""The autoencoder task (`--task autoencoder`): a network that maps an image to itself.

The network is the MLP of the same flags with as many outputs as inputs (784 → hidden → 784),
followed by the output activation as a layer of its own (`--output_activation`: sigmoid, the
default, keeps pixels in [0, 1]; identity leaves the outputs as they are). It trains with
`regression_squared_error`: for each image the sum over its 784 pixels of (output − pixel)², then
the mean over the images of the batch — 784 times the per-pixel mean squared error. `train_loss`,
`val_loss` and `test_loss` are that value (without the L2 term); `val_r2` and `test_r2` are R²
over all pixels of the set (mlp.core.metrics.r2_score, scikit-learn's variance-weighted R²).

Layers are addressed by their index in the saved spec or by a tag: the activation of the
narrowest hidden layer (the first one when several are narrowest) is tagged "bottleneck", the last
layer "reconstruction". Without hidden layers there is no bottleneck.
"""
from __future__ import annotations

import numpy as np

from mlp.core.metrics import r2_score
from mlp.core.network import Network, mlp_config, mlp_layers

__all__ = ["BOTTLENECK", "RECONSTRUCTION", "layer_specs", "network", "bottleneck_index", "evaluate"]

BOTTLENECK = "bottleneck"
RECONSTRUCTION = "reconstruction"


def layer_specs(config, n_inputs: int, hidden: list[int]) -> list[dict]:
    """The autoencoder's layer specs for a resolved config: the MLP stack [n_inputs, *hidden,
    n_inputs] (Dense → [BatchNorm] → activation → [Dropout] per hidden layer), the output
    activation, and the two tags."""
    checked = mlp_config([n_inputs, *hidden, n_inputs], activation=config["activation"],
                         weight_init=config["weight_init"], loss=config["loss"],
                         weight_decay=config["weight_decay"], dropout=config["dropout"],
                         batch_norm=config["batch_norm"], input_dropout=config["input_dropout"])
    specs = mlp_layers(checked)
    if config["output_activation"] != "identity":
        specs.append({"type": "activation", "name": config["output_activation"]})
    specs[-1]["tag"] = RECONSTRUCTION
    if hidden:
        narrowest = hidden.index(min(hidden))
        activations = [i for i, s in enumerate(specs) if s["type"] == "activation"]
        specs[activations[narrowest]]["tag"] = BOTTLENECK
    return specs


def network(config, n_inputs: int, hidden: list[int]) -> Network:
    """The autoencoder of a resolved config; its initial weights are drawn in the same order as
    the MLP of the same widths (the output activation has no parameters)."""
    return Network(layer_specs(config, n_inputs, hidden), input_shape=(n_inputs,), loss=config["loss"],
                   weight_decay=config["weight_decay"], seed=config["seed"], weight_init=config["weight_init"])


def bottleneck_index(net) -> int | None:
    """Index in `net.layers` of the layer tagged "bottleneck" (None when there is none)."""
    return next((i for i, layer in enumerate(net.layers) if layer.tag == BOTTLENECK), None)


def evaluate(net, x) -> tuple[float, float, np.ndarray]:
    """(mean loss, R², reconstructions) of an autoencoder on images `x` (the targets are `x`)."""
    loss, _, outputs = net.evaluate(x, x)
    return loss, r2_score(x, outputs), outputs
