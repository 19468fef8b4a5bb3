"""MLPClassifier: the NumPy MLP as a scikit-learn estimator (Pipeline, GridSearchCV, clone,
partial_fit; passes scikit-learn's `check_estimator`).

Constructor arguments are stored unchanged (scikit-learn's rule, so clone/get_params work);
everything is validated in `fit` by the same schema as train.py's flags (`mlp.config`), so a bad
value gives the same one-line message, as a ValueError. Names follow scikit-learn where it has
one (`hidden_layer_sizes`, `learning_rate_init`, `max_iter` — epochs —, `random_state`,
`early_stopping`, `validation_fraction`, `n_iter_no_change`, `loss_curve_`, `n_iter_`, `classes_`,
`validation_scores_`, `best_validation_score_`) and train.py's otherwise (`optimizer`,
`weight_init`, `beta1`, ...). The defaults are train.py's (its best validation configuration:
5×128 ReLU, Xavier, nadam at 5e-4, batch 64, 10 epochs), read from the same schema.
"""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from mlp import config as C
from mlp.core import optimizers
from mlp.core.network import MLP
from mlp.runs.training import FitOptions
from mlp.runs.training import fit as fit_loop

try:                                    # scikit-learn ≥ 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:                     # pragma: no cover - older scikit-learn
    _validate_data = None

# constructor argument -> the config parameter whose rules (and default) it follows
_SCHEMA = {"activation": "activation", "weight_init": "weight_init", "loss": "loss", "optimizer": "optimizer",
           "learning_rate_init": "learning_rate", "momentum": "momentum", "beta": "beta", "beta1": "beta1",
           "beta2": "beta2", "epsilon": "epsilon", "weight_decay": "weight_decay", "dropout": "dropout",
           "batch_norm": "batch_norm", "batch_size": "batch_size", "max_iter": "epochs",
           "validation_fraction": "val_fraction", "n_iter_no_change": "early_stopping"}
_D = C.DEFAULTS
_HIDDEN = tuple(_D["hidden_sizes"] or [_D["hidden_size"]] * _D["num_layers"])


_NO_Y = object()


def _check(X, y=_NO_Y, estimator=None, reset=True):
    """Arrays as float32/float64 with scikit-learn's checks; n_features_in_ set on fit and
    checked on predict. Without `y`, only X is checked (a `y=None` is an error: fit needs y)."""
    kwargs = {"dtype": [np.float32, np.float64]}
    if _validate_data is not None:
        if y is _NO_Y:
            return _validate_data(estimator, X, reset=reset, **kwargs)
        return _validate_data(estimator, X, y, reset=reset, **kwargs)
    from sklearn.utils.validation import check_array, check_X_y
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None")
    if y is _NO_Y:
        X = check_array(X, **kwargs)
    else:
        X, y = check_X_y(X, y, **kwargs)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                         f"{estimator.n_features_in_} features as input")
    return X if y is _NO_Y else (X, y)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, hidden_layer_sizes=_HIDDEN, activation=_D["activation"], weight_init=_D["weight_init"],
                 loss=_D["loss"], optimizer=_D["optimizer"], learning_rate_init=_D["learning_rate"],
                 momentum=_D["momentum"], beta=_D["beta"], beta1=_D["beta1"], beta2=_D["beta2"],
                 epsilon=_D["epsilon"], weight_decay=_D["weight_decay"], dropout=_D["dropout"],
                 batch_norm=_D["batch_norm"], batch_size=_D["batch_size"], max_iter=_D["epochs"],
                 early_stopping=False, validation_fraction=_D["val_fraction"], n_iter_no_change=10,
                 random_state=_D["seed"], dtype="float32", verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.weight_init = weight_init
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.beta = beta
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    # ---- validation and building ---------------------------------------------------------------
    def _settings(self):
        """The constructor arguments checked by the config schema (ValueError with one line)."""
        values = {}
        for arg, param in _SCHEMA.items():
            try:
                values[arg] = C.parse_value(param, getattr(self, arg))
            except ValueError as e:
                raise ValueError(f"{arg}: {e}" if arg != param else str(e)) from None
        values["seed"] = self._seed()
        values["learning_rate"], values["epochs"] = values["learning_rate_init"], values["max_iter"]
        sizes = list(np.atleast_1d(self.hidden_layer_sizes))
        values["hidden_layer_sizes"] = C.parse_value("hidden_sizes", sizes) if sizes else []
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping must be True or False; got {self.early_stopping!r}")
        values["early_stopping"] = bool(self.early_stopping)
        if str(self.dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")
        return values

    def _seed(self):
        """`random_state` as train.py's seed: an integer is the seed itself (the same numbers as
        `train.py --seed N`); None or a RandomState draws one, as scikit-learn's estimators do."""
        rs = self.random_state
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, (bool, np.bool_)):
            return C.parse_value("seed", int(rs))
        if rs is None or isinstance(rs, np.random.RandomState):
            return int(check_random_state(rs).randint(0, 2**31 - 1))
        raise ValueError(f"random_state must be an integer, None or a numpy RandomState; got {rs!r}")

    def _build(self, n_features, n_classes, settings):
        sizes = [n_features, *settings["hidden_layer_sizes"], n_classes]
        self.network_ = MLP(sizes, activation=settings["activation"], weight_init=settings["weight_init"],
                            loss=settings["loss"], weight_decay=settings["weight_decay"], dropout=settings["dropout"],
                            batch_norm=settings["batch_norm"], seed=settings["seed"], dtype=self.dtype)
        self.optimizer_ = optimizers.from_config(settings["optimizer"], settings)
        self.loss_curve_, self.n_iter_ = [], 0
        self.validation_scores_ = [] if settings["early_stopping"] else None
        self.best_validation_score_ = None

    def _run(self, X, y_index, epochs, settings, X_val=None, y_val=None):
        val = (X[:0], y_index[:0]) if X_val is None else (X_val, y_val)
        options = FitOptions(epochs=epochs, batch_size=settings["batch_size"], seed=settings["seed"] + self.n_iter_,
                             progress=bool(self.verbose),
                             patience=settings["n_iter_no_change"] if X_val is not None else None)
        history = fit_loop(self.network_, self.optimizer_, (X, y_index), val, options)
        self.loss_curve_ += [row["train_loss"] for row in history]
        self.n_iter_ += len(history)
        if X_val is not None:
            self.validation_scores_ += [row["val_accuracy"] for row in history]
            self.best_validation_score_ = max(self.validation_scores_)
        return self

    # ---- scikit-learn API --------------------------------------------------------------------------
    def fit(self, X, y):
        """Train from scratch for `max_iter` epochs (with early_stopping: on a stratified
        `validation_fraction` of X, stopping after `n_iter_no_change` epochs without
        improvement and keeping the best epoch's weights)."""
        settings = self._settings()
        X, y = _check(X, y, self)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._build(X.shape[1], len(self.classes_), settings)
        if settings["early_stopping"]:
            X, X_val, y_index, y_val = train_test_split(X, y_index, test_size=settings["validation_fraction"],
                                                        stratify=y_index, random_state=settings["seed"])
            return self._run(X, y_index, settings["epochs"], settings, X_val, y_val)
        # no validation split inside fit: model selection is the caller's (e.g. GridSearchCV's)
        return self._run(X, y_index, settings["epochs"], settings)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.
        The first call needs `classes` (all labels that will ever be seen)."""
        first = not hasattr(self, "network_")
        settings = self._settings()
        X, y = _check(X, y, self, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(classes)
            self._build(X.shape[1], len(self.classes_), settings)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes)} differ from those of the first call {self.classes_}")
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ValueError(f"y holds labels {unseen[:5]} that are not in classes {self.classes_}")
        return self._run(X, np.searchsorted(self.classes_, y), 1, settings)

    def predict_proba(self, X):
        check_is_fitted(self, "network_")
        return self.network_.predict_proba(_check(X, estimator=self, reset=False))

    def predict(self, X):
        check_is_fitted(self, "network_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
