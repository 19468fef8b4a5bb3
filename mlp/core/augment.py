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
