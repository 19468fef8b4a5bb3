"""Tests of mlp.runs.data: IDX parsing, sources and their order, checksums, downloads, splits.

Fast tests use the real Fashion-MNIST subset in tests/data/fashion_mnist (2,000 train / 500
test, 200 / 50 per class, see tests/data/make_subset.py). Tests marked `slow` load the full real
datasets: Fashion-MNIST from the Debian package directory and MNIST from ../shared/data/mnist.
No test touches the network beyond a loopback HTTP server, nor the real ~/.cache.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import http.server
import shutil
import socket
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mlp.runs.data import splits
from mlp.runs.data import DATASETS, SPLIT_SEED, encode_idx, load_dataset, parse_idx, read_idx
from mlp.errors import UsageError
from helpers.paths import DATA, FASHION_SUBSET, SHARED_MNIST

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# ------------------------------------------------------------------------------------------
# helpers and fixtures
# ------------------------------------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    """Hand-built IDX bytes (independent of mlp.runs.data.encode_idx)."""
    a = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.tobytes()


def subset_arrays() -> dict[str, np.ndarray]:
    return {f: read_idx(FASHION_SUBSET / (f + ".gz")) for f in FILES}


def subset_sums() -> dict[str, str]:
    sums = {}
    for line in (FASHION_SUBSET / "checksums.sha256").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def write_set(directory: Path, train_per_class: int, test_per_class: int,
              manifest: bool = True, gz: bool = False) -> Path:
    """A smaller stratified set cut from the subset: first N per class, with a manifest."""
    arrays = subset_arrays()
    directory.mkdir(parents=True, exist_ok=True)
    keep = {}
    for prefix, n in (("train", train_per_class), ("t10k", test_per_class)):
        labels = arrays[f"{prefix}-labels-idx1-ubyte"]
        keep[prefix] = np.sort(np.concatenate(
            [np.flatnonzero(labels == c)[:n] for c in range(10)]))
    lines = []
    for f in FILES:
        raw = idx(arrays[f][keep[f.split("-")[0]]])
        if gz:
            (directory / (f + ".gz")).write_bytes(gzip.compress(raw, mtime=0))
        else:
            (directory / f).write_bytes(raw)
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {f}\n")
    if manifest:
        (directory / "checksums.sha256").write_text("".join(lines))
    return directory


def files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def per_class(y: np.ndarray) -> list[int]:
    return np.bincount(y, minlength=10).tolist()


def rows(x: np.ndarray) -> Counter:
    return Counter(r.tobytes() for r in np.ascontiguousarray(x))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No env overrides, no proxies, and a private cache: tests never see the real ~/.cache."""
    for var in ("MLP_DATA_DIR", "MLP_DATA_MIRROR", "XDG_CACHE_HOME", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLP_CACHE_DIR", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


def replace_spec(monkeypatch, name="fashion_mnist", **changes):
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], **changes))


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Hide the Debian directories so only data_dir, cache and download remain."""
    for name in list(DATASETS):
        replace_spec(monkeypatch, name, debian_dir=str(tmp_path / "no-debian" / name))


@pytest.fixture
def subset_checksums(monkeypatch):
    """Make the subset's checksums the 'official' ones, so downloads of it verify."""
    replace_spec(monkeypatch, sha256=subset_sums())


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(directory) -> (base URL, list of requested paths), on 127.0.0.1, ephemeral port."""
    servers = []

    def start(directory: Path):
        handler = functools.partial(_Handler, directory=str(directory))
        server = _Server(("127.0.0.1", 0), handler)
        server.requests = []
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gz_dir(tmp_path):
    """A folder with the subset's four .gz files and no manifest (what a mirror serves)."""
    d = tmp_path / "mirror"
    d.mkdir()
    for f in FILES:
        shutil.copy(FASHION_SUBSET / (f + ".gz"), d / (f + ".gz"))
    return d


# ------------------------------------------------------------------------------------------
# IDX parsing
# ------------------------------------------------------------------------------------------

def test_parse_idx_valid_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    out = parse_idx(idx(images))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    assert out[1, 2, 3] == 230 and out[0, 0, 1] == 10
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] = 7  # a writable array, not a view of the bytes
    labels = parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4]))
    assert labels.tolist() == [9, 0, 4] and labels.shape == (3,)


def test_encode_idx_round_trips():
    a = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    assert encode_idx(a) == idx(a)
    np.testing.assert_array_equal(parse_idx(encode_idx(a)), a)


GOOD = idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize("raw, words", [
    (b"\x01" + GOOD[1:], ["magic number 0x01000803"]),
    (GOOD[:2] + b"\x0d" + GOOD[3:], ["type code 0x0d", "float32"]),
    (GOOD[:-1], ["truncated", "needs 24 data bytes", "has 23"]),
    (GOOD + b"junk", ["4 unexpected bytes"]),
    (GOOD[:10], ["truncated", "header needs 16 bytes"]),
    (b"\x00\x00", ["only 2 bytes"]),
    (b"\x00\x00\x08\x00", ["0 dimensions"]),
])
def test_parse_idx_rejects_bad_data(raw, words):
    with pytest.raises(UsageError) as err:
        parse_idx(raw, what="blob.idx")
    msg = str(err.value)
    assert "blob.idx" in msg and "fix:" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_read_idx_raw_and_gzip(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    (tmp_path / "a").write_bytes(idx(a))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx(a)))
    (tmp_path / "two.gz").write_bytes(gzip.compress(idx(a)[:30]) + gzip.compress(idx(a)[30:]))
    for name in ("a", "a.gz", "two.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), a)


def test_read_idx_bad_files_name_the_file(tmp_path):
    good = gzip.compress(idx(np.zeros((100, 28, 28), np.uint8) + 7), mtime=0)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    cases = {
        "corrupt.gz": (bytes(flipped), "not a valid gzip file"),
        "cut.gz": (good[: len(good) // 2], "truncated gzip"),
        "plain.gz": (idx(np.zeros(3, np.uint8)), "no gzip magic"),
        "garbage.gz": (good + b"trailing", "garbage after its gzip data"),
        "short.gz": (gzip.compress(idx(np.zeros((2, 28, 28), np.uint8))[:-5]), "truncated"),
        "magic": (b"PK\x03\x04" + bytes(20), "magic number"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UsageError) as err:
            read_idx(path)
        assert str(path) in str(err.value) and words in str(err.value), name
    with pytest.raises(UsageError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")


# ------------------------------------------------------------------------------------------
# the committed subset, standard split
# ------------------------------------------------------------------------------------------

def test_subset_files_match_manifest_and_rule():
    arrays = subset_arrays()
    for f, digest in subset_sums().items():
        assert hashlib.sha256(gzip.decompress((FASHION_SUBSET / (f + ".gz")).read_bytes())).hexdigest() == digest
    assert arrays["train-images-idx3-ubyte"].shape == (2000, 28, 28)
    assert arrays["t10k-images-idx3-ubyte"].shape == (500, 28, 28)
    assert per_class(arrays["train-labels-idx1-ubyte"]) == [200] * 10
    assert per_class(arrays["t10k-labels-idx1-ubyte"]) == [50] * 10
    # the first images of the official files are always chosen: Ankle boot, T-shirt/top, ...
    assert arrays["train-labels-idx1-ubyte"][:5].tolist() == [9, 0, 0, 3, 0]
    assert arrays["t10k-labels-idx1-ubyte"][:5].tolist() == [9, 2, 1, 1, 6]


def test_subset_loads_with_stratified_validation():
    ds = load_dataset("fashion_mnist", data_dir=DATA, download=False)
    assert ds.name == "fashion_mnist" and str(FASHION_SUBSET) in ds.source
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1800, 200, 500)
    assert per_class(ds.y_val) == [20] * 10
    assert per_class(ds.y_train) == [180] * 10
    assert per_class(ds.y_test) == [50] * 10
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and x.shape == (len(y), 784) and x.flags.c_contiguous
        assert y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 1.0
    arrays = subset_arrays()
    # the test set is the subset's test file, in order, pixels / 255 exactly
    expected = arrays["t10k-images-idx3-ubyte"].reshape(500, 784).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(ds.x_test, expected)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.x_test[0, 300] == np.float32(arrays["t10k-images-idx3-ubyte"][0, 10, 20] / 255)
    # train and val partition the training file: disjoint, together exactly the 2,000 images
    train_u8 = np.rint(np.concatenate([ds.x_train, ds.x_val]) * 255).astype(np.uint8)
    assert rows(train_u8) == rows(arrays["train-images-idx3-ubyte"].reshape(2000, 784))
    pairs = Counter(zip(map(bytes, train_u8), np.concatenate([ds.y_train, ds.y_val]).tolist()))
    assert pairs == Counter(zip(map(bytes, arrays["train-images-idx3-ubyte"].reshape(2000, 784)),
                                arrays["train-labels-idx1-ubyte"].tolist()))


def test_split_is_deterministic_and_follows_the_seed():
    a = load_dataset(data_dir=DATA, download=False)
    b = load_dataset(data_dir=DATA, download=False)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = load_dataset(data_dir=DATA, download=False, split_seed=SPLIT_SEED + 1)
    assert per_class(c.y_val) == [20] * 10
    assert rows(c.x_val) != rows(a.x_val)
    np.testing.assert_array_equal(c.x_test, a.x_test)


def test_val_fraction_is_honoured():
    ds = load_dataset(data_dir=DATA, download=False, val_fraction=0.25)
    assert per_class(ds.y_val) == [50] * 10 and len(ds.y_train) == 1500


def test_uneven_classes_get_exact_total():
    """MNIST-like uneven classes: per class floor/ceil of the fraction, total exactly rounded."""
    counts = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    sizes = splits._apportion(counts, 0.1)
    assert sizes.sum() == 6000
    assert sizes.tolist() == [592, 674, 596, 613, 584, 542, 592, 627, 585, 595]
    y = np.repeat(np.arange(10), [7, 13, 20, 1, 9, 30, 11, 5, 17, 3])
    val, train = splits._stratified(y, [0.1], seed=3, n_classes=10)
    assert len(val) == round(0.1 * len(y)) and len(val) + len(train) == len(y)
    assert not set(val) & set(train)


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "cifar10"}, ["unknown dataset 'cifar10'", "fashion_mnist, mnist"]),
    ({"split": "70-30"}, ["unknown split '70-30'", "standard, 80-10-10"]),
    ({"val_fraction": 0.0}, ["val_fraction", "between 0 and 1"]),
    ({"val_fraction": 1.0}, ["val_fraction"]),
    ({"val_fraction": -0.1}, ["val_fraction"]),
    ({"val_fraction": float("nan")}, ["val_fraction"]),
    ({"split_seed": -1}, ["split_seed"]),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(UsageError) as err:
        load_dataset(**{"data_dir": DATA, "download": False, **kwargs})
    for w in words:
        assert w in str(err.value)


def test_80_10_10_split_on_subset():
    ds = load_dataset(data_dir=DATA, split="80-10-10", download=False)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (2000, 250, 250)
    assert per_class(ds.y_train) == [200] * 10
    assert per_class(ds.y_val) == [25] * 10 and per_class(ds.y_test) == [25] * 10
    arrays = subset_arrays()
    pooled = np.concatenate([arrays["train-images-idx3-ubyte"], arrays["t10k-images-idx3-ubyte"]])
    got = np.rint(np.concatenate([ds.x_train, ds.x_val, ds.x_test]) * 255).astype(np.uint8)
    assert rows(got) == rows(pooled.reshape(2500, 784))
    # val_fraction is ignored for 80-10-10
    other = load_dataset(data_dir=DATA, split="80-10-10", download=False, val_fraction=0.3)
    np.testing.assert_array_equal(other.x_val, ds.x_val)
    np.testing.assert_array_equal(other.y_test, ds.y_test)


# ------------------------------------------------------------------------------------------
# checksums
# ------------------------------------------------------------------------------------------

def test_checksum_mismatch_against_official_table(tmp_path):
    d = tmp_path / "d"
    shutil.copytree(FASHION_SUBSET, d)
    (d / "checksums.sha256").unlink()  # no manifest: the official table applies
    with pytest.raises(UsageError) as err:
        load_dataset(data_dir=d, download=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte" in msg
    assert "expected SHA-256 c59f468a2f672dc8" in msg and "got a724cd72799a6b1c" in msg
    assert "fix:" in msg


def test_checksum_mismatch_against_manifest(tmp_path):
    d = write_set(tmp_path / "d", 10, 5)
    raw = bytearray((d / "t10k-labels-idx1-ubyte").read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # a valid label, but not the one the manifest vouches for
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(UsageError, match=r"checksum mismatch for .*t10k-labels-idx1-ubyte.*manifest"):
        load_dataset(data_dir=d, download=False)


@pytest.mark.parametrize("squatter,words", [(lambda f: f.mkdir(), "is a folder, not a file"),
                                            (os.mkfifo, "is a named pipe (FIFO), not a file")], ids=["folder", "fifo"])
def test_a_manifest_that_is_not_a_file_is_refused_not_ignored(tmp_path, squatter, words):
    """Ignoring it would check the folder's files against the official table instead: a subset
    would then fail as a "checksum mismatch", which is not what is wrong."""
    d = write_set(tmp_path / "d", 10, 5)
    (d / "checksums.sha256").unlink()
    squatter(d / "checksums.sha256")
    with pytest.raises(UsageError) as err:
        load_dataset(data_dir=d, download=False, use_cache=False)
    assert f"manifest {d / 'checksums.sha256'} {words}" in str(err.value), str(err.value)


def test_manifest_without_an_entry_is_an_error(tmp_path):
    d = write_set(tmp_path / "d", 10, 5)
    lines = (d / "checksums.sha256").read_text().splitlines()
    (d / "checksums.sha256").write_text("\n".join(l for l in lines if "t10k-images" not in l))
    with pytest.raises(UsageError, match="no entry for t10k-images-idx3-ubyte"):
        load_dataset(data_dir=d, download=False)
    (d / "checksums.sha256").write_text("not a checksum line\n")
    with pytest.raises(UsageError, match="checksums.sha256:1 is not"):
        load_dataset(data_dir=d, download=False)


def test_consistency_checks(tmp_path):
    d = write_set(tmp_path / "d", 10, 5)
    bad = {"train-labels-idx1-ubyte": idx(np.full(100, 12, np.uint8))}
    for f, raw in bad.items():
        (d / f).write_bytes(raw)
    lines = [f"{hashlib.sha256((d / f).read_bytes()).hexdigest()}  {f}" for f in FILES]
    (d / "checksums.sha256").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="labels .* go up to 12"):
        load_dataset(data_dir=d, download=False)
    (d / "train-labels-idx1-ubyte").write_bytes(idx(np.zeros(99, np.uint8)))
    lines = [f"{hashlib.sha256((d / f).read_bytes()).hexdigest()}  {f}" for f in FILES]
    (d / "checksums.sha256").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="100 training images but 99 training labels"):
        load_dataset(data_dir=d, download=False)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not found at {SHARED_MNIST}")
def test_mnist_files_asked_for_as_fashion_are_recognised():
    with pytest.raises(UsageError, match="it is mnist's train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", data_dir=SHARED_MNIST, download=False)


# ------------------------------------------------------------------------------------------
# sources and their order
# ------------------------------------------------------------------------------------------

def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(UsageError, match=r"data directory .*nowhere \(--data_dir\) does not exist"):
        load_dataset(data_dir=tmp_path / "nowhere")


def test_explicit_data_dir_without_files_names_them(tmp_path, no_debian):
    d = tmp_path / "d"
    (d / "fashion_mnist").mkdir(parents=True)
    (d / "fashion_mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(UsageError) as err:
        load_dataset(data_dir=d)  # no fall-through to the cache or a download
    msg = str(err.value)
    assert "holds no complete fashion_mnist" in msg
    assert "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]" in msg
    assert "train-images-idx3-ubyte[.gz]," not in msg


def test_flat_and_hyphenated_layouts(tmp_path):
    flat = write_set(tmp_path / "flat", 10, 5, gz=True)
    ds = load_dataset(data_dir=flat, download=False)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (90, 10, 50)
    write_set(tmp_path / "top" / "fashion-mnist", 20, 5)
    ds = load_dataset(data_dir=tmp_path / "top", download=False)
    assert (len(ds.y_train), len(ds.y_val)) == (180, 20)


def test_env_data_dir(monkeypatch, tmp_path, isolated, no_debian):
    monkeypatch.setenv("MLP_DATA_DIR", str(DATA))
    ds = load_dataset(download=False)
    assert len(ds.y_train) == 1800 and "MLP_DATA_DIR" in ds.source
    # MLP_DATA_DIR without this dataset falls through to the cache (unlike --data_dir)
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path))
    write_set(isolated / "fashion_mnist", 30, 5)
    ds = load_dataset(download=False)
    assert len(ds.y_train) + len(ds.y_val) == 300 and "(cache)" in ds.source
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(UsageError, match=r"\(MLP_DATA_DIR\) does not exist"):
        load_dataset(download=False)


def test_source_order(monkeypatch, tmp_path, serve, gz_dir, subset_checksums):
    """data_dir beats the cache, the cache beats Debian, Debian beats a download."""
    cache = write_set(tmp_path / "c" / "fashion_mnist", 50, 10)        # 500 train images
    deb = write_set(tmp_path / "deb", 30, 10)                          # 300 train images
    replace_spec(monkeypatch, debian_dir=str(deb))
    url, requests = serve(gz_dir)                                      # 2,000 train images
    kw = dict(mirrors=[url], cache_dir=tmp_path / "c")

    ds = load_dataset(data_dir=DATA, **kw)
    assert len(ds.y_train) + len(ds.y_val) == 2000 and "--data_dir" in ds.source
    ds = load_dataset(**kw)
    assert len(ds.y_train) + len(ds.y_val) == 500 and ds.source == f"{cache} (cache)"
    shutil.rmtree(cache)
    ds = load_dataset(**kw)
    assert len(ds.y_train) + len(ds.y_val) == 300 and "Debian" in ds.source
    assert requests == []
    shutil.rmtree(deb)
    ds = load_dataset(**kw, progress=lambda m: None)
    assert len(ds.y_train) + len(ds.y_val) == 2000 and ds.source.startswith(f"downloaded from {url}")
    assert len(requests) == 4


def test_cache_dir_from_home_by_default(monkeypatch, tmp_path, no_debian):
    monkeypatch.delenv("MLP_CACHE_DIR")
    write_set(tmp_path / "home" / ".cache" / "mlp-sweeps" / "fashion_mnist", 10, 5)
    assert len(load_dataset(download=False).y_val) == 10
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_set(tmp_path / "xdg" / "mlp-sweeps" / "fashion_mnist", 20, 5)
    assert len(load_dataset(download=False).y_val) == 20


def test_nothing_found_offline_names_every_option(isolated, no_debian):
    with pytest.raises(UsageError) as err:
        load_dataset("fashion_mnist", download=False)
    msg = str(err.value)
    assert "\n" not in msg
    for w in ("--data_dir", "MLP_DATA_DIR", "apt-get install dataset-fashion-mnist",
              str(isolated / "fashion_mnist"), "downloading is disabled"):
        assert w in msg, w
    with pytest.raises(UsageError) as err:
        load_dataset("mnist", download=False)
    assert "--data_dir" in str(err.value) and "apt-get" not in str(err.value)


def test_unreachable_mirror(isolated, no_debian):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UsageError) as err:
        load_dataset(mirrors=[f"http://127.0.0.1:{port}/"], progress=lambda m: None)
    msg = str(err.value)
    assert "the download failed" in msg and f"127.0.0.1:{port}" in msg and "refused" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data_dir" in msg
    assert files_in(isolated) == []


# ------------------------------------------------------------------------------------------
# downloads from a loopback server
# ------------------------------------------------------------------------------------------

def test_download_verifies_caches_and_is_not_repeated(isolated, no_debian, serve, gz_dir,
                                                      subset_checksums):
    url, requests = serve(gz_dir)
    messages = []
    ds = load_dataset(mirrors=[url], progress=messages.append)
    assert len(ds.y_train) == 1800 and len(ds.y_test) == 500
    assert sorted(requests) == sorted(f"/{f}.gz" for f in FILES)
    assert any("downloading fashion_mnist train-images-idx3-ubyte.gz" in m for m in messages)
    cache = isolated / "fashion_mnist"
    assert [p.name for p in files_in(cache)] == sorted(FILES)  # decompressed, no temp files
    assert not [p for p in files_in(isolated) if p.name.startswith(".")]        # nor in the split cache
    sums = subset_sums()
    for f in FILES:
        assert hashlib.sha256((cache / f).read_bytes()).hexdigest() == sums[f]
    again = load_dataset(mirrors=[url], progress=messages.append)
    assert len(requests) == 4 and again.source == f"{cache} (cache)"
    np.testing.assert_array_equal(again.x_val, ds.x_val)
    local = load_dataset(data_dir=DATA)
    np.testing.assert_array_equal(local.x_train, ds.x_train)


def test_download_from_env_mirror_and_fallback(monkeypatch, tmp_path, isolated, no_debian,
                                               serve, gz_dir, subset_checksums):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_url, bad_requests = serve(empty)
    good_url, good_requests = serve(gz_dir)
    ds = load_dataset(mirrors=[bad_url, good_url], progress=lambda m: None)
    assert len(ds.y_train) == 1800 and len(bad_requests) == 4 and len(good_requests) == 4
    shutil.rmtree(isolated)
    monkeypatch.setenv("MLP_DATA_MIRROR", good_url.rstrip("/"))  # a base without the slash
    assert len(load_dataset(progress=lambda m: None).y_val) == 200 and len(good_requests) == 8


def test_failing_mirror_404_leaves_no_file(tmp_path, isolated, no_debian, serve,
                                           subset_checksums):
    empty = tmp_path / "empty"
    empty.mkdir()
    url, requests = serve(empty)
    with pytest.raises(UsageError) as err:
        load_dataset(mirrors=[url], progress=lambda m: None)
    msg = str(err.value)
    assert "HTTP 404" in msg and f"{url}train-images-idx3-ubyte.gz" in msg
    assert requests == ["/train-images-idx3-ubyte.gz"]
    assert files_in(isolated) == []


@pytest.mark.parametrize("damage, words", [
    ("tamper", "checksum mismatch"),
    ("corrupt", "not a valid gzip file"),
    ("truncate", "truncated"),
])
def test_bad_file_from_mirror_leaves_no_file(isolated, no_debian, serve, gz_dir,
                                             subset_checksums, damage, words):
    """Three good files and one bad: nothing at all is written to the cache."""
    target = gz_dir / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    if damage == "tamper":
        raw[-1] = (raw[-1] + 1) % 10
        target.write_bytes(gzip.compress(bytes(raw)))
    elif damage == "corrupt":
        gz = bytearray(target.read_bytes())
        gz[len(gz) // 2] ^= 0xFF
        target.write_bytes(bytes(gz))
    else:
        target.write_bytes(target.read_bytes()[:-20])
    url, requests = serve(gz_dir)
    with pytest.raises(UsageError) as err:
        load_dataset(mirrors=[url], progress=lambda m: None)
    assert words in str(err.value) and "t10k-labels-idx1-ubyte" in str(err.value)
    assert len(requests) == 4
    assert files_in(isolated) == []


def test_official_checksums_reject_other_content(isolated, no_debian, serve, gz_dir):
    url, _ = serve(gz_dir)  # the subset is not the official file: rejected, nothing cached
    with pytest.raises(UsageError, match="checksum mismatch .* expected SHA-256 c59f468a2f672dc8"):
        load_dataset(mirrors=[url], progress=lambda m: None)
    assert files_in(isolated) == []


def test_partial_cache_is_completed(isolated, no_debian, serve, gz_dir, subset_checksums):
    cache = isolated / "fashion_mnist"
    cache.mkdir(parents=True)
    for f in FILES[:2]:
        (cache / f).write_bytes(gzip.decompress((FASHION_SUBSET / (f + ".gz")).read_bytes()))
    (cache / (FILES[2] + ".gz")).write_bytes(b"left over from a broken copy")
    url, requests = serve(gz_dir)
    ds = load_dataset(mirrors=[url], progress=lambda m: None)
    assert len(ds.y_test) == 500
    assert sorted(requests) == sorted(f"/{f}.gz" for f in FILES[2:])
    assert [p.name for p in files_in(cache)] == sorted(FILES)


# ------------------------------------------------------------------------------------------
# the full real datasets
# ------------------------------------------------------------------------------------------

def _debian_or_skip():
    if not all((DEBIAN_FASHION / (f + ".gz")).is_file() for f in FILES):
        pytest.skip(f"Debian Fashion-MNIST not installed in {DEBIAN_FASHION} "
                    f"(apt-get install dataset-fashion-mnist)")


@pytest.mark.slow
def test_full_fashion_mnist_from_debian():
    _debian_or_skip()
    ds = load_dataset("fashion_mnist", download=False)
    assert "Debian package dataset-fashion-mnist" in ds.source
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (54000, 6000, 10000)
    assert per_class(ds.y_val) == [600] * 10 and per_class(ds.y_test) == [1000] * 10
    assert ds.x_train.shape == (54000, 784) and ds.x_train.dtype == np.float32
    assert ds.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert 0.28 < float(ds.x_test.mean()) < 0.29


@pytest.mark.slow
def test_full_fashion_mnist_80_10_10():
    _debian_or_skip()
    ds = load_dataset("fashion_mnist", split="80-10-10", download=False)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (56000, 7000, 7000)
    assert per_class(ds.y_train) == [5600] * 10
    assert per_class(ds.y_val) == [700] * 10 and per_class(ds.y_test) == [700] * 10


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not found at {SHARED_MNIST}")
def test_full_mnist_from_shared_data(no_debian):
    ds = load_dataset("mnist", data_dir=SHARED_MNIST.parent, download=False)
    assert ds.source == f"{SHARED_MNIST} (--data_dir)"
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (54000, 6000, 10000)
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert [a + b for a, b in zip(per_class(ds.y_train), per_class(ds.y_val))] == train_counts
    assert per_class(ds.y_val) == splits._apportion(np.array(train_counts), 0.1).tolist()
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    flat = load_dataset("mnist", data_dir=SHARED_MNIST, download=False, split="80-10-10")
    assert (len(flat.y_train), len(flat.y_val), len(flat.y_test)) == (56000, 7000, 7000)


# ------------------------------------------------------------------------------------------
# the split cache
# ------------------------------------------------------------------------------------------

def test_split_cache_returns_the_same_arrays_memory_mapped(tmp_path):
    cache = tmp_path / "cache"
    fresh = load_dataset(data_dir=DATA, download=False, cache_dir=cache, use_cache=False)
    first = load_dataset(data_dir=DATA, download=False, cache_dir=cache)
    second = load_dataset(data_dir=DATA, download=False, cache_dir=cache)
    assert len(list((cache / "splits").iterdir())) == 1
    assert isinstance(second.x_train, np.memmap) and not second.x_train.flags.writeable
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        for ds in (first, second):
            got = getattr(ds, part)
            assert got.dtype == getattr(fresh, part).dtype and np.array_equal(got, getattr(fresh, part)), part
    other = load_dataset(data_dir=DATA, download=False, cache_dir=cache, val_fraction=0.2)
    assert len(other.y_val) != len(first.y_val) and len(list((cache / "splits").iterdir())) == 2


def test_a_cached_split_names_where_its_files_were_found_this_time(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLP_DATA_DIR", str(DATA))
    assert "(MLP_DATA_DIR)" in load_dataset(download=False, cache_dir=cache).source       # builds the cache
    again = load_dataset(data_dir=DATA, download=False, cache_dir=cache)
    assert isinstance(again.x_train, np.memmap) and "(--data_dir)" in again.source       # from the cache


def test_split_cache_is_not_used_when_a_source_file_changes(tmp_path):
    data = tmp_path / "data" / "fashion_mnist"
    data.mkdir(parents=True)
    for f in (DATA / "fashion_mnist").iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    cache = tmp_path / "cache"
    load_dataset(data_dir=data.parent, download=False, cache_dir=cache)
    target = data / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(raw[:-1] + bytes([(raw[-1] + 1) % 10])))   # damaged after caching
    with pytest.raises(UsageError, match="checksum mismatch"):
        load_dataset(data_dir=data.parent, download=False, cache_dir=cache)


def test_an_unwritable_cache_is_skipped(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would go")
    ds = load_dataset(data_dir=DATA, download=False, cache_dir=blocker)
    assert len(ds.y_train) == 1800 and blocker.is_file()


# ---- a damaged split cache is converted again, never trusted ---------------------------------------

def _entry(cache):
    (entry,) = (cache / "splits").iterdir()
    return entry


def _restamp(entry):
    """After tampering with an entry's arrays, make its meta.json's size/mtime stamps match again
    (as if the tampering had been done carefully): only the content checks can catch it."""
    import json as _json
    meta = _json.loads((entry / "meta.json").read_text())
    for part in meta["files"]:
        st = (entry / f"{part}.npy").stat()
        meta["files"][part] = [st.st_size, st.st_mtime_ns]
    (entry / "meta.json").write_text(_json.dumps(meta))


CACHE_DAMAGE = {
    "meta a list": lambda e: (e / "meta.json").write_text("[]"),
    "meta null": lambda e: (e / "meta.json").write_text("null"),
    "meta a number": lambda e: (e / "meta.json").write_text("1"),
    "meta deeply nested": lambda e: (e / "meta.json").write_text("[" * 100_000 + "]" * 100_000),
    "meta not JSON": lambda e: (e / "meta.json").write_text("{"),
    "meta files not an object": lambda e: (e / "meta.json").write_text('{"version": 1, "files": 5}'),
    "meta a folder": lambda e: ((e / "meta.json").unlink(), (e / "meta.json").mkdir()),
    "x_test 0-d": lambda e: (np.save(e / "x_test.npy", np.float32(1)), _restamp(e)),
    "y_train labels out of range": lambda e: (np.save(e / "y_train.npy", np.load(e / "y_train.npy") + 10),
                                              _restamp(e)),
    "y_val negative": lambda e: (np.save(e / "y_val.npy", np.load(e / "y_val.npy") - 1), _restamp(e)),
    "x_train of another width": lambda e: (np.save(e / "x_train.npy", np.load(e / "x_train.npy")[:, :100]),
                                           _restamp(e)),
    "y_test shorter than x_test": lambda e: (np.save(e / "y_test.npy", np.load(e / "y_test.npy")[:-1]), _restamp(e)),
    "x_val of integers": lambda e: (np.save(e / "x_val.npy", np.load(e / "x_val.npy").astype(np.int64)), _restamp(e)),
    "an array pickled": lambda e: (np.save(e / "val_index.npy", np.array([None], dtype=object), allow_pickle=True),
                                   _restamp(e)),
    "an array file a FIFO": lambda e: ((e / "y_test.npy").unlink(), os.mkfifo(e / "y_test.npy")),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_split_cache_entry_is_rebuilt(tmp_path, damage):
    cache = tmp_path / "cache"
    fresh = load_dataset(data_dir=DATA, download=False, cache_dir=cache)
    entry = _entry(cache)
    CACHE_DAMAGE[damage](entry)
    again = load_dataset(data_dir=DATA, download=False, cache_dir=cache)       # no error: converted again
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(again, part), getattr(fresh, part)), part
    third = load_dataset(data_dir=DATA, download=False, cache_dir=cache)       # ...and the entry replaced
    assert isinstance(third.x_train, np.memmap) and np.array_equal(third.y_test, fresh.y_test)
    assert [p.name for p in (cache / "splits").iterdir()] == [entry.name]


# ---- data files that cannot be data ----------------------------------------------------------------------

def _copy_subset(tmp_path):
    folder = tmp_path / "d" / "fashion_mnist"
    shutil.copytree(DATA / "fashion_mnist", folder)
    return folder


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


DATA_FILE_DAMAGE = {
    "a 20 GB sparse raw file": lambda f: (f.unlink(), _sparse(f.with_suffix(""), 20 << 30)),
    "a 20 GB sparse .gz file": lambda f: _sparse(f, 20 << 30),
    "a FIFO": lambda f: (f.unlink(), os.mkfifo(f)),
    "a folder": lambda f: (f.unlink(), f.mkdir()),
    "IDX with 255 dimensions": lambda f: f.write_bytes(gzip.compress(bytes([0, 0, 8, 255]) + b"\0\0\0\1" * 255 + b"x")),
    "IDX with 33 dimensions": lambda f: f.write_bytes(gzip.compress(bytes([0, 0, 8, 33]) + b"\0\0\0\1" * 33 + b"x")),
    "a gzip bomb header": lambda f: f.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3)),
    "empty": lambda f: f.write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(DATA_FILE_DAMAGE))
def test_a_data_file_that_cannot_be_data_is_one_error(tmp_path, damage):
    import signal as _signal
    folder = _copy_subset(tmp_path)
    DATA_FILE_DAMAGE[damage](folder / "train-images-idx3-ubyte.gz")

    def hung(signum, frame):
        raise KeyboardInterrupt("blocked on a data file")
    previous = _signal.signal(_signal.SIGALRM, hung)
    _signal.alarm(20)
    try:
        with pytest.raises(UsageError) as e:
            load_dataset(data_dir=folder.parent, download=False, use_cache=False)
    finally:
        _signal.alarm(0)
        _signal.signal(_signal.SIGALRM, previous)
    assert "train-images" in str(e.value) and "\n" not in str(e.value), str(e.value)
    squatter = {"a FIFO": "is a named pipe (FIFO), not a file", "a folder": "is a folder, not a file"}.get(damage)
    if squatter:                # named for what it is, not as if the file were simply missing
        assert f"train-images-idx3-ubyte.gz {squatter}" in str(e.value), str(e.value)


def test_a_huge_manifest_is_refused_without_being_read_whole(tmp_path):
    """A sparse 2 GiB checksums file: one line, and memory stays small (it is not read whole)."""
    import tracemalloc
    d = write_set(tmp_path / "d", 10, 5)
    with open(d / "checksums.sha256", "r+b") as f:
        f.truncate(2 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="larger than 1 MiB") as info:
            load_dataset(data_dir=d, download=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value) and peak < 16 << 20


@pytest.mark.parametrize("mirror", ["notaurl", "ftp://host/x/", "http://", "https:// host/", "//host/x"])
def test_a_malformed_mirror_variable_is_one_line_before_any_download(isolated, no_debian, monkeypatch, mirror):
    monkeypatch.setenv("MLP_DATA_MIRROR", mirror)
    said = []
    with pytest.raises(UsageError, match="MLP_DATA_MIRROR=.* is not an http://, https:// or file:// URL") as info:
        load_dataset(progress=said.append)
    assert said == [] and "\n" not in str(info.value)
    assert not isolated.exists() or not any(isolated.rglob("*"))
