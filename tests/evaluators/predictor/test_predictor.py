import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from evaluators.predictor import make_filter
from evaluators.predictor.ensemble import CV_MIN_RECORDS, EnsemblePredictor, Record, rank_weights
from spaces import TaskInfo, get_space
from spaces.nb201 import NB201Space

FIXTURE = Path(__file__).parents[2] / "fixtures" / "nb201_excerpt.csv"
SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def table():
    rows = list(csv.DictReader(FIXTURE.open()))
    specs = [NB201Space.from_arch_string(r["arch"]) for r in rows]
    target = np.array([100 - float(r["cifar10_test_acc_200ep"]) for r in rows])
    low = np.array([100 - float(r["cifar10_val_acc_12ep"]) for r in rows])
    return specs, target, low


def fit(specs, y, low=None, seed=0):
    recs = [Record(s, t, None if low is None else l) for s, t, l in
            zip(specs, y, low if low is not None else [None] * len(y), strict=True)]
    return EnsemblePredictor(SPACE, use_low_fidelity=low is not None, seed=seed, gnn_epochs=60).fit(recs)


def test_ranking_on_held_out_rows_beats_a_shuffled_label_control(table):
    specs, y, low = table
    train, test = slice(0, 100), slice(100, None)
    p = fit(specs[train], y[train])
    tau = kendalltau(p.predict(specs[test])[0], y[test])[0]
    shuffled = fit(specs[train], np.random.default_rng(0).permutation(y[train]))
    tau_control = kendalltau(shuffled.predict(specs[test])[0], y[test])[0]
    assert tau > 0.4 and tau > tau_control + 0.2
    with_low = fit(specs[train], y[train], low[train])
    tau_low = kendalltau(with_low.predict(specs[test], low[test])[0], y[test])[0]
    assert tau_low > 0.4
    assert list(p.rank(specs[test][:5])) == list(np.argsort(p.predict(specs[test][:5])[0]))


def test_the_low_fidelity_line_is_one_of_the_averaged_base_predictors(table):
    specs, y, low = table
    p = fit(specs[:60], y[:60], low[:60])
    preds, _ = p.base_predictions(specs[60:80], low[60:80])
    slope, intercept = np.polyfit(low[:60], y[:60], 1)  # least squares of the target on the score
    assert len(preds) == 4  # forest, boosted trees, GIN, the line
    np.testing.assert_allclose(preds[-1], slope * low[60:80] + intercept, rtol=1e-9)
    np.testing.assert_allclose(p.predict(specs[60:80], low[60:80])[0], np.mean(preds, 0), rtol=1e-12)
    assert len(fit(specs[:60], y[:60]).base_predictions(specs[60:80])[0]) == 3  # no score, no line


def test_std_is_larger_far_from_the_training_set(table):
    specs, y, _ = table
    near = [i for i, s in enumerate(specs) if "nor_conv_3x3" not in s.ops()][:60]
    far = [i for i, s in enumerate(specs) if s.ops().count("nor_conv_3x3") >= 3]
    assert len(near) >= 30 and len(far) >= 10
    p = fit([specs[i] for i in near], y[near])
    _, std_train = p.predict([specs[i] for i in near])
    _, std_far = p.predict([specs[i] for i in far])
    assert std_far.mean() > std_train.mean()


def test_filter_passes_through_then_keeps_exactly_k_with_scores(table):
    specs, y, _ = table
    f = make_filter("gnn-ensemble", SPACE, TaskInfo((1, 40), 10), min_labels=6, refit_every=50,
                    total_iterations=5)
    early = f.keep(specs[:5], 2, iteration=1)
    assert [s.kept for s in early] == [True, True, False, False, False]
    assert all(s.score is None and "warming up" in s.note for s in early)
    for s, t in zip(specs[:6], y[:6], strict=True):
        f.observe(s, t)
    scores = f.keep(specs[10:17], 3, iteration=2)
    assert sum(s.kept for s in scores) == 3 and len(scores) == 7
    assert all(s.score is not None and s.predicted_std >= 0 for s in scores)
    best = sorted(range(7), key=lambda i: -scores[i].score)[:3]
    assert {i for i, s in enumerate(scores) if s.kept} == set(best)
    assert f.beta(2) > f.beta(4)
    with pytest.raises(ValueError, match="gnn-ensemble"):
        make_filter("oracle", SPACE, None)


@pytest.mark.parametrize("gnn", ["scratch", "pretrained"])
def test_predictor_works_for_the_hierarchical_space(gnn, tmp_path, monkeypatch):
    from evaluators.predictor import contrastive

    monkeypatch.setenv("EDAS_CACHE", str(tmp_path))
    space = get_space("hierarchical")
    rng = np.random.default_rng(0)
    specs = [space.sample(rng) for _ in range(12)]
    y = np.array([s.depth / 50 + (s.activation == "relu") for s in specs], dtype=float)
    records = [Record(s, t) for s, t in zip(specs, y, strict=True)]
    tiny = contrastive.PretrainConfig(specs=64, epochs=2, batch=32)
    p = EnsemblePredictor(space, seed=0, gnn_epochs=30, gnn=gnn, pretrain=tiny).fit(records)
    mean, std = p.predict(specs[:4])
    assert mean.shape == (4,) and np.all(std >= 0)
    assert (tmp_path / "predictor").exists() == (gnn == "pretrained")


@pytest.mark.slow
def test_dcl_predictor_ranks_the_excerpt_above_its_floor(table, tmp_path, monkeypatch):
    """Stage 1 (a small contrastive pretraining) + stage 2 (ranking fine-tune) inside the
    ensemble: on held-out excerpt rows with no canonical twin of a training row, τ ≥ 0.65
    (measured 0.78) and at least the scratch-GIN ensemble's τ minus 0.05; every std > 0."""
    from evaluators.predictor import contrastive
    from evaluators.predictor.metrics import split_without_twins

    monkeypatch.setenv("EDAS_CACHE", str(tmp_path))
    monkeypatch.setattr(contrastive, "_MEMO", {})
    specs, y, _ = table
    hashes = [SPACE.canonical_hash(s) for s in specs]
    train, held, _ = split_without_twins(hashes, 100, 200, np.random.default_rng(0))
    small = contrastive.PretrainConfig(specs=384, epochs=12, batch=128)
    taus = {}
    for mode in ("pretrained", "scratch"):
        p = EnsemblePredictor(SPACE, seed=0, gnn_epochs=60, gnn=mode, pretrain=small)
        p.fit([Record(specs[i], y[i]) for i in train])
        mean, std = p.predict([specs[i] for i in held])
        taus[mode] = kendalltau(mean, y[held])[0]
        assert np.all(std > 0)
    assert taus["pretrained"] >= 0.65 and taus["pretrained"] >= taus["scratch"] - 0.05, taus
    assert make_filter("dcl-ensemble", SPACE, None).gnn == "pretrained"


def test_rank_weights_put_the_weight_on_the_member_that_ranks_and_none_on_an_inverted_one():
    rng = np.random.default_rng(0)
    y = rng.normal(size=80)
    oof = np.stack([y + 0.1 * rng.normal(size=80), rng.normal(size=80), -y])
    w = rank_weights(oof, y)
    assert w.sum() == pytest.approx(1.0) and w[0] >= 0.9 and w[2] == 0.0
    assert kendalltau(w @ oof, y)[0] >= kendalltau(oof.mean(0), y)[0] + 0.3
    flat = rank_weights(np.ones((3, 10)), np.arange(10.0))  # nothing ranks: equal weights stay
    np.testing.assert_allclose(flat, np.full(3, 1 / 3))


def test_cv_weighting_gives_a_low_fidelity_score_that_is_noise_no_weight(table):
    specs, y, _ = table
    noise = np.random.default_rng(0).normal(size=len(y))  # a "low-fidelity score" with no signal
    recs = [Record(s, t, n) for s, t, n in zip(specs[:100], y[:100], noise[:100], strict=True)]
    p = EnsemblePredictor(SPACE, use_low_fidelity=True, seed=0, gnn_epochs=60, weighting="cv").fit(recs)
    assert len(p.weights) == 4 and p.weights[-1] <= 0.1  # forest, trees, GIN, the noise's line
    preds, _ = p.base_predictions(specs[100:120], noise[100:120])
    np.testing.assert_allclose(p.predict(specs[100:120], noise[100:120])[0], p.weights @ np.stack(preds),
                               rtol=1e-12)
    few = EnsemblePredictor(SPACE, seed=0, gnn_epochs=30, weighting="cv").fit(recs[:CV_MIN_RECORDS - 1])
    assert few.weights is None  # too few records for five folds: equal weights
    with pytest.raises(ValueError, match="'stacked'"):
        EnsemblePredictor(SPACE, weighting="stacked")


def test_a_cv_filter_fits_weights_once_it_has_enough_labels_and_refuses_an_unknown_weighting(table):
    specs, y, _ = table
    f = make_filter("gnn-ensemble", SPACE, None, min_labels=CV_MIN_RECORDS, weighting="cv")
    for s, t in zip(specs[:CV_MIN_RECORDS], y[:CV_MIN_RECORDS], strict=True):
        f.observe(s, t)
    assert f.predictor.weighting == "cv" and f.predictor.weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'median'"):
        make_filter("gnn-ensemble", SPACE, None, weighting="median")


def test_low_fidelity_pretraining_lets_a_gin_with_20_targets_rank_held_out_rows_better(table):
    """The GIN alone (no trees, no low-fidelity feature at prediction), fitted on 20 targets,
    with and without first learning to rank the cheap scores of the other 280 rows (their
    targets unused). Measured on seeds 0–4 of this excerpt: +0.02 to +0.05 in τ on every seed."""
    specs, y, low = table
    gains = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(y))
        train, rest = order[:20], order[20:]
        taus = []
        for pretrain in (False, True):
            p = EnsemblePredictor(SPACE, seed=seed, gnn_epochs=60, use_trees=False,
                                  low_fidelity_pretrain=pretrain)
            p.fit([Record(specs[i], y[i], low[i]) for i in train], [(specs[i], low[i]) for i in rest])
            taus.append(kendalltau(p.predict([specs[i] for i in rest])[0], y[rest])[0])
        gains.append(taus[1] - taus[0])
    assert min(gains) > 0.0 and np.mean(gains) > 0.02, gains


def test_low_fidelity_pretraining_refuses_too_few_cheap_scores_and_shares_its_encoder_with_the_cv_folds(
        table, monkeypatch):
    specs, y, low = table
    p = EnsemblePredictor(SPACE, seed=0, gnn_epochs=10, use_trees=False, low_fidelity_pretrain=True)
    with pytest.raises(ValueError, match="at least 4 architectures with a low-fidelity score, got 3"):
        p.fit([Record(s, t) for s, t in zip(specs[:6], y[:6], strict=True)],
              [(s, v) for s, v in zip(specs[6:9], low[6:9], strict=True)])
    calls = []
    original = EnsemblePredictor._low_fidelity_states
    monkeypatch.setattr(EnsemblePredictor, "_low_fidelity_states",
                        lambda self, *a: calls.append(1) or original(self, *a))
    cv = EnsemblePredictor(SPACE, seed=0, gnn_epochs=10, weighting="cv", low_fidelity_pretrain=True)
    cv.fit([Record(s, t, v) for s, t, v in zip(specs[:CV_MIN_RECORDS], y[:CV_MIN_RECORDS],
                                               low[:CV_MIN_RECORDS], strict=True)])
    assert len(calls) == 1 and cv.weights is not None  # pretrained once, not once per fold
