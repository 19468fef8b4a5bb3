"""Data augmentation for 28×28 images stored as rows of 784 pixels: vectorised, one batch at a
time, seeded by the training loop's generator.
"""
import numpy as np

SIDE = 28


def random_shift(batch, max_shift, rng):
    """Shift every image by its own (dy, dx) ∈ [−k, k]², filling with zeros (the background).

    One gather over a zero-padded copy: rows oy+0..27 and columns ox+0..27 of the padded image.
    """
    n = len(batch)
    k = int(max_shift)
    if k <= 0 or n == 0:
        return batch
    images = batch.reshape(n, SIDE, SIDE)
    padded = np.zeros((n, SIDE + 2 * k, SIDE + 2 * k), dtype=batch.dtype)
    padded[:, k:k + SIDE, k:k + SIDE] = images
    offsets = rng.integers(0, 2 * k + 1, size=(2, n))
    rows = offsets[0][:, None] + np.arange(SIDE)
    cols = offsets[1][:, None] + np.arange(SIDE)
    shifted = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return shifted.reshape(n, SIDE * SIDE)


def random_flip(batch, rng, p=0.5):
    """Mirror each image left-right with probability p (sensible for clothes, not for digits)."""
    n = len(batch)
    flip = rng.random(n) < p
    if not flip.any():
        return batch
    out = batch.copy()
    images = out.reshape(n, SIDE, SIDE)
    images[flip] = images[flip][:, :, ::-1]
    return out


def augmenter(shift=0, flip=False):
    """A function (batch, rng) -> augmented batch, or None when there is nothing to do."""
    if not shift and not flip:
        return None

    def apply(batch, rng):
        if shift:
            batch = random_shift(batch, shift, rng)
        if flip:
            batch = random_flip(batch, rng)
        return batch
    return apply


def shifted(batch, dy, dx):
    """Every image moved by (dy, dx) pixels (down, right), filling with zeros: a copy."""
    n = len(batch)
    images = batch.reshape(n, SIDE, SIDE)
    out = np.zeros_like(images)
    rows_to, rows_from = slice(max(dy, 0), SIDE + min(dy, 0)), slice(max(-dy, 0), SIDE + min(-dy, 0))
    cols_to, cols_from = slice(max(dx, 0), SIDE + min(dx, 0)), slice(max(-dx, 0), SIDE + min(-dx, 0))
    out[:, rows_to, cols_to] = images[:, rows_from, cols_from]
    return out.reshape(n, SIDE * SIDE)


def mirrored(batch):
    """Every image mirrored left-right: a copy."""
    n = len(batch)
    return np.ascontiguousarray(batch.reshape(n, SIDE, SIDE)[:, :, ::-1]).reshape(n, SIDE * SIDE)


def view_offsets(shift, flip):
    """The views of test-time augmentation as (dy, dx, mirrored): the image itself and its shifts
    by one pixel up, down, left and right (when `shift` ≥ 1), and the mirror image of each of
    those (when `flip`) — 1, 2, 5 or 10 views, whatever the training shift: one-pixel moves keep
    the cost fixed, and every shift ≥ 1 trained on them. (The 8-neighbourhood, 18 views with
    mirrors, scored no better on validation: docs/accuracy.md.)"""
    steps = [(0, 0)] + ([(-1, 0), (1, 0), (0, -1), (0, 1)] if shift else [])
    return [(dy, dx, m) for dy, dx in steps for m in ((False, True) if flip else (False,))]


def views(batch, shift, flip):
    """Yield the test-time views of a batch (see `view_offsets`), the unchanged batch first."""
    for dy, dx, m in view_offsets(shift, flip):
        view = batch if (dy, dx) == (0, 0) else shifted(batch, dy, dx)
        yield mirrored(view) if m else view
