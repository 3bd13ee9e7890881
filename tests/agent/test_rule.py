import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rule import Stats, decide, paper_threshold, predicted_ens_error

stats = st.builds(Stats, E=st.floats(0.01, 1.5), sigma2=st.floats(1e-3, 1.0), rho=st.floats(-0.5, 1.0))


def test_predicted_ensemble_error_by_hand():
    s = Stats(E=0.30, sigma2=0.20, rho=0.60)
    assert predicted_ens_error(s, 50) == pytest.approx(0.30 - 0.20 * 0.40 * 49 / 50)
    assert predicted_ens_error(s, 2) == pytest.approx(0.30 - 0.20 * 0.40 / 2)


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


def test_margin_and_near_tie():
    new, old = Stats(0.29, 0.2, 0.6), Stats(0.30, 0.2, 0.6)
    assert decide(new, old, 50).accepted
    d = decide(new, old, 50, margin_z=2.0, gain_se=0.01)
    assert not d.accepted and d.near_tie and d.margin == pytest.approx(0.02)
    assert d.explanation.startswith("near tie")
    sure = decide(new, old, 50, margin_z=2.0, gain_se=0.001)
    assert sure.accepted and not sure.near_tie
    with pytest.raises(ValueError):
        decide(new, old, 50, margin_z=1.0)
    with pytest.raises(ValueError):
        decide(new, old, 1)


def test_explanation_names_the_tradeoff():
    d = decide(Stats(0.302, 0.3, 0.3), Stats(0.300, 0.2, 0.6), 50)
    assert d.accepted and "diversity gain" in d.explanation and "outweighs" in d.explanation
    assert np.isfinite(d.threshold)
