"""Fréchet distance between Gaussians fitted to feature sets (FID)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``features [N, D]`` in float64.

    The covariance is normalised by N (not N - 1), as in NVIDIA's ``FeatureStats.get_mean_cov``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected features [N >= 2, D], got shape {x.shape}")
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, centred.T @ centred / x.shape[0]


def _psd_eigvals(evals: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with those within rounding noise of zero set to zero.

    ``sqrt`` turns an error ``e`` in a zero eigenvalue into ``sqrt(e)``, so rounding noise of
    ~1e-16 would add ~1e-8 per null direction; with singular covariances (fewer samples than
    dimensions) there are hundreds of those.
    """
    tol = max(float(evals.max(initial=0.0)), 0.0) * evals.shape[0] * np.finfo(np.float64).eps
    return np.where(evals > tol, evals, 0.0)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr(sqrtm(sigma1 @ sigma2))`` for symmetric PSD matrices.

    ``sigma1 @ sigma2`` has the same eigenvalues as the symmetric PSD ``s @ sigma2 @ s`` with
    ``s = sqrt(sigma1)``, so two symmetric eigendecompositions give the trace. Unlike a general
    ``scipy.linalg.sqrtm`` this stays real and stable when the covariances are singular.
    """
    evals1, evecs1 = scipy.linalg.eigh(sigma1)
    sqrt1 = (evecs1 * np.sqrt(_psd_eigvals(evals1))) @ evecs1.T
    inner = sqrt1 @ sigma2 @ sqrt1
    return float(np.sqrt(_psd_eigvals(scipy.linalg.eigvalsh((inner + inner.T) / 2))).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.ndim != 1:
        raise ValueError(f"mu1 must be a vector, got shape {mu1.shape}")
    d = mu1.shape[0]
    for name, value, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)), ("sigma2", sigma2, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}; expected {shape} to match mu1 {mu1.shape}")
    mean_term = float(np.square(mu1 - mu2).sum())
    return mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * _trace_sqrt_product(sigma1, sigma2)


def _fid_in_sample_space(a: np.ndarray, b: np.ndarray) -> float:
    """FID from the centred samples, for when there are fewer sample pairs than covariance entries.

    With ``sigma1 = X1'X1 / n`` and ``sigma2 = X2'X2 / m``, the non-zero eigenvalues of
    ``sigma1 sigma2`` are the squared singular values of ``M = X1 X2' / sqrt(n m)``, so
    ``tr(sqrt(sigma1 sigma2))`` is the sum of the singular values of the small matrix ``M``.
    """
    x1, x2 = a - a.mean(axis=0), b - b.mean(axis=0)
    n, m = a.shape[0], b.shape[0]
    mean_term = float(np.square(a.mean(axis=0) - b.mean(axis=0)).sum())
    trace_term = float(np.square(x1).sum() / n + np.square(x2).sum() / m)
    nuclear = float(scipy.linalg.svdvals(x1 @ x2.T / np.sqrt(n * m)).sum())
    return mean_term + trace_term - 2.0 * nuclear


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets ``[N, D]`` (Gaussian fit of each, then the Fréchet distance).

    Small sets (``Na * Nb <= D * D``) take an exact shortcut through the ``Na x Nb`` cross-product
    instead of ``D x D`` covariances.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"expected feature sets [N >= 2, D] with equal D, got {a.shape} and {b.shape}")
    if a.shape[0] * b.shape[0] <= a.shape[1] ** 2:
        return _fid_in_sample_space(a, b)
    return frechet_distance(*mean_cov(a), *mean_cov(b))
