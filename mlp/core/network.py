"""The multilayer perceptron: a stack of layers with one forward and one backward pass.

Hidden block i is Dense → [BatchNorm] → activation → [Dropout]; the output is a Dense layer whose
logits go to the loss (softmax inside the classification losses). Models save to `.npz` files
that load with `allow_pickle=False`: the configuration is a JSON string, the rest plain arrays.
"""
import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mlp.core import activations, initializers, losses
from mlp.errors import UsageError
from mlp.core.layers import Activation, BatchNorm, Dense, Dropout

FORMAT_VERSION = 1
DTYPES = ("float32", "float64")


class TrainPass(NamedTuple):
    data_loss: float
    l2: float
    grads: list
    outputs: np.ndarray


class MLP:
    """A fully connected network.

    `layer_sizes` = [inputs, hidden..., outputs]. `activation` is one name or a list with one per
    hidden layer. Weight decay λ adds (λ/2)·ΣW² over weights (not biases, not batch-norm scales).
    With dtype float64 every computation stays float64.
    """

    def __init__(self, layer_sizes, activation="relu", weight_init="xavier", loss="cross_entropy",
                 weight_decay=0.0, dropout=0.0, batch_norm=False, seed=0, dtype="float32",
                 input_dropout=0.0, label_smoothing=0.0):
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

        self.config = {
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
        self.dtype = np.dtype(dtype)
        self.weight_decay = self.config["weight_decay"]
        self.rng = np.random.default_rng(seed)
        self._loss = losses.get(self.config["loss"])
        if self.config["label_smoothing"] and self.config["loss"] != "cross_entropy":
            raise UsageError("label_smoothing applies to the cross_entropy loss only")
        self.layers = self._build(sizes, initializers.get(self.config["weight_init"]))
        self._pack()

    def _build(self, sizes, init):
        c = self.config
        layers = []
        if c["input_dropout"]:
            layers.append(Dropout(c["input_dropout"], self.rng))
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            W = init(fan_in, fan_out, self.rng, self.dtype)
            is_output = i == len(sizes) - 2
            bias = None if c["batch_norm"] and not is_output else np.zeros(fan_out, dtype=self.dtype)
            layers.append(Dense(W, bias))
            if is_output:
                break
            if c["batch_norm"]:
                layers.append(BatchNorm(fan_out, self.dtype))
            # in place: every hidden activation's input is a temporary the network owns
            layers.append(Activation(c["activation"][i], inplace=True))
            if c["dropout"]:
                layers.append(Dropout(c["dropout"], self.rng))
        return layers

    # ---- parameters -------------------------------------------------------------------------
    @property
    def params(self):
        """All trainable arrays in layer order: [W1, b1, W2, b2, ...]; with batch norm each hidden
        block is [W, gamma, beta] (its bias would be cancelled by the normalisation)."""
        return [p for layer in self.layers for p in layer.params]

    def _pack(self):
        """Put all parameters into one flat array, and their gradients into another with the same
        layout; each layer's `params` and `grads` become views into them.

        Weights that decay come first, so weight decay is two whole-array operations, and an
        optimizer given `params` and the `grads` of `train_pass` updates everything with a few
        whole-array operations instead of a few per parameter (see optimizers.Optimizer.step).
        The list order of `params` is unchanged. Called again whenever a layer's arrays are no
        longer views of the flat arrays (after copy.deepcopy or pickling, or a replaced array).
        """
        slots = [(layer, i, p, bool(decays and self.weight_decay)) for layer in self.layers
                 for i, (p, decays) in enumerate(zip(layer.params, layer.decay))]
        order = [s for s in slots if s[3]] + [s for s in slots if not s[3]]
        total = sum(p.size for _, _, p, _ in slots)
        flat = np.empty(total, self.dtype)
        flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for layer, i, p, _ in order:
            view = flat[offset:offset + p.size].reshape(p.shape)
            view[...] = p
            layer.params[i] = view
            if len(layer.grads) != len(layer.params):
                layer.grads = [None] * len(layer.params)
            layer.grads[i] = flat_grads[offset:offset + p.size].reshape(p.shape)
            offset += p.size
        n_decay = sum(p.size for _, _, p, decays in order if decays)
        self._flat, self._flat_grads, self._n_decay = flat, flat_grads, n_decay
        self._grad_views = [g for layer in self.layers for g in layer.grads]
        self._decay_work = np.empty(n_decay, self.dtype) if n_decay else None

    def _packed(self):
        """True when every layer's params are still the views `_pack` made."""
        flat = self._flat
        views = self._grad_views
        k = 0
        for layer in self.layers:
            for p in layer.params:
                if p.base is not flat or k >= len(views) or p.shape != views[k].shape:
                    return False
                k += 1
        return k == len(views)

    @property
    def input_shape(self):
        return (self.config["layer_sizes"][0],)

    @property
    def n_outputs(self):
        return self.config["layer_sizes"][-1]

    @property
    def is_classifier(self):
        return self.config["loss"] in losses.CLASSIFICATION

    # ---- forward / backward -----------------------------------------------------------------
    def _as_input(self, X):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.config["layer_sizes"][0]:
            raise UsageError(f"input has shape {X.shape}; this network expects (n, {self.config['layer_sizes'][0]})")
        return X.astype(self.dtype, copy=False)

    def forward(self, X, training=False):
        """Logits (or regression outputs) for a batch."""
        out = self._as_input(X)
        for layer in self.layers:
            out = layer.forward(out, training)
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
        if self.config["label_smoothing"]:
            data_loss, grad = self._loss(z, y, self.config["label_smoothing"])
        else:
            data_loss, grad = self._loss(z, y)
        first = next(i for i, layer in enumerate(self.layers) if layer.params)
        for i in range(len(self.layers) - 1, first - 1, -1):  # layers before `first` have nothing to learn
            grad = self.layers[i].backward(grad, need_input_grad=i > first)
        grads = self._grad_views
        k = 0
        for layer in self.layers:  # a layer that replaced its grad arrays: copy into the flat buffer
            for j, g in enumerate(layer.grads):
                if g is not grads[k]:
                    grads[k][...] = g
                    layer.grads[j] = grads[k]
                k += 1
        l2 = 0.0
        if self._n_decay:  # the decaying weights are the first _n_decay entries of the flat arrays
            lam = self.weight_decay
            w = self._flat[:self._n_decay]
            l2 = 0.5 * lam * float(np.dot(w, w))
            work = np.multiply(w, lam, out=self._decay_work)
            np.add(self._flat_grads[:self._n_decay], work, out=self._flat_grads[:self._n_decay])
        return TrainPass(data_loss, l2, list(grads), z)

    def loss_and_grads(self, X, y):
        """Batch-mean loss including the (λ/2)·ΣW² term, and gradients aligned with `params`.

        The gradient arrays are the network's own buffers, overwritten by the next call: copy
        them (`[g.copy() for g in grads]`) to keep them."""
        step = self.train_pass(X, y)
        return step.data_loss + step.l2, step.grads

    def predict_outputs(self, X, batch_size=4096):
        X = self._as_input(X)
        return np.concatenate([self.forward(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]) \
            if len(X) else np.zeros((0, self.config["layer_sizes"][-1]), self.dtype)

    def predict_proba(self, X, batch_size=4096):
        return losses.softmax(self.predict_outputs(X, batch_size))

    def predict(self, X, batch_size=4096):
        out = self.predict_outputs(X, batch_size)
        return out.argmax(axis=1) if self.is_classifier else out

    def evaluate(self, X, y, batch_size=4096):
        """(mean data loss, accuracy, predictions) in evaluation mode, in batches."""
        z = self.predict_outputs(X, batch_size)
        if not self.is_classifier:
            loss, _ = self._loss(z, np.asarray(y, dtype=self.dtype).reshape(z.shape))
            return loss, float("nan"), z
        loss, _ = self._loss(z, y)  # label smoothing is a training device: evaluate the plain loss
        pred = z.argmax(axis=1)
        return loss, float(np.mean(pred == y)), pred

    # ---- persistence ------------------------------------------------------------------------
    def state_arrays(self):
        arrays = {f"param_{i}": p for i, p in enumerate(self.params)}
        for i, layer in enumerate(self.layers):
            for key, value in layer.buffers.items():
                arrays[f"buffer_{i}_{key}"] = value
        return arrays

    def save(self, path, extra=None):
        """Write architecture, config and weights to an .npz (no pickled objects)."""
        meta = {"format": "mlp-sweeps", "version": FORMAT_VERSION, "config": self.config, "extra": extra or {}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **self.state_arrays())
        tmp.replace(path)

    @classmethod
    def load(cls, path):
        """Rebuild a saved network; any malformed file is a UsageError, never unpickled."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"model file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as e:
            raise UsageError(f"model file {path} holds pickled objects ({e}); refusing to load it") from None
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise UsageError(f"model file {path} is not an .npz model saved by mlp-sweeps ({e})") from None
        try:
            meta = json.loads(str(arrays.pop("__meta__")))
            assert meta["format"] == "mlp-sweeps"
            config = dict(meta["config"])
        except Exception:
            raise UsageError(f"model file {path} has no mlp-sweeps metadata; was it saved by MLP.save?") from None
        if meta.get("version") != FORMAT_VERSION:
            raise UsageError(f"model file {path} has format version {meta.get('version')}; this build reads {FORMAT_VERSION}")
        net = cls(**config, seed=0)
        net.load_state(arrays, source=str(path))
        net.extra = meta.get("extra", {})
        return net

    def load_state(self, arrays, source="state"):
        """Copy saved arrays into this network; a different architecture is a UsageError."""
        expected = self.state_arrays()
        if set(arrays) != set(expected):
            raise UsageError(f"{source} was saved from another architecture (arrays differ); build the network it was saved from")
        for key, target in expected.items():
            if arrays[key].shape != target.shape:
                raise UsageError(f"{source} was saved from another architecture: {key} has shape "
                                 f"{arrays[key].shape}, this network needs {target.shape}")
            target[...] = arrays[key]


def load_model(path):
    return MLP.load(path)
