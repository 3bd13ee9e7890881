"""Typed results of a dual-learner evaluation: the numbers the acceptance rule needs, or why not.

Symbols (Ensemble-Decoupled Architecture Search): with residual ε = p(x) − onehot(y),
E is the mean single-learner Brier error, σ² the residual variance, ρ the mean residual
correlation over pairs of learners, and E_ens(M) = E − σ²·(1−ρ)·(M−1)/M the predicted
M-ensemble error. This module is the formula's one home.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Stats", "EvalKey", "Curves", "LearnerResult", "EvalResult", "EvalFailure",
           "FailureKind", "predicted_ensemble_error"]

FailureKind = Literal["nan", "oom", "timeout", "error"]


def predicted_ensemble_error(E: float, sigma2: float, rho: float, M: int) -> float:
    """E_ens(M) = E − σ²·(1−ρ)·(M−1)/M (exact for squared loss given E, σ², ρ)."""
    if M < 1:
        raise ValueError(f"ensemble size M must be >= 1, got {M}")
    return E - sigma2 * (1.0 - rho) * (M - 1) / M


@dataclass(frozen=True)
class Stats:
    """The residual statistics of one architecture's learners: E, σ², ρ."""

    E: float  #: mean single-learner Brier error
    sigma2: float  #: residual variance σ²
    rho: float  #: mean pairwise residual correlation ρ

    def ens_error(self, M: int) -> float:
        """Predicted M-ensemble error E_ens(M)."""
        return predicted_ensemble_error(self.E, self.sigma2, self.rho, M)


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
    """What identifies an evaluation: architecture, fidelity and the learners' seeds."""

    model_config = ConfigDict(frozen=True)

    spec_hash: str
    fidelity: str
    seeds: tuple[int, ...]


class EvalResult(EvalKey):
    """The statistics of L ≥ 2 learners of one spec at one fidelity.

    E and σ² are means over the learners, ρ over all L(L−1)/2 pairs. ``ci`` maps ``"E"``,
    ``"sigma2"``, ``"rho"`` to a 95 % bootstrap interval ``[lo, hi]`` over validation samples;
    ``se`` maps the same names to bootstrap standard errors. ``seed_var`` is the jackknife
    variance of Ê_ens(M) over the learners at the ``M`` it was asked for (None below three
    learners). ``npz`` is the file name (no directory) of the saved probabilities of *all*
    learners inside the folder the caller passed (``probs`` (L, N, K) float32, ``labels`` (N,)
    int64). ``learners`` lists every learner, in seed order; ``wall_s``/``device_s`` are the
    times of the call that produced this value (an extension's own, not the total).
    """

    E: float
    sigma2: float
    rho: float
    ci: dict[str, tuple[float, float]]
    se: dict[str, float]
    learners: list[LearnerResult]
    seed_var: float | None = None
    npz: str
    wall_s: float
    device_s: float
    params: int
    flops: int

    @property
    def stats(self) -> Stats:
        return Stats(self.E, self.sigma2, self.rho)


class EvalFailure(EvalKey):
    """An evaluation that ended without statistics, and why. Failures are results, not crashes.
    ``by_deadline``: a timeout set by the run's wall budget, not by the candidate (the caller
    keeps it in flight instead of logging a failure)."""

    kind: FailureKind
    message: str
    wall_s: float = 0.0
    by_deadline: bool = False
