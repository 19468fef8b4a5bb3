"""The datasets: what `load_dataset` knows about Fashion-MNIST and MNIST (files, checksums of their
decompressed content, mirrors, Debian's folder, class names), the splits it makes, and the
`Dataset` it returns. Every bad input anywhere in mlp.runs.data raises `DataError`: one line naming
the problem and the fix."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from mlp.errors import UsageError


class DataError(UsageError):
    """A data file or data source is missing, corrupt or not what was asked for."""


# The seed of the validation split. Fixed so that every run of a sweep validates on the same
# images; changing it changes every validation set and makes old runs incomparable.
SPLIT_SEED = 20240229

SPLITS = ("standard", "80-10-10")

# The four files of both datasets, by role; the names carry no ".gz".
_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MANIFEST_NAME = "checksums.sha256"

DOWNLOAD_TIMEOUT = 30.0  # seconds per connection attempt / socket read
_MAX_FILE_BYTES = 128 * 2**20  # the largest real file is 47 MB decompressed

CLASS_NAMES: dict[str, list[str]] = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything `load_dataset` knows about one dataset."""

    name: str
    class_names: tuple[str, ...]
    files: Mapping[str, str]  # role -> file name without .gz
    sha256: Mapping[str, str]  # file name -> SHA-256 of the decompressed content
    mirrors: tuple[str, ...]  # base URLs; a file is fetched from BASE + NAME.gz
    debian_dir: str | None = None
    debian_package: str | None = None
    dir_names: tuple[str, ...] = field(default=())  # sub-folder names accepted under a data dir

    @property
    def file_names(self) -> list[str]:
        return [self.files[role] for role in _ROLES]


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        class_names=tuple(CLASS_NAMES["fashion_mnist"]),
        files=dict(_FILES),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        debian_dir="/usr/share/datasets/fashion-mnist",
        debian_package="dataset-fashion-mnist",
        dir_names=("fashion_mnist", "fashion-mnist"),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(CLASS_NAMES["mnist"]),
        files=dict(_FILES),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        debian_dir="/usr/share/datasets/mnist",  # no package ships it today; used if present
        debian_package=None,
        dir_names=("mnist",),
    ),
}


@dataclass
class Dataset:
    """A loaded dataset: x float32 (n, 784) = pixels / 255, y int64 labels in 0..9."""

    name: str
    class_names: list[str]
    source: str  # where the files came from, for humans
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: str = "standard"
    # which rows were drawn for validation: indices into the official training file (standard
    # split) or into training + test files concatenated (80-10-10); None when not made by load_dataset
    val_index: np.ndarray | None = None

    @property
    def val_rows_sha256(self) -> str | None:
        """A digest naming exactly this validation set: the dataset, the split and the rows drawn
        (what `mlp baselines` stores, so a report pairs baselines with runs of the same split)."""
        if self.val_index is None:
            return None
        digest = hashlib.sha256(f"{self.name}/{self.split}/".encode())
        digest.update(np.ascontiguousarray(self.val_index, dtype="<i8").tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, source={self.source!r})")
