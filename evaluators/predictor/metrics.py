"""Ranking metrics for predictors, counted strictly, and a held-out split without canonical twins.

All functions take *losses* (lower is better): the predicted and the true target of the same
architectures, in the same order.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, spearmanr

__all__ = ["strict_top_recall", "ranking_scores", "split_without_twins", "METRICS"]

METRICS = ("kendall_tau", "spearman", "top10_recall_strict", "tau_top10")


def strict_top_recall(pred_loss: np.ndarray, true_loss: np.ndarray, fraction: float = 0.1) -> float:
    """|true top ``fraction`` ∩ predicted top ``fraction``| / |true top ``fraction``|, both sets
    of size ``max(1, ⌊n·fraction⌋)`` (ties broken by position)."""
    pred_loss, true_loss = np.asarray(pred_loss), np.asarray(true_loss)
    if pred_loss.shape != true_loss.shape or pred_loss.ndim != 1:
        raise ValueError(f"need two 1-D arrays of one length, got {pred_loss.shape} and {true_loss.shape}")
    k = max(1, int(len(true_loss) * fraction))
    top_true = set(np.argsort(true_loss, kind="stable")[:k].tolist())
    top_pred = set(np.argsort(pred_loss, kind="stable")[:k].tolist())
    return len(top_true & top_pred) / k


def ranking_scores(pred_loss: np.ndarray, true_loss: np.ndarray) -> dict[str, float]:
    """Kendall τ, Spearman, strict top-10 % recall, and Kendall τ within the true top 10 % (the
    architectures a search decides between)."""
    pred_loss, true_loss = np.asarray(pred_loss), np.asarray(true_loss)
    top = np.argsort(true_loss, kind="stable")[: max(2, len(true_loss) // 10)]
    return {"kendall_tau": float(kendalltau(pred_loss, true_loss)[0]),
            "spearman": float(spearmanr(pred_loss, true_loss)[0]),
            "top10_recall_strict": strict_top_recall(pred_loss, true_loss),
            "tau_top10": float(kendalltau(pred_loss[top], true_loss[top])[0])}


def split_without_twins(hashes: list[str], n_train: int, n_held_out: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """A random split of ``len(hashes)`` architectures (``hashes``: their canonical hashes):
    ``n_train`` training indices, up to ``n_held_out`` held-out indices none of which is a
    canonical twin (same function) of a training architecture, and how many twins were skipped
    while filling the held-out set."""
    order = rng.permutation(len(hashes))
    train = order[:n_train]
    seen = {hashes[i] for i in train}
    held, skipped = [], 0
    for i in order[n_train:]:
        if len(held) == n_held_out:
            break
        if hashes[i] in seen:
            skipped += 1
        else:
            held.append(int(i))
    return train, np.asarray(held, dtype=int), skipped
