"""Weight averaging: an exponential moving average (EMA) of the parameters, or stochastic weight
averaging (SWA, Izmailov et al. 2018: the plain mean of the weights at the end of each epoch over
the last part of training). Evaluation and the saved model use the averaged weights.

Batch-norm running statistics are averaged like the weights (they are arrays of the same kind);
that keeps a BN network consistent with its averaged weights without an extra pass.
"""
import numpy as np

from mlp.errors import UsageError


class EMA:
    """avg ← decay·avg + (1 − decay)·w after every optimizer step."""

    def __init__(self, net, decay=0.999):
        self.decay = float(decay)
        self.average = {k: v.copy() for k, v in net.state_dict().items()}

    def after_step(self, net):
        d = self.decay
        for key, value in net.state_dict().items():
            avg = self.average[key]
            avg *= d
            avg += (1.0 - d) * value

    def after_epoch(self, net, epoch, epochs):
        pass

    def state(self, dtype):
        return {k: v.astype(dtype, copy=False) for k, v in self.average.items()}

    def state_dict(self):
        """The running average (copies), to continue exactly after a checkpoint."""
        return {"count": 0, **{f"average.{k}": v.copy() for k, v in self.average.items()}}

    def load_state_dict(self, state):
        _load_average(self, state)


class SWA:
    """Mean of the weights at the end of each epoch from `start_fraction` of training on."""

    def __init__(self, net, start_fraction=0.75):
        self.start_fraction = float(start_fraction)
        self.average, self.count = None, 0

    def after_step(self, net):
        pass

    def after_epoch(self, net, epoch, epochs):
        if epoch <= self.start_fraction * epochs and epoch != epochs:
            return
        state = net.state_dict()
        if self.average is None:
            self.average = {k: v.astype(np.float64) for k, v in state.items()}
        else:
            for key, value in state.items():
                self.average[key] += value
        self.count += 1

    def state(self, dtype):
        """The mean so far in the network's dtype (None before the first snapshot)."""
        if self.average is None:
            return None
        return {k: (v / self.count).astype(dtype) for k, v in self.average.items()}

    def state_dict(self):
        """The running sum and its count (copies), to continue exactly after a checkpoint."""
        return {"count": self.count, **{f"average.{k}": v.copy() for k, v in (self.average or {}).items()}}

    def load_state_dict(self, state):
        _load_average(self, state)
        self.count = int(state["count"])
        self.average = self.average or None


def _load_average(averager, state):
    """Put a state_dict's average back, array by array (they must match the ones it holds)."""
    arrays = {k[len("average."):]: np.array(v) for k, v in state.items() if k.startswith("average.")}
    current = averager.average or {}
    if current and (set(arrays) != set(current) or any(arrays[k].shape != current[k].shape for k in current)):
        raise UsageError("the averaged weights in the checkpoint are of another network")
    averager.average = arrays


AVERAGING = {"none": None, "ema": EMA, "swa": SWA}


def build(name, net):
    key = str(name).strip().lower()
    if key not in AVERAGING:
        raise UsageError(f"unknown weight averaging {name!r}; choose one of: {', '.join(AVERAGING)}")
    cls = AVERAGING[key]
    return cls(net) if cls else None
