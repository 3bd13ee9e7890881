"""The predictor benchmark's metrics: strict top-10 % recall, τ within the top, twin-free split."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from evaluators.predictor.metrics import ranking_scores, split_without_twins, strict_top_recall


def test_strict_recall_counts_the_true_top_inside_the_predicted_top_only():
    true = np.arange(20, dtype=float)  # losses: items 0 and 1 are the true top 10 %
    pred = true.copy()
    assert strict_top_recall(pred, true) == 1.0
    pred[1] = 100.0  # item 1 falls out of the predicted top 2; item 2 takes its place
    assert strict_top_recall(pred, true) == 0.5
    pred[0] = 50.0  # now neither is in the predicted top 2 (items 2 and 3 are)
    assert strict_top_recall(pred, true) == 0.0
    assert strict_top_recall(np.arange(10.0)[::-1], np.arange(10.0)) == 0.0  # k = max(1, 1)
    with pytest.raises(ValueError, match="1-D arrays"):
        strict_top_recall(np.zeros(3), np.zeros(4))


def test_tau_within_the_true_top_ignores_the_rest():
    rng = np.random.default_rng(0)
    true = rng.permutation(100).astype(float)
    pred = true.copy()
    top = true < 10
    pred[top] = -true[top]  # the top 10 reversed among themselves, still ahead of everyone
    s = ranking_scores(pred, true)
    assert s["tau_top10"] == pytest.approx(-1.0)
    assert s["top10_recall_strict"] == 1.0
    assert s["kendall_tau"] == pytest.approx(kendalltau(pred, true)[0]) and s["kendall_tau"] > 0.9


def test_split_removes_canonical_twins_of_training_architectures():
    # 6 functions, each written 5 ways: a random 3 for training leaves twins everywhere
    hashes = [f"h{i % 6}" for i in range(30)]
    for seed in range(20):
        train, held, skipped = split_without_twins(hashes, 3, 10, np.random.default_rng(seed))
        trained = {hashes[i] for i in train}
        assert len(train) == 3 and not set(train) & set(held.tolist())
        assert all(hashes[i] not in trained for i in held)
        # every architecture of an untrained function is kept, up to the size asked for
        free = sum(h not in trained for h in hashes)
        assert len(held) == min(10, free)
        assert skipped >= 1
