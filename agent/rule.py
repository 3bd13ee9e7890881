"""The monotonic acceptance rule of Ensemble-Decoupled Architecture Search (pure functions).

Symbols, for a candidate π and the current baseline π_old, each measured with L ≥ 2 learners:
E (mean single-learner Brier error), σ² (residual variance), ρ (mean pairwise residual
correlation), ΔE = E(π) − E(π_old), M (ensemble size the decision is about).

For squared loss the M-ensemble error is exactly E_ens = E − σ²·(M−1)/M·(1−ρ)
(:func:`evaluators.results.predicted_ensemble_error`, via :meth:`Stats.ens_error`).

* ``exact`` form (default): accept iff E_ens(π) < E_ens(π_old). No equal-variance assumption;
  the baseline's predicted ensemble error never rises.
* ``paper`` form, as published: accept iff ρ(π) < ρ(π_old) − M/(M−1)·ΔE/σ²(π). It equals the
  exact form when σ²(π) = σ²(π_old); otherwise the predicted ensemble error can rise.

**Confidence.** The predicted gain g = E_ens(π_old) − E_ens(π) comes with a standard error that
includes the validation samples *and* the learners' seeds
(:func:`evaluators.stats.gain_estimate`). A decision is *confident* when |g| > z·SE_total, with
z from ``--confidence`` for a rule that looks several times (:func:`evaluators.stats.z_for`: a
group-sequential boundary, so that the chance of *any* look calling a wrong sign confident stays
at 1 − confidence). Only
a confident decision is applied: while it is not, the loop adds learners (:func:`next_learners`)
up to ``--learners MAX``; a decision still not confident then is *undecided* and the baseline
stays. ``--margin z_m`` additionally asks an accepted gain to exceed z_m·SE_total.

**Asymmetric bounds.** The two wrong calls do not cost the same: a false accept makes the
M-ensemble worse (the monotonic guarantee), a false reject only loses one candidate.
``--reject-confidence`` (default: ``--confidence``) sets the level of the lower bound alone: a
rejection is confident when g < −z_r·SE_total, an acceptance still needs g > z·SE_total, so a
lower reject level stops losing candidates with fewer learners and leaves false accepts where
they were.

**Futility.** Most candidates of a search are not close calls, but some are so close that even
MAX learners would not separate them. ``--futility γ`` stops such a candidate at the look where
the chance of a confident call at MAX, were the gain what it seems now, is under γ
(:func:`evaluators.stats.conditional_power`); it is logged *undecided* with that chance, and the
learners it would have cost are not spent. The stop never makes a call, so false accepts can
only fall (a non-binding futility bound leaves the group-sequential z valid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict

from evaluators.results import Stats
from evaluators.stats import GainEstimate, conditional_power, z_for

__all__ = ["Stats", "Decision", "Rule", "Verdict", "paper_threshold", "decide", "learner_schedule",
           "next_learners", "verdict_text"]

Rule = Literal["exact", "paper"]
Verdict = Literal["accepted", "rejected", "undecided"]


def paper_threshold(new: Stats, old: Stats, M: int) -> float:
    """ρ threshold of the published rule: ρ(π_old) − M/(M−1)·ΔE/σ²(π)."""
    if M < 2:
        raise ValueError(f"ensemble size M must be >= 2, got {M}")
    if new.sigma2 <= 0:
        return float("-inf") if new.E >= old.E else float("inf")
    return old.rho - M / (M - 1) * (new.E - old.E) / new.sigma2


def learner_schedule(min_learners: int, max_learners: int) -> list[int]:
    """The learner counts at which a candidate is looked at: MIN, then +1 while below 4, then
    about ×1.5, ending at MAX (2:8 → 2, 3, 4, 6, 8; 2:16 → 2, 3, 4, 6, 9, 13, 16)."""
    if not 2 <= min_learners <= max_learners:
        raise ValueError(f"learners must satisfy 2 <= MIN <= MAX, got {min_learners}:{max_learners}")
    out = [min_learners]
    while out[-1] < max_learners:
        L = out[-1]
        out.append(min(max_learners, L + 1 if L < 4 else L + max(1, L // 2)))
    return out


def next_learners(current: int, min_learners: int, max_learners: int) -> int | None:
    """The learner count of the next look after ``current``, or None when MAX is reached."""
    bigger = [L for L in learner_schedule(min_learners, max_learners) if L > current]
    return bigger[0] if bigger else None


class Decision(BaseModel):
    """One application of the rule, with every number that went into it (the logged
    ``decision`` event, :class:`agent.events.DecisionEvent`, is this plus the ids and rung)."""

    model_config = ConfigDict(frozen=True)

    M: int
    rule: str
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
    gain_se_total: float | None
    gain_se_sample: float | None
    gain_se_seed: float | None
    seed_source: str
    learners: int  #: learners of the candidate behind its statistics
    learners_old: int  #: learners of the baseline
    confidence: float
    z: float
    #: the lower bound's level and z (None in logs written before asymmetric bounds existed)
    reject_confidence: float | None = None
    z_reject: float | None = None
    #: futility: the level γ and the chance of a confident call at MAX when the look stopped
    futility: float | None = None
    conditional_power: float | None = None
    futile: bool = False  #: stopped before MAX because that chance was under γ
    margin: float
    accepted_exact: bool
    accepted_paper: bool
    confident: bool
    verdict: Verdict
    accepted: bool
    explanation: str

    def to_dict(self) -> dict:
        return self.model_dump()


def decide(new: Stats, old: Stats, M: int, rule: Rule = "exact", margin_z: float = 0.0,
           estimate: GainEstimate | None = None, *, confidence: float = 0.0,
           looks: int | Sequence[int] = 1, reject_confidence: float | None = None,
           final: bool = True, learners: tuple[int, int] = (2, 2),
           futility: float = 0.0) -> Decision:
    """Apply the rule for candidate ``new`` against baseline ``old`` at ensemble size ``M``.

    ``estimate``: the gain's standard error and its parts (None, or a seed part that is unknown:
    only ``confidence`` 0 can be confident). ``confidence``: the two-sided level of the bound
    |gain| > z·SE_total, z the group-sequential bound for ``looks`` (a count, or the learner
    counts of the schedule, :func:`learner_schedule`) (0: every decision is confident, the
    point-estimate rule). ``reject_confidence``: the level of the lower bound alone, g < −z_r·SE
    (None: ``confidence``, a symmetric bound; ignored when ``confidence`` is 0). ``final``: no
    more learners will be added, so a decision that is
    not confident is *undecided*; otherwise the caller adds learners and asks again.
    ``margin_z`` > 0 additionally requires the gain to exceed ``margin_z``·SE_total.
    ``learners``: (candidate, baseline) learner counts when there is no ``estimate``.
    ``futility``: γ; a look that is not final and not confident ends *undecided* (``futile``)
    when the chance of a confident call at the last of ``looks`` is under γ (0: never).
    """
    if rule not in ("exact", "paper"):
        raise ValueError(f"unknown rule {rule!r}; choose 'exact' or 'paper'")
    if margin_z < 0:
        raise ValueError(f"margin must be >= 0, got {margin_z}")
    z = z_for(confidence, looks)
    reject_level = confidence if reject_confidence is None or z == 0 else reject_confidence
    z_rej = z if reject_level == confidence else z_for(reject_level, looks)
    se = estimate.se_total if estimate is not None else None
    if margin_z > 0 and se is None:
        raise ValueError("a margin needs the standard error of the gain")
    ens_new, ens_old = new.ens_error(M), old.ens_error(M)
    gain = ens_old - ens_new
    threshold = paper_threshold(new, old, M)
    margin = margin_z * se if se is not None else 0.0
    accepted_exact = gain > margin
    accepted_paper = new.rho < threshold and gain > margin if margin > 0 else new.rho < threshold
    seed_known = estimate is not None and estimate.se_seed is not None
    confident = bool(z == 0 or (seed_known and (gain > z * se or gain < -z_rej * se)))
    power, futile = None, False
    if futility > 0 and not confident and not final and estimate is not None and z > 0 \
            and not isinstance(looks, int):
        power = conditional_power(replace(estimate, gain=gain), looks[-1], z, z_rej)
        futile = power < futility
    verdict: Verdict
    if confident:
        verdict = "accepted" if (accepted_exact if rule == "exact" else accepted_paper) else "rejected"
    else:
        verdict = "undecided" if final or futile else "rejected"
    L_new, L_old = (estimate.learners_new, estimate.learners_old) if estimate else learners
    return Decision(
        M=M, rule=rule, E=new.E, E_old=old.E, sigma2=new.sigma2, sigma2_old=old.sigma2,
        rho=new.rho, rho_old=old.rho, delta_E=new.E - old.E, threshold=threshold,
        predicted_ens_error=ens_new, baseline_predicted_ens_error=ens_old, gain=gain,
        gain_se_total=se, gain_se_sample=estimate.se_sample if estimate else None,
        gain_se_seed=estimate.se_seed if estimate else None,
        seed_source=estimate.seed_source if estimate else "none", learners=L_new,
        learners_old=L_old, confidence=confidence, z=z, reject_confidence=reject_level,
        z_reject=z_rej, futility=futility or None, conditional_power=power, futile=futile,
        margin=margin, accepted_exact=accepted_exact,
        accepted_paper=accepted_paper, confident=confident, verdict=verdict,
        accepted=verdict == "accepted",
        explanation=explain(new, old, M, verdict, gain, se, margin, z, confident, z_rej)
        + (f"; stopped at {L_new} learners: a confident call with {looks[-1]} had chance "
           f"{power:.2f} < futility {futility:g}" if futile else ""))


def verdict_text(d: Decision, lower_rung: str | None = None) -> str:
    """The words the live display, the summary, the report and the replay use for a decision (a
    :class:`Decision` or its logged event): ``accepted, confident``, ``rejected, confident``,
    ``undecided``, or plain ``accepted``/``rejected`` under the point-estimate rule (z = 0). A
    decision at a lower rung (a logged event whose ``final`` is false, or ``lower_rung`` named
    for a :class:`Decision`, which does not know its rung) only says whether to go on:
    ``ahead at low-2ep, confident``, ``behind at …``, ``undecided at …``."""
    rung = lower_rung if lower_rung is not None else (
        None if getattr(d, "final", True) else d.fidelity)
    if rung is not None:
        if d.verdict == "undecided":
            return f"undecided at {rung}"
        word = "ahead" if d.verdict == "accepted" else "behind"
        return f"{word} at {rung}" + (", confident" if d.confident and d.z > 0 else "")
    if d.verdict == "undecided":
        return "undecided"
    return f"{d.verdict}, confident" if d.confident and d.z > 0 else d.verdict


def row_name(proposal_id: str, rung: str | None, several_rungs: bool) -> str:
    """A candidate's row name in every table (the live summary, the report, the replay):
    ``id @ rung`` when the run's schedule has several rungs, so that a row's figures are read at
    one rung; the bare id in a single-fidelity run."""
    return f"{proposal_id} @ {rung}" if several_rungs and rung else proposal_id


def explain(new: Stats, old: Stats, M: int, verdict: Verdict, gain: float, se: float | None,
            margin: float, z: float, confident: bool, z_reject: float | None = None) -> str:
    """One readable sentence: which of accuracy and diversity decided, at which M, how sure."""
    k = (M - 1) / M
    accuracy = old.E - new.E  # > 0: the candidate's single learners are more accurate
    diversity = (new.sigma2 * (1 - new.rho) - old.sigma2 * (1 - old.rho)) * k  # > 0: more diverse
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
    sure = f"gain {gain:.4f} ± {se:.4f}" if se is not None else f"gain {gain:.4f}, SE unknown"
    if verdict == "undecided":
        bound = (f"beyond ±{z:.2f} SE" if z_reject is None or z_reject == z else
                 f"above +{z:.2f} SE or below −{z_reject:.2f} SE")
        return (f"undecided ({sure}; a confident call needs the gain {bound}): "
                f"{why} at M={M}; the baseline stays")
    text = f"{verdict}: {why} at M={M}"
    if margin > 0 and verdict == "rejected" and gain > 0 and confident:
        text += f" (gain {gain:.4f} within the safety margin {margin:.4f})"
    return text + (f" ({sure}, confident)" if confident and z > 0 else f" ({sure})")
