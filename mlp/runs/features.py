"""A frozen model's features: what `train.py --features MODEL.npz[:LAYER]` trains an MLP on, and
what `mlp features MODEL.npz` writes.

Any saved network works — a CNN (the output of its convolutional part: a conv-features → MLP
hybrid), an MLP (its last hidden layer), an autoencoder — and any of its layers, by index or by
name (`Network.layer_names`: "conv2d_2", "flatten_1", ...) or by a tag it carries ("bottleneck"). Without a layer: the one the model
file names as its features (`extra["features_layer"]`), else the layer tagged "bottleneck" (an
autoencoder's code), else "penultimate", the input of the last layer. Features are computed once per run, in evaluation
mode (dropout off, batch norm with its running statistics), flattened in C, H, W order.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mlp import config as C, paths
from mlp.core import npz
from mlp.core.model_file import load_model
from mlp.core.network import Network
from mlp.errors import UsageError

__all__ = ["Frozen", "load_frozen", "feature_dataset", "write_features", "layer_table", "N_IMAGES"]

N_IMAGES = 70_000      # images of either dataset over all splits (sizes the memory check)


@dataclass(frozen=True)
class Frozen:
    """Layer `index` (`name`) of the saved network `net`, whose per-image output has `shape`."""

    net: Network
    index: int
    name: str
    shape: tuple
    path: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> dict:
        return {"model": self.path, "layer": self.name, "index": self.index, "shape": list(self.shape)}


def default_layer(net: Network):
    """The layer a model's features come from unless one is named: the model file's
    `features_layer`, else the layer tagged "bottleneck" (an autoencoder's code), else the
    penultimate."""
    fallback = "bottleneck" if any(layer.tag == "bottleneck" for layer in net.layers) else "penultimate"
    layer = (net.extra or {}).get("features_layer", fallback)
    if isinstance(layer, bool) or not isinstance(layer, (str, int)):
        raise UsageError(f"the model's features_layer must be a layer name or index; got {layer!r:.40}")
    return layer


def load_frozen(text: str, n_inputs: int = 784, layer=None) -> Frozen:
    """The model and layer `MODEL.npz[:LAYER]` names (or `layer`, when given), checked: the file
    loads, the model takes `n_inputs` values per image, the layer exists."""
    path, named = C.split_features(text)
    net = load_model(path)
    if net.input_shape != (n_inputs,):
        raise UsageError(f"model {path} takes inputs of shape {net.input_shape}; these images have {n_inputs} pixels "
                         f"(was it trained on features itself?)")
    selector = layer if layer is not None else named if named is not None else default_layer(net)
    try:
        index = net.layer_index(selector)
    except UsageError as e:
        raise UsageError(f"model {path}: {e}") from None
    name = net.layers[index].tag or net.layer_names()[index]
    return Frozen(net, index, name, net.layer_shapes[index], str(path))


def check_memory(frozen: Frozen, n_images: int = N_IMAGES, have: int | None = None, fraction: float = 0.8) -> int:
    """Bytes the features of `n_images` images take (float32); refused beyond `fraction` of `have`."""
    need = n_images * frozen.size * 4
    if have and need > fraction * have:
        raise UsageError(f"the features of layer {frozen.name} are {frozen.size:,} values per image: "
                         f"{n_images:,} images need {need / 2**30:.1f} GiB, more than this machine's "
                         f"{have / 2**30:.1f} GiB allow; choose a later (smaller) layer")
    return need


def _features(frozen: Frozen, x) -> np.ndarray:
    out = frozen.net.features(x, frozen.index)
    return out.reshape(len(out), -1).astype(np.float32, copy=False)


def feature_dataset(data, frozen: Frozen, log=True):
    """`data` with every x replaced by the frozen layer's features (n, size), float32."""
    started = time.perf_counter()
    out = replace(data, x_train=_features(frozen, data.x_train), x_val=_features(frozen, data.x_val),
                  x_test=_features(frozen, data.x_test))
    if log:
        n = len(data.x_train) + len(data.x_val) + len(data.x_test)
        print(f"features: layer {frozen.index} ({frozen.name}, {frozen.size:,} values) of {frozen.path} for {n:,} "
              f"images in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return out


def layer_table(net: Network) -> list[tuple]:
    """(index, name, output shape, parameters) per layer, for `mlp features --list`."""
    return [(i, name if layer.tag is None else f"{name} ({layer.tag})", shape, sum(p.size for p in layer.params.values()))
            for i, (name, shape, layer) in enumerate(zip(net.layer_names(), net.layer_shapes, net.layers))]


def write_features(path, data, frozen: Frozen) -> Path:
    """An .npz with x_train, y_train, x_val, y_val, x_test, y_test (x: the layer's output in its
    own shape, float32) and __meta__ (JSON: model, layer, index, shape, dataset), atomically."""
    arrays = {}
    for part in ("train", "val", "test"):
        x = frozen.net.features(getattr(data, f"x_{part}"), frozen.index).astype(np.float32, copy=False)
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, getattr(data, f"y_{part}")
    meta = {"format": "mlp-sweeps-features", **frozen.describe(), "dataset": data.name, "source": data.source,
            "class_names": list(data.class_names)}
    try:
        path = npz.write(paths.output_file(path, "--out"), meta, arrays)
    except OSError as e:
        raise UsageError(f"could not write {path}: {e.strerror or e}") from None
    return path
