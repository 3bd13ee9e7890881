"""Typed results of a dual-learner evaluation: the numbers the acceptance rule needs, or why not.

Symbols (Ensemble-Decoupled Architecture Search): with residual ε = p(x) − onehot(y),
E is the mean single-learner Brier error, σ² the residual variance, ρ the residual correlation
between two learners, and E_ens(M) = E − σ²·(1−ρ)·(M−1)/M the predicted M-ensemble error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["EvalKey", "Curves", "LearnerResult", "DualResult", "EvalFailure", "FailureKind",
           "predicted_ensemble_error"]

FailureKind = Literal["nan", "oom", "timeout", "error"]


def predicted_ensemble_error(E: float, sigma2: float, rho: float, M: int) -> float:
    """E_ens(M) = E − σ²·(1−ρ)·(M−1)/M (exact for squared loss given E, σ², ρ)."""
    if M < 1:
        raise ValueError(f"ensemble size M must be >= 1, got {M}")
    return E - sigma2 * (1.0 - rho) * (M - 1) / M


class Curves(BaseModel):
    """Per-epoch learning curves of one learner (lists of equal length = epochs run)."""

    model_config = ConfigDict(frozen=True)

    train_loss: list[float]
    val_acc: list[float]
    grad_norm: list[float]


class LearnerResult(BaseModel):
    """One trained learner's validation (and test) metrics."""

    model_config = ConfigDict(frozen=True)

    seed: int
    val_acc: float
    val_nll: float
    val_brier: float
    test_acc: float | None = None
    curves: Curves


class EvalKey(BaseModel):
    """What identifies an evaluation: architecture, fidelity and the seed pair."""

    model_config = ConfigDict(frozen=True)

    spec_hash: str
    fidelity: str
    seeds: tuple[int, int]


class DualResult(EvalKey):
    """The statistics of two learners of one spec at one fidelity.

    ``ci`` maps ``"E"``, ``"sigma2"``, ``"rho"`` to a 95 % bootstrap interval ``[lo, hi]`` over
    validation samples; ``se`` maps the same names to bootstrap standard errors. ``npz`` is the
    file name (no directory) of the saved probabilities inside the folder the caller passed
    (arrays ``probs`` (L, N, K) float32 and ``labels`` (N,) int64), named
    ``<spec_hash>-<fidelity>-<seed1>-<seed2>.npz``.
    """

    E: float
    sigma2: float
    rho: float
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    learners: list[LearnerResult]
    npz: str
    wall_s: float
    device_s: float
    params: int
    flops: int

    def predicted_ensemble_error(self, M: int) -> float:
        return predicted_ensemble_error(self.E, self.sigma2, self.rho, M)


class EvalFailure(EvalKey):
    """An evaluation that ended without statistics, and why. Failures are results, not crashes."""

    kind: FailureKind
    message: str
    wall_s: float = 0.0
