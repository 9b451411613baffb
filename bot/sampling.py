"""Choosing the next character for every row of a batch at once.

Each row has its own temperature, top-k, top-p and random stream. A row's choice depends only on
its own logits and its own uniform draw, computed with row-wise operations whose result does not
change with the batch around it, so a seeded request repeats exactly alone or in a full batch.
"""

from __future__ import annotations

import numpy as np


def sample(
    logits: np.ndarray,
    temperature: np.ndarray,
    top_k: np.ndarray,
    top_p: np.ndarray,
    uniforms: np.ndarray,
    banned: int | None = None,
) -> np.ndarray:
    """Next ids [n] from logits [n, vocab].

    temperature [n]: 0 means greedy (argmax); top_k [n]: keep the k most likely (0 = all);
    top_p [n]: keep the smallest set of most likely ids whose mass reaches p (1 = all);
    uniforms [n] in [0, 1): each row's draw; banned: an id never chosen (the unknown id).
    """
    z = logits.astype(np.float64, copy=True)
    if banned is not None:
        z[:, banned] = -np.inf
    chosen = np.argmax(z, axis=1)
    hot = temperature > 0
    if not hot.any():
        return chosen
    rows = np.flatnonzero(hot)
    z = z[rows]
    # The maximum comes off before dividing: a tiny temperature then sends every other logit
    # to -inf (greedy, as it should) instead of overflowing to inf - inf = NaN.
    with np.errstate(over="ignore"):
        z = (z - z.max(axis=1, keepdims=True)) / temperature[rows, None]
    p = np.exp(z)
    k, top = top_k[rows], top_p[rows]
    trim = ((k > 0) & (k < p.shape[1])) | (top < 1.0)
    if trim.any():
        p[trim] = _nucleus(p[trim], k[trim], top[trim])
    # Inverse-CDF draw: the first id whose cumulative mass exceeds u * total. cumsum runs
    # left to right along each row alone, so the result is independent of the other rows.
    cdf = np.cumsum(p, axis=1)
    threshold = uniforms[rows, None] * cdf[:, -1:]
    picked = np.minimum((cdf <= threshold).sum(axis=1), p.shape[1] - 1)
    chosen[rows] = picked
    return chosen


def _nucleus(p: np.ndarray, k: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Zero all but each row's top-k ids and, within those, its top-p nucleus."""
    order = np.argsort(-p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    vocab = p.shape[1]
    keep_k = np.where((k > 0) & (k < vocab), k, vocab)
    mass = np.cumsum(ranked, axis=1)
    # Ids ranked before the one that brings the mass to p*total are kept, and that one too.
    needed = (mass < top[:, None] * mass[:, -1:]).sum(axis=1) + 1
    keep = np.minimum(keep_k, needed)
    mask_ranked = np.arange(vocab)[None, :] < keep[:, None]
    mask = np.zeros_like(mask_ranked)
    np.put_along_axis(mask, order, mask_ranked, axis=1)
    return np.where(mask, p, 0.0)
