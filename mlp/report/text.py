"""Small helpers for the report's generated English: counts with the right plural, number words,
numbers in tables. Every sentence the report writes goes through these, so "1 runs" cannot happen.
"""
from __future__ import annotations

import math

__all__ = ["plural", "agree", "number_word", "share", "num", "signed", "p_value", "join_and", "metric_words"]

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """`1 run`, `2 runs`, `0 runs`; pass the plural when it is not singular + "s" (`1 class`, `2 classes`)."""
    return f"{n} {agree(n, singular, plural_form)}"


def agree(n: int, singular: str, plural_form: str | None = None) -> str:
    """The word alone, agreeing with n: agree(1, "was", "were") -> "was"."""
    return singular if n == 1 else (plural_form or singular + "s")


def number_word(n: int) -> str:
    """`two` for 2 (up to ten), digits beyond."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def share(k: int, n: int, singular: str, plural_form: str | None = None) -> str:
    """`2 of 6 runs (33%)`; the noun agrees with the total."""
    if not n:
        return plural(0, singular, plural_form)
    return f"{k} of {plural(n, singular, plural_form)} ({k / n:.0%})"


def num(value, spec: str = ".4f") -> str:
    """A table cell: a float with `spec`, None or NaN as an en dash, anything else as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, spec)
    return str(value)


def signed(value, spec: str = "+.3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def p_value(p: float | None) -> str:
    """`p = 0.031`, `p < 0.001`; `p undefined` for None or NaN."""
    if p is None or not math.isfinite(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def join_and(items) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_METRIC_WORDS = {"val_accuracy": "validation accuracy", "test_accuracy": "test accuracy", "val_r2": "validation R²",
                 "test_r2": "test R²", "val_loss": "validation loss", "test_loss": "test loss"}


def metric_words(metric: str) -> str:
    """A metric's name in prose: `test accuracy`, `test R²` (an unknown name with spaces for `_`)."""
    return _METRIC_WORDS.get(metric, metric.replace("_", " "))
