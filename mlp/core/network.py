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
- save: an `.npz` (no pickled objects) holding the network spec (and, for an MLP, its
  constructor arguments) as JSON plus named arrays "{layer}.{name}" — format version 2, read back
  by mlp.core.model_file.load_model — and its test-time views, if set.

Test-time augmentation (`set_test_views`) changes evaluation only: predictions average the
probabilities over shifted and mirrored copies of each image (mlp.core.augment.views).

Spec recipes for other networks (CNNs, stacks of a frozen model and a head) and their shapes and
memory are in mlp.core.builders.
"""
import math
import numbers
import re
from typing import NamedTuple

import numpy as np

from mlp.core import activations, augment, initializers, losses, npz
from mlp.core.layers import Layer, from_spec, spec_of
from mlp.errors import UsageError

FORMAT_VERSION = 2                 # the model file a network writes (mlp.core.model_file reads it back)
DTYPES = ("float32", "float64")
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
    test_views = None  # {"shift": k, "flip": bool}: predictions average over these views (`set_test_views`)

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

    def set_test_views(self, shift, flip):
        """Test-time augmentation: from now on a classifier of 28×28 images predicts, for each
        image, the mean of its predicted probabilities over the views of mlp.core.augment.views
        (one-pixel shifts when `shift` ≥ 1, mirror images when `flip`); None/0 and False: off.
        Training is unaffected; the saved model keeps the setting."""
        if isinstance(shift, bool) or not isinstance(shift, numbers.Integral) or shift < 0 or not isinstance(flip, bool):
            raise UsageError(f"test views need a shift ≥ 0 and a flip flag; got {shift!r:.20}, {flip!r:.20}")
        if not shift and not flip:
            self.test_views = None
            return
        if not self.is_classifier or self.input_shape != (augment.SIDE * augment.SIDE,):
            raise UsageError("test-time augmentation needs a classifier of 28×28 images (784 inputs)")
        self.test_views = {"shift": int(shift), "flip": flip}

    def _eval_outputs(self, X):
        """Evaluation-mode outputs of one chunk: the logits, or with test views the log of the mean
        probability over the views (its softmax is that mean, so losses and argmax apply as to logits)."""
        if self.test_views is None:
            return self.forward(X)
        total, n = None, 0
        for view in augment.views(X, self.test_views["shift"], self.test_views["flip"]):
            p = losses.softmax(self.forward(view))
            total = p if total is None else np.add(total, p, out=total)
            n += 1
        return np.log(np.maximum(total / n, np.finfo(self.dtype).tiny))

    def predict_outputs(self, X, batch_size=None):
        X = self._as_input(X)
        batch_size = batch_size or self.eval_batch_size
        return np.concatenate([self._eval_outputs(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]) \
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
        if isinstance(key, str) and re.fullmatch(r"[+-]?[0-9]+", key):
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
        if self.test_views is not None:
            meta["test_views"] = dict(self.test_views)
        if self.config is not None:
            meta["mlp"] = self.config
        npz.write(path, meta, self.state_dict())     # OSError if it cannot (nothing left behind)


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
