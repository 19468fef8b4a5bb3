"""mlp-sweeps: a from-scratch NumPy multilayer perceptron driven by W&B sweeps.

Public API: MLP, MLPClassifier, load_dataset, load_model, optimizers.
"""
from mlp.core import activations, initializers, losses, optimizers
from mlp.errors import UsageError
from mlp.core.model_file import load_model
from mlp.core.network import MLP

__all__ = ["MLP", "MLPClassifier", "load_dataset", "load_model", "optimizers", "activations",
           "initializers", "losses", "UsageError"]


def __getattr__(name):
    # Imported on first use: scikit-learn and the data module are not needed to build a network.
    if name == "MLPClassifier":
        from mlp.runs.estimator import MLPClassifier
        return MLPClassifier
    if name == "load_dataset":
        from mlp.runs.data import load_dataset
        return load_dataset
    raise AttributeError(f"module 'mlp' has no attribute {name!r}")
