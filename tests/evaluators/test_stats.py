"""Statistics of L learners and the gain's uncertainty, checked against numpy written out by
hand and against simulated residuals whose sample and seed variance are known."""

import numpy as np
import pytest

from evaluators.results import predicted_ensemble_error
from evaluators.stats import (
    GainEstimate,
    bootstrap_stats,
    conditional_power,
    gain_estimate,
    pool_seed_variance,
    residual_stats,
    residuals,
    seed_variance,
    two_learner_phi,
    z_for,
)


def _random_probs(rng, L, N, K, noise):
    logits = rng.normal(size=(1, N, K)) + noise * rng.normal(size=(L, N, K))
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def test_three_learner_statistics_by_hand():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    probs = _random_probs(rng, 3, 200, 4, 0.8)
    eps = probs - np.eye(4)[labels]
    c = eps - eps.mean(axis=1, keepdims=True)
    sigma2 = np.mean([np.mean(np.sum(ci**2, axis=1)) for ci in c])
    cov = np.mean([np.mean(np.sum(c[i] * c[j], axis=1)) for i, j in ((0, 1), (0, 2), (1, 2))])
    s = residual_stats(probs, labels)
    assert s.E == pytest.approx(np.mean(np.sum(eps**2, axis=2)), rel=1e-12)
    assert s.sigma2 == pytest.approx(sigma2, rel=1e-12)
    assert s.rho == pytest.approx(cov / sigma2, rel=1e-12)
    assert s.ens_error(7) == pytest.approx(predicted_ensemble_error(s.E, s.sigma2, s.rho, 7))
    same = residual_stats(np.concatenate([probs[:1]] * 3), labels)
    assert same.rho == pytest.approx(1.0)


def test_bootstrap_se_of_E_matches_the_standard_error_of_a_mean():
    """E is a mean over samples, so its bootstrap SE must match std/√N (within 15 %)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 800)
    probs = _random_probs(rng, 2, 800, 3, 1.0)
    per_sample = np.sum(residuals(probs, labels) ** 2, axis=2).mean(axis=0)
    ci, se = bootstrap_stats(probs, labels, n_boot=400)
    analytic = per_sample.std(ddof=1) / np.sqrt(len(labels))
    assert se["E"] == pytest.approx(analytic, rel=0.15)
    s = residual_stats(probs, labels)
    for k in ("E", "sigma2", "rho"):
        assert ci[k][0] <= getattr(s, k) <= ci[k][1]


def test_paired_sample_se_matches_the_standard_error_of_the_paired_difference():
    """At M = 1 the gain is mean_n of a per-sample Brier difference: the paired bootstrap SE
    must match std(diff)/√N (within 15 %), far below the unpaired SE; a candidate never beats
    itself."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 1000)
    a = _random_probs(rng, 2, 1000, 3, 0.5)
    b = np.clip(a + rng.normal(0, 0.02, a.shape), 1e-3, None)
    b /= b.sum(-1, keepdims=True)
    same = gain_estimate(a, a, labels, M=50)
    assert same.gain == 0.0 and same.se_sample == 0.0
    est = gain_estimate(b, a, labels, M=1, n_boot=600)
    sq = lambda p: np.sum(residuals(p, labels) ** 2, axis=2).mean(axis=0)  # noqa: E731
    diff = sq(a) - sq(b)
    assert est.gain == pytest.approx(diff.mean(), rel=1e-9)
    assert est.se_sample == pytest.approx(diff.std(ddof=1) / np.sqrt(1000), rel=0.15)
    unpaired = np.sqrt(sq(a).var(ddof=1) + sq(b).var(ddof=1)) / np.sqrt(1000)
    assert est.se_sample < 0.5 * unpaired


def test_jackknife_seed_variance_of_a_mean_is_the_textbook_variance():
    """At M = 1, E_ens is the mean over learners of each learner's Brier error, and the
    delete-one jackknife of a mean is exactly var(ddof=1)/L."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 300)
    probs = _random_probs(rng, 5, 300, 5, 1.2)
    per_learner = np.sum(residuals(probs, labels) ** 2, axis=2).mean(axis=1)
    assert seed_variance(residuals(probs, labels), 1) == pytest.approx(
        per_learner.var(ddof=1) / 5, rel=1e-9)
    assert seed_variance(residuals(probs[:2], labels), 50) is None


def test_pool_weights_each_evaluation_by_its_degrees_of_freedom():
    assert pool_seed_variance([(2, None), (2, 0.1)]) is None
    phi, nu = pool_seed_variance([(3, 0.02), (5, 0.01), (2, 9.0)])
    assert nu == 2 + 4
    assert phi == pytest.approx((2 * 3 * 0.02 + 4 * 5 * 0.01) / 6)


def test_two_learners_bring_their_own_degree_of_freedom_to_the_pooled_seed_part():
    """With L = 2 a side's seed variance is (1·φ̂₂/2 + ν·φ_pool/2)/(1 + ν), φ̂₂ = (e₁ − e₂)²/2
    from the two learners' Brier errors: two learners that disagree widen the SE, two that
    agree narrow it, against a pool with ν = 3."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 400)
    new, old = _random_probs(rng, 2, 400, 5, 1.0), _random_probs(rng, 4, 400, 5, 1.0)
    pool = (1e-3, 3)
    eps = residuals(new, labels)
    e = np.sum(eps**2, axis=2).mean(axis=1)
    assert two_learner_phi(eps) == pytest.approx((e[0] - e[1]) ** 2 / 2, rel=1e-12)
    est = gain_estimate(new, old, labels, 50, pool=pool, n_boot=50)
    var_new = (two_learner_phi(eps) / 2 + 3 * pool[0] / 2) / 4
    var_old = (3 * seed_variance(residuals(old, labels), 50) + 3 * pool[0] / 4) / 6
    assert est.se_seed == pytest.approx(np.sqrt(var_new + var_old), rel=1e-9)
    assert est.seed_source == "own+pooled/own+pooled"
    twins = gain_estimate(new[[0, 0]], old, labels, 50, pool=pool, n_boot=50)  # agree: φ̂₂ = 0
    assert twins.se_seed < est.se_seed or two_learner_phi(eps) == 0
    assert gain_estimate(new, old[:2], labels, 50, n_boot=50).se_seed is None  # no pool: unknown


def test_two_learner_phi_is_unbiased_for_the_seed_variance_of_a_learners_error():
    """E[(e₁ − e₂)²/2] = Var_seed(e): over 2000 simulated architectures of the coverage model
    below, 16 learners each, the mean over disjoint learner pairs matches the mean
    within-architecture variance of one learner's error within 5 %."""
    rng = np.random.default_rng(11)
    labels, h = np.zeros(200, dtype=int), rng.normal(size=200)
    pairs, within = [], []
    for _ in range(2000):
        eps = residuals(_learners(rng, A, 16, h), labels)
        pairs += [two_learner_phi(eps[i:i + 2]) for i in range(0, 16, 2)]
        within.append(np.sum(eps**2, axis=2).mean(axis=1).var(ddof=1))
    assert np.mean(pairs) == pytest.approx(np.mean(within), rel=0.05)


def test_z_matches_the_published_pocock_constants():
    """Two-sided, constant boundary for K equally spaced looks (Pocock 1977; Jennison & Turnbull
    table 2.1): 0.95 → 2.178, 2.289, 2.361, 2.413 for K = 2…5; 0.99, K = 5 → 2.986."""
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-5)
    for K, z in ((2, 2.178), (3, 2.289), (4, 2.361), (5, 2.413)):
        assert z_for(0.95, looks=K) == pytest.approx(z, abs=1e-3)
    assert z_for(0.99, looks=5) == pytest.approx(2.986, abs=1e-3)
    assert z_for(0.95, looks=5) < 2.5758  # the Bonferroni split it replaces
    assert z_for(0.0) == 0.0
    with pytest.raises(ValueError, match="confidence"):
        z_for(1.0)
    with pytest.raises(ValueError, match="looks"):
        z_for(0.95, looks=[4, 2])


def test_z_keeps_the_chance_of_any_false_confident_look_at_one_minus_confidence():
    """Simulated null gains (true gain 0) looked at with the learner schedule 2:8, each look's
    estimate the mean of the learners so far (seed noise only): some look is confident in
    5 % ± 0.5 % of 200 000 runs at confidence 0.95; Bonferroni's split gives ≤ 4 %."""
    sched = [2, 3, 4, 6, 8]
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(200_000, sched[-1]))
    z_stats = np.stack([draws[:, :L].sum(axis=1) / np.sqrt(L) for L in sched], axis=1)
    crossed = np.abs(z_stats).max(axis=1)
    assert np.mean(crossed > z_for(0.95, sched)) == pytest.approx(0.05, abs=0.005)
    assert np.mean(crossed > 2.5758) < 0.04


def test_conditional_power_matches_a_simulated_continuation():
    """At 2 learners of 8, with a seed part 3× the sample part: the stated chance of a confident
    call at 8 learners, if the true gain is the current estimate, matches 200 000 simulated
    continuations (the seed noise of learners 3–8 added to the current mean, the sample noise
    fixed, as it is on one validation set) within 0.01, for a near tie and for a clear gain."""
    rng = np.random.default_rng(1)
    se_sample, seed_sd_one = 0.004, 0.012 * np.sqrt(2)  # one learner's seed SD: SE 0.012 at L=2
    for gain in (0.002, 0.02):
        est = GainEstimate(gain=gain, se_sample=se_sample, se_seed=seed_sd_one / np.sqrt(2),
                           learners_new=2, learners_old=2, seed_source="own")
        z = 2.40
        stated = conditional_power(est, 8, z)
        # the final mean over 8 learners: 2 seen (their mean is the estimate) + 6 new ones
        new = rng.normal(gain, seed_sd_one, size=(200_000, 6)).sum(axis=1)
        final = (2 * gain + new) / 8
        se_final = np.hypot(se_sample, seed_sd_one / np.sqrt(8))
        simulated = np.mean(np.abs(final) > z * se_final)
        assert stated == pytest.approx(simulated, abs=0.01), (gain, stated, simulated)
    no_seed = GainEstimate(0.0, 0.01, None, 2, 2, "none")
    assert conditional_power(no_seed, 8, 2.4) == 1.0  # nothing to judge it by: never futile


def test_a_futility_stop_never_raises_the_chance_of_a_wrong_confident_call():
    """Null gains (true gain 0, seed noise only) looked at on the 2:8 schedule: stopping when
    the conditional power is under 0.1 leaves P(some look wrongly confident) ≤ 5 % (it can only
    remove crossings) and stops most of the runs before 8 learners."""
    sched, z = [2, 3, 4, 6, 8], z_for(0.95, [2, 3, 4, 6, 8])
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(20_000, 8))
    wrong = stopped = 0
    for row in draws:
        for L in sched:
            est = GainEstimate(row[:L].mean(), 0.0, 1.0 / np.sqrt(L), L, L, "own")
            if abs(est.gain) > z * est.se_total:
                wrong += 1
                break
            if L < 8 and conditional_power(est, 8, z) < 0.1:
                stopped += 1
                break
    assert wrong / len(draws) <= 0.05
    assert stopped / len(draws) > 0.5


# ---- coverage on simulated residuals -----------------------------------------------------
# Learner l of architecture X on validation sample n: ε_l(n) = (1 + a_l)·z_X(n) + √v·w_l(n),
# z_X(n) = √q_X·(r·h(n) + √(1−r²)·g_X(n)) with h shared by both architectures (paired sample
# difficulty), a_l ~ N(0, τ²) the seed's quality (sample-wide), w_l(n) ~ N(0, 1) its own noise.
# The true M-ensemble error (expected over samples and seeds) is q_X(1 + τ²/M) + v/M.
M = 50
A, B = (0.300, 0.2, 0.12, 0.9), (0.305, 0.2, 0.12, 0.9)  # (q, v, τ, r)


def _learners(rng, arch, L, h):
    q, v, tau, r = arch
    z = np.sqrt(q) * (r * h + np.sqrt(1 - r * r) * rng.normal(size=len(h)))
    a = rng.normal(0, tau, size=L)
    eps = (1 + a)[:, None] * z[None] + np.sqrt(v) * rng.normal(size=(L, len(h)))
    return eps[:, :, None] + 1.0  # as probabilities of one class, labels all 0


def _true_ens(arch):
    q, v, tau, _ = arch
    return q * (1 + tau**2 / M) + v / M


@pytest.mark.slow
@pytest.mark.parametrize("L_new,L_old", [(2, 4), (4, 4)])
def test_interval_covers_the_true_gain_90_to_98_percent(L_new, L_old):
    """±1.96·SE_total covers the true gain in 90–98 % of 300 simulated decisions, where the
    seed part is about 3× the sample part (as measured on MNIST-1D); the sample part alone
    covers far less. The pool comes from the baseline's learners and two earlier
    four-learner evaluations, as in a run."""
    rng = np.random.default_rng(7)
    N, truth = 600, _true_ens(B) - _true_ens(A)
    labels = np.zeros(N, dtype=int)
    hits, hits_sample_only, ratios = [], [], []
    for rep in range(300):
        h = rng.normal(size=N)
        new, old = _learners(rng, A, L_new, h), _learners(rng, B, L_old, h)
        earlier = [_learners(rng, B, 4, rng.normal(size=N)) for _ in range(2)]
        pool = pool_seed_variance([(len(p), seed_variance(residuals(p, labels), M))
                                   for p in (old, *earlier)])
        est = gain_estimate(new, old, labels, M, pool=pool, n_boot=100, seed=rep)
        hits.append(abs(est.gain - truth) <= 1.96 * est.se_total)
        hits_sample_only.append(abs(est.gain - truth) <= 1.96 * est.se_sample)
        ratios.append(est.se_seed / est.se_sample)
    assert 0.90 <= np.mean(hits) <= 0.98
    assert np.mean(hits_sample_only) < 0.75
    assert 2.0 < np.mean(ratios) < 5.0
