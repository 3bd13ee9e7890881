"""Which candidates deserve a higher rung: the multi-fidelity predictor and the promotion rules.

PMF-NAS reads a candidate's early training curves (loss, accuracy, gradient norm per epoch)
and static features to predict its final performance, then promotes by successive halving, an
*opportunistic* rule (an outlier beyond μ + 2σ goes up at once) and a *conservative* rule (no
new low-fidelity work once under 20 % of the budget is left).

Here the quantity is the predicted **top-rung** M-ensemble error E_ens(M) (lower is better).
:class:`RungPredictor` learns it from every (lower-rung evaluation → top-rung evaluation) pair
the run has seen. The lower rung's own Ê_ens(M) enters unpenalised; the rest of
:func:`curve_row` (E, σ², ρ, the learners' curves — last training loss, last validation
accuracy, its rise over the second half, last gradient norm, averaged over learners — and log
parameters/FLOPs) enters as a ridge whose strength α is chosen by exact leave-one-out error over
the pairs, α = ∞ (no curve term: a line in the rung's own Ê_ens, which ranks as Ê_ens does)
included; the curve term is kept only when its leave-one-out errors beat α = ∞'s by more than
two standard errors of the paired difference. Chosen by measurement (``benchmarks/rung_predictor.py``,
40 real MNIST-1D cells, five rungs, README): with 4–32 pairs, a ridge on every feature at a fixed
α = 1 (the predictor before) ranked the true top-rung ensemble worse than the rung's own Ê_ens by
0.03–0.22 of Kendall τ on every rung but one, and a small recurrent encoder of the curves
(PMF-NAS's kind of model) lost on four of five rungs; this predictor is within 0.03 of the rung's
own score from 8 pairs. Below :data:`MIN_PAIRS` pairs the score is the lower rung's own E_ens(M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from evaluators.results import EvalResult

__all__ = ["curve_row", "loo_ridge", "RidgeFit", "RungPredictor", "Score", "successive_halving",
           "opportunistic", "ALPHAS", "MIN_PAIRS", "CONSERVATIVE_SHARE"]

#: pairs needed before the predictor may replace the lower rung's own E_ens as the score (with
#: 4, leave-one-out picked curve terms by chance and cost 0.04–0.13 of τ; see the docstring)
MIN_PAIRS = 8
#: under this share of the learner-epoch budget left, no new first-rung work starts
CONSERVATIVE_SHARE = 0.2


def curve_row(result: EvalResult, M: int) -> np.ndarray:
    """The engineered features of one evaluation (see the module docstring); column 0 is the
    rung's own Ê_ens(M), which :func:`loo_ridge` keeps unpenalised."""
    curves = [l.curves for l in result.learners]

    def mean(values: list[float]) -> float:
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
    """Predicted top-rung E_ens(M) of a candidate, and how it was obtained. ``fitted`` False:
    too few pairs to fit, so ``value`` is the lower rung's own E_ens(M) — it orders candidates
    but is not on the top rung's scale (a 3-epoch E_ens of 0.72 can end at 0.10)."""

    value: float
    how: str
    fitted: bool = True


#: ridge strengths tried by leave-one-out; ∞ drops the curve term (see the module docstring)
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, math.inf)


def _design(X: np.ndarray, mu: np.ndarray, sd: np.ndarray, alpha: float) -> np.ndarray:
    """[1, standardised rung Ê_ens, standardised curve features (none when α = ∞)]."""
    Z = (X - mu) / sd
    return np.column_stack([np.ones(len(X)), Z[:, :1] if math.isinf(alpha) else Z])


class RidgeFit(NamedTuple):
    """What :func:`loo_ridge` chose: weights on :func:`_design`'s columns, α, its mean LOO
    squared error, and the column means and scales it standardised with."""

    w: np.ndarray
    alpha: float
    loo: float
    mu: np.ndarray
    sd: np.ndarray


def loo_ridge(X: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = ALPHAS, z: float = 2.0) -> RidgeFit:
    """Fit y on column 0 of X (unpenalised, with an intercept), plus the other columns under a
    ridge penalty α only where they earn it. Each α of ``alphas`` gets its exact leave-one-out
    squared errors (a linear smoother's: residual_i / (1 − H_ii)); the finite α with the least
    mean is kept over α = ∞ (column 0 alone) only when its per-pair LOO errors are lower by more
    than ``z`` standard errors of the paired difference. Columns are standardised on X."""
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1.0
    fits = {}
    for alpha in alphas:
        A = _design(X, mu, sd, alpha)
        penalty = np.diag([0.0, 0.0] + [0.0 if math.isinf(alpha) else alpha] * (A.shape[1] - 2))
        G = A.T @ A + penalty + 1e-9 * np.eye(A.shape[1])
        w = np.linalg.solve(G, A.T @ y)
        leverage = np.einsum("ij,ji->i", A, np.linalg.solve(G, A.T))
        fits[alpha] = (w, ((y - A @ w) / np.clip(1.0 - leverage, 1e-6, None)) ** 2)
    chosen = math.inf
    finite = [a for a in fits if not math.isinf(a)]
    if finite and math.inf in fits:
        best = min(finite, key=lambda a: fits[a][1].mean())
        gain = fits[math.inf][1] - fits[best][1]
        if gain.mean() > z * gain.std(ddof=1) / math.sqrt(len(y)):
            chosen = best
    elif finite:
        chosen = min(finite, key=lambda a: fits[a][1].mean())
    w, errors = fits[chosen]
    return RidgeFit(w, chosen, float(errors.mean()), mu, sd)


class RungPredictor:
    """Lower-rung evaluation → predicted top-rung E_ens(M): a line in the rung's own Ê_ens(M)
    plus a ridge on the rest of :func:`curve_row`, its α chosen by leave-one-out."""

    def __init__(self, M: int, alphas: tuple[float, ...] = ALPHAS, min_pairs: int = MIN_PAIRS):
        self.M, self.alphas, self.min_pairs = M, alphas, min_pairs
        self._fits: dict[str, tuple[RidgeFit, int]] = {}  # rung -> (fit, pairs it was fitted on)

    def fit(self, rung: str, pairs: list[tuple[EvalResult, EvalResult]]) -> None:
        """Learn ``rung`` → top rung from (lower, top) evaluations of the same architectures."""
        if len(pairs) < self.min_pairs:
            self._fits.pop(rung, None)
            return
        X = np.stack([curve_row(lo, self.M) for lo, _ in pairs])
        y = np.array([top.stats.ens_error(self.M) for _, top in pairs])
        self._fits[rung] = (loo_ridge(X, y, self.alphas), len(pairs))

    def score(self, rung: str, result: EvalResult) -> Score:
        """The candidate's predicted top-rung E_ens(M) from its evaluation at ``rung``."""
        fit = self._fits.get(rung)
        if fit is None:
            return Score(result.stats.ens_error(self.M),
                         f"{rung} E_ens (fewer than {self.min_pairs} {rung}→top pairs yet)", False)
        ridge, n = fit
        value = float(_design(curve_row(result, self.M)[None], ridge.mu, ridge.sd, ridge.alpha)[0] @ ridge.w)
        how = (f"line in {rung} E_ens (curves did not help by leave-one-out)" if math.isinf(ridge.alpha)
               else f"{rung} E_ens + curves ridge α={ridge.alpha:g}")
        return Score(value, f"{how}, fitted on {n} {rung}→top pairs")


def successive_halving(scores: dict[str, float], eta: int) -> list[str]:
    """Ids in the top ⌊n/η⌋ of ``scores`` (every candidate that finished the rung, lower is
    better), best first — the asynchronous successive-halving promotion set."""
    ranked = sorted(scores, key=scores.__getitem__)
    return ranked[: len(scores) // eta]


#: successive-halving variants (``--halving``): see :func:`halving_quota`
HALVINGS = ("asynchronous", "capped")


def halving_quota(n: int, eta: int, up: int, halving: str) -> tuple[int, str]:
    """How many more of a rung's ``n`` candidates successive halving may promote now, ``up`` of
    them having gone up already (by any rule), and the words a promotion's reason adds.
    ``asynchronous`` (ASHA): no cap beyond the top ⌊n/η⌋ itself, so in a search whose
    newcomers keep entering the top more than n/η go up over a run; ``capped``: ⌊n/η⌋ − up,
    so a rung passes on at most its 1/η share."""
    if halving not in HALVINGS:
        raise ValueError(f"halving must be one of {', '.join(HALVINGS)}, got {halving!r}")
    if halving == "asynchronous":
        return n, ""
    return n // eta - up, f", {up} of them already up (capped)"


def opportunistic(scores: dict[str, float], candidate: str) -> bool:
    """True when ``candidate``'s score is an outlier below μ − 2σ of the others' (needs 3+)."""
    others = [v for k, v in scores.items() if k != candidate]
    if len(others) < 3:
        return False
    mu, sd = float(np.mean(others)), float(np.std(others, ddof=1))
    return sd > 0 and scores[candidate] < mu - 2 * sd
