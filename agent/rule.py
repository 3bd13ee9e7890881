"""The monotonic acceptance rule of Ensemble-Decoupled Architecture Search (pure functions).

Symbols, for a candidate π and the current baseline π_old, each measured with two learners:
E (mean single-learner Brier error), σ² (residual variance), ρ (residual correlation between
the learners), ΔE = E(π) − E(π_old), M (ensemble size the decision is about).

For squared loss the M-ensemble error is exactly E_ens = E − σ²·(M−1)/M·(1−ρ).

* ``exact`` form (default): accept iff E_ens(π) < E_ens(π_old). No equal-variance assumption;
  the baseline's predicted ensemble error never rises.
* ``paper`` form, as published: accept iff ρ(π) < ρ(π_old) − M/(M−1)·ΔE/σ²(π). It equals the
  exact form when σ²(π) = σ²(π_old); otherwise the predicted ensemble error can rise.

A decision is a *near tie* when the predicted gain is smaller than two standard errors of the
gain (paired bootstrap over validation samples): two learners cannot settle it, and the
decision says so instead of pretending to be certain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["Stats", "Decision", "Rule", "predicted_ens_error", "paper_threshold", "decide",
           "NEAR_TIE_Z"]

Rule = Literal["exact", "paper"]
#: a decision whose |gain| < NEAR_TIE_Z · SE(gain) is flagged as a near tie
NEAR_TIE_Z = 2.0


@dataclass(frozen=True)
class Stats:
    """Dual-learner statistics of one candidate."""

    E: float  #: mean single-learner Brier error
    sigma2: float  #: residual variance σ²
    rho: float  #: residual correlation ρ between the two learners


def predicted_ens_error(s: Stats, M: int) -> float:
    """E_ens(M) = E − σ²·(1−ρ)·(M−1)/M."""
    if M < 2:
        raise ValueError(f"ensemble size M must be >= 2, got {M}")
    return s.E - s.sigma2 * (1.0 - s.rho) * (M - 1) / M


def paper_threshold(new: Stats, old: Stats, M: int) -> float:
    """ρ threshold of the published rule: ρ(π_old) − M/(M−1)·ΔE/σ²(π)."""
    if M < 2:
        raise ValueError(f"ensemble size M must be >= 2, got {M}")
    if new.sigma2 <= 0:
        return float("-inf") if new.E >= old.E else float("inf")
    return old.rho - M / (M - 1) * (new.E - old.E) / new.sigma2


@dataclass(frozen=True)
class Decision:
    """One application of the rule, with every number that went into it."""

    M: int
    rule: Rule
    E: float
    E_old: float
    sigma2: float
    sigma2_old: float
    rho: float
    rho_old: float
    delta_E: float
    threshold: float
    predicted_ens_error: float
    baseline_predicted_ens_error: float
    gain: float
    gain_se: float | None
    margin: float
    accepted_exact: bool
    accepted_paper: bool
    accepted: bool
    near_tie: bool
    explanation: str

    def to_dict(self) -> dict:
        return asdict(self)


def decide(new: Stats, old: Stats, M: int, rule: Rule = "exact", margin_z: float = 0.0,
           gain_se: float | None = None) -> Decision:
    """Apply the rule for candidate ``new`` against baseline ``old`` at ensemble size ``M``.

    ``margin_z`` > 0 additionally requires the predicted gain to exceed ``margin_z`` standard
    errors of the gain (``gain_se``, from the paired bootstrap); without ``gain_se`` no margin
    can be applied and ``margin_z`` must be 0.
    """
    if rule not in ("exact", "paper"):
        raise ValueError(f"unknown rule {rule!r}; choose 'exact' or 'paper'")
    if margin_z < 0:
        raise ValueError(f"margin must be >= 0, got {margin_z}")
    if margin_z > 0 and gain_se is None:
        raise ValueError("a margin needs the standard error of the gain (gain_se)")
    ens_new, ens_old = predicted_ens_error(new, M), predicted_ens_error(old, M)
    gain = ens_old - ens_new
    threshold = paper_threshold(new, old, M)
    margin = margin_z * gain_se if gain_se is not None else 0.0
    accepted_exact = gain > margin
    accepted_paper = new.rho < threshold and gain > margin if margin > 0 else new.rho < threshold
    accepted = accepted_exact if rule == "exact" else accepted_paper
    near_tie = gain_se is not None and abs(gain) < NEAR_TIE_Z * gain_se
    return Decision(
        M=M, rule=rule, E=new.E, E_old=old.E, sigma2=new.sigma2, sigma2_old=old.sigma2,
        rho=new.rho, rho_old=old.rho, delta_E=new.E - old.E, threshold=threshold,
        predicted_ens_error=ens_new, baseline_predicted_ens_error=ens_old, gain=gain,
        gain_se=gain_se, margin=margin, accepted_exact=accepted_exact,
        accepted_paper=accepted_paper, accepted=accepted, near_tie=near_tie,
        explanation=explain(new, old, M, accepted, gain, gain_se, margin, near_tie))


def explain(new: Stats, old: Stats, M: int, accepted: bool, gain: float, gain_se: float | None,
            margin: float, near_tie: bool) -> str:
    """One readable sentence: which of accuracy and diversity decided, at which M."""
    k = (M - 1) / M
    accuracy = old.E - new.E  # > 0: the candidate's single learners are more accurate
    diversity = (new.sigma2 * (1 - new.rho) - old.sigma2 * (1 - old.rho)) * k  # > 0: more diverse
    verdict = "accepted" if accepted else "rejected"
    if accuracy >= 0 and diversity >= 0:
        why = f"more accurate ({accuracy:.4f}) and more diverse ({diversity:.4f})"
    elif accuracy < 0 and diversity < 0:
        why = f"less accurate ({-accuracy:.4f}) and less diverse ({-diversity:.4f})"
    elif accuracy < 0:
        word = "outweighs" if diversity > -accuracy else "does not outweigh"
        why = f"diversity gain {diversity:.4f} {word} accuracy loss {-accuracy:.4f}"
    else:
        word = "outweighs" if accuracy > -diversity else "does not outweigh"
        why = f"accuracy gain {accuracy:.4f} {word} diversity loss {-diversity:.4f}"
    text = f"{verdict}: {why} at M={M}"
    if margin > 0 and not accepted and gain > 0:
        text += f" (gain {gain:.4f} within the safety margin {margin:.4f})"
    if near_tie:
        text = (f"near tie (gain {gain:.4f} ± {gain_se:.4f}), uncertain — " + text)
    return text
