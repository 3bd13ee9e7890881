"""The truth behind the rule: train the real M-ensemble and compare with the dual prediction.

The prediction uses only learners 0 and 1 (what the search saw): E_ens(M) = E − σ²·(1−ρ)·(M−1)/M.
The truth averages the probabilities of all M learners. Both are reported on the validation
samples the statistics came from and on the held-out test split (the honest check).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from evaluators.data import Task
from evaluators.dual import train_spec
from evaluators.fidelity import Fidelity
from evaluators.stats import ensemble_brier, error01, residual_stats
from spaces.base import SearchSpace, SizeCap

__all__ = ["EnsembleValidation", "validate_ensemble", "compare_ensemble"]


class EnsembleValidation(BaseModel):
    """Predicted (from learners 0–1) vs true M-ensemble errors, on validation and test."""

    model_config = ConfigDict(frozen=True)

    spec_hash: str
    M: int
    predicted_ens_brier: float
    true_ens_brier: float
    true_ens_error01: float
    test_predicted_ens_brier: float
    test_true_ens_brier: float
    test_true_ens_error01: float
    single_brier: float
    wall_s: float


def compare_ensemble(val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray,
                     test_labels: np.ndarray) -> dict[str, float]:
    """Dual prediction vs truth for M learners' probabilities (M, N, K) on both splits."""
    M = val_probs.shape[0]
    out: dict[str, float] = {}
    for prefix, probs, labels in (("", val_probs, val_labels), ("test_", test_probs, test_labels)):
        s = residual_stats(probs[:2], labels)
        out[f"{prefix}predicted_ens_brier"] = s.ens_error(M)
        out[f"{prefix}true_ens_brier"] = ensemble_brier(probs, labels)
        out[f"{prefix}true_ens_error01"] = error01(probs.mean(axis=0), labels)
        if not prefix:
            out["single_brier"] = s.E
    return out


def validate_ensemble(spec: BaseModel, space: SearchSpace, task: Task, fidelity: Fidelity, M: int, *,
                      seed0: int = 0, packed: bool | Literal["auto"] = "auto",
                      time_limit_s: float | None = None, cap: SizeCap | None = None,
                      threads: int | None | Literal["auto"] = "auto",
                      compile_model: bool = False) -> EnsembleValidation:
    """Train M learners (seeds seed0, seed0+1, …) and report predicted vs true ensemble error.

    Learners 0 and 1 use the same seeds as the dual evaluation with ``seeds=(seed0, seed0+1)``,
    so the prediction is the one the search made.
    """
    if M < 2:
        raise ValueError(f"ensemble size M must be >= 2, got {M}")
    start = time.monotonic()
    runs = train_spec(spec, space, task, fidelity, [seed0 + i for i in range(M)], cap=cap,
                      packed=packed, time_limit_s=time_limit_s, threads=threads,
                      compile_model=compile_model)
    numbers = compare_ensemble(np.stack([r.val_probs for r in runs]), task.y_val.cpu().numpy(),
                               np.stack([r.test_probs for r in runs]), task.y_test.cpu().numpy())
    return EnsembleValidation(spec_hash=space.canonical_hash(spec), M=M,
                              wall_s=time.monotonic() - start, **numbers)
