"""Learning-rate schedules: one registry, each `schedule(step) -> learning rate` for 0-based
optimizer steps, built from the base rate and the run's length.

Warmup (any schedule but onecycle, which has its own) ramps linearly from base/warmup_steps up to
the base rate over the first `warmup_steps` steps; the schedule proper then runs over the rest.
To add a schedule, write one builder and add one line to SCHEDULES.
"""
import math

from mlp.core.registry import resolve


def constant(base, total_steps, steps_per_epoch):
    return lambda step: base


def step_decay(base, total_steps, steps_per_epoch, gamma=0.1, decays=2):
    """×gamma at evenly spaced epochs: with 2 decays over 30 epochs, at epochs 10 and 20."""
    epochs = max(1, math.ceil(total_steps / steps_per_epoch))
    every = max(1, math.ceil(epochs / (decays + 1)))
    return lambda step: base * gamma ** ((step // steps_per_epoch) // every)


def cosine(base, total_steps, steps_per_epoch, floor=0.0):
    """Half a cosine from base down to floor·base at the last step (Loshchilov & Hutter 2017)."""
    span = max(1, total_steps - 1)
    return lambda step: base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, span) / span)))


def onecycle(base, total_steps, steps_per_epoch, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """Smith & Topin (2017), as torch's OneCycleLR (cosine): up from base/div_factor to base over
    pct_start of the run, then down to base/(div_factor·final_div_factor)."""
    start, end = base / div_factor, base / (div_factor * final_div_factor)
    rise = max(1.0, pct_start * total_steps - 1)
    fall = max(1.0, total_steps - 1 - rise)

    def lr(step):
        if step <= rise:
            return start + (base - start) * 0.5 * (1 - math.cos(math.pi * step / rise))
        t = min(1.0, (step - rise) / fall)
        return end + (base - end) * 0.5 * (1 + math.cos(math.pi * t))
    return lr


SCHEDULES = {"constant": constant, "step": step_decay, "cosine": cosine, "onecycle": onecycle}


def canonical_name(name):
    return resolve(name, SCHEDULES, "lr schedule")


def build(name, base, total_steps, steps_per_epoch, warmup_steps=0):
    """The schedule as a function of the 0-based step, warmup included."""
    name = canonical_name(name)
    if name == "onecycle" or warmup_steps <= 0:
        return SCHEDULES[name](base, total_steps, steps_per_epoch)
    warmup_steps = min(warmup_steps, total_steps)
    rest = SCHEDULES[name](base, max(1, total_steps - warmup_steps), steps_per_epoch)
    return lambda step: base * (step + 1) / warmup_steps if step < warmup_steps else rest(step - warmup_steps)
