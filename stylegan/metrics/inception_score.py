"""Inception Score from class probabilities."""

from __future__ import annotations

import numpy as np
import scipy.special


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """Mean and std over ``num_splits`` splits of ``exp(E_x KL(p(y|x) || p(y)))``.

    Splits are contiguous, ``[i * N // S, (i + 1) * N // S)``, as in StyleGAN2-ADA. Zero
    probabilities contribute zero (``rel_entr``) rather than NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < num_splits or num_splits < 1:
        raise ValueError(
            f"expected probabilities [N >= num_splits={num_splits}, classes], got shape {p.shape}"
        )
    n = p.shape[0]
    scores = []
    for i in range(num_splits):
        part = p[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        scores.append(np.exp(scipy.special.rel_entr(part, marginal).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
