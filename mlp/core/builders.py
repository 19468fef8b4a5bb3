"""Recipes and arithmetic on layer specs: a CNN's specs (`cnn_layers`), the shapes a stack of specs
produces (`layer_shapes`, allocating nothing), the memory its training needs (`training_bytes`), and
one network made of a frozen model's first layers and a head trained on their features (`stack`).
"""
import math

from mlp.core.layers import Layer, from_spec
from mlp.core.network import EVAL_BATCH, EVAL_SCRATCH, Network, _shape
from mlp.errors import UsageError

__all__ = ["POOLS", "cnn_layers", "layer_shapes", "training_bytes", "stack"]


POOLS = ("max", "avg", "global", "none")


def cnn_layers(image_shape, conv_filters, kernel_size=3, padding="same", pool="max", hidden=(), n_outputs=10,
               activation="relu", batch_norm=False, dropout=0.0, input_dropout=0.0):
    """The layer specs of a CNN on flat pixels: [Dropout(pixels)], reshape to `image_shape`, then per
    entry of `conv_filters` a block Conv2D(k×k) → [BatchNorm2D] → activation → [2×2 max/avg pool],
    then global average pooling (pool "global") or a flatten, [Dropout], and a dense head as an
    MLP's: per hidden width Dense → [BatchNorm] → activation → [Dropout], then the output Dense.
    `padding` is "same" or "valid"; before a batch norm a layer has no bias."""
    if pool not in POOLS:
        raise UsageError(f"pool must be one of {', '.join(POOLS)}; got {pool!r:.40}")
    layers = [{"type": "dropout", "rate": input_dropout}] if input_dropout else []
    layers.append({"type": "reshape", "shape": list(image_shape)})
    for filters in conv_filters:
        layers.append({"type": "conv2d", "out_channels": int(filters), "kernel_size": kernel_size, "stride": 1,
                       "padding": padding, "bias": not batch_norm})
        if batch_norm:
            layers.append({"type": "batch_norm2d"})
        layers.append({"type": "activation", "name": activation})
        if pool in ("max", "avg"):
            layers.append({"type": f"{pool}_pool2d", "kernel_size": 2, "stride": None})
    layers.append({"type": "global_avg_pool2d"} if pool == "global" else {"type": "flatten"})
    if dropout:
        layers.append({"type": "dropout", "rate": dropout})
    for units in hidden:
        layers.append({"type": "dense", "units": int(units), "bias": not batch_norm})
        if batch_norm:
            layers.append({"type": "batch_norm"})
        layers.append({"type": "activation", "name": activation})
        if dropout:
            layers.append({"type": "dropout", "rate": dropout})
    layers.append({"type": "dense", "units": int(n_outputs), "bias": True})
    return layers


def layer_shapes(layers, input_shape):
    """[(layer, output shape, param shapes, per-sample scratch)] of unbuilt specs, allocating
    nothing; a shape a layer cannot take is a UsageError (e.g. a map smaller than a kernel)."""
    shape, out = _shape(input_shape, "input_shape"), []
    for spec in layers:
        layer = spec if isinstance(spec, Layer) else from_spec(spec)
        scratch = layer.scratch_size(shape)
        shape, params, _ = layer.shapes(shape)
        out.append((layer, tuple(shape), params, scratch))
    return out


def training_bytes(layers, input_shape, batch_size, itemsize=4):
    """Training memory of a network, roughly: parameters × (value, gradient, 2 optimizer moments,
    scratch), per layer its output, gradient and a spare for a batch, every layer's reused scratch
    (a convolution keeps its patch matrix and that matrix's gradient) for a batch, and one
    evaluation chunk."""
    rows = layer_shapes(layers, input_shape)
    params = sum(math.prod(s) for _, _, p, _ in rows for s in p.values())
    outputs = sum(math.prod(shape) for _, shape, _, _ in rows)
    scratch = sum(sc for *_, sc in rows)
    widest = max([math.prod(shape) for _, shape, _, _ in rows] + [math.prod(input_shape)])
    largest = max([sc for *_, sc in rows] + [0])
    chunk = min(EVAL_BATCH, max(1, EVAL_SCRATCH // largest)) if largest else EVAL_BATCH
    return (params * 6 + batch_size * (outputs * 3 + scratch * 2) + chunk * (widest * 3 + largest)) * itemsize


def stack(frozen, layer, head):
    """One network that computes `head` on the output of `frozen`'s layer `layer` (index or name):
    frozen's layers up to it, a flatten when its output is not flat, then head's layers, with the
    arrays of both. It takes what `frozen` takes (e.g. pixels), so it evaluates and saves as any
    network; `head` is what was trained on `frozen.features(X, layer)`."""
    stop = frozen.layer_index(layer) + 1
    specs = [l.spec() for l in frozen.layers[:stop]]
    if len(frozen.layer_shapes[stop - 1]) != 1:
        specs.append({"type": "flatten"})
    if head.input_shape != (math.prod(frozen.layer_shapes[stop - 1]),):
        raise UsageError(f"the head takes inputs of shape {head.input_shape}; layer {layer!r} gives "
                         f"{frozen.layer_shapes[stop - 1]}")
    offset = len(specs)
    spec = head.spec()
    net = Network(specs + spec["layers"], input_shape=frozen.input_shape, loss=spec["loss"],
                  weight_decay=spec["weight_decay"], label_smoothing=spec["label_smoothing"], dtype=spec["dtype"],
                  weight_init=spec["weight_init"])
    state = {k: v for k, v in frozen.state_dict().items() if int(k.split(".", 1)[0]) < stop}
    for key, value in head.state_dict().items():
        index, name = key.split(".", 1)
        state[f"{int(index) + offset}.{name}"] = value
    net.load_state_dict(state, source="the stacked network")
    return net
