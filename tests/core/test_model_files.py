"""Model files: version 2 (spec + named arrays), version 1 still read, crafted files refused."""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from mlp import MLP, UsageError, load_model
from mlp.core.network import Network


def trained_mlp(**kwargs):
    net = MLP([6, 5, 4, 3], **{"activation": ["gelu", "tanh"], "batch_norm": True, "dropout": 0.1, "seed": 1, **kwargs})
    X = np.random.default_rng(0).random((10, 6), dtype=np.float32)
    net.train_pass(X, np.arange(10) % 3)  # moves batch-norm running stats off their start
    return net, X


def npy_bytes(array=None, header=None, data=b""):
    """An .npy member: a real array, or a hand-made header (any shape/dtype) followed by `data`."""
    f = io.BytesIO()
    if header is None:
        np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)
    return f.getvalue()


def write_npz(path, members):
    """members: {name: array or bytes of an .npy file}, written like np.savez (stored, no compression)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            zf.writestr(name + ".npy", value if isinstance(value, bytes) else npy_bytes(value))
    return path


def meta_array(meta):
    return np.array(json.dumps(meta))


def members_of(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    return meta, arrays


# ---- version 2 ---------------------------------------------------------------------------------

def test_v2_holds_spec_and_named_arrays(tmp_path):
    net, X = trained_mlp()
    net.save(tmp_path / "m.npz", extra={"run_id": "abc"})
    meta, arrays = members_of(tmp_path / "m.npz")
    assert meta["version"] == 2 and meta["network"] == net.spec() and meta["mlp"] == net.config
    from mlp.core.model_file import _mlp_spec
    assert _mlp_spec(net.config) == net.spec()
    assert set(arrays) - {"__meta__"} == set(net.state_dict()) and "1.running_mean" in arrays
    back = load_model(tmp_path / "m.npz")
    assert type(back) is MLP and back.config == net.config and back.extra == {"run_id": "abc"}
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def test_general_network_round_trip(tmp_path):
    net = Network([{"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 4, "bias": False},
                   {"type": "batch_norm", "momentum": 0.3}, {"type": "activation", "name": "sigmoid"},
                   {"type": "activation", "name": "elu"}, {"type": "dense", "units": 2}],
                  input_shape=(3,), loss="regression_squared_error", weight_decay=0.01, seed=4, dtype="float64")
    X = np.random.default_rng(1).standard_normal((8, 3))
    net.train_pass(X, np.zeros((8, 2)))
    net.save(tmp_path / "n.npz")
    back = load_model(tmp_path / "n.npz")
    assert type(back) is Network and back.spec() == net.spec() and back.config is None
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


# ---- version 1 (the format before the layer redesign) ----------------------------------------------

def write_v1(path, net):
    """A model file exactly as the version-1 code wrote it: JSON __meta__ with the MLP's kwargs,
    params as param_{i} in params order, buffers as buffer_{layer index}_{key}."""
    arrays = {"__meta__": meta_array({"format": "mlp-sweeps", "version": 1, "config": net.config,
                                      "extra": {"run_id": "old"}})}
    for i, p in enumerate(net.params):
        arrays[f"param_{i}"] = p.copy()
    for i, layer in enumerate(net.layers):
        for key, value in layer.buffers.items():
            arrays[f"buffer_{i}_{key}"] = value.copy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("kwargs", [{}, {"batch_norm": False, "input_dropout": 0.2, "dtype": "float64"}])
def test_v1_files_still_load(tmp_path, kwargs):
    net, X = trained_mlp(**kwargs)
    path = write_v1(tmp_path / "old.npz", net)
    with zipfile.ZipFile(path) as zf:  # the layout of version 1, spelled out
        names = sorted(n[:-4] for n in zf.namelist())
    expected = ["__meta__", *[f"param_{i}" for i in range(len(net.params))]]
    if net.config["batch_norm"]:
        expected += ["buffer_1_running_mean", "buffer_1_running_var", "buffer_5_running_mean", "buffer_5_running_var"]
    assert names == sorted(expected)
    back = load_model(path)
    assert back.config == net.config and back.extra == {"run_id": "old"}
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    # saved again, it is a version-2 file with the same predictions
    back.save(tmp_path / "new.npz")
    assert members_of(tmp_path / "new.npz")[0]["version"] == 2
    np.testing.assert_array_equal(load_model(tmp_path / "new.npz").predict_proba(X), net.predict_proba(X))


def test_unknown_version_names_the_versions_read(tmp_path):
    net, _ = trained_mlp()
    net.save(tmp_path / "m.npz")
    meta, arrays = members_of(tmp_path / "m.npz")
    for version in (3, "2", None):
        meta["version"] = version
        arrays["__meta__"] = meta_array(meta)
        write_npz(tmp_path / "v.npz", arrays)
        with pytest.raises(UsageError, match=r"format version .*this build reads versions 1, 2"):
            load_model(tmp_path / "v.npz")


# ---- crafted files ----------------------------------------------------------------------------

def small_file(tmp_path):
    net = MLP([4, 3, 2], seed=0)
    net.save(tmp_path / "s.npz")
    return members_of(tmp_path / "s.npz")


def load_crafted(tmp_path, meta, arrays, match):
    arrays = dict(arrays)
    arrays["__meta__"] = meta_array(meta) if isinstance(meta, dict) else meta
    path = write_npz(tmp_path / "crafted.npz", arrays)
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=match) as info:
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    assert peak < 20 << 20, f"loading a crafted file allocated {peak:,} bytes"
    return info.value


def test_unknown_layer_type(tmp_path):
    meta, arrays = small_file(tmp_path)
    meta["network"]["layers"][1] = {"type": "capsule", "routing": 3}
    meta.pop("mlp")
    load_crafted(tmp_path, meta, arrays, "unknown layer type 'capsule'")


@pytest.mark.parametrize("where,value,match", [
    (("network", "layers", 0, "units"), "3", "units"),
    (("network", "layers", 0, "units"), 3.0, "units"),
    (("network", "layers", 2, "units"), None, "units"),
    (("network", "layers", 1, "name"), 7, "name"),
    (("network", "layers"), {"0": {}}, "layers"),
    (("network", "input_shape"), ["4"], "input_shape"),
    (("network", "input_shape"), 4, "input_shape"),
    (("network", "dtype"), "float16", "dtype"),
    (("network", "loss"), 1, "loss"),
    (("network", "weight_decay"), "0", "weight_decay"),
    (("network", "label_smoothing"), 2.0, "label_smoothing"),
    (("network", "surprise"), 1, "network spec"),
    (("network",), [], "network spec"),
    (("mlp", "layer_sizes"), ["4", "3", "2"], "layer_sizes"),
    (("mlp", "dropout"), "0.1", "dropout"),
    (("mlp", "batch_norm"), 1, "batch_norm"),
    (("mlp", "seed"), 1, "seed"),
    (("mlp", "layer_sizes"), [4, 5, 2], "disagree"),
    (("mlp", "dtype"), "float64", "disagree"),
    (("network", "loss"), "regression_squared_error", "disagree"),
    (("extra",), [1, 2], "extra"),
])
def test_wrong_types_and_values(tmp_path, where, value, match):
    meta, arrays = small_file(tmp_path)
    target = meta
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    load_crafted(tmp_path, meta, arrays, match)


@pytest.mark.parametrize("units,match", [(10 ** 6, "declares float32 of shape .* but holds 0 bytes"),
                                         (10 ** 8, "refuses sizes that large"), (2 ** 40, "refuses sizes that large")])
def test_absurd_sizes_are_refused_before_allocating(tmp_path, units, match):
    meta, arrays = small_file(tmp_path)
    meta.pop("mlp")
    meta["network"]["layers"][0]["units"] = units
    # headers that agree with the spec, and no data behind them
    arrays["0.W"] = npy_bytes(header={"descr": "<f4", "fortran_order": False, "shape": (4, units)})
    arrays["0.b"] = npy_bytes(header={"descr": "<f4", "fortran_order": False, "shape": (units,)})
    arrays["2.W"] = npy_bytes(header={"descr": "<f4", "fortran_order": False, "shape": (units, 2)})
    load_crafted(tmp_path, meta, arrays, match)


def test_absurd_v1_layer_sizes(tmp_path):
    meta = {"format": "mlp-sweeps", "version": 1, "config": {"layer_sizes": [784, 2 ** 45, 10]}}
    load_crafted(tmp_path, meta, {}, "out of range")
    meta["config"]["layer_sizes"] = [784, 2 ** 20, 2 ** 20, 10]
    load_crafted(tmp_path, meta, {}, "refuses sizes that large")


def test_terabyte_header_is_never_allocated(tmp_path):
    meta, arrays = small_file(tmp_path)
    terabyte = {"descr": "<f4", "fortran_order": False, "shape": (2 ** 38,)}
    arrays["0.W"] = npy_bytes(header=terabyte, data=b"\0" * 64)
    load_crafted(tmp_path, meta, arrays, r"'0.W' is float32 of shape \(274877906944,\); its spec needs float32 of shape \(4, 3\)")
    # the same header on an array nobody asked for
    meta, arrays = small_file(tmp_path)
    arrays["bonus"] = npy_bytes(header=terabyte, data=b"\0" * 64)
    load_crafted(tmp_path, meta, arrays, r"unexpected arrays \['bonus'\]")
    # and on the metadata itself
    _, arrays = small_file(tmp_path)
    huge_meta = npy_bytes(header={"descr": "<U268435456", "fortran_order": False, "shape": ()}, data=b"{}")
    load_crafted(tmp_path, huge_meta, arrays, "metadata")


def test_string_typed_weights(tmp_path):
    meta, arrays = small_file(tmp_path)
    arrays["0.W"] = np.full((4, 3), "0.5")
    load_crafted(tmp_path, meta, arrays, r"'0.W' is <U3")


def test_weights_of_the_other_float_type(tmp_path):
    meta, arrays = small_file(tmp_path)
    arrays["0.b"] = arrays["0.b"].astype(np.float64)
    load_crafted(tmp_path, meta, arrays, "float64")


def test_missing_and_extra_arrays(tmp_path):
    meta, arrays = small_file(tmp_path)
    del arrays["2.b"]
    load_crafted(tmp_path, meta, arrays, r"missing arrays \['2.b'\]")
    meta, arrays = small_file(tmp_path)
    arrays["2.c"] = np.zeros(2, np.float32)
    load_crafted(tmp_path, meta, arrays, r"unexpected arrays \['2.c'\]")


def test_truncated_or_padded_array_data(tmp_path):
    meta, arrays = small_file(tmp_path)
    header = {"descr": "<f4", "fortran_order": False, "shape": (4, 3)}
    arrays["0.W"] = npy_bytes(header=header, data=b"\0" * 10)
    load_crafted(tmp_path, meta, arrays, "holds 10 bytes")
    arrays["0.W"] = npy_bytes(header=header, data=b"\0" * 4000)
    load_crafted(tmp_path, meta, arrays, "holds 4,000 bytes")


def test_corrupted_member_is_a_usage_error(tmp_path):
    path = tmp_path / "m.npz"
    MLP([4, 3, 2], seed=0).save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("0.W.npy")
    extra = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename) + extra  # the member's bytes, stored
    assert bytes(data[start:start + 6]) == b"\x93NUMPY"
    data[start + info.file_size - 3] ^= 0xFF  # inside the weights' data

    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="not an .npz written by mlp-sweeps"):  # the zip's CRC check
        load_model(path)


@pytest.mark.parametrize("meta,match", [
    (np.array("not json"), "no mlp-sweeps metadata"),
    (np.array(["{}"]), "metadata"),
    (np.zeros(3), "metadata"),
    ({"format": "other", "version": 2}, "no mlp-sweeps metadata"),
])
def test_bad_metadata(tmp_path, meta, match):
    _, arrays = small_file(tmp_path)
    load_crafted(tmp_path, meta, arrays, match)


def test_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "m.npz"
    MLP([4, 3, 2], seed=0).save(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("README.txt", "hello")
    with pytest.raises(UsageError, match="not an .npy array"):
        load_model(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["weights", "buffer"])
def test_non_finite_weights_or_statistics_are_refused(tmp_path, value, which):
    """A model that would predict NaN for every image (a diverged run's weights, a damaged file)
    is refused when it is loaded — `mlp evaluate` would otherwise score it as if it were a model."""
    MLP([4, 5, 2], batch_norm=True, seed=0).save(tmp_path / "s.npz")
    meta, arrays = members_of(tmp_path / "s.npz")
    key = next(k for k in arrays if k.endswith("running_var" if which == "buffer" else ".W"))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[3] = value
    error = load_crafted(tmp_path, meta, arrays, "holds NaN or infinite values")
    assert repr(key) in str(error)
