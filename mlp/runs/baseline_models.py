"""The baselines `mlp baselines` knows: name -> (label, scikit-learn module, class, fixed settings),
in the order they are trained and shown. Training them is mlp.runs.baselines; the report reads
their rows with these labels (mlp.report.baselines).
"""
from __future__ import annotations

from mlp.errors import UsageError

__all__ = ["MODELS", "TWIN", "PARALLEL", "parse_models"]

TWIN = "torch_twin"
# name -> (label, module, class, settings)
MODELS = {
    "logistic_regression": ("logistic regression", "sklearn.linear_model", "LogisticRegression",
                            {"C": 1.0, "solver": "lbfgs", "max_iter": 200}),
    "knn": ("k-nearest neighbours", "sklearn.neighbors", "KNeighborsClassifier",
            {"n_neighbors": 5, "weights": "distance", "p": 2}),
    "random_forest": ("random forest", "sklearn.ensemble", "RandomForestClassifier",
                      {"n_estimators": 100, "criterion": "entropy", "max_depth": 100, "random_state": 0}),
    "sklearn_mlp": ("scikit-learn MLP", "sklearn.neural_network", "MLPClassifier",
                    {"hidden_layer_sizes": [100], "activation": "relu", "max_iter": 50, "random_state": 0}),
    TWIN: ("PyTorch twin", None, None, {}),
}
PARALLEL = ("knn", "random_forest")     # the models that take n_jobs


def parse_models(text: str | None) -> list[str]:
    """`logistic_regression,knn` -> the models in MODELS order; None: all of them."""
    if not text:
        return list(MODELS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise UsageError(f"--models: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from "
                         f"{', '.join(MODELS)}")
    return [m for m in MODELS if m in names]
