"""Write tests/data/fashion_mnist/: a small, real, stratified Fashion-MNIST subset for the tests.

Selection rule (deterministic, no randomness): from the official training set, the first 200
images of each of the 10 classes in file order (2,000 images); from the official test set, the
first 50 images of each class in file order (500 images). The chosen images keep their original
relative order, so the subset is the official files with the other images left out.

Output: the four IDX files gzip-compressed with mtime 0 and no file name in the header (so
re-running the script gives byte-identical files), plus ``checksums.sha256`` holding the SHA-256 of
each file's *decompressed* content in ``sha256sum`` format; `mlp.runs.data.load_dataset` verifies a
folder with that manifest against it instead of the official checksum table.

The source files are the real Fashion-MNIST, read with `mlp.runs.data` from the Debian package
directory (``apt-get install dataset-fashion-mnist``) or ``--source DIR``, and verified against
the official checksums before anything is written.

    python tests/data/make_subset.py [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

from mlp.runs.data import DATASETS, MANIFEST_NAME, encode_idx, read_idx

TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50
HERE = Path(__file__).resolve().parent


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` examples of every class, in file order."""
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    for c, idx in enumerate(chosen):
        if len(idx) < per_class:
            sys.exit(f"error: class {c} has only {len(idx)} examples, {per_class} needed")
    return np.sort(np.concatenate(chosen))


def read_verified(directory: Path, fname: str) -> np.ndarray:
    """Read `fname` (raw or .gz) from `directory`, checking the official content checksum."""
    spec = DATASETS["fashion_mnist"]
    path = directory / fname if (directory / fname).is_file() else directory / (fname + ".gz")
    array = read_idx(path)
    # encode_idx re-creates the exact file content (header included) from the parsed array.
    digest = hashlib.sha256(encode_idx(array)).hexdigest()
    if digest != spec.sha256[fname]:
        sys.exit(f"error: {path} is not the official {fname} (SHA-256 {digest[:16]}...)")
    return array


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path,
                        default=Path(DATASETS["fashion_mnist"].debian_dir),
                        help="folder with the real Fashion-MNIST IDX files "
                             "(default: the Debian package directory)")
    parser.add_argument("--out", type=Path, default=HERE / "fashion_mnist",
                        help="output folder (default: tests/data/fashion_mnist)")
    args = parser.parse_args(argv)

    files = DATASETS["fashion_mnist"].files
    arrays = {role: read_verified(args.source, fname) for role, fname in files.items()}
    keep = {
        "train": first_per_class(arrays["train_labels"], TRAIN_PER_CLASS),
        "test": first_per_class(arrays["test_labels"], TEST_PER_CLASS),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for role, fname in files.items():
        raw = encode_idx(arrays[role][keep[role.split("_")[0]]])
        (args.out / (fname + ".gz")).write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {fname}\n")
        print(f"{fname}.gz: {len(raw)} bytes decompressed")
    (args.out / MANIFEST_NAME).write_text("".join(sorted(lines, key=lambda l: l.split()[1])))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
