"""The autoencoder task (`--task autoencoder`): a network that maps an image to itself.

The network (mlp.networks.build_network) is the MLP of the same flags with as many outputs as
inputs (784 → hidden → 784), followed by the output activation as a layer of its own
(`--output_activation`: sigmoid, the default, keeps pixels in [0, 1]; identity leaves the outputs
as they are). It trains with
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
from mlp.networks import BOTTLENECK, RECONSTRUCTION

__all__ = ["BOTTLENECK", "RECONSTRUCTION", "bottleneck_index", "evaluate"]


def bottleneck_index(net) -> int | None:
    """Index in `net.layers` of the layer tagged "bottleneck" (None when there is none)."""
    return next((i for i, layer in enumerate(net.layers) if layer.tag == BOTTLENECK), None)


def evaluate(net, x) -> tuple[float, float, np.ndarray]:
    """(mean loss, R², reconstructions) of an autoencoder on images `x` (the targets are `x`)."""
    loss, _, outputs = net.evaluate(x, x)
    return loss, r2_score(x, outputs), outputs
