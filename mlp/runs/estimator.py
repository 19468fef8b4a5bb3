"""MLPClassifier: the NumPy MLP as a scikit-learn estimator (works in Pipeline, GridSearchCV).

Constructor arguments are stored unchanged (scikit-learn's rule, so clone/get_params work);
everything is validated and built in `fit`.
"""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from mlp.core import optimizers
from mlp.core.network import MLP
from mlp.runs.training import fit as fit_loop


class MLPClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, hidden_layer_sizes=(128,), activation="relu", weight_init="xavier",
                 loss="cross_entropy", optimizer="adam", learning_rate=1e-3, momentum=0.9,
                 beta=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0, dropout=0.0,
                 batch_norm=False, batch_size=32, epochs=10, seed=0, dtype="float32", verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.weight_init = weight_init
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.beta = beta
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose

    def fit(self, X, y):
        X, y = check_X_y(X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        sizes = [X.shape[1], *[int(h) for h in self.hidden_layer_sizes], len(self.classes_)]
        self.network_ = MLP(sizes, activation=self.activation, weight_init=self.weight_init,
                            loss=self.loss, weight_decay=self.weight_decay, dropout=self.dropout,
                            batch_norm=self.batch_norm, seed=self.seed, dtype=self.dtype)
        opt = optimizers.from_config(self.optimizer, self.get_params())
        # no validation split inside fit: model selection is the caller's (e.g. GridSearchCV's)
        self.history_ = fit_loop(self.network_, opt, X, y_index, X[:0], y_index[:0], epochs=self.epochs,
                                 batch_size=self.batch_size, seed=self.seed, progress=bool(self.verbose))
        return self

    def predict_proba(self, X):
        check_is_fitted(self, "network_")
        return self.network_.predict_proba(check_array(X, dtype=[np.float32, np.float64]))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
