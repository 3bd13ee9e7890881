"""Residual statistics of dual learners (pure numpy).

Symbols: for learner l and validation sample n, the residual is
ε_l(n) = p_l(x_n) − onehot(y_n) ∈ R^K (predicted class probabilities minus the label).

* E   — mean single-learner Brier error: mean_n ‖ε_l(n)‖², averaged over the learners.
* σ²  — residual variance: mean over learners of mean_n ‖ε_l(n) − μ_l‖², μ_l = mean_n ε_l(n)
        (ddof 0).
* ρ   — residual correlation: mean_n ⟨ε_1(n) − μ_1, ε_2(n) − μ_2⟩ / σ².
* M   — ensemble size; the predicted M-ensemble error is E_ens = E − σ²·(1−ρ)·(M−1)/M.
"""

from __future__ import annotations

import numpy as np

from evaluators.results import predicted_ensemble_error

__all__ = ["residuals", "residual_stats", "bootstrap_stats", "paired_gain_se",
           "brier", "ensemble_brier", "error01"]


def residuals(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ε = p − onehot(y); ``probs`` (L, N, K), ``labels`` (N,) → (L, N, K) float64."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must have shape (L, N, K) with N={len(labels)}, got {probs.shape}")
    onehot = np.eye(probs.shape[2])[np.asarray(labels)]
    return probs - onehot[None]


def _stats_from_residuals(eps: np.ndarray) -> tuple[float, float, float]:
    """(E, σ², ρ) from residuals of two learners, eps (2, N, K)."""
    E = float(np.mean(np.sum(eps**2, axis=2)))
    centred = eps - eps.mean(axis=1, keepdims=True)
    sigma2 = float(np.mean(np.sum(centred**2, axis=2)))
    cov = float(np.mean(np.sum(centred[0] * centred[1], axis=1)))
    rho = cov / sigma2 if sigma2 > 0 else 1.0
    return E, sigma2, rho


def residual_stats(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """E, σ² and ρ of two learners; ``probs`` (2, N, K)."""
    eps = residuals(probs, labels)
    if eps.shape[0] != 2:
        raise ValueError(f"residual_stats needs exactly 2 learners, got {eps.shape[0]}")
    E, sigma2, rho = _stats_from_residuals(eps)
    return {"E": E, "sigma2": sigma2, "rho": rho}


def bootstrap_stats(probs: np.ndarray, labels: np.ndarray, n_boot: int = 200, seed: int = 0
                    ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """95 % percentile intervals and standard errors of E, σ², ρ over validation samples."""
    eps = residuals(probs, labels)
    rng = np.random.default_rng(seed)
    n = eps.shape[1]
    draws = np.array([_stats_from_residuals(eps[:, rng.integers(0, n, n)]) for _ in range(n_boot)])
    names = ("E", "sigma2", "rho")
    ci = {k: (float(np.percentile(draws[:, i], 2.5)), float(np.percentile(draws[:, i], 97.5)))
          for i, k in enumerate(names)}
    se = {k: float(draws[:, i].std(ddof=1)) for i, k in enumerate(names)}
    return ci, se


def paired_gain_se(probs_new: np.ndarray, probs_old: np.ndarray, labels: np.ndarray, M: int,
                   n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Predicted gain E_ens(π_old) − E_ens(π) at ensemble size M, and its standard error.

    Both candidates were evaluated on the same validation samples, so the bootstrap resamples
    sample indices jointly (paired), which cancels the per-sample difficulty they share.
    """
    eps_new, eps_old = residuals(probs_new, labels), residuals(probs_old, labels)

    def gain(idx: np.ndarray | slice) -> float:
        new = predicted_ensemble_error(*_stats_from_residuals(eps_new[:, idx]), M)
        old = predicted_ensemble_error(*_stats_from_residuals(eps_old[:, idx]), M)
        return old - new

    rng = np.random.default_rng(seed)
    n = eps_new.shape[1]
    draws = np.array([gain(rng.integers(0, n, n)) for _ in range(n_boot)])
    return float(gain(slice(None))), float(draws.std(ddof=1))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Brier error of one probability table (N, K): mean_n ‖p(x_n) − onehot(y_n)‖²."""
    return float(np.mean(np.sum(residuals(np.asarray(probs)[None], labels)[0] ** 2, axis=1)))


def ensemble_brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Brier error of the averaged probabilities of L learners, probs (L, N, K)."""
    return brier(np.asarray(probs, dtype=np.float64).mean(axis=0), labels)


def error01(probs: np.ndarray, labels: np.ndarray) -> float:
    """0-1 error of one probability table (N, K)."""
    return float(np.mean(np.argmax(probs, axis=1) != np.asarray(labels)))
