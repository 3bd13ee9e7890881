import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rule import Stats, decide, learner_schedule, next_learners, paper_threshold
from evaluators.stats import GainEstimate

stats = st.builds(Stats, E=st.floats(0.01, 1.5), sigma2=st.floats(1e-3, 1.0), rho=st.floats(-0.5, 1.0))


def test_predicted_ensemble_error_by_hand():
    s = Stats(E=0.30, sigma2=0.20, rho=0.60)
    assert s.ens_error(50) == pytest.approx(0.30 - 0.20 * 0.40 * 49 / 50)
    assert s.ens_error(2) == pytest.approx(0.30 - 0.20 * 0.40 / 2)


def test_paper_threshold_by_hand():
    new, old = Stats(0.32, 0.25, 0.5), Stats(0.30, 0.20, 0.6)
    assert paper_threshold(new, old, 50) == pytest.approx(0.6 - 50 / 49 * 0.02 / 0.25)


@settings(max_examples=200, deadline=None)
@given(stats, stats, st.integers(2, 500))
def test_exact_form_accepts_iff_predicted_ensemble_error_drops(new, old, M):
    d = decide(new, old, M, "exact")
    e_new = new.E - new.sigma2 * (1 - new.rho) * (M - 1) / M
    e_old = old.E - old.sigma2 * (1 - old.rho) * (M - 1) / M
    assert d.accepted == (e_new < e_old)
    assert d.gain == pytest.approx(e_old - e_new)


@settings(max_examples=200, deadline=None)
@given(stats, stats, st.integers(2, 500))
def test_paper_form_matches_its_formula_and_exact_form_under_equal_variance(new, old, M):
    d = decide(new, old, M, "paper")
    assert d.accepted == (new.rho < old.rho - M / (M - 1) * (new.E - old.E) / new.sigma2)
    equal = Stats(new.E, old.sigma2, new.rho)
    a, b = decide(equal, old, M, "paper"), decide(equal, old, M, "exact")
    if abs(b.gain) > 1e-9:
        assert a.accepted == b.accepted


def test_forms_disagree_when_variances_differ():
    # candidate: worse single learner, much larger variance; paper uses σ²(π) only
    new, old = Stats(E=0.40, sigma2=0.40, rho=0.50), Stats(E=0.30, sigma2=0.05, rho=0.10)
    M = 50
    d = decide(new, old, M, "exact")
    assert d.accepted_exact != d.accepted_paper
    assert "M=50" in d.explanation


def _estimate(gain_se_sample, gain_se_seed, L=(2, 4)):
    return GainEstimate(gain=0.0, se_sample=gain_se_sample, se_seed=gain_se_seed,
                        learners_new=L[0], learners_old=L[1], seed_source="test")


def test_margin_confidence_and_undecided():
    new, old = Stats(0.29, 0.2, 0.6), Stats(0.30, 0.2, 0.6)  # gain 0.01
    assert decide(new, old, 50).accepted  # confidence 0: the point estimate decides
    loose = _estimate(0.003, 0.004)  # SE_total 0.005 → 2 SE
    d = decide(new, old, 50, margin_z=2.5, estimate=loose)
    assert not d.accepted and d.verdict == "rejected" and d.margin == pytest.approx(0.0125)
    close = decide(new, old, 50, estimate=loose, confidence=0.99, final=True)
    assert close.verdict == "undecided" and not close.accepted and not close.confident
    assert close.gain_se_total == pytest.approx(0.005) and close.z == pytest.approx(2.5758, abs=1e-4)
    assert close.explanation.startswith("undecided") and "baseline stays" in close.explanation
    not_yet = decide(new, old, 50, estimate=loose, confidence=0.99, final=False)
    assert not not_yet.confident and not not_yet.accepted
    sure = decide(new, old, 50, estimate=_estimate(0.001, 0.002), confidence=0.95, looks=3)
    assert sure.confident and sure.accepted and sure.verdict == "accepted"
    assert (sure.learners, sure.learners_old) == (2, 4)
    no_seed = decide(new, old, 50, estimate=_estimate(0.0001, None), confidence=0.95)
    assert no_seed.verdict == "undecided"  # the seed part is unknown: never confident
    worse = decide(old, new, 50, estimate=_estimate(0.001, 0.002), confidence=0.95)
    assert worse.confident and worse.verdict == "rejected"
    with pytest.raises(ValueError):
        decide(new, old, 50, margin_z=1.0)
    with pytest.raises(ValueError):
        decide(new, old, 1)


def test_a_lower_reject_confidence_rejects_sooner_and_accepts_as_before():
    se = _estimate(0.003, 0.004)  # SE_total 0.005
    good, bad = Stats(0.29, 0.2, 0.6), Stats(0.30, 0.2, 0.6)  # gain ±0.01 = 2 SE
    # symmetric 0.99 (z 2.58): 2 SE is not enough either way
    assert decide(bad, good, 50, estimate=se, confidence=0.99, final=True).verdict == "undecided"
    # rejections at 0.9 (z 1.64): the same −2 SE gain is a confident rejection
    rej = decide(bad, good, 50, estimate=se, confidence=0.99, reject_confidence=0.9, final=True)
    assert rej.confident and rej.verdict == "rejected"
    assert rej.z == pytest.approx(2.5758, abs=1e-4) and rej.z_reject == pytest.approx(1.6449, abs=1e-4)
    # ... but a +2 SE gain still needs z = 2.58 to be accepted
    acc = decide(good, bad, 50, estimate=se, confidence=0.99, reject_confidence=0.9, final=True)
    assert acc.verdict == "undecided" and "above +2.58 SE or below −1.64 SE" in acc.explanation
    # the default is symmetric, and the point-estimate rule (confidence 0) ignores the option
    sym = decide(bad, good, 50, estimate=se, confidence=0.99)
    assert sym.reject_confidence == 0.99 and sym.z_reject == sym.z
    assert decide(bad, good, 50, estimate=se, confidence=0.0, reject_confidence=0.5).z_reject == 0


def test_futility_stops_a_near_tie_and_lets_a_promising_gain_grow():
    """2:8 schedule at 0.95 (z 2.40), SE 0.005 at two learners: a gain of 0.0002 (0.04 SE) has
    almost no chance of a confident call at 8 learners, so futility 0.1 ends it undecided now;
    a gain of 0.009 (1.8 SE) is not confident yet but likely to be, so it goes on; futility 0
    never stops; a final look is never called futile."""
    looks = [2, 3, 4, 6, 8]
    tie_old, tie_new = Stats(0.3000, 0.2, 0.6), Stats(0.2998, 0.2, 0.6)
    est = _estimate(0.002, 0.0046)
    d = decide(tie_new, tie_old, 50, estimate=est, confidence=0.95, looks=looks, final=False,
               futility=0.1)
    assert d.futile and d.verdict == "undecided" and not d.accepted
    assert d.conditional_power < 0.1 and d.futility == 0.1
    assert "stopped at 2 learners" in d.explanation and "futility 0.1" in d.explanation
    off = decide(tie_new, tie_old, 50, estimate=est, confidence=0.95, looks=looks, final=False)
    assert not off.futile and off.conditional_power is None and off.futility is None
    good = decide(Stats(0.291, 0.2, 0.6), tie_old, 50, estimate=est, confidence=0.95,
                  looks=looks, final=False, futility=0.1)
    assert not good.confident and not good.futile and good.conditional_power > 0.5
    last = decide(tie_new, tie_old, 50, estimate=est, confidence=0.95, looks=looks, final=True,
                  futility=0.1)
    assert not last.futile and last.verdict == "undecided"


def test_learner_schedule():
    assert learner_schedule(2, 8) == [2, 3, 4, 6, 8]
    assert learner_schedule(2, 16) == [2, 3, 4, 6, 9, 13, 16]
    assert learner_schedule(2, 2) == [2]
    assert next_learners(3, 2, 8) == 4 and next_learners(8, 2, 8) is None
    with pytest.raises(ValueError, match="MIN"):
        learner_schedule(5, 3)


def test_explanation_names_the_tradeoff():
    d = decide(Stats(0.302, 0.3, 0.3), Stats(0.300, 0.2, 0.6), 50)
    assert d.accepted and "diversity gain" in d.explanation and "outweighs" in d.explanation
    assert np.isfinite(d.threshold)
