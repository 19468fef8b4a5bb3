"""Fashion-MNIST and MNIST: IDX parsing, where the files come from, checksums, splits.

`load_dataset(name)` looks for the four standard IDX files (each as ``NAME`` or ``NAME.gz``) in
these places, in order, and the first place that holds all four wins:

1. ``data_dir`` (the ``--data_dir`` flag), else env ``MLP_DATA_DIR``: ``DIR/<name>/``, then
   ``DIR/`` itself (``DIR/fashion-mnist/`` is accepted as well as ``DIR/fashion_mnist/``).
   An explicit ``data_dir`` that does not hold the files is an error (a user who points at a
   directory means it); a ``MLP_DATA_DIR`` that lacks *this* dataset falls through to the next
   places, so one variable can serve a folder that holds only MNIST.
2. the user cache: ``cache_dir``, else env ``MLP_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/mlp-sweeps`` (``~/.cache/mlp-sweeps``), subfolder ``<name>/``.
3. the Debian dataset directory (``apt-get install dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist``).
4. a download (unless ``download=False``) of ``BASE + NAME.gz`` from ``mirrors``, else env
   ``MLP_DATA_MIRROR`` (one base URL), else the official mirrors. The decompressed files are
   verified and then written into the cache atomically (temporary file + ``os.replace``), and only
   once all four have been fetched and verified, so a failed download leaves nothing behind.

Every file from every source is checked against the SHA-256 of its *decompressed* IDX content
(the official values are in `DATASETS`); distributions recompress the ``.gz`` archives, so their
bytes differ while the content is identical. A folder holding a custom subset instead carries a
``checksums.sha256`` manifest (``sha256sum`` format, names without ``.gz``), which then replaces
the official table for that folder; ``tests/data/fashion_mnist`` is such a folder.

Every bad input raises `DataError` (a `UsageError`) with a one-line message that names the
problem and the fix.
"""
from mlp.runs.data.catalogue import (CLASS_NAMES, DATASETS, MANIFEST_NAME, SPLIT_SEED, SPLITS, DataError, Dataset,
                                     DatasetSpec)
from mlp.runs.data.idx import encode_idx, parse_idx, read_idx
from mlp.runs.data.load import load_dataset
from mlp.runs.data.sources import check_data_dir

__all__ = ["check_data_dir", "CLASS_NAMES", "DATASETS", "MANIFEST_NAME", "SPLIT_SEED", "SPLITS", "DataError", "Dataset", "DatasetSpec",
           "encode_idx", "load_dataset", "parse_idx", "read_idx"]
