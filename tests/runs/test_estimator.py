"""MLPClassifier as a scikit-learn estimator, and model files."""
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlp import MLP, MLPClassifier, UsageError, load_model


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=300, n_features=12, n_informative=8, n_classes=3, random_state=0)
    return X.astype(np.float32), np.array(["a", "b", "c"])[y]


# the settings the accuracy bounds below were measured with (the defaults are train.py's: nadam, batch 64)
ADAM32 = {"optimizer": "adam", "batch_size": 32}


@parametrize_with_checks([MLPClassifier(max_iter=3, dtype="float64")])
def test_scikit_learn_estimator_checks(estimator, check):
    """scikit-learn's own checks. Skipped by scikit-learn itself only: the array-API check (it
    needs SCIPY_ARRAY_API=1 and array-api-strict; this estimator is NumPy by design)."""
    check(estimator)


def test_fit_predict_score_with_string_labels(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, learning_rate_init=3e-3, random_state=0, **ADAM32).fit(X, y)
    assert set(clf.predict(X)) <= {"a", "b", "c"}
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert clf.score(X, y) > 0.9


def test_grid_search_cv(blobs):
    X, y = blobs
    grid = GridSearchCV(MLPClassifier(max_iter=15, random_state=0), {"hidden_layer_sizes": [(4,), (32,)],
                                                           "learning_rate_init": [1e-4, 3e-3]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 3e-3}
    assert grid.best_score_ > 0.7  # held-out folds; chance is 1/3


def test_same_seed_same_model(blobs):
    X, y = blobs
    a = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, dropout=0.2, random_state=5).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, dropout=0.2, random_state=5).fit(X, y)
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
        MLP([6, 7, 3]).load_state_dict(arrays, source="small.npz")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_garbage_model_file(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(UsageError):
        load_model(path)


def test_loss_curve_n_iter_and_classes(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=6, random_state=0).fit(X, y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]           # it learns
    assert list(clf.classes_) == ["a", "b", "c"] and clf.n_features_in_ == 12
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :5])


def test_partial_fit_continues_where_it_stopped(blobs):
    """partial_fit is one epoch at a time with the optimizer state kept: two calls on the same
    data move the loss down, and the first call needs the classes."""
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=3e-3, random_state=0, **ADAM32)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:150], y[:150], classes=["a", "b", "c"])
    t_after_one, first_score = clf.optimizer_.t, clf.score(X, y)
    clf.partial_fit(X[150:], y[150:])
    for _ in range(20):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 22 and clf.optimizer_.t == t_after_one + 5 + 20 * 10 and t_after_one == 5
    assert clf.loss_curve_[-1] < clf.loss_curve_[1] and clf.score(X, y) > max(first_score, 0.75)  # 0.82-0.86 over seeds 0-4
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:5], np.array(["z"] * 5))


def test_early_stopping_as_scikit_learn_names_it(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=1e-2, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=3, random_state=0, **ADAM32).fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.6
    with pytest.raises(ValueError, match="val_fraction"):
        MLPClassifier(early_stopping=True, validation_fraction=1.5).fit(X, y)


def test_bad_constructor_values_are_value_errors_with_the_schema_message(blobs):
    X, y = blobs
    for kwargs, fragment in (({"learning_rate_init": -1}, "learning_rate_init"), ({"activation": "swish"}, "activation"),
                             ({"hidden_layer_sizes": (0,)}, "hidden_sizes"), ({"max_iter": 0}, "max_iter")):
        with pytest.raises(ValueError, match=fragment):
            MLPClassifier(**kwargs).fit(X, y)


def test_in_a_pipeline_with_set_output(blobs):
    """A scaler that outputs pandas frames in front of the MLP (set_output), as users build them."""
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=3e-3,
                                                         random_state=0, **ADAM32))
    pipe.set_output(transform="pandas")
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.75                 # it learns through the frames (chance: 1/3)
    assert list(pipe[-1].feature_names_in_) == [f"x{i}" for i in range(12)]


def test_names_and_defaults_are_scikit_learns_and_train_pys(blobs):
    """scikit-learn's names (random_state, max_iter, learning_rate_init) with train.py's defaults,
    and random_state as train.py's seed: the same integer gives the same network."""
    from mlp import config as C
    params = MLPClassifier().get_params()
    assert (params["max_iter"], params["learning_rate_init"], params["random_state"]) == \
        (C.DEFAULTS["epochs"], C.DEFAULTS["learning_rate"], C.DEFAULTS["seed"])
    assert params["hidden_layer_sizes"] == (C.DEFAULTS["hidden_size"],) * C.DEFAULTS["num_layers"]
    assert (params["optimizer"], params["batch_size"], params["activation"]) == \
        (C.DEFAULTS["optimizer"], C.DEFAULTS["batch_size"], C.DEFAULTS["activation"])
    X, y = blobs
    # a step far below float32's resolution leaves the weights as drawn: those of train.py's seed 7
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=7, optimizer="sgd",
                      learning_rate_init=1e-12).fit(X, y)
    np.testing.assert_array_equal(a.network_.params[0], MLP([X.shape[1], 8, 3], seed=7).params[0])
    drawn = [MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=np.random.RandomState(0)).fit(X, y)
             for _ in range(2)]                                                # a RandomState draws the seed:
    np.testing.assert_array_equal(drawn[0].network_.params[0], drawn[1].network_.params[0])   # the same one twice
    assert not np.array_equal(drawn[0].network_.params[0], a.network_.params[0])
    with pytest.raises(ValueError, match="random_state"):
        MLPClassifier(random_state="seven").fit(X, y)
