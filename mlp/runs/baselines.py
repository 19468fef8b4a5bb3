"""The baseline models of `mlp baselines`, trained here: scikit-learn classifiers with fixed,
documented settings, and the PyTorch twin of one of our networks.

Each model is trained once on the training rows of a loaded `Dataset` (the split train.py uses)
with the settings below — nothing is selected, on validation or on test — then scored on
validation and, last, on the test set. Which models to train, on what, and where the rows go is
the command's business (`mlp.sweep.baselines`).

Settings (the catalogue, mlp.runs.baseline_models.MODELS), chosen after the Fashion-MNIST paper's scikit-learn benchmark (Xiao, Rasul &
Vollgraf 2017, arXiv:1708.07747, Table 3):

* logistic regression — `LogisticRegression(C=1.0, solver="lbfgs", max_iter=200)`: multinomial,
  L2 (the paper's best row is one-vs-rest L1 with liblinear, which takes far longer);
* k-nearest neighbours — `KNeighborsClassifier(n_neighbors=5, weights="distance", p=2)`:
  Euclidean distance (matrix products; the paper's best row uses p=1);
* random forest — `RandomForestClassifier(n_estimators=100, criterion="entropy", max_depth=100,
  random_state=0)`: the paper's best row;
* scikit-learn MLP — `MLPClassifier(hidden_layer_sizes=(100,), activation="relu",
  max_iter=50, random_state=0)`: the paper's best row, stopped after 50 epochs (its default is
  200; training loss has flattened by then);
* PyTorch twin — a config of ours rebuilt layer by layer in `torch.nn` from the same initial
  weights, trained with the torch twin of its optimizer on the same mini-batch order, schedule
  and augmentation; only when torch is importable (the `torch` extra). Eve and weight averaging
  have no torch twin.

Training seconds are wall-clock seconds of `fit` (the twin: its epochs); the seconds spent
predicting validation and test are kept in a scikit-learn row's settings (`predict_seconds`:
k-NN's real cost, its fit only stores the data).
"""
from __future__ import annotations

import importlib
import math
import time

import numpy as np

from mlp import config as C
from mlp.core import augment as augmentation
from mlp.core import schedules
from mlp.errors import UsageError
from mlp.runs.baseline_models import MODELS, PARALLEL
from mlp.runs.experiment import build
from mlp.runs.training import batches

__all__ = ["torch_available", "fit_sklearn", "fit_twin", "twin_unsupported", "torch_model", "torch_optimizer"]

def torch_available() -> bool:
    try:
        importlib.import_module("torch")
        return True
    except ImportError:
        return False


def _sklearn(name: str, jobs: int):
    label, module, cls, settings = MODELS[name]
    kwargs = dict(settings)
    if "hidden_layer_sizes" in kwargs:
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
    if name in PARALLEL:
        kwargs["n_jobs"] = jobs
    return getattr(importlib.import_module(module), cls)(**kwargs)


def fit_sklearn(name, data, jobs):
    """Train and score scikit-learn model `name` (a MODELS key) with `jobs` jobs where it takes them."""
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    model = _sklearn(name, jobs)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data.x_train, data.y_train)
    seconds = time.perf_counter() - started
    settings = dict(MODELS[name][3])
    if name in PARALLEL:
        settings["n_jobs"] = jobs
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        settings["converged"] = False         # stopped at max_iter: said, not hidden
    started = time.perf_counter()
    val = float(np.mean(model.predict(data.x_val) == data.y_val)) if len(data.y_val) else None
    test = float(np.mean(model.predict(data.x_test) == data.y_test))
    settings["predict_seconds"] = round(time.perf_counter() - started, 2)   # k-NN's work happens here
    return {"label": MODELS[name][0], "settings": settings, "val_accuracy": val, "test_accuracy": test,
            "train_seconds": seconds, "library": f"scikit-learn {sklearn.__version__}"}


_TORCH_ACTIVATIONS = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU",
                      "gelu": "GELU", "elu": "ELU"}


def torch_model(net, torch):
    """`net`'s layers as a torch.nn.Sequential holding the same weights."""
    nn = torch.nn
    modules, shape = [], net.input_shape[0]
    for layer in net.layers:
        kind = layer.spec()["type"]
        if kind == "dense":
            m = nn.Linear(shape, layer.units, bias=layer.bias)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params["W"].T)))
                if layer.bias:
                    m.bias.copy_(torch.from_numpy(layer.params["b"]))
            shape = layer.units
        elif kind == "batch_norm":
            m = nn.BatchNorm1d(shape, eps=layer.eps, momentum=layer.momentum)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                m.bias.copy_(torch.from_numpy(layer.params["beta"]))
        elif kind == "dropout":
            m = nn.Dropout(layer.p)
        elif kind == "activation":
            m = nn.LeakyReLU(0.01) if layer.name == "leaky_relu" else getattr(nn, _TORCH_ACTIVATIONS[layer.name])()
        else:
            raise UsageError(f"no PyTorch twin for a {kind} layer")
        modules.append(m)
    return nn.Sequential(*modules)


def torch_optimizer(config, params, torch):
    o, lr = config["optimizer"], config["learning_rate"]
    if o == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if o in ("momentum", "nag"):
        return torch.optim.SGD(params, lr=lr, momentum=config["momentum"], nesterov=o == "nag")
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=config["beta"], eps=config["epsilon"])
    if o == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(config["beta1"], config["beta2"]), eps=config["epsilon"])
    if o == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=(config["beta1"], config["beta2"]), eps=config["epsilon"])
    return None


def twin_unsupported(config) -> str | None:
    """Why this config has no PyTorch twin, or None."""
    if config["optimizer"] not in ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam"):
        return f"optimizer {config['optimizer']} has no torch.optim twin"
    if config["weight_averaging"] != "none":
        return f"weight averaging ({config['weight_averaging']}) is not twinned"
    return None


def fit_twin(config, data, jobs=1):
    """Train the torch twin of `config` with `jobs` threads; accuracies like fit_sklearn's."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(jobs)
    try:
        return _train_twin(config, data, torch)
    finally:
        torch.set_num_threads(threads)


def torch_predict(model, x, torch, views=None):
    """The twin's predicted classes for a tensor of images, in evaluation mode; with `views` =
    (shift, flip) the class of the mean probability over the views, as Network.set_test_views."""
    def scores(chunk):
        if views is None:
            return model(chunk)
        return sum(torch.softmax(model(torch.from_numpy(np.ascontiguousarray(v))), 1)
                   for v in augmentation.views(chunk.numpy(), *views))

    model.eval()
    with torch.no_grad():
        pred = torch.cat([scores(x[i:i + 4096]).argmax(1) for i in range(0, len(x), 4096)]).numpy() \
            if len(x) else np.zeros(0, int)
    model.train()
    return pred


def _train_twin(config, data, torch):
    torch.manual_seed(config["seed"])
    net, _ = build(config, data.x_train.shape[1], len(data.class_names))
    model = torch_model(net, torch)
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    optimizer = torch_optimizer(config, model.parameters(), torch)
    rng = np.random.default_rng([config["seed"], 1])            # the fit loop's stream: same batch order
    n, size = len(data.x_train), config["batch_size"]
    steps = max(1, math.ceil(n / size))
    schedule = schedules.build(config["lr_schedule"], config["learning_rate"], config["epochs"] * steps, steps,
                               warmup_steps=round(min(config["warmup_epochs"], config["epochs"]) * steps))
    augment = augmentation.augmenter(config["augment_shift"], config["augment_flip"])
    lam, smoothing = config["weight_decay"], config["label_smoothing"]
    x_val, x_test = torch.from_numpy(data.x_val), torch.from_numpy(data.x_test)

    def accuracy(x, y, views=None):
        pred = torch_predict(model, x, torch, views)
        return float(np.mean(pred == y)) if len(y) else None

    best, step, patience = None, 0, config["early_stopping"]
    started = time.perf_counter()
    model.train()
    for epoch in range(1, config["epochs"] + 1):
        for idx in batches(n, size, rng):
            xb = data.x_train[idx]
            if augment is not None:
                xb = augment(xb, rng)
            xb, yb = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(data.y_train[idx])
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            z = model(xb)
            if config["loss"] == "cross_entropy":
                loss = torch.nn.functional.cross_entropy(z, yb, label_smoothing=smoothing)
            else:                                   # mean_squared_error on the softmax, summed over classes
                onehot = torch.nn.functional.one_hot(yb, z.shape[1]).to(z.dtype)
                loss = ((torch.softmax(z, 1) - onehot) ** 2).sum(1).mean()
            if lam:
                loss = loss + 0.5 * lam * sum((w * w).sum() for w in weights)
            if not torch.isfinite(loss):
                raise UsageError(f"the PyTorch twin diverged at epoch {epoch} (loss {loss.item()})")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if patience:
            val = accuracy(x_val, data.y_val)
            if best is None or val > best[0]:
                best = (val, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            if epoch - best[1] >= patience:
                break
    if best is not None:
        model.load_state_dict(best[2])
    seconds = time.perf_counter() - started
    settings = {"config": C.hyperparameters(config), "torch_threads": torch.get_num_threads()}
    # test-time augmentation: the final scores only, as the fit loop's run does
    views = (config["augment_shift"], config["augment_flip"]) if config["augment_test"] else None
    return {"settings": settings, "val_accuracy": accuracy(x_val, data.y_val, views),
            "test_accuracy": accuracy(x_test, data.y_test, views), "train_seconds": seconds,
            "library": f"torch {torch.__version__}"}
