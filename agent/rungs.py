"""Progressive fidelity (PMF-NAS): who moves up a rung, decided from the state alone.

A candidate enters the first rung; at each rung it is compared with the baseline at that rung
(:meth:`agent.loop.SearchLoop.decide`). A confident loss stops it. Otherwise it *waits* at
its rung and :func:`plan_promotions` may move it up:

* successive halving — it is in the top ⌊n/η⌋ of the n candidates that finished the rung,
  ranked on the predicted top-rung E_ens(M) (:class:`evaluators.promotion.RungPredictor`);
* opportunistic — its score is an outlier, below μ − 2σ of the others', so it goes up at once;
* conservative — under 20 % of the learner-epoch or wall budget is left
  (:meth:`agent.budget.Budget.conservative`), so the best waiting candidates go up while the
  budget affords them (on the wall budget, one at a time: :meth:`agent.loop.SearchLoop.promote`).

Only a decision at the top rung (or the highest rung the budget allowed) moves the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.state import Candidate, SearchState
from evaluators.fidelity import Fidelity
from evaluators.promotion import RungPredictor, halving_quota, opportunistic, successive_halving

__all__ = ["Promotion", "waiting", "finished_rung", "refit", "plan_promotions", "one_conservative"]


@dataclass(frozen=True)
class Promotion:
    candidate: Candidate
    src: str
    dst: str
    score: float
    reason: str
    rule: str  # "successive halving", "opportunistic" or "conservative"
    fitted: bool = True  # False: the score is the lower rung's own E_ens (Score.fitted)


def finished_rung(cand: Candidate, rung: str) -> bool:
    """Decided at ``rung`` (whatever the verdict) without failing there."""
    return rung in cand.decisions


def waiting(cand: Candidate, rung: str) -> bool:
    """At ``rung``, decided there, not stopped, not settled by a final decision."""
    return (cand.rung == rung and finished_rung(cand, rung) and not cand.stopped
            and cand.final is None)


def refit(predictor: RungPredictor, state: SearchState, rungs: list[Fidelity]) -> None:
    """Teach ``predictor`` every (lower rung → top rung) pair the run has evaluated."""
    top = rungs[-1].name
    for rung in rungs[:-1]:
        pairs = [(c.results[rung.name], c.results[top]) for c in state.candidates.values()
                 if rung.name in c.results and top in c.results]
        predictor.fit(rung.name, pairs)


def plan_promotions(state: SearchState, rungs: list[Fidelity], predictor: RungPredictor,
                    eta: int, conservative: str | None, affordable: Callable[[Candidate, int], bool],
                    halving: str = "asynchronous") -> list[Promotion]:
    """Promotions to make now, lowest rung first. ``conservative``: why the conservative rule
    holds (None: it does not). ``affordable(candidate, rung index)`` says whether the budget
    can pay for the candidate (and the baseline) at that rung. ``halving``: "asynchronous"
    promotes every waiting candidate in the top ⌊n/η⌋ (ASHA: in a search whose newcomers keep
    entering the top, more than n/η go up over the run); "capped" promotes them only while
    fewer than ⌊n/η⌋ of the rung's n candidates have gone up, best first, so a rung passes on
    at most its 1/η share (the rest wait; the opportunistic and conservative rules still apply)."""
    out = []
    for r, rung in enumerate(rungs[:-1]):
        done = {c.proposal_id: c for c in state.candidates.values()
                if c.proposal_id != "baseline" and finished_rung(c, rung.name)
                and rung.name in c.results}
        scores = {pid: predictor.score(rung.name, c.results[rung.name]) for pid, c in done.items()}
        values = {pid: s.value for pid, s in scores.items()}
        halving_set = set(successive_halving(values, eta))
        up = sum(c.rung != rung.name for c in done.values())  # already promoted from this rung
        quota, capped = halving_quota(len(values), eta, up, halving)
        for pid in sorted(done, key=values.__getitem__):
            cand = done[pid]
            if not waiting(cand, rung.name) or not affordable(cand, r + 1):
                continue
            if pid in halving_set and quota > 0:
                quota -= 1
                rule, why = ("successive halving",
                             f"top {len(values) // eta} of {len(values)} at η={eta}{capped}")
            elif opportunistic(values, pid):
                rule, why = "opportunistic", "an outlier below μ − 2σ of the rung's scores"
            elif conservative is not None:
                rule, why = "conservative", conservative
            else:
                continue
            out.append(Promotion(cand, rung.name, rungs[r + 1].name, values[pid],
                                 f"{rule}: {why}; score = predicted top-rung E_ens by "
                                 f"{scores[pid].how}", rule, scores[pid].fitted))
    return out


def one_conservative(plan: list[Promotion], rungs: list[Fidelity]) -> list[Promotion]:
    """``plan`` with at most one promotion made by the conservative rule: the best-scored one
    from the highest rung (nearest a final decision). Used when the *wall* budget is nearly
    spent, so that one candidate is evaluated and decided at its new rung before the next one
    is started, instead of a batch the wall budget cuts before any decision."""
    extra = [p for p in plan if p.rule == "conservative"]
    if not extra:
        return plan
    names = [r.name for r in rungs]
    best = max(extra, key=lambda p: (names.index(p.src), -p.score))
    return [p for p in plan if p not in extra or p is best]
