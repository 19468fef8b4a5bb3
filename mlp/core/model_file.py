"""Model files: `load_model(path)` rebuilds a saved network (an `MLP` when it was saved from one).

Files are `.npz` read with `allow_pickle=False`. Version 2 holds the network spec (and, for an MLP,
its constructor arguments) as JSON plus named arrays "{layer}.{name}" (`Network.save` writes it);
version 1 (MLP kwargs, arrays param_{i} / buffer_{layer}_{key}) still loads. A network saved
with test-time views (`Network.set_test_views`) keeps them under "test_views". Every array's .npy
header is checked against the spec before any data is read, and a malformed file of any kind is
one UsageError.
"""
import math

import numpy as np

from mlp.core import initializers, losses, npz
from mlp.core.layers import from_spec, spec_of
from mlp.core.network import DTYPES, MLP, mlp_config, mlp_layers, Network, _number, _shape
from mlp.errors import UsageError

__all__ = ["load_model", "READ_VERSIONS"]

READ_VERSIONS = (1, 2)
MAX_LOAD_ELEMENTS = 1 << 28        # parameters and buffers in a model file (1 GiB of float32)
MAX_LOAD_LAYERS = 10_000


def load_model(path):
    """Rebuild a saved network (an MLP when it was saved from one). Any malformed file is a
    one-line UsageError; nothing is unpickled, and no array is read (or allocated) before its
    header has been checked against the spec."""
    with npz.Reader(path, "model file") as reader:
        return _load(reader)


def _load(reader: npz.Reader):
    path = reader.path
    meta = reader.meta("mlp-sweeps", hint="; was it saved by MLP.save?")
    headers = {k: h for k, h in reader.headers.items() if k != "__meta__"}
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
        h = headers[key]
        if h.shape != shapes[ours] or h.dtype != dtype:
            raise UsageError(f"model file {path}: array {key!r} is {h.dtype} of shape {h.shape}; "
                             f"its spec needs {dtype} of shape {shapes[ours]}")
        reader.check_size(key)
    # every declared size is now bounded and matches the spec: build, then read
    net = MLP(**config, seed=0) if config is not None else Network(**spec, seed=0)
    arrays = {ours: reader.array(key) for key, ours in names.items()}
    bad = next((key for key, ours in names.items() if not np.isfinite(arrays[ours]).all()), None)
    if bad is not None:
        raise UsageError(f"model file {path}: array {bad!r} holds NaN or infinite values; a model with them "
                         f"cannot predict (was it saved from a diverged run?)")
    net.load_state_dict(arrays, source=str(path))
    net.extra = extra
    _set_test_views(net, meta.get("test_views"), path)
    return net


def _set_test_views(net, views, path):
    """A file's test-time views ({"shift": int, "flip": bool}; absent: none), strictly checked."""
    if views is None:
        return
    if not isinstance(views, dict) or set(views) != {"shift", "flip"} or type(views["shift"]) is not int \
            or not 0 <= views["shift"] <= 64 or type(views["flip"]) is not bool:
        raise UsageError(f"model file {path}: test_views must be {{\"shift\": 0-64, \"flip\": true/false}}; "
                         f"got {views!r:.80}")
    try:
        net.set_test_views(views["shift"], views["flip"])
    except UsageError as e:
        raise UsageError(f"model file {path}: {e}") from None


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
