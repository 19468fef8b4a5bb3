"""MLPClassifier as a scikit-learn estimator, and model files."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from mlp import MLP, MLPClassifier, UsageError, load_model


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=300, n_features=12, n_informative=8, n_classes=3, random_state=0)
    return X.astype(np.float32), np.array(["a", "b", "c"])[y]


def test_fit_predict_score_with_string_labels(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(32,), epochs=30, learning_rate=3e-3, seed=0).fit(X, y)
    assert set(clf.predict(X)) <= {"a", "b", "c"}
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert clf.score(X, y) > 0.9


def test_params_roundtrip_and_clone():
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), optimizer="nadam")
    assert clf.get_params()["hidden_layer_sizes"] == (8, 4)
    clf.set_params(learning_rate=0.01)
    assert clone(clf).get_params()["learning_rate"] == 0.01


def test_grid_search_cv(blobs):
    X, y = blobs
    grid = GridSearchCV(MLPClassifier(epochs=15, seed=0), {"hidden_layer_sizes": [(4,), (32,)],
                                                           "learning_rate": [1e-4, 3e-3]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate": 3e-3}
    assert grid.best_score_ > 0.7  # held-out folds; chance is 1/3


def test_same_seed_same_model(blobs):
    X, y = blobs
    a = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, dropout=0.2, seed=5).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, dropout=0.2, seed=5).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


def test_save_load_roundtrip(tmp_path):
    net = MLP([6, 5, 3], activation=["gelu"], batch_norm=True, dropout=0.1, seed=1)
    X = np.random.default_rng(0).random((10, 6), dtype=np.float32)
    net.train_pass(X, np.arange(10) % 3)  # moves batch-norm running stats off their start
    net.save(tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert back.config == net.config
    assert np.array_equal(back.predict_proba(X), net.predict_proba(X))


def test_model_file_with_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.array([{"format": "mlp-sweeps"}], dtype=object))
    with pytest.raises(UsageError, match="pickled"):
        load_model(path)


def test_model_of_other_architecture_is_refused(tmp_path):
    MLP([6, 5, 3], seed=0).save(tmp_path / "small.npz")
    with np.load(tmp_path / "small.npz") as f:
        arrays = dict(f)
    arrays.pop("__meta__")
    with pytest.raises(UsageError, match="architecture"):
        MLP([6, 7, 3]).load_state(arrays, source="small.npz")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_garbage_model_file(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(UsageError):
        load_model(path)
