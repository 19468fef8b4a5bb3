"""mlp-sweeps: a from-scratch NumPy multilayer perceptron driven by W&B sweeps.

Public API: MLP, MLPClassifier, load_dataset, load_model, optimizers.

Every name is imported on first use, so `import mlp` (and the start of `python -m mlp`) costs no
NumPy import: the command line installs its signal handling before anything heavy loads.
"""
import importlib

__all__ = ["MLP", "MLPClassifier", "load_dataset", "load_model", "optimizers", "activations",
           "initializers", "losses", "UsageError"]

_HOMES = {"MLP": "mlp.core.network", "load_model": "mlp.core.model_file", "UsageError": "mlp.errors",
          "MLPClassifier": "mlp.runs.estimator", "load_dataset": "mlp.runs.data",
          "optimizers": None, "activations": None, "initializers": None, "losses": None}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'mlp' has no attribute {name!r}")
    home = _HOMES[name]
    value = importlib.import_module(f"mlp.core.{name}") if home is None else getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
