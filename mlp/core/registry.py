"""Name lookup shared by every registry (activations, losses, initializers, optimizers, schedules).

Names match case- and punctuation-insensitively ('ReLU', 'leaky-relu', 'LeakyReLU', 'One_Cycle'),
and a registry may add aliases ('glorot' for 'xavier'). An unknown name is a UsageError that lists
the choices.
"""
from mlp.errors import UsageError


def _squash(name):
    return str(name).strip().lower().replace("-", "").replace("_", "").replace(" ", "")


def resolve(name, table, kind, aliases=None):
    """The registry key that `name` means, e.g. resolve('ReLU', ACTIVATIONS, 'activation') == 'relu'."""
    candidates = {_squash(k): k for k in table}
    candidates.update({_squash(alias): key for alias, key in (aliases or {}).items()})
    key = candidates.get(_squash(name))
    if key is None:
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(table)}")
    return key
