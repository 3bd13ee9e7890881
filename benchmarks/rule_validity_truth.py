"""What the rule-validity benchmark scores the rules against (``benchmarks/rule_validity.py``):
the true gaps between the cells' real ensembles with their two SEs, and what an oracle that
knows those gaps could expect on the SEs the rule states; and the memoised seed pool and gain
estimates that the replayed rule and the oracle both read."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from agent.config import first_baseline_learners
from evaluators import stats as es


def truth(test: np.ndarray, y_test: np.ndarray, n_boot: int = 1000
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True gaps G[a, b] = Brier(ens_b) − Brier(ens_a) (> 0: cell a's T-ensemble is better),
    their paired-bootstrap SE over test samples, and their seed SE: the delete-one-seed jackknife
    of G over the T truth learners (seed i removed from both cells)."""
    test = test.astype(np.float64)  # once: (A, T, N, K) can be hundreds of MB
    ens = test.mean(axis=1)  # (A, N, K)
    onehot = np.eye(ens.shape[2])[y_test]
    sq = np.sum((ens - onehot[None]) ** 2, axis=2)  # (A, N)
    n = sq.shape[1]
    w = np.random.default_rng(0).multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    boot = w @ sq.T  # (B, A)
    mean = sq.mean(axis=1)
    gap = mean[None, :] - mean[:, None]
    se = np.std(boot[:, None, :] - boot[:, :, None], axis=0, ddof=1)
    T = test.shape[1]
    loo_ens = (ens[:, None] * T - test) / (T - 1)  # (A, T, N, K)
    loo = np.sum((loo_ens - onehot[None, None]) ** 2, axis=3).mean(axis=2)  # (A, T)
    loo_gap = loo[None, :, :] - loo[:, None, :]  # (A, A, T)
    dev = loo_gap - loo_gap.mean(axis=2, keepdims=True)
    se_seed = np.sqrt((T - 1) / T * np.sum(dev**2, axis=2))
    return gap, se, se_seed


def seed_pool(memo: dict, val, y, order, r: int, M: int, base_L: int,
              cell: int | None = None) -> tuple[float, int] | None:
    """The run-level seed pool (φ, ν) of learner order r: the jackknife seed variances of every
    cell's first ``base_L`` learners, or of ``cell``'s alone (a run's start); memoised."""
    key = ("pool", r, M, base_L, cell)
    if key not in memo:
        cells = range(len(val)) if cell is None else (cell,)
        memo[key] = es.pool_seed_variance(
            (base_L, es.seed_variance(es.residuals(val[c][order[:base_L]], y), M)) for c in cells)
    return memo[key]


def gain_key(a: int, b: int, L_new: int, L_old: int, r: int, M: int, base_L: int,
             pool_of: str = "cells") -> str:
    """The key of a gain estimate in ``memo["gains"]`` (saved between runs)."""
    return f"{a},{b},{L_new},{L_old},{r},{M},{base_L}" + (",baseline" if pool_of == "baseline"
                                                         else "")


def gain(memo: dict, val, y, a: int, b: int, L_new: int, L_old: int, order, r: int, M: int,
         base_L: int, pool_of: str = "cells") -> es.GainEstimate:
    """The gain estimate of cell a against cell b on the first L_new / L_old learners of order
    r, with the pool ``pool_of`` names (:func:`seed_pool`); memoised in ``memo["gains"]``."""
    key = gain_key(a, b, L_new, L_old, r, M, base_L, pool_of)
    if key not in memo["gains"]:
        pool = seed_pool(memo, val, y, order, r, M, base_L, b if pool_of == "baseline" else None)
        memo["gains"][key] = es.gain_estimate(val[a][order[:L_new]], val[b][order[:L_old]], y, M,
                                              pool=pool)
    return memo["gains"][key]


def baseline_learners(lo: int, cached: int) -> int:
    """The learners the baseline holds from its first evaluation (as the loop gives it,
    :func:`agent.config.first_baseline_learners`), at most the ``cached`` learners per cell."""
    return min(first_baseline_learners(lo), cached)


def oracle(val, y, pairs, gap: np.ndarray, mask: np.ndarray, M: int, lo: int, L: int,
            memo: dict) -> float:
    """The clear-pair agreement an oracle could expect with L learners a side: for each pair
    in ``mask`` it knows the true gap g and is told the gain's stated SE at L learners (first
    order, as the sequential rule's last look sees it); deciding at one look with z = 1.96 (no
    price for several looks), with an unbiased normal estimate, it is confident and right with
    chance Φ(|g|/SE − 1.96). If the stated SEs are exact, no rule that keeps a 0.95 bound can
    expect more; a rule above it shows the SEs are conservative on this task."""
    base_L = baseline_learners(lo, val.shape[1])
    first = np.arange(val.shape[1])  # order 0
    out = [norm.cdf(abs(g) / gain(memo, val, y, a, b, L, max(L, base_L), first, 0, M,
                                  base_L).se_total - norm.ppf(0.975))
           for (a, b), g in zip(np.array(pairs)[mask], gap[mask], strict=True)]
    return float(np.mean(out))
