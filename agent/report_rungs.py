"""The progressive-fidelity part of the report: rung flow, ranking stability, promotion scores.

* flow — per rung: candidates that entered (were evaluated there), and of them those promoted
  from it, stopped there (a confident loss below the top rung, or a failed evaluation),
  decided finally there, or still waiting there when the run ended;
* ranking stability — Kendall τ between consecutive rungs of the run's own candidates'
  predicted E_ens(M) (the survey's "does the low-fidelity ranking survive longer training?");
* promotions — each promotion's score (the predicted top-rung E_ens, or, before the predictor
  has enough pairs to fit, the lower rung's own E_ens, which orders but is on another scale)
  against the top-rung E_ens the candidate then measured, and Kendall τ between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from agent.state import Candidate, SearchState  # noqa: E402
from evaluators.promotion import CONSERVATIVE_SHARE  # noqa: E402

__all__ = ["RungFlow", "rung_flow", "rung_tau", "promotion_pairs", "budget_lines", "rung_lines"]


@dataclass(frozen=True)
class RungFlow:
    """What became of the candidates that entered one rung; the four outcomes partition them
    (``entered = promoted + stopped + decided + waiting``)."""

    rung: str
    entered: int
    promoted: int  # went up to the next rung
    stopped: int  # a confident loss below the top rung, or a failed evaluation there
    decided: int  # a final decision here (the top rung, or the highest the budget allowed)
    waiting: int  # none of these when the run ended (not confident, not promoted)


def _rungs(state: SearchState) -> list[str]:
    return [r.name for r in state.schedule()]


def _outcome(cand: Candidate, rung: str) -> str:
    """Where ``cand`` went from ``rung`` (one of :class:`RungFlow`'s four outcomes)."""
    if any(p.from_ == rung for p in cand.promotions):
        return "promoted"
    if rung in cand.failures:
        return "stopped"
    d = cand.decisions.get(rung)
    if d is not None and d.final:
        return "decided"
    if d is not None and d.confident and d.verdict == "rejected":
        return "stopped"
    return "waiting"


def rung_flow(state: SearchState, rungs: list[str]) -> list[RungFlow]:
    cands = [c for c in state.candidates.values() if c.proposal_id != "baseline"]
    out = []
    for rung in rungs:
        outcomes = [_outcome(c, rung) for c in cands if rung in c.results or rung in c.failures]
        out.append(RungFlow(rung, len(outcomes), *(outcomes.count(k) for k in
                                                   ("promoted", "stopped", "decided", "waiting"))))
    return out


def rung_tau(state: SearchState, rungs: list[str], M: int) -> list[tuple[str, str, int, float]]:
    """(lower, upper, n, τ) for consecutive rungs over architectures evaluated at both."""
    out = []
    for lo, hi in zip(rungs, rungs[1:], strict=False):
        both = [c for c in state.candidates.values() if lo in c.results and hi in c.results]
        tau = (float(kendalltau([c.results[lo].stats.ens_error(M) for c in both],
                                [c.results[hi].stats.ens_error(M) for c in both]).statistic)
               if len(both) >= 3 else float("nan"))
        out.append((lo, hi, len(both), tau))
    return out


def promotion_pairs(state: SearchState, top: str, M: int
                    ) -> list[tuple[str, float, float, bool | None]]:
    """(proposal id, score at its last promotion, measured top-rung E_ens, whether the score was
    fitted on the top rung's scale — None in logs from before that was recorded)."""
    return [(c.proposal_id, c.promotions[-1].score, c.results[top].stats.ens_error(M),
             c.promotions[-1].fitted)
            for c in state.candidates.values()
            if c.promotions and c.promotions[-1].to == top and top in c.results
            and c.promotions[-1].score is not None]


def _plot(flow: list[RungFlow], pairs: list[tuple[str, float, float, bool | None]], path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = [f.rung for f in flow]
    width = 0.16
    for k, (label, colour) in enumerate((("entered", "#4575b4"), ("promoted", "#1a9850"),
                                         ("stopped", "#d73027"), ("decided", "#777777"),
                                         ("waiting", "#fdae61"))):
        a.bar([i + (k - 2) * width for i in range(len(flow))],
              [getattr(f, label) for f in flow], width, label=label, color=colour)
    a.set_xticks(range(len(flow)), names)
    a.set_ylabel("candidates")
    a.set_title("rung flow")
    a.legend(fontsize=8)
    fitted = [p for p in pairs if p[3] is not False]
    own = [p for p in pairs if p[3] is False]
    if fitted:
        xs, ys = [p[1] for p in fitted], [p[2] for p in fitted]
        b.scatter(xs, ys, c="#4575b4", label="predicted top-rung E_ens")
        lo, hi = min(xs + ys), max(xs + ys)
        b.plot([lo, hi], [lo, hi], "k--", lw=1)
    if own:
        b.scatter([p[1] for p in own], [p[2] for p in own], facecolors="none",
                  edgecolors="#d73027", label="lower rung's own E_ens (too few pairs to fit)")
    if pairs:
        b.legend(fontsize=7)
    b.set_xlabel("score at promotion")
    b.set_ylabel("measured top-rung E_ens")
    b.set_title(f"promoted candidates ({len(pairs)})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def budget_lines(state: SearchState) -> list[str]:
    """What ``--max-learner-epochs`` left unspent, and the figures that say why (nothing without
    that budget): under :data:`CONSERVATIVE_SHARE` of it no new first-rung work starts, so what
    is left pays only for promotions, whose cost the line gives as one top-rung look."""
    config = state.config or {}
    cap, spent = config.get("max_learner_epochs"), state.learner_epochs_spent
    if not cap:
        return []
    line = f"Learner-epochs: {spent:g} of {cap:g} spent"
    if state.finished is not None and state.finished.reason == "max_learner_epochs":
        if cap - spent <= 1e-9:  # nothing left unspent: no reason to give
            return ["", line + ", all of it."]
        top = state.schedule()[-1]
        learners = config.get("min_learners", 2)
        line += (f"; the run ended with {cap - spent:g} left: no new first-rung work starts "
                 f"under {CONSERVATIVE_SHARE:.0%} ({CONSERVATIVE_SHARE * cap:g}), and one look "
                 f"at {top.name} with {learners} learners costs {top.learner_epochs(learners):g}")
    return ["", line + "."]


def rung_lines(state: SearchState, out: Path, M: int) -> list[str]:
    """The report's section on rungs (empty for a single-fidelity run); writes rungs.png."""
    rungs = _rungs(state)
    if len(rungs) < 2:
        return []
    flow = rung_flow(state, rungs)
    pairs = promotion_pairs(state, rungs[-1], M)
    _plot(flow, pairs, out / "rungs.png")
    lines = ["", "## Progressive fidelity", "", "![rungs](rungs.png)", "",
             "| rung | entered | promoted | stopped | decided (final) | waiting at the end | "
             "learner-epochs |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {f.rung} | {f.entered} | {f.promoted} | {f.stopped} | {f.decided} | "
              f"{f.waiting} | {state.learner_epochs.get(f.rung, 0.0):.1f} |" for f in flow]
    lines += budget_lines(state)
    lines += ["", "Ranking stability (Kendall τ of E_ens between consecutive rungs, this run's "
              "architectures):", ""]
    lines += [f"- {lo} → {hi}: τ = {tau:.2f} over {n}" if n >= 3 else
              f"- {lo} → {hi}: {n} architectures at both, too few for τ"
              for lo, hi, n, tau in rung_tau(state, rungs, M)]
    if pairs:
        kind = {True: "predicted top-rung E_ens", False: "lower rung's own E_ens", None: "not logged"}
        lines += ["", "| promoted | score at promotion | score is | measured top-rung E_ens |",
                  "|---|---|---|---|"]
        lines += [f"| {pid} | {p:.4f} | {kind[f]} | {m:.4f} |" for pid, p, m, f in pairs]
        if any(f is False for *_, f in pairs):
            lines += ["", "A lower rung's own E_ens is the score until the predictor has enough "
                      "(lower rung → top rung) pairs to fit: it orders candidates but is not on "
                      "the top rung's scale, so compare its order, not its value."]
        for f in (True, False, None):  # one τ per kind: two scales do not rank together
            same = [(p, m) for _, p, m, g in pairs if g is f]
            if len(same) >= 3:
                tau = kendalltau(*zip(*same, strict=True)).statistic
                lines += ["", f"Score ({kind[f]}) against measured over the {len(same)} promoted "
                          f"with it: Kendall τ = {tau:.2f}."]
    promotions = [p for c in state.candidates.values() for p in c.promotions]
    lines += ["", "Promotions:", ""] + ([f"- {p.proposal_id}: {p.from_} → {p.to}: {p.reason}"
                                         for p in promotions] or ["- none"])
    return lines
