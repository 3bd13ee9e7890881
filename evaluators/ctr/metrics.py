"""CTR metrics of click probabilities: log-loss, Brier and AUC.

``brier`` here is the binary Brier score mean_n (p_n − y_n)². The acceptance rule's E is the
Brier error of the 2-class probabilities (p, 1 − p): ‖(1−p, p) − onehot(y)‖² = 2 (p − y)², so
E = 2 · brier exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ctr_metrics"]


def ctr_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``probs``: click probabilities (N,) or 2-class probabilities (N, 2); ``labels`` (N,) in
    {0, 1}. Returns ``logloss`` (natural log, probabilities clipped to [1e-7, 1 − 1e-7]),
    ``brier`` and ``auc`` (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    p = np.asarray(probs, dtype=np.float64)
    p = p[:, 1] if p.ndim == 2 else p
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"probs and labels must align, got {p.shape} and {y.shape}")
    q = np.clip(p, 1e-7, 1 - 1e-7)
    logloss = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return {"logloss": logloss, "brier": float(np.mean((p - y) ** 2)), "auc": auc}
