"""The network: an ordered list of layers built from a spec, with one forward and one backward pass.

`Network(layers, input_shape, ...)` takes layer specs (dicts, see mlp.core.layers) and builds
them in order, each from the previous one's output shape; the last layer's outputs (logits) go
to the loss (softmax inside the classification losses). `MLP(layer_sizes, ...)` only writes the
spec of a fully connected stack: hidden block i is Dense → [BatchNorm] → activation → [Dropout].

Around the layers the network owns three things:
- the flat parameter buffer (`_pack`): all params in one array and their grads in another, the
  decaying weights first, every layer's arrays views into them — so weight decay is two
  whole-array operations and optimizers update cache-sized pieces of one array;
- the in-place plan (`_plan`): which layers may overwrite their input, decided from what each
  layer declares (the caller's input array is never overwritten);
- save/load: `.npz` files read with `allow_pickle=False`. Version 2 holds the network spec
  (and, for an MLP, its constructor arguments) as JSON plus named arrays "{layer}.{name}";
  version 1 (MLP kwargs, arrays param_{i} / buffer_{layer}_{key}) still loads. Every array's
  .npy header is checked against the spec before any data is read.
"""
import json
import math
import numbers
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mlp.core import activations, initializers, losses
from mlp.core.layers import Layer, from_spec, spec_of
from mlp.errors import UsageError

FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
DTYPES = ("float32", "float64")
MAX_LOAD_ELEMENTS = 1 << 28        # parameters and buffers in a model file (1 GiB of float32)
MAX_LOAD_LAYERS = 10_000
MAX_META_BYTES = 4 << 20           # the JSON metadata of a model file
EVAL_BATCH = 4096                  # evaluation chunk of a network without scratch-heavy layers
EVAL_SCRATCH = 1 << 25             # else: chunks whose largest layer scratch (im2col) stays under this many values


class TrainPass(NamedTuple):
    data_loss: float
    l2: float
    grads: list
    outputs: np.ndarray


def _number(name, value, low=0.0, high=math.inf, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not (low <= value and (value < high if high_open else value <= high)):
        raise UsageError(f"{name} must be a number in [{low}, {high}{')' if high_open else ']'}; got {value!r}")
    return float(value)


class Network:
    """A stack of layers: `layers` are spec dicts (or unbuilt Layer objects), `input_shape` the
    shape of one sample. Weight decay λ adds (λ/2)·Σw² over the params layers mark as decaying
    (Dense weights; not biases, not batch-norm scales). With dtype float64 every computation
    stays float64. `seed` drives initialisation (each layer in order) and dropout masks."""

    config = None  # an MLP's constructor arguments; None for other networks

    def __init__(self, layers, input_shape, loss="cross_entropy", weight_decay=0.0, label_smoothing=0.0,
                 dtype="float32", seed=0, weight_init="xavier"):
        if str(dtype) not in DTYPES:
            raise UsageError(f"dtype must be one of {DTYPES}; got {dtype!r}")
        self.loss = losses.canonical_name(loss)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.label_smoothing = _number("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        if self.label_smoothing and self.loss != "cross_entropy":
            raise UsageError("label_smoothing applies to the cross_entropy loss only")
        self.weight_init = initializers.canonical_name(weight_init)
        self.dtype = np.dtype(str(dtype))
        self.input_shape = _shape(input_shape, "input_shape")
        self.extra = {}
        self.rng = np.random.default_rng(seed)
        self._loss = losses.get(self.loss)
        self.layers = [layer if isinstance(layer, Layer) else from_spec(layer) for layer in layers]
        tags = [layer.tag for layer in self.layers if layer.tag is not None]
        if len(tags) != len(set(tags)):
            raise UsageError(f"layer tags must be unique in a network; got {tags}")
        init = initializers.get(self.weight_init)
        shape = self.input_shape
        self.layer_shapes, scratch = [], 0     # each layer's per-sample output shape
        for layer in self.layers:
            scratch = max(scratch, layer.scratch_size(shape))
            shape = tuple(layer.build(shape, self.rng, self.dtype, init))
            self.layer_shapes.append(shape)
        # evaluation runs in chunks; a convolution's patch matrix grows with the chunk, so bound it
        self.eval_batch_size = min(EVAL_BATCH, max(1, EVAL_SCRATCH // scratch)) if scratch else EVAL_BATCH
        if len(shape) != 1:
            raise UsageError(f"the last layer must give one score per output (a flat shape); it gives {shape}")
        self.output_shape = shape
        self._plans = {True: self._plan(True), False: self._plan(False)}
        self._pack()

    @property
    def n_outputs(self):
        return self.output_shape[0]

    @property
    def is_classifier(self):
        return self.loss in losses.CLASSIFICATION

    def spec(self):
        """The JSON-able arguments that rebuild this network: Network(**net.spec(), seed=...)."""
        return {"input_shape": list(self.input_shape), "layers": [spec_of(layer) for layer in self.layers],
                "loss": self.loss, "weight_decay": self.weight_decay, "label_smoothing": self.label_smoothing,
                "dtype": self.dtype.name, "weight_init": self.weight_init}

    def _plan(self, training):
        """For each layer, whether it may overwrite its input in this mode: only an array that a
        layer of this network made and that no layer's backward will read (never the caller's
        input, nor an array passed through from it)."""
        free, plan = False, []
        for layer in self.layers:
            inplace = free and layer.can_overwrite_input
            plan.append(inplace)
            reads = set(layer.backward_reads(inplace)) if training else set()
            if inplace or layer.aliases_input:  # the output may be the input array
                free = free and not reads
            else:                               # a fresh array of the layer's own
                free = "output" not in reads
        return plan

    # ---- parameters -------------------------------------------------------------------------
    @property
    def params(self):
        """All trainable arrays in layer order: [W1, b1, W2, b2, ...] for an MLP; with batch norm
        each hidden block is [W, gamma, beta] (its bias would be cancelled by the normalisation)."""
        return [p for layer in self.layers for p in layer.params.values()]

    def _pack(self):
        """Put all parameters into one flat array, and their gradients into another with the same
        layout; each layer's `params` and `grads` become views into them.

        Weights that decay come first, so weight decay is two whole-array operations, and an
        optimizer given `params` and the `grads` of `train_pass` updates everything with a few
        whole-array operations instead of a few per parameter (see optimizers.Optimizer.step).
        The list order of `params` is unchanged. Called again whenever a layer's arrays are no
        longer views of the flat arrays (after copy.deepcopy or pickling, or a replaced array).
        """
        slots = [(layer, name, p, bool(name in layer.decay and self.weight_decay))
                 for layer in self.layers for name, p in layer.params.items()]
        order = [s for s in slots if s[3]] + [s for s in slots if not s[3]]
        total = sum(p.size for _, _, p, _ in slots)
        flat = np.empty(total, self.dtype)
        flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for layer, name, p, _ in order:
            view = flat[offset:offset + p.size].reshape(p.shape)
            view[...] = p
            layer.params[name] = view
            layer.grads[name] = flat_grads[offset:offset + p.size].reshape(p.shape)
            offset += p.size
        n_decay = sum(p.size for _, _, p, decays in order if decays)
        self._flat, self._flat_grads, self._n_decay = flat, flat_grads, n_decay
        self._grad_list = [layer.grads[name] for layer in self.layers for name in layer.params]
        self._decay_work = np.empty(n_decay, self.dtype) if n_decay else None
        # layers before the first with parameters have nothing to learn: backward stops there
        self._first = next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))

    def _packed(self):
        """True when every layer's params and grads are still the views `_pack` made."""
        flat, grads = self._flat, self._grad_list
        k = 0
        for layer in self.layers:
            for name, p in layer.params.items():
                if p.base is not flat or k >= len(grads) or layer.grads.get(name) is not grads[k] \
                        or p.shape != grads[k].shape:
                    return False
                k += 1
        return k == len(grads)

    # ---- forward / backward -----------------------------------------------------------------
    def _as_input(self, X):
        X = np.asarray(X)
        if X.shape[1:] != self.input_shape or X.ndim != len(self.input_shape) + 1:
            raise UsageError(f"input has shape {X.shape}; this network expects (n, {', '.join(map(str, self.input_shape))})")
        return X.astype(self.dtype, copy=False)

    def forward(self, X, training=False):
        """Logits (or regression outputs) for a batch."""
        out = self._as_input(X)
        for layer, inplace in zip(self.layers, self._plans[training]):
            out = layer.forward(out, training, inplace)
        return out

    def train_pass(self, X, y):
        """One training-mode forward and backward pass: a TrainPass with the data loss, the L2
        term, gradients aligned with `params`, and the outputs (for running accuracy).

        For speed the gradient arrays and the outputs are buffers owned by the network: the next
        `train_pass` (or `loss_and_grads`) overwrites them. Copy them to keep them.
        """
        if not self._packed():
            self._pack()
        z = self.forward(X, training=True)
        if self.is_classifier:
            y = np.asarray(y)
        else:
            y = np.asarray(y, dtype=self.dtype).reshape(z.shape)
        if self.label_smoothing:
            data_loss, grad = self._loss(z, y, self.label_smoothing)
        else:
            data_loss, grad = self._loss(z, y)
        first = self._first
        for i in range(len(self.layers) - 1, first - 1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=i > first)
        l2 = 0.0
        if self._n_decay:  # the decaying weights are the first _n_decay entries of the flat arrays
            lam = self.weight_decay
            w = self._flat[:self._n_decay]
            l2 = 0.5 * lam * float(np.dot(w, w))
            work = np.multiply(w, lam, out=self._decay_work)
            np.add(self._flat_grads[:self._n_decay], work, out=self._flat_grads[:self._n_decay])
        return TrainPass(data_loss, l2, list(self._grad_list), z)

    def loss_and_grads(self, X, y):
        """Batch-mean loss including the (λ/2)·ΣW² term, and gradients aligned with `params`.

        The gradient arrays are the network's own buffers, overwritten by the next call: copy
        them (`[g.copy() for g in grads]`) to keep them."""
        step = self.train_pass(X, y)
        return step.data_loss + step.l2, step.grads

    def predict_outputs(self, X, batch_size=None):
        X = self._as_input(X)
        batch_size = batch_size or self.eval_batch_size
        return np.concatenate([self.forward(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]) \
            if len(X) else np.zeros((0, self.n_outputs), self.dtype)

    def predict_proba(self, X, batch_size=None):
        return losses.softmax(self.predict_outputs(X, batch_size))

    def predict(self, X, batch_size=None):
        out = self.predict_outputs(X, batch_size)
        return out.argmax(axis=1) if self.is_classifier else out

    def evaluate(self, X, y, batch_size=None):
        """(mean data loss, accuracy, predictions) in evaluation mode, in batches."""
        z = self.predict_outputs(X, batch_size)
        if not self.is_classifier:
            loss, _ = self._loss(z, np.asarray(y, dtype=self.dtype).reshape(z.shape))
            return loss, float("nan"), z
        loss, _ = self._loss(z, y)  # label smoothing is a training device: evaluate the plain loss
        pred = z.argmax(axis=1)
        return loss, float(np.mean(pred == y)), pred

    # ---- layers by name, and what a layer computes (features) -------------------------------------
    def layer_names(self):
        """A name for every layer: its type and its rank among layers of that type, from 1
        ("conv2d_1", "max_pool2d_2", "dense_3", "activation_1", ...)."""
        seen, names = {}, []
        for layer in self.layers:
            seen[layer.kind] = seen.get(layer.kind, 0) + 1
            names.append(f"{layer.kind}_{seen[layer.kind]}")
        return names

    def layer_index(self, selector):
        """The index of a layer given by index (negative counts from the end, as in Python), by
        name (`layer_names`), or "penultimate" (the last layer's input: the last hidden
        representation of a classifier), or by a tag a layer carries ("bottleneck"). Anything else is a
        UsageError listing the tags and names."""
        n = len(self.layers)
        key = selector.strip() if isinstance(selector, str) else selector
        if isinstance(key, str) and key.lower() == "penultimate":
            if n < 2:
                raise UsageError("this network has one layer: it has no penultimate layer")
            return n - 2
        if isinstance(key, str) and key.lstrip("+-").isdigit():
            key = int(key)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            if not -n <= key < n:
                raise UsageError(f"layer {key} does not exist: this network has {n} layers (0 to {n - 1}, or -{n} to -1)")
            return int(key) % n
        tags = [layer.tag for layer in self.layers]
        if key in tags:                 # a tag the model carries (e.g. an autoencoder's "bottleneck")
            return tags.index(key)
        names = self.layer_names()
        if key in names:
            return names.index(key)
        known = [t for t in tags if t is not None] + names
        raise UsageError(f"no layer named {selector!r:.40}; choose an index, 'penultimate' or one of: {', '.join(known)}")

    def features(self, X, layer, batch_size=None):
        """The output of layer `layer` (index or name, see `layer_index`) for a batch of inputs, in
        evaluation mode (dropout off, batch norm with its running statistics): (n, *shape)."""
        stop = self.layer_index(layer) + 1
        X = self._as_input(X)
        batch_size = batch_size or self.eval_batch_size
        shape = self.layer_shapes[stop - 1]
        out = np.empty((len(X),) + shape, self.dtype)
        plan = self._plans[False]
        for i in range(0, len(X), batch_size):
            h = X[i:i + batch_size]
            for layer, inplace in zip(self.layers[:stop], plan[:stop]):
                h = layer.forward(h, False, inplace)
            out[i:i + len(h)] = h
        return out

    # ---- state and persistence -----------------------------------------------------------------
    def state_dict(self):
        """Every array a saved model keeps, by name "{layer index}.{name}": params, then buffers."""
        arrays = {}
        for i, layer in enumerate(self.layers):
            for name, value in layer.params.items():
                arrays[f"{i}.{name}"] = value
            for name, value in layer.buffers.items():
                arrays[f"{i}.{name}"] = value
        return arrays

    def load_state_dict(self, arrays, source="state"):
        """Copy saved arrays (as `state_dict` names them) into this network, in place; a
        different architecture is a UsageError."""
        expected = self.state_dict()
        if set(arrays) != set(expected):
            raise UsageError(f"{source} was saved from another architecture (arrays differ); build the network it was saved from")
        for key, target in expected.items():
            if np.shape(arrays[key]) != target.shape:
                raise UsageError(f"{source} was saved from another architecture: {key} has shape "
                                 f"{np.shape(arrays[key])}, this network needs {target.shape}")
            target[...] = arrays[key]

    def save(self, path, extra=None):
        """Write the spec and the named arrays to an .npz (no pickled objects), atomically."""
        meta = {"format": "mlp-sweeps", "version": FORMAT_VERSION, "network": self.spec(), "extra": extra or {}}
        if self.config is not None:
            meta["mlp"] = self.config
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **self.state_dict())
        tmp.replace(path)

    @classmethod
    def load(cls, path):
        net = load_model(path)
        if not isinstance(net, cls):
            raise UsageError(f"model file {path} holds a {type(net).__name__}, not an {cls.__name__}")
        return net


def _shape(value, name):
    if not isinstance(value, (list, tuple)) or not value \
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in value):
        raise UsageError(f"{name} must be a list of positive integers; got {value!r:.80}")
    return tuple(int(s) for s in value)


# ---- the MLP ------------------------------------------------------------------------------------

class MLP(Network):
    """A fully connected network.

    `layer_sizes` = [inputs, hidden..., outputs]. `activation` is one name or a list with one per
    hidden layer. Weight decay λ adds (λ/2)·ΣW² over weights (not biases, not batch-norm scales).
    With dtype float64 every computation stays float64. `net.config` holds the arguments.
    """

    def __init__(self, layer_sizes, activation="relu", weight_init="xavier", loss="cross_entropy",
                 weight_decay=0.0, dropout=0.0, batch_norm=False, seed=0, dtype="float32",
                 input_dropout=0.0, label_smoothing=0.0):
        config = mlp_config(layer_sizes=layer_sizes, activation=activation, weight_init=weight_init, loss=loss,
                            weight_decay=weight_decay, dropout=dropout, batch_norm=batch_norm, dtype=dtype,
                            input_dropout=input_dropout, label_smoothing=label_smoothing)
        self.config = config
        super().__init__(mlp_layers(config), input_shape=config["layer_sizes"][:1], loss=config["loss"],
                         weight_decay=config["weight_decay"], label_smoothing=config["label_smoothing"],
                         dtype=config["dtype"], seed=seed, weight_init=config["weight_init"])


def mlp_config(layer_sizes, activation="relu", weight_init="xavier", loss="cross_entropy", weight_decay=0.0,
               dropout=0.0, batch_norm=False, dtype="float32", input_dropout=0.0, label_smoothing=0.0):
    """MLP's arguments checked and in canonical form (registry names, floats): `MLP.config`."""
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise UsageError(f"layer_sizes must be at least [inputs, outputs], all ≥ 1; got {list(layer_sizes)}")
    n_hidden = len(sizes) - 2
    names = [activation] * n_hidden if isinstance(activation, str) else list(activation)
    if len(names) != n_hidden:
        raise UsageError(f"got {len(names)} activations for {n_hidden} hidden layers; give one name or one per layer")
    if str(dtype) not in DTYPES:
        raise UsageError(f"dtype must be one of {DTYPES}; got {dtype!r}")
    for name, value, top in (("dropout", dropout, 1.0), ("input_dropout", input_dropout, 1.0),
                             ("label_smoothing", label_smoothing, 1.0)):
        if not 0.0 <= float(value) < top:
            raise UsageError(f"{name} must be in [0, 1); got {value}")
    if not float(weight_decay) >= 0.0:
        raise UsageError(f"weight_decay must be ≥ 0; got {weight_decay}")
    return {
        "layer_sizes": sizes,
        "activation": [activations.canonical_name(a) for a in names],
        "weight_init": initializers.canonical_name(weight_init),
        "loss": losses.canonical_name(loss),
        "weight_decay": float(weight_decay),
        "dropout": float(dropout),
        "input_dropout": float(input_dropout),
        "batch_norm": bool(batch_norm),
        "label_smoothing": float(label_smoothing),
        "dtype": str(dtype),
    }


def mlp_layers(config):
    """The layer specs of an MLP (a checked `mlp_config`), in the order that fixes the rng draws:
    [Dropout(input)], then per hidden layer Dense → [BatchNorm] → activation → [Dropout], then
    the output Dense. Before a batch norm the Dense has no bias."""
    sizes, layers = config["layer_sizes"], []
    if config["input_dropout"]:
        layers.append({"type": "dropout", "rate": config["input_dropout"]})
    for i, units in enumerate(sizes[1:]):
        if i == len(sizes) - 2:
            layers.append({"type": "dense", "units": units, "bias": True})
            break
        layers.append({"type": "dense", "units": units, "bias": not config["batch_norm"]})
        if config["batch_norm"]:
            layers.append({"type": "batch_norm"})
        layers.append({"type": "activation", "name": config["activation"][i]})
        if config["dropout"]:
            layers.append({"type": "dropout", "rate": config["dropout"]})
    return layers


# ---- convolutional networks, stacks, memory ---------------------------------------------------------

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


# ---- loading --------------------------------------------------------------------------------------

def load_model(path):
    """Rebuild a saved network (an MLP when it was saved from one). Any malformed file is a
    one-line UsageError; nothing is unpickled, and no array is read (or allocated) before its
    header has been checked against the spec."""
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as e:                 # e.g. a name longer than the filesystem allows
        raise UsageError(f"model file {str(path)[:80]}: {e.strerror or e}") from None
    if not found:
        raise UsageError(f"model file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            return _load(zf, path)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, RuntimeError, NotImplementedError) as e:
        raise UsageError(f"model file {path} is not an .npz model saved by mlp-sweeps ({_short(e)})") from None


def _short(e):
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _headers(zf, path):
    """{array name: (zip entry, shape, dtype, bytes of data after the header)} from each member's
    .npy header alone."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise UsageError(f"model file {path} holds {info.filename!r:.60}, which is not an .npy array")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise UsageError(f"model file {path}: array {info.filename!r:.60} has .npy format {version}; expected 1.0 or 2.0")
            data_bytes = info.file_size - f.tell()
        if dtype.hasobject:
            raise UsageError(f"model file {path} holds pickled objects ({info.filename}); refusing to load it")
        out[info.filename[:-4]] = (info, tuple(shape), dtype, data_bytes)
    return out


def _check_size(key, header, path):
    """The data behind a header must be exactly what it declares (checked before reading it)."""
    _, shape, dtype, data_bytes = header
    if math.prod(shape) * dtype.itemsize != data_bytes:
        raise UsageError(f"model file {path}: array {key!r} declares {dtype} of shape {shape} but holds "
                         f"{data_bytes:,} bytes of data")


def _read(zf, info, path):
    with zf.open(info) as f:
        try:
            return np.lib.format.read_array(f, allow_pickle=False)
        except ValueError as e:
            raise UsageError(f"model file {path}: array {info.filename!r:.60} is damaged ({_short(e)})") from None


def _load(zf, path):
    headers = _headers(zf, path)
    meta = _metadata(zf, headers.pop("__meta__", None), path)
    version = meta.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise UsageError(f"model file {path} has format version {version!r:.20}; this build reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise UsageError(f"model file {path}: 'extra' must be a JSON object; got {type(extra).__name__}")
    if version == 1:
        config = _file_mlp_config(meta.get("config"), path)
        spec = _mlp_spec(config)
    else:
        spec = meta.get("network")
        config = _file_mlp_config(meta["mlp"], path) if meta.get("mlp") is not None else None
    layers, dtype, shapes, buffers = _check_spec(spec, path)
    if config is not None and _normalized(spec, layers) != _mlp_spec(config):
        raise UsageError(f"model file {path}: its MLP arguments and its network spec disagree")
    names = _file_names(shapes, buffers, version)       # file name -> our name
    missing, unexpected = sorted(set(names) - set(headers)), sorted(set(headers) - set(names))
    problems = ([f"missing arrays {missing[:5]}"] if missing else []) \
        + ([f"unexpected arrays {unexpected[:5]}"] if unexpected else [])
    if problems:
        raise UsageError(f"model file {path} does not match its spec: {'; '.join(problems)}")
    for key, ours in names.items():
        _, shape, file_dtype, _ = headers[key]
        if shape != shapes[ours] or file_dtype != dtype:
            raise UsageError(f"model file {path}: array {key!r} is {file_dtype} of shape {shape}; "
                             f"its spec needs {dtype} of shape {shapes[ours]}")
        _check_size(key, headers[key], path)
    # every declared size is now bounded and matches the spec: build, then read
    net = MLP(**config, seed=0) if config is not None else Network(**spec, seed=0)
    net.load_state_dict({ours: _read(zf, headers[key][0], path) for key, ours in names.items()}, source=str(path))
    net.extra = extra
    return net


def _metadata(zf, header, path):
    if header is None:
        raise UsageError(f"model file {path} has no mlp-sweeps metadata; was it saved by MLP.save?")
    info, shape, dtype, _ = header
    if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_META_BYTES:
        raise UsageError(f"model file {path}: its metadata is not a JSON string of at most {MAX_META_BYTES >> 20} MiB")
    _check_size("__meta__", header, path)
    try:
        meta = json.loads(str(_read(zf, info, path)))
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != "mlp-sweeps":
        raise UsageError(f"model file {path} has no mlp-sweeps metadata; was it saved by MLP.save?")
    return meta


def _mlp_spec(config):
    """The spec (as Network.spec() gives it) of the MLP a checked mlp_config describes."""
    return {"input_shape": config["layer_sizes"][:1], "layers": [from_spec(s).spec() for s in mlp_layers(config)],
            "loss": config["loss"], "weight_decay": config["weight_decay"], "label_smoothing": config["label_smoothing"],
            "dtype": config["dtype"], "weight_init": config["weight_init"]}


def _normalized(spec, layers):
    """A checked file spec in the form of Network.spec(), defaults filled in."""
    return {"input_shape": list(spec["input_shape"]), "layers": [spec_of(layer) for layer in layers],
            "loss": losses.canonical_name(spec.get("loss", "cross_entropy")),
            "weight_decay": float(spec.get("weight_decay", 0.0)),
            "label_smoothing": float(spec.get("label_smoothing", 0.0)), "dtype": spec.get("dtype", "float32"),
            "weight_init": initializers.canonical_name(spec.get("weight_init", "xavier"))}


_MLP_TYPES = {"layer_sizes": "ints", "activation": "names", "weight_init": str, "loss": str, "weight_decay": "real",
              "dropout": "real", "input_dropout": "real", "batch_norm": bool, "label_smoothing": "real", "dtype": str}


def _file_mlp_config(config, path):
    """A checked mlp_config from a file's JSON, strict about types (a file is not a user typing)."""
    if not isinstance(config, dict):
        raise UsageError(f"model file {path}: the MLP arguments must be a JSON object")
    for key, value in config.items():
        kind = _MLP_TYPES.get(key)
        ok = kind is not None and (
            (kind == "ints" and isinstance(value, list) and all(type(v) is int for v in value))
            or (kind == "names" and (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)))
            or (kind == "real" and type(value) in (int, float))
            or (isinstance(kind, type) and type(value) is kind))
        if not ok:
            raise UsageError(f"model file {path}: MLP argument {key!r:.40} = {value!r:.60} is not valid")
    if "layer_sizes" not in config:
        raise UsageError(f"model file {path}: the MLP arguments lack layer_sizes")
    if len(config["layer_sizes"]) > MAX_LOAD_LAYERS:
        raise UsageError(f"model file {path}: {len(config['layer_sizes']):,} layer sizes; this loader accepts at most {MAX_LOAD_LAYERS:,}")
    if not all(0 < s <= MAX_LOAD_ELEMENTS for s in config["layer_sizes"]):
        raise UsageError(f"model file {path}: layer_sizes {config['layer_sizes']!r:.80} are out of range")
    return mlp_config(**config)


def _check_spec(spec, path):
    """(unbuilt layers, dtype, {our array name: shape} in state_dict order, {names of buffers})
    for a file's network spec, every field checked and the total size bounded, allocating nothing."""
    allowed = {"input_shape", "layers", "loss", "weight_decay", "label_smoothing", "dtype", "weight_init"}
    if not isinstance(spec, dict) or not {"input_shape", "layers"} <= set(spec) <= allowed:
        raise UsageError(f"model file {path}: its network spec must be an object with input_shape, layers and "
                         f"at most {sorted(allowed)}")
    if not isinstance(spec["layers"], list) or len(spec["layers"]) > MAX_LOAD_LAYERS:
        raise UsageError(f"model file {path}: the spec's layers must be a list of at most {MAX_LOAD_LAYERS:,}")
    for key in ("loss", "dtype", "weight_init"):
        if key in spec and not isinstance(spec[key], str):
            raise UsageError(f"model file {path}: the spec's {key} must be a name; got {spec[key]!r:.60}")
    for key in ("weight_decay", "label_smoothing"):
        if key in spec:
            _number(key, spec[key], 0.0, 1.0 if key == "label_smoothing" else math.inf, key == "label_smoothing")
    dtype = spec.get("dtype", "float32")
    if dtype not in DTYPES:
        raise UsageError(f"model file {path}: dtype must be one of {DTYPES}; got {dtype!r:.40}")
    losses.canonical_name(spec.get("loss", "cross_entropy"))
    initializers.canonical_name(spec.get("weight_init", "xavier"))
    shape = _shape(spec["input_shape"], "input_shape")
    total = math.prod(shape)
    layers, shapes, buffer_names = [], {}, set()
    for i, layer_spec in enumerate(spec["layers"]):
        layer = from_spec(layer_spec)
        shape, params, buffers = layer.shapes(shape)
        for name, s in {**params, **buffers}.items():
            shapes[f"{i}.{name}"] = tuple(s)
            total += math.prod(s)
        buffer_names.update(f"{i}.{name}" for name in buffers)
        total += math.prod(shape)
        if total > MAX_LOAD_ELEMENTS:
            raise UsageError(f"model file {path} declares a network of over {MAX_LOAD_ELEMENTS:,} values; "
                             f"this loader refuses sizes that large")
        layers.append(layer)
    return layers, np.dtype(dtype), shapes, buffer_names


def _file_names(shapes, buffers, version):
    """{name in the file: our state_dict name}; `shapes` lists our names in state_dict order."""
    if version != 1:
        return {name: name for name in shapes}
    names, k = {}, 0
    for name in shapes:  # version 1: params numbered across the network, buffers by layer and key
        if name in buffers:
            layer, key = name.split(".", 1)
            names[f"buffer_{layer}_{key}"] = name
        else:
            names[f"param_{k}"] = name
            k += 1
    return names
