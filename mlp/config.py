"""The configuration schema: every hyperparameter and run setting train.py knows, once.

Each `Param` says its type, range, default, choices and help. Everything that reads a
configuration reads it from here:

* the command line (`mlp.cli` builds the train.py flag table from `PARAMS`),
* sweep files (`mlp.sweep.files` checks every `value`, `values` and distribution bound with
  `parse_value`, and refuses parameters that are not hyperparameters),
* W&B's config of a run (`resolve` merges it into the command line's config, typed values in,
  typed values out — no round trip through strings),
* the scikit-learn estimator.

A config is a plain dict {name: typed value} with every key of `PARAMS`, produced only by
`resolve`, so it is always complete and valid. `PLUMBING` params say where things go (store,
W&B project, output files), not what is trained: they are not hyperparameters, are not sent to W&B
as config and may not be swept.

Adding a flag = one `Param` line in `PARAMS`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mlp.core import activations, initializers, losses, optimizers, schedules
from mlp.core.builders import layer_shapes, POOLS
from mlp.core.registry import resolve as resolve_name
from mlp.errors import UsageError
from mlp.networks import IMAGE_SHAPE, hidden_widths, layer_specs

__all__ = ["Param", "PARAMS", "DEFAULTS", "PRESETS", "PLUMBING", "DATASETS", "TASKS", "ConfigError", "parse_value",
           "resolve", "hyperparameters", "hidden_widths", "run_name", "CONFIGURATION", "expand_configuration",
           "DATA_KEYS", "IMAGE_SHAPE", "split_features"]

DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("standard", "80-10-10")
WANDB_MODES = ("auto", "online", "offline", "disabled")
AVERAGING = ("none", "ema", "swa")
TASKS = ("classify", "autoencoder")            # what the network learns: labels, or the image itself
OUTPUT_ACTIVATIONS = ("sigmoid", "identity")   # the autoencoder's output layer
# The loss each task trains with when none is given (`--loss` must fit the task).
TASK_LOSS = {"classify": "cross_entropy", "autoencoder": "regression_squared_error"}

MAX_WIDTH = 10 ** 8           # a layer wider than this is refused outright (memory is checked later too)
MAX_DEPTH = 1000
MAX_SEED = 2 ** 32 - 1        # numpy's SeedSequence takes any size, W&B's and torch's seeds do not
MAX_CHANNELS = 4096


class ConfigError(UsageError):
    """A value outside its parameter's type or range: one line, exit code 2."""


# ---- value kinds: text (the command line, W&B's `--key=value`) or native (YAML, W&B config) ----------

# Numbers as text: ASCII decimal only. Python's int() and float() also take "1_0" and other
# scripts' digits ("١"), which a typo or a paste can produce; a flag must not read them as 10 or 1.
_SPACE = " \t\n\r\f\v"
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
                         re.ASCII | re.IGNORECASE)


def _shown(number) -> str:
    """A number for a one-line message: an int of any size (formatting it as a float overflows
    past 1e308, and str() refuses ints of more than 4,300 digits), a float with :g."""
    if isinstance(number, int):
        if abs(number) < 10 ** 15:
            return str(number)
        sign = "negative " if number < 0 else ""
        try:
            return f"a {sign}{len(str(abs(number)))}-digit number"
        except ValueError:
            return f"a {sign}number of thousands of digits"
    return f"{number:g}"


def _number(value, integer: bool):
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number")
    if isinstance(value, str):
        text = value.strip(_SPACE)
        if integer and _INT_TEXT.fullmatch(text):
            try:
                number = int(text)
            except ValueError:     # past sys.get_int_max_str_digits() (4,300): far beyond every range
                raise ValueError(f"a {len(text.lstrip('+-'))}-digit number is out of range") from None
        elif _FLOAT_TEXT.fullmatch(text):
            number = float(text)
            if number == 0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
                raise ValueError(f"{value!r:.40} is too small for a float: it rounds to 0")
        elif re.search(r"[\d_]", text):
            raise ValueError(f"{value!r:.40} is not a plain number: write it with the digits 0-9, no _ "
                             f"(e.g. 10, 0.5, 1e-3)")
        else:
            raise ValueError(f"{value!r:.40} is not a number")
    elif isinstance(value, (int, float)) or hasattr(value, "__float__") and hasattr(value, "dtype"):
        number = value.item() if hasattr(value, "item") else value
    else:
        raise ValueError(f"{value!r:.40} is not a number")
    if isinstance(number, float):
        if math.isnan(number):
            raise ValueError("NaN is not allowed")
        if math.isinf(number):
            raise ValueError(f"{value!r:.40} is infinite")
        if integer:
            if not number.is_integer():
                raise ValueError(f"{value!r:.40} is not a whole number")
            number = int(number)
    return number


def _boolean(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    key = str(value).strip().lower()
    if key in ("true", "1", "yes", "on"):
        return True
    if key in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean; use True or False")


def _text(value):
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    if "\x00" in value:
        raise ValueError("a NUL byte is not allowed")
    return value


_BRACKETS = {"[": "]", "(": ")"}


def _list_items(text: str) -> list[str]:
    """The items of a list written as text: '[128, 64]' (W&B's argv, YAML and JSON), '(128, 64)'
    (a Python tuple) or '128,64'; one trailing comma inside brackets, as Python and YAML allow.
    Anything else ('[8, 16', '(8, 16]', '8 16', '[1,,2]') is refused, not guessed at."""
    text = text.strip(_SPACE)
    if re.search(r"[\[(].*[\[(]|[\])].*[\])]", text):
        raise ValueError(f"{text!r:.40} is nested; give one list of widths, e.g. [128, 64]")
    malformed = ValueError(f"{text!r:.40} is not a list of integers; write it as [128, 64] or 128,64")
    closer = _BRACKETS.get(text[:1])
    if closer is not None:
        if len(text) < 2 or text[-1] != closer:
            raise malformed
        text = text[1:-1].strip(_SPACE)
    if re.search(r"[\[\]()]", text):
        raise malformed
    if not text:
        return []
    items = [item.strip(_SPACE) for item in text.split(",")]
    if closer is not None and len(items) > 1 and not items[-1]:
        items.pop()
    if any(not item or re.search(r"\s", item) for item in items):
        raise malformed
    return items


def _int_list(value):
    """[128, 64] (YAML / W&B config), or text as `_list_items` reads it."""
    if isinstance(value, str):
        parts = _list_items(value)
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    if not parts:
        raise ValueError("give at least one layer width, e.g. [128, 64]")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"{len(parts)} layers; at most {MAX_DEPTH}")
    sizes = [_number(p, integer=True) for p in parts]
    bad = [s for s in sizes if s < 1 or s > MAX_WIDTH]
    if bad:
        raise ValueError(f"layer widths must be in [1, {MAX_WIDTH}]; got {_shown(bad[0])}")
    return sizes


# ---- the schema ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    kind: str                                  # int, float, bool, str, int_list, choice
    default: Any
    help: str
    short: str | None = None                   # e.g. "-lr"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], tuple] | None = None   # fixed names, or a registry's names
    canonical: Callable[[str], str] | None = None          # a registry's name lookup (case-insensitive)
    check: Callable[[Any], Any] | None = None   # a further rule on the parsed value (raises UsageError)
    nullable: bool = False                     # None is a value (means "not set")
    empty_is_none: bool = False                # int_list: an empty list ([], "[]") means None
    path: bool = False                         # str: a file or folder (an empty one is "the path is empty")
    plumbing: bool = False                     # where things go, not what is trained
    group: str = "assignment"                  # the flag table it belongs to in --help

    @property
    def choice_names(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())

    def range_text(self) -> str:
        def bound(x):   # whole bounds in full (a seed's ≤ 4294967295, not ≤ 4.29497e+09)
            return _shown(int(x)) if float(x).is_integer() else _shown(float(x))
        lo = "" if self.low is None else f"{'>' if self.low_open else '≥'} {bound(self.low)}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '≤'} {bound(self.high)}"
        return " and ".join(filter(None, [lo, hi]))

    def parse(self, value):
        """The typed value of `value` (text or native); ValueError with a one-line reason."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("a value is required")
        if isinstance(value, str) and not value.strip(_SPACE) and not (self.kind == "int_list" and self.empty_is_none):
            # given, but empty: not the same as leaving it out (`--data_dir ''` is not "no --data_dir")
            if self.path:
                raise ValueError("the path is empty; give a file or folder path, or leave it out")
            if self.nullable:
                raise ValueError("the value is empty; give one, or leave it out")
        if isinstance(value, str) and self.nullable and value.strip(_SPACE).lower() in ("none", "null"):
            return None
        kind = self.kind
        if kind in ("int", "float"):
            number = _number(value, integer=kind == "int")
            if kind == "float" and isinstance(number, int):
                try:
                    number = float(number)
                except OverflowError:
                    raise ValueError(f"{_shown(number)} is out of range; it must be {self.range_text()}") from None
            if (self.low is not None and (number <= self.low if self.low_open else number < self.low)) or \
               (self.high is not None and (number >= self.high if self.high_open else number > self.high)):
                raise ValueError(f"{_shown(number)} is out of range; it must be {self.range_text()}")
            return number
        if kind == "bool":
            return _boolean(value)
        if kind == "int_list":
            if self.empty_is_none and (isinstance(value, (list, tuple)) and not value or isinstance(value, str)
                                       and not _list_items(value)):
                return None
            return _int_list(value)
        text = _text(value)
        if self.check is not None:
            try:
                return self.check(text)
            except UsageError as e:
                raise ValueError(str(e)) from None
        if kind == "choice":
            if self.canonical is not None:
                try:
                    return self.canonical(text)
                except UsageError:
                    pass
            else:
                try:
                    return resolve_name(text, dict.fromkeys(self.choice_names), "value")
                except UsageError:
                    pass
            raise ValueError(f"invalid choice {text!r} (choose from {', '.join(self.choice_names)})")
        return text


def _task_loss(name):
    return losses.canonical_name(name)   # which task it fits is checked in _check_together


def check_wandb_name(kind: str, text: str) -> str:
    """W&B's own rule for project and entity names: 1-128 characters, none of / \\ # ? % : — and
    printable ones only (no newline, tab or other control or invisible character), for a flag and
    for WANDB_PROJECT/WANDB_ENTITY alike."""
    if not text.strip() or len(text) > 128 or re.search(r"[/\\#?%:]", text) or not text.isprintable():
        raise UsageError(f"{kind} name {text!r:.60} must be 1-128 printable characters without / \\ # ? % : "
                         f"or control characters")
    return text


def _wandb_name(kind):
    return lambda text: check_wandb_name(kind, text)


def _run_id(text):
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise UsageError(f"run id {text[:80]!r} must be 1-64 letters, digits, - and _ (as `mlp runs` shows it)")
    return text


_UNIT = dict(low=0.0, high=1.0, high_open=True)

PARAMS: dict[str, Param] = {p.name: p for p in [
    # ---- the assignment's flag table ----
    Param("wandb_project", "str", "mlp-sweeps", "W&B project", "-wp", check=_wandb_name("project"), plumbing=True),
    Param("wandb_entity", "str", None, "W&B entity (user or team)", "-we", check=_wandb_name("entity"),
          nullable=True, plumbing=True),
    Param("dataset", "choice", "fashion_mnist", "the dataset", "-d", choices=DATASETS),
    Param("epochs", "int", 10, "passes over the training set", "-e", low=1, high=100_000),
    Param("batch_size", "int", 64, "mini-batch size", "-b", low=1, high=10_000_000),
    Param("loss", "choice", "cross_entropy", "classification loss ('mse' means mean_squared_error); with --task "
          "autoencoder regression_squared_error, its default", "-l",
          choices=lambda: (*sorted(losses.CLASSIFICATION), "regression_squared_error"), canonical=_task_loss),
    Param("optimizer", "choice", "nadam", "optimizer", "-o", choices=lambda: tuple(optimizers.OPTIMIZERS),
          canonical=optimizers.canonical_name),
    Param("learning_rate", "float", 5e-4, "step size", "-lr", low=0.0, low_open=True),
    Param("momentum", "float", 0.9, "momentum and nag", "-m", **_UNIT),
    Param("beta", "float", 0.9, "rmsprop's decay", "-beta", **_UNIT),
    Param("beta1", "float", 0.9, "adam, nadam, eve", "-beta1", **_UNIT),
    Param("beta2", "float", 0.999, "adam, nadam, eve", "-beta2", **_UNIT),
    Param("epsilon", "float", 1e-8, "rmsprop, adam, nadam, eve", "-eps", low=0.0, high=1.0, low_open=True),
    Param("weight_decay", "float", 0.0, "L2: adds (λ/2)·ΣW² to the loss", "-w_d", low=0.0, high=1e3),
    Param("weight_init", "choice", "xavier", "weight initialisation", "-w_i",
          choices=lambda: tuple(initializers.INITIALIZERS), canonical=initializers.canonical_name),
    Param("num_layers", "int", 5, "hidden layers", "-nhl", low=0, high=MAX_DEPTH),
    Param("hidden_size", "int", 128, "width of every hidden layer", "-sz", low=1, high=MAX_WIDTH),
    Param("activation", "choice", "relu", "hidden activation", "-a", choices=lambda: tuple(activations.ACTIVATIONS),
          canonical=activations.canonical_name),
    # ---- additions with fixed names ----
    Param("seed", "int", 0, "seed of initialisation, shuffling and dropout", low=0, high=MAX_SEED),
    Param("dropout", "float", 0.0, "dropout after every hidden layer", **_UNIT),
    Param("batch_norm", "bool", False, "batch norm in hidden layers"),
    Param("hidden_sizes", "int_list", None, "per-layer widths such as [256, 128]; overrides --num_layers/--hidden_size",
          nullable=True),
    Param("val_fraction", "float", 0.1, "stratified validation share of the training set (standard split)",
          low=0.0, high=1.0, low_open=True, high_open=True),
    Param("split", "choice", "standard", "standard: official test set; 80-10-10: stratified over all 70,000 images",
          choices=SPLITS),
    Param("data_dir", "str", None, "directory with the IDX files (else MLP_DATA_DIR, cache, Debian, download)",
          nullable=True, path=True, plumbing=True),
    Param("wandb_mode", "choice", "auto", "auto = online when W&B has credentials and its server answers (through "
          "the proxy wandb uses), else offline; never prompts",
          choices=WANDB_MODES, plumbing=True),
    Param("store", "str", None, "SQLite run store (else MLP_STORE, else ./mlp-runs.sqlite)", nullable=True,
          path=True, plumbing=True),
    Param("save_model", "str", None, "write the trained model to this .npz", nullable=True, path=True,
          plumbing=True),
    Param("summary_json", "str", None, "write final metrics and config to this JSON file", nullable=True,
          path=True, plumbing=True),
    # ---- beyond the assignment ----
    Param("preset", "choice", None, "a named configuration; explicit flags override it", choices=("best", "cnn"),
          nullable=True, plumbing=True, group="beyond"),
    Param("lr_schedule", "choice", "constant", "learning-rate schedule", choices=lambda: tuple(schedules.SCHEDULES),
          canonical=schedules.canonical_name, group="beyond"),
    Param("warmup_epochs", "float", 0.0, "linear warmup (constant, step, cosine schedules)", low=0.0, high=100_000,
          group="beyond"),
    Param("label_smoothing", "float", 0.0, "cross_entropy only", group="beyond", **_UNIT),
    Param("input_dropout", "float", 0.0, "dropout on the input pixels", group="beyond", **_UNIT),
    Param("augment_shift", "int", 0, "shift each training image by up to ±k pixels", low=0, high=8, group="beyond"),
    Param("augment_flip", "bool", False, "mirror training images left-right (fashion_mnist only)", group="beyond"),
    Param("augment_test", "bool", False, "test-time augmentation: predict an image's mean probability over its one-pixel "
          "shifts and mirror image (as --augment_shift/--augment_flip train); used by the final val/test scores "
          "and the saved model", group="beyond"),
    Param("early_stopping", "int", 0, "patience in epochs on val_accuracy (autoencoder: val_r2; 0 = off); restores "
          "the best epoch's weights",
          low=0, high=100_000, group="beyond"),
    Param("weight_averaging", "choice", "none",
          "evaluate and save an average of the weights: ema (decay 0.999) or swa (last quarter)", choices=AVERAGING,
          group="beyond"),
    # ---- convolutional networks and features (names fixed) ----
    Param("conv_filters", "int_list", None, "a CNN: filters of each conv block such as [32, 64]; empty = an MLP",
          nullable=True, empty_is_none=True, group="beyond"),
    Param("kernel_size", "int", 3, "conv kernel size (k×k)", low=1, high=IMAGE_SHAPE[1], group="beyond"),
    Param("padding", "choice", "same", "conv padding: same (odd kernels) or valid", choices=("same", "valid"),
          group="beyond"),
    Param("pool", "choice", "max", "after every conv block: 2×2 max or avg pooling; global = global average "
          "pooling before the dense head; none", choices=POOLS, group="beyond"),
    Param("features", "str", None, "train the MLP on a frozen model's features: MODEL.npz[:LAYER] (index or name, "
          "see `mlp features MODEL.npz --list`; default: the model's last hidden layer)", nullable=True, path=True,
          check=lambda text: split_features(text) and text, group="beyond"),
    # ---- the task (issue 15) ----
    Param("task", "choice", "classify", "classify: labels; autoencoder: reconstruct the image (784 outputs, squared "
          "error on the pixels, val_r2/test_r2)", choices=TASKS, group="beyond"),
    Param("output_activation", "choice", None, "the autoencoder's output layer: sigmoid (pixels stay in [0, 1]; the "
          "default) or identity; autoencoder only", choices=OUTPUT_ACTIVATIONS, nullable=True, group="beyond"),
    # ---- continuing an interrupted run (issue 21) ----
    Param("resume", "str", None, "continue run RUN_ID, interrupted by Ctrl-C or SIGTERM, from its checkpoint: its own "
          "config, the store it ran with (--store), bit-identical to a run that was never interrupted",
          nullable=True, check=_run_id, plumbing=True, group="beyond"),
]}

DEFAULTS: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}
PLUMBING: tuple[str, ...] = tuple(name for name, p in PARAMS.items() if p.plumbing)
DATA_KEYS = ("dataset", "data_dir", "split", "val_fraction")   # what decides the data a run loads

# A sweep parameter whose values are whole configurations ({name: value} mappings): a W&B grid over
# it runs exactly those configurations, one run each, where a grid over separate parameters would
# run every combination (this is how `mlp rerun` asks W&B for its K configurations). W&B hands it to
# a run as one nested value, through the sweep's parameter file and `wandb.config`;
# `expand_configuration` spreads it into the parameters it holds.
CONFIGURATION = "configuration"

# Named configurations (`--preset NAME`); values given explicitly override a preset's.
PRESETS: dict[str, dict] = {
    # the strongest plain MLP found for Fashion-MNIST, selected on validation (docs/accuracy.md)
    "best": {
        "hidden_sizes": [1024, 1024, 1024], "batch_norm": True, "dropout": 0.1, "label_smoothing": 0.1,
        "optimizer": "adam", "learning_rate": 2e-3, "lr_schedule": "onecycle", "batch_size": 128,
        "weight_init": "he", "activation": "relu", "weight_decay": 0.0, "epochs": 50, "augment_flip": True,
        "augment_shift": 1, "augment_test": True,
    },
    # the best validation CNN found for Fashion-MNIST (docs/cnn.md)
    "cnn": {
        "conv_filters": [32, 64], "kernel_size": 3, "padding": "same", "pool": "max", "batch_norm": True,
        "hidden_sizes": [256], "dropout": 0.3, "label_smoothing": 0.1, "optimizer": "adam", "learning_rate": 2e-3,
        "lr_schedule": "onecycle", "batch_size": 128, "weight_init": "he", "activation": "relu", "weight_decay": 0.0,
        "epochs": 30, "augment_flip": True, "augment_test": True,
    },
}
# Per-dataset changes to a preset: a mirrored digit is another digit (or none), so no flips (and,
# for the CNN, whose only training views are flips, no test views).
PRESET_DATASET_CHANGES: dict[tuple[str, str], dict] = {("best", "mnist"): {"augment_flip": False},
                                                       ("cnn", "mnist"): {"augment_flip": False, "augment_test": False}}


def parse_value(name: str, value, source: str = "") -> Any:
    """The typed value of parameter `name`; ConfigError naming the parameter otherwise."""
    param = PARAMS.get(name)
    where = f"{source}: " if source else ""
    if param is None:
        raise ConfigError(f"{where}unknown parameter {name!r}; see `python train.py --help`")
    try:
        return param.parse(value)
    except ValueError as e:
        raise ConfigError(f"{where}{name}: {e}") from None


def resolve(values: Mapping[str, Any] = (), base: Mapping[str, Any] | None = None, source: str = "") -> dict:
    """A complete, valid config: `base` (default: DEFAULTS, or the preset named in `values`)
    updated with `values`, each value parsed by its Param, then the rules that tie parameters
    together. Raises ConfigError (one line) for anything invalid."""
    values = dict(values)
    parsed = {name: parse_value(name, value, source) for name, value in values.items()}
    if base is None:
        preset = parsed.get("preset")
        base = dict(DEFAULTS)
        if preset:
            dataset = parsed.get("dataset", base["dataset"])
            base.update(PRESETS[preset])
            base.update(PRESET_DATASET_CHANGES.get((preset, dataset), {}))
    config = {**DEFAULTS, **base, **parsed}
    if config["hidden_sizes"] is not None:   # per-layer widths, when given, set the depth
        config["num_layers"] = len(config["hidden_sizes"])
    _task_defaults(config, parsed)
    _check_together(config, source)
    return config


def _task_defaults(config: dict, given: Mapping) -> None:
    """What follows from the task unless given: the loss (cross_entropy to classify,
    regression_squared_error for an autoencoder) and the autoencoder's sigmoid output. Only values
    not given here are changed, so switching a config's task (a sweep over `task`) takes the new
    task's defaults, and a value given for the wrong task is refused by _check_together."""
    task = config["task"]
    regression = config["loss"] not in losses.CLASSIFICATION
    if "loss" not in given and regression != (task == "autoencoder"):
        config["loss"] = TASK_LOSS[task]
    if "output_activation" not in given:
        if task == "autoencoder" and config["output_activation"] is None:
            config["output_activation"] = "sigmoid"
        elif task != "autoencoder":
            config["output_activation"] = None


def _check_task(config: dict, where: str) -> None:
    if config["task"] == "autoencoder":
        if config["loss"] in losses.CLASSIFICATION:
            raise ConfigError(f"{where}--task autoencoder trains with regression_squared_error (squared error on the "
                              f"pixels), not {config['loss']}; leave --loss out")
        for flag in ("augment_shift", "augment_flip", "augment_test"):
            if config[flag]:
                raise ConfigError(f"{where}--{flag} changes the input but not the target; it is not available with "
                                  f"--task autoencoder")
        if config["conv_filters"]:
            raise ConfigError(f"{where}--task autoencoder builds a dense encoder/decoder; a convolutional one is not "
                              f"available: drop --conv_filters")
        if config["features"]:
            raise ConfigError(f"{where}--task autoencoder reconstructs the image's pixels; it takes no --features "
                              f"(train the autoencoder on pixels, then use its bottleneck with --features)")
    else:
        if config["loss"] not in losses.CLASSIFICATION:
            raise ConfigError(f"{where}{config['loss']} is a regression loss: use it with --task autoencoder, or a "
                              f"classification loss ({', '.join(sorted(losses.CLASSIFICATION))})")
        if config["output_activation"] is not None:
            raise ConfigError(f"{where}--output_activation applies to --task autoencoder only (a classifier's outputs "
                              f"are logits, read through a softmax)")


def _check_together(config: dict, source: str) -> None:
    where = f"{source}: " if source else ""
    _check_task(config, where)
    if config["label_smoothing"] and config["loss"] != "cross_entropy":
        raise ConfigError(f"{where}label_smoothing applies to the cross_entropy loss only")
    if config["augment_flip"] and config["dataset"] != "fashion_mnist":
        raise ConfigError(f"{where}--augment_flip mirrors images, which changes what digits mean; use it with "
                          f"fashion_mnist only")
    if config["augment_test"] and not (config["augment_shift"] or config["augment_flip"]):
        raise ConfigError(f"{where}--augment_test averages over the training augmentation's views; it needs "
                          f"--augment_shift or --augment_flip")
    if config["features"] and (config["augment_shift"] or config["augment_flip"]):
        raise ConfigError(f"{where}--augment_shift/--augment_flip move image pixels, but with --features the inputs "
                          f"are a frozen model's features; drop the augmentation")
    if config["conv_filters"]:
        _check_conv(config, where)


def _check_conv(config: dict, where: str) -> None:
    filters, k, padding = config["conv_filters"], config["kernel_size"], config["padding"]
    if config["features"]:
        raise ConfigError(f"{where}--features trains an MLP head on a frozen model's features; it takes no "
                          f"--conv_filters (put the convolutions in the model instead)")
    if max(filters) > MAX_CHANNELS:
        raise ConfigError(f"{where}--conv_filters: at most {MAX_CHANNELS} filters per block; got {max(filters)}")
    if padding == "same" and k % 2 == 0:
        raise ConfigError(f"{where}--kernel_size {k} with --padding same: an even kernel cannot be centred, so the "
                          f"padding would be lopsided; use an odd --kernel_size or --padding valid")
    try:
        layer_shapes(layer_specs(config), (math.prod(IMAGE_SHAPE),))
    except UsageError as e:
        raise ConfigError(f"{where}--conv_filters {filters} with --kernel_size {k}, --padding {padding}, --pool "
                          f"{config['pool']}: {e}") from None


def split_features(text: str) -> tuple[str, str | None]:
    """MODEL.npz[:LAYER] → (model path, layer or None). The layer is what follows the last ':'
    when that holds no path separator (so C:\\models\\m.npz stays a path)."""
    text = str(text).strip()
    path, sep, layer = text.rpartition(":")
    if not sep or not path or "/" in layer or "\\" in layer:
        path, layer = text, None
    elif not layer.strip():
        raise UsageError(f"{text!r:.80} ends with ':' but names no layer; give MODEL.npz or MODEL.npz:LAYER")
    if not path:
        raise UsageError("give a model file: MODEL.npz or MODEL.npz:LAYER")
    return path, (layer.strip() if layer else None)


def expand_configuration(values: Mapping[str, Any], source: str = "") -> dict:
    """`values` with a `configuration` mapping spread into its parameters. A parameter given both
    inside and outside it must agree (else ConfigError); values are left as given (not parsed)."""
    values = dict(values)
    bundle = values.pop(CONFIGURATION, None)
    if bundle is None:
        return values
    where = f"{source}: " if source else ""
    if not isinstance(bundle, Mapping):
        raise ConfigError(f"{where}{CONFIGURATION} must be a mapping of parameters such as "
                          f"{{learning_rate: 0.001, optimizer: adam}}, not {type(bundle).__name__}")
    for key, value in bundle.items():
        if key == CONFIGURATION:
            raise ConfigError(f"{where}{CONFIGURATION} cannot hold another {CONFIGURATION}")
        if key in values and not _same_value(str(key), values[key], value):
            raise ConfigError(f"{where}{key} is {values[key]!r} but {CONFIGURATION} says {value!r}; give it once")
        values[str(key)] = value
    return values


def _same_value(name: str, a, b) -> bool:
    """Equal as the parameter understands them ('ReLU' is 'relu', 10.0 epochs is 10)."""
    if a == b:
        return True
    param = PARAMS.get(name)
    try:
        return param is not None and param.parse(a) == param.parse(b)
    except ValueError:
        return False


# What a configuration must drop to run on a dataset: a mirrored digit is another digit (or none).
DATASET_CHANGES: dict[str, dict] = {"mnist": {"augment_flip": False}}


def for_dataset(values: Mapping[str, Any], dataset: str) -> dict:
    """`values` retargeted to `dataset` (e.g. a Fashion-MNIST config rerun on MNIST): the dataset
    replaced and what cannot apply to it switched off."""
    out = {**values, "dataset": dataset}
    for key, value in DATASET_CHANGES.get(dataset, {}).items():
        if key in out:
            out[key] = value
    return out


def hyperparameters(config: Mapping) -> dict:
    """What is trained (everything but plumbing): the W&B config and the store's run config."""
    return {k: v for k, v in config.items() if k not in PLUMBING}


def run_name(config: Mapping) -> str:
    """A readable W&B run name, e.g. hl_3_hs_128_bs_32_ac_relu_o_nadam."""
    widths = hidden_widths(config)
    size = (widths[0] if widths else 0) if len(set(widths)) <= 1 else "-".join(map(str, widths))
    name = (("ae_" if config.get("task") == "autoencoder" else "")
            + f"hl_{len(widths)}_hs_{size}_bs_{config['batch_size']}_ac_{config['activation']}_o_{config['optimizer']}")
    if config.get("conv_filters"):   # a CNN: its architecture first, e.g. cf_32-64_k_3_same_max_hl_1...
        name = (f"cf_{'-'.join(map(str, config['conv_filters']))}_k_{config['kernel_size']}_{config['padding']}"
                f"_{config['pool']}_{name}")
    return name
