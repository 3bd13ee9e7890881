"""Which candidates deserve a higher rung: the multi-fidelity predictor and the promotion rules.

PMF-NAS reads a candidate's early training curves (loss, accuracy, gradient norm per epoch)
and static features to predict its final performance, then promotes by successive halving, an
*opportunistic* rule (an outlier beyond μ + 2σ goes up at once) and a *conservative* rule (no
new low-fidelity work once under 20 % of the budget is left).

Here the quantity is the predicted **top-rung** M-ensemble error E_ens(M) (lower is better).
:class:`RungPredictor` learns it from every (lower-rung evaluation → top-rung evaluation) pair
the run has seen: features are the lower rung's E_ens(M), E, σ², ρ, the learners' curves (last
training loss, last validation accuracy, its rise over the second half, last gradient norm, all
averaged over learners) and log parameters/FLOPs; a ridge regression on standardised features
(few pairs, so a small linear model: a recurrent encoder needs far more). Until it has
:data:`MIN_PAIRS` pairs the score is the lower rung's own E_ens(M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluators.results import EvalResult

__all__ = ["curve_row", "RungPredictor", "Score", "successive_halving", "opportunistic",
           "MIN_PAIRS", "CONSERVATIVE_SHARE"]

#: pairs needed before the predictor replaces the lower rung's own E_ens as the score
MIN_PAIRS = 4
#: under this share of the learner-epoch budget left, no new first-rung work starts
CONSERVATIVE_SHARE = 0.2


def curve_row(result: EvalResult, M: int) -> np.ndarray:
    """The engineered features of one evaluation (see the module docstring)."""
    curves = [l.curves for l in result.learners]

    def mean(values):
        return float(np.mean(values)) if values else 0.0

    rise = []
    for c in curves:
        half = len(c.val_acc) // 2
        rise.append(c.val_acc[-1] - c.val_acc[half] if c.val_acc else 0.0)
    return np.array([
        result.stats.ens_error(M), result.E, result.sigma2, result.rho,
        mean([c.train_loss[-1] for c in curves if c.train_loss]),
        mean([c.val_acc[-1] for c in curves if c.val_acc]), mean(rise),
        mean([c.grad_norm[-1] for c in curves if c.grad_norm]),
        math.log10(max(1, result.params)), math.log10(max(1, result.flops))])


@dataclass(frozen=True)
class Score:
    """Predicted top-rung E_ens(M) of a candidate, and how it was obtained."""

    value: float
    how: str


class RungPredictor:
    """Lower-rung evaluation → predicted top-rung E_ens(M) (ridge on :func:`curve_row`)."""

    def __init__(self, M: int, alpha: float = 1.0):
        self.M, self.alpha = M, alpha
        self._fits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float, int]] = {}

    def fit(self, rung: str, pairs: list[tuple[EvalResult, EvalResult]]) -> None:
        """Learn ``rung`` → top rung from (lower, top) evaluations of the same architectures."""
        if len(pairs) < MIN_PAIRS:
            self._fits.pop(rung, None)
            return
        X = np.stack([curve_row(lo, self.M) for lo, _ in pairs])
        y = np.array([top.stats.ens_error(self.M) for _, top in pairs])
        mu, sd = X.mean(0), X.std(0)
        sd[sd == 0] = 1.0
        Z = (X - mu) / sd
        w = np.linalg.solve(Z.T @ Z + self.alpha * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
        self._fits[rung] = (w, mu, sd, float(y.mean()), len(pairs))

    def score(self, rung: str, result: EvalResult) -> Score:
        """The candidate's predicted top-rung E_ens(M) from its evaluation at ``rung``."""
        fit = self._fits.get(rung)
        if fit is None:
            return Score(result.stats.ens_error(self.M),
                         f"{rung} E_ens (fewer than {MIN_PAIRS} {rung}→top pairs yet)")
        w, mu, sd, y0, n = fit
        value = float(y0 + ((curve_row(result, self.M) - mu) / sd) @ w)
        return Score(value, f"curves+static ridge on {n} {rung}→top pairs")


def successive_halving(scores: dict[str, float], eta: int) -> list[str]:
    """Ids in the top ⌊n/η⌋ of ``scores`` (every candidate that finished the rung, lower is
    better), best first — the asynchronous successive-halving promotion set."""
    ranked = sorted(scores, key=scores.__getitem__)
    return ranked[: len(scores) // eta]


def opportunistic(scores: dict[str, float], candidate: str) -> bool:
    """True when ``candidate``'s score is an outlier below μ − 2σ of the others' (needs 3+)."""
    others = [v for k, v in scores.items() if k != candidate]
    if len(others) < 3:
        return False
    mu, sd = float(np.mean(others)), float(np.std(others, ddof=1))
    return sd > 0 and scores[candidate] < mu - 2 * sd
