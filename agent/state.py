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
    Promoted,
    ProposalEvent,
    ProposalRejected,
    Repair,
    Resumed,
    RunFinished,
    RunStarted,
    Validated,
    parse_event,
)
from agent.proposers.base import HistoryItem
from evaluators.fidelity import Fidelity, parse_schedule
from evaluators.results import EvalFailure, EvalResult, Stats
from evaluators.stats import pool_seed_variance

__all__ = ["Candidate", "SearchState", "LogInconsistent", "logged_schedule"]


def logged_schedule(config: dict[str, Any] | None) -> list[Fidelity]:
    """A run's rungs, lowest first, from the config it logged (none without one): the logged
    twin of :meth:`agent.config.RunConfig.rungs`, for readers that have the log, not the flags."""
    config = config or {}
    text = config.get("fidelity_schedule") or config.get("fidelity")
    return parse_schedule(text, config.get("batch_size")) if text else []


@dataclass
class Candidate:
    """One proposal as the log knows it. ``rung`` is the fidelity it is at (None until it
    enters the first rung; ``promoted`` events move it up); ``result``, ``failure`` and
    ``decision`` are those of that rung, and ``results``/``decisions`` keep every rung's."""

    proposal_id: str
    iteration: int
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    source: str = ""
    raw: str | None = None  # the reply text it came from (bounded, redacted)
    rejected: str | None = None
    kept: bool | None = None  # None until a `filtered` event
    rung: str | None = None
    results: dict[str, EvalResult] = field(default_factory=dict)  # every learner logged so far
    failures: dict[str, EvalFailure] = field(default_factory=dict)
    decisions: dict[str, DecisionEvent] = field(default_factory=dict)
    promotions: list[Promoted] = field(default_factory=list)
    rung_index: dict[str, int] = field(default_factory=dict)  # fidelity → its place in the schedule
    screened: Stats | None = None  # its first-rung stats as trained there (the filter learns them)

    @property
    def result(self) -> EvalResult | None:
        return self.results.get(self.rung) if self.rung else None

    @property
    def failure(self) -> EvalFailure | None:
        return self.failures.get(self.rung) if self.rung else None

    @property
    def decision(self) -> DecisionEvent | None:
        return self.decisions.get(self.rung) if self.rung else None

    @property
    def evaluated(self) -> bool:
        return self.result is not None or self.failure is not None

    @property
    def stats(self) -> Stats | None:
        return self.result.stats if self.result is not None else None

    @property
    def highest_rung(self) -> str | None:
        """The highest rung of the schedule it has a result at, or None. Not always ``rung``: the
        baseline is trained at each rung a comparison needs without being promoted, and a
        candidate promoted but not yet trained is at a rung it has no result at. Logs from
        before ``evaluated`` named its rung: the fidelity evaluated last."""
        return max(reversed(list(self.results)), key=lambda f: self.rung_index.get(f, 0),
                   default=None)

    @property
    def highest_result(self) -> EvalResult | None:
        """Its result at :attr:`highest_rung` (what validation and ``best_spec.json`` report)."""
        rung = self.highest_rung
        return self.results[rung] if rung is not None else None

    @property
    def final(self) -> DecisionEvent | None:
        """The decision that settled it for the baseline (top rung, or the highest the budget
        allowed), or None."""
        return next((d for d in self.decisions.values() if d.final), None)

    @property
    def stopped(self) -> bool:
        """Out of the search: failed, or confidently behind the baseline at some rung."""
        return bool(self.failures) or any(
            d.confident and d.verdict == "rejected" for d in self.decisions.values())


def _ts(time: str) -> float:
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()


@dataclass
class SearchState:
    candidates: dict[str, Candidate] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    results: dict[tuple[str, str], EvalResult] = field(default_factory=dict)  # (hash, fidelity)
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
    learner_epochs: dict[str, float] = field(default_factory=dict)  # spent, per fidelity
    seen_hashes: set[str] = field(default_factory=set)
    config: dict[str, Any] | None = None
    finished: RunFinished | None = None
    validated: list[Validated] = field(default_factory=list)
    _seq: int = 0
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
        self._seq += 1
        if isinstance(event, DecisionEvent):
            event = event.model_copy(update={"seq": self._seq})
        getattr(self, f"_on_{event.event}")(event)

    def _cand(self, event: Repair | ProposalRejected | Filtered | Evaluated | Extended | DecisionEvent
              | Promoted) -> Candidate:
        try:
            return self.candidates[event.proposal_id]
        except KeyError:
            raise LogInconsistent(f"event {event.event!r} names proposal {event.proposal_id!r}, "
                                  "which no earlier `proposal` event introduced") from None

    def _on_run_started(self, event: RunStarted) -> None:
        self.config = event.config

    def schedule(self) -> list[Fidelity]:
        """The run's rungs, lowest first, from its logged config (:func:`logged_schedule`)."""
        return logged_schedule(self.config)

    def _on_resumed(self, event: Resumed) -> None:
        return None

    def _on_proposal(self, event: ProposalEvent) -> None:
        cand = Candidate(event.proposal_id, event.iteration, event.spec, event.spec_hash,
                         event.source, event.raw)
        self.candidates[cand.proposal_id] = cand
        self.order.append(cand.proposal_id)
        if cand.spec_hash:
            self.seen_hashes.add(cand.spec_hash)
        self.tokens_in += event.tokens_in
        self.tokens_out += event.tokens_out
        self.cost_usd += event.cost_usd

    def _on_repair(self, event: Repair) -> None:
        self._cand(event)

    def _on_proposal_rejected(self, event: ProposalRejected) -> None:
        self._cand(event).rejected = event.reason

    def _on_filtered(self, event: Filtered) -> None:
        self._cand(event).kept = event.kept

    def _on_evaluated(self, event: Evaluated) -> None:
        cand = self._cand(event)
        self.evaluations += 1
        self.device_s += event.device_s
        self._spend(event.fidelity, event.learner_epochs)
        if cand.rung is None:
            cand.rung = event.fidelity
        result = event.result()
        if isinstance(result, EvalFailure):
            cand.failures[event.fidelity] = result
            return
        key = (result.spec_hash, result.fidelity)
        if event.cached and key in self.results:
            result = self.results[key]  # the grown evaluation, not the copy's snapshot
        else:
            self.learners_trained += len(result.learners)
            self.results[key] = result
            if event.rung == 0 and not event.cached:
                cand.screened = result.stats
        cand.results[event.fidelity] = result
        cand.rung_index[event.fidelity] = event.rung
        if cand.proposal_id == "baseline" and self.baseline_id is None:
            self.baseline_id = self.first_baseline_id = "baseline"

    def _spend(self, fidelity: str, learner_epochs: float) -> None:
        self.learner_epochs[fidelity] = self.learner_epochs.get(fidelity, 0.0) + learner_epochs

    def _on_extended(self, event: Extended) -> None:
        self._cand(event)
        key = (event.spec_hash, event.fidelity)
        if key not in self.results:
            raise LogInconsistent(f"event 'extended' of {event.proposal_id!r} extends an "
                                  f"evaluation of {key} that was never logged")
        self.device_s += event.device_s
        self._spend(event.fidelity, event.learner_epochs)
        self.learners_trained += len(event.new_learners)
        grown = self.results[key] = event.extend(self.results[key])
        for c in self.candidates.values():
            if c.spec_hash == event.spec_hash and event.fidelity in c.results:
                c.results[event.fidelity] = grown

    def _on_decision(self, event: DecisionEvent) -> None:
        cand = self._cand(event)
        cand.decisions[event.fidelity or cand.rung] = event
        if event.accepted and event.final:
            self.baseline_id = event.proposal_id
            self.accepted += 1

    def _on_promoted(self, event: Promoted) -> None:
        cand = self._cand(event)
        if cand.rung != event.from_:
            raise LogInconsistent(f"event 'promoted' moves {event.proposal_id!r} from "
                                  f"{event.from_!r}, but it is at {cand.rung!r}")
        cand.promotions.append(event)
        cand.rung = event.to

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

    def seed_pool(self, fidelity: str) -> tuple[float, int] | None:
        """The run-level seed variance (φ, ν) at the run's M from every evaluation at
        ``fidelity`` with three or more learners (:func:`evaluators.stats.pool_seed_variance`);
        learners' seed noise differs between fidelities, so each rung has its own pool."""
        return pool_seed_variance((len(r.seeds), r.seed_var) for (_, f), r in self.results.items()
                                  if f == fidelity)

    def decisions(self) -> list[DecisionEvent]:
        """Every logged decision, every rung, in log order."""
        return sorted((d for c in self.candidates.values() for d in c.decisions.values()),
                      key=lambda d: d.seq)

    def final_decisions(self) -> list[DecisionEvent]:
        """The decisions that could move the baseline, in log order."""
        return [d for d in self.decisions() if d.final]

    @property
    def events_applied(self) -> int:
        return self._seq

    @property
    def learner_epochs_spent(self) -> float:
        return sum(self.learner_epochs.values())

    def in_iteration(self, iteration: int) -> list[Candidate]:
        return [self.candidates[p] for p in self.order if self.candidates[p].iteration == iteration]

    def history_item(self, cand: Candidate, M: int) -> HistoryItem:
        top = cand.highest_result
        s = top.stats if top is not None else None
        d = cand.final or cand.decision
        return HistoryItem(
            proposal_id=cand.proposal_id, spec=cand.spec or {},
            E=s.E if s else None, sigma2=s.sigma2 if s else None, rho=s.rho if s else None,
            predicted_ens_error=s.ens_error(M) if s else None,
            accepted=bool(d and d.accepted and d.final) or cand.proposal_id == "baseline",
            explanation=(d.explanation if d else None) or cand.rejected
            or (cand.failure.message if cand.failure else "") or "")

    def best_accepted(self, M: int, n: int = 5) -> list[HistoryItem]:
        accepted = [c for c in self.candidates.values() if c.final and c.final.accepted
                    and c.stats]
        accepted.sort(key=lambda c: c.stats.ens_error(M))
        return [self.history_item(c, M) for c in accepted[:n]]

    def last_rejected(self, M: int, n: int = 5) -> list[HistoryItem]:
        rejected = [c for c in (self.candidates[p] for p in self.order)
                    if (c.final and not c.final.accepted) or c.stopped or c.rejected]
        return [self.history_item(c, M) for c in rejected[-n:]]
