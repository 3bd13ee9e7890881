"""The search state, derived only from trajectory events (so a crashed run can be rebuilt).

``SearchState.apply(event)`` is the single place that interprets events: it parses each line
into its typed model (:mod:`agent.events`) and hands it to one ``_on_<event>`` method. The loop
calls it for every event it writes; ``--resume``, ``agent.replay`` and ``agent.report`` call it
for every event they read back. Evaluations are kept per (spec hash, fidelity) and grow as
``extended`` events add learners; every candidate of that architecture sees the grown one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.events import (
    DecisionEvent,
    Evaluated,
    Extended,
    Filtered,
    LogInconsistent,
    ProposalEvent,
    ProposalRejected,
    Resumed,
    RunFinished,
    RunStarted,
    Validated,
    parse_event,
)
from agent.proposers.base import HistoryItem
from evaluators.results import EvalFailure, EvalResult, Stats
from evaluators.stats import pool_seed_variance

__all__ = ["Candidate", "SearchState", "LogInconsistent"]

EvalKey = tuple[str, str]  # (spec hash, fidelity)


@dataclass
class Candidate:
    """One proposal as the log knows it."""

    proposal_id: str
    iteration: int
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    source: str = ""
    rejected: str | None = None
    kept: bool | None = None  # None until a `filtered` event
    key: EvalKey | None = None  # set by its `evaluated` event
    result: EvalResult | None = None  # the evaluation with every learner logged so far
    failure: EvalFailure | None = None
    decision: DecisionEvent | None = None

    @property
    def evaluated(self) -> bool:
        return self.result is not None or self.failure is not None

    @property
    def stats(self) -> Stats | None:
        return self.result.stats if self.result is not None else None


def _ts(time: str) -> float:
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()


@dataclass
class SearchState:
    candidates: dict[str, Candidate] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    results: dict[EvalKey, EvalResult] = field(default_factory=dict)
    baseline_id: str | None = None
    first_baseline_id: str | None = None
    iteration: int = 0
    device_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    accepted: int = 0
    evaluations: int = 0
    learners_trained: int = 0
    seen_hashes: set[str] = field(default_factory=set)
    config: dict[str, Any] | None = None
    finished: RunFinished | None = None
    validated: list[Validated] = field(default_factory=list)
    _session_start: float | None = None
    _session_last: float | None = None
    _wall_before: float = 0.0

    # ---- reading events ---------------------------------------------------------------
    def apply(self, raw: dict[str, Any]) -> None:
        """Interpret one logged event; :class:`LogInconsistent` if it does not fit the run."""
        event = parse_event(raw)
        t = _ts(event.time)
        if isinstance(event, RunStarted | Resumed):
            if self._session_start is not None:
                self._wall_before += self._session_last - self._session_start
            self._session_start = t
        self._session_last = t
        self.iteration = max(self.iteration, event.iteration)
        getattr(self, f"_on_{event.event}")(event)

    def _cand(self, event) -> Candidate:
        try:
            return self.candidates[event.proposal_id]
        except KeyError:
            raise LogInconsistent(f"event {event.event!r} names proposal {event.proposal_id!r}, "
                                  "which no earlier `proposal` event introduced") from None

    def _on_run_started(self, event: RunStarted) -> None:
        self.config = event.config

    def _on_resumed(self, event: Resumed) -> None:
        return None

    def _on_proposal(self, event: ProposalEvent) -> None:
        cand = Candidate(event.proposal_id, event.iteration, event.spec, event.spec_hash,
                         event.source)
        self.candidates[cand.proposal_id] = cand
        self.order.append(cand.proposal_id)
        if cand.spec_hash:
            self.seen_hashes.add(cand.spec_hash)
        self.tokens_in += event.tokens_in
        self.tokens_out += event.tokens_out
        self.cost_usd += event.cost_usd

    def _on_repair(self, event) -> None:
        self._cand(event)

    def _on_proposal_rejected(self, event: ProposalRejected) -> None:
        self._cand(event).rejected = event.reason

    def _on_filtered(self, event: Filtered) -> None:
        self._cand(event).kept = event.kept

    def _on_evaluated(self, event: Evaluated) -> None:
        cand = self._cand(event)
        self.evaluations += 1
        self.device_s += event.device_s
        result = event.result()
        if isinstance(result, EvalFailure):
            cand.failure = result
            return
        cand.key = (result.spec_hash, result.fidelity)
        if event.cached and cand.key in self.results:
            result = self.results[cand.key]  # the grown evaluation, not the copy's snapshot
        else:
            self.learners_trained += len(result.learners)
            self.results[cand.key] = result
        cand.result = result
        if cand.proposal_id == "baseline":
            self.baseline_id = self.first_baseline_id = "baseline"

    def _on_extended(self, event: Extended) -> None:
        self._cand(event)
        key = (event.spec_hash, event.fidelity)
        if key not in self.results:
            raise LogInconsistent(f"event 'extended' of {event.proposal_id!r} extends an "
                                  f"evaluation of {key} that was never logged")
        self.device_s += event.device_s
        self.learners_trained += len(event.new_learners)
        grown = self.results[key] = event.extend(self.results[key])
        for c in self.candidates.values():
            if c.key == key:
                c.result = grown

    def _on_decision(self, event: DecisionEvent) -> None:
        cand = self._cand(event)
        cand.decision = event
        if event.accepted:
            self.baseline_id = event.proposal_id
            self.accepted += 1

    def _on_validated(self, event: Validated) -> None:
        self.validated.append(event)

    def _on_run_finished(self, event: RunFinished) -> None:
        self.finished = event

    @classmethod
    def from_events(cls, events: list[dict[str, Any]]) -> SearchState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    # ---- questions the loop asks --------------------------------------------------------
    def wall_s(self, now: float) -> float:
        """Wall time of all sessions of the run, this one up to ``now``."""
        start = self._session_start if self._session_start is not None else now
        return self._wall_before + max(0.0, now - start)

    @property
    def baseline(self) -> Candidate | None:
        return self.candidates.get(self.baseline_id) if self.baseline_id else None

    def seed_pool(self) -> tuple[float, int] | None:
        """The run-level seed variance (φ, ν) at the run's M from every evaluation with three or
        more learners (:func:`evaluators.stats.pool_seed_variance`)."""
        return pool_seed_variance((len(r.seeds), r.seed_var) for r in self.results.values())

    def decisions(self) -> list[DecisionEvent]:
        return [self.candidates[p].decision for p in self.order if self.candidates[p].decision]

    def in_iteration(self, iteration: int) -> list[Candidate]:
        return [self.candidates[p] for p in self.order if self.candidates[p].iteration == iteration]

    def history_item(self, cand: Candidate, M: int) -> HistoryItem:
        s = cand.stats
        d = cand.decision
        return HistoryItem(
            proposal_id=cand.proposal_id, spec=cand.spec or {},
            E=s.E if s else None, sigma2=s.sigma2 if s else None, rho=s.rho if s else None,
            predicted_ens_error=s.ens_error(M) if s else None,
            accepted=bool(d and d.accepted) or cand.proposal_id == "baseline",
            explanation=(d.explanation if d else None) or cand.rejected
            or (cand.failure.message if cand.failure else "") or "")

    def best_accepted(self, M: int, n: int = 5) -> list[HistoryItem]:
        accepted = [c for c in self.candidates.values() if c.decision and c.decision.accepted
                    and c.stats]
        accepted.sort(key=lambda c: c.stats.ens_error(M))
        return [self.history_item(c, M) for c in accepted[:n]]

    def last_rejected(self, M: int, n: int = 5) -> list[HistoryItem]:
        rejected = [self.candidates[p] for p in self.order
                    if (self.candidates[p].decision and not self.candidates[p].decision.accepted)
                    or self.candidates[p].rejected or self.candidates[p].failure]
        return [self.history_item(c, M) for c in rejected[-n:]]
