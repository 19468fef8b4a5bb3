"""Where the tests find things: the repository, the committed real Fashion-MNIST subset, PyTorch's
recorded reference numbers, and the real datasets the slow tests need (skipped cleanly without them)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]              # the repository
DATA = ROOT / "tests" / "data"                          # the subset: DATA / "fashion_mnist"
FASHION_SUBSET = DATA / "fashion_mnist"
REFERENCE = ROOT / "tests" / "reference"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"   # real MNIST beside the checkout (CI puts it there)


def needs_real_fashion_mnist():
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist")


def needs_real_mnist():
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"needs the real MNIST in {SHARED_MNIST}")
