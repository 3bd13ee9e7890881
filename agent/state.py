"""The search state, derived only from trajectory events (so a crashed run can be rebuilt).

``SearchState.apply(event)`` is the single place that interprets events; the loop calls it for
every event it writes, and ``--resume`` calls it for every event it reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.proposers.base import HistoryItem
from agent.rule import Stats

__all__ = ["Candidate", "SearchState"]


@dataclass
class Candidate:
    """One proposal as the log knows it."""

    proposal_id: str
    iteration: int
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    rejected: str | None = None
    kept: bool | None = None  # None until a `filtered` event
    evaluation: dict[str, Any] | None = None  # the `evaluated` event
    decision: dict[str, Any] | None = None  # the `decision` event

    @property
    def stats(self) -> Stats | None:
        ev = self.evaluation
        if not ev or ev.get("failure"):
            return None
        return Stats(ev["E"], ev["sigma2"], ev["rho"])


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


@dataclass
class SearchState:
    candidates: dict[str, Candidate] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    baseline_id: str | None = None
    first_baseline_id: str | None = None
    iteration: int = 0
    device_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    accepted: int = 0
    evaluations: int = 0
    seen_hashes: set[str] = field(default_factory=set)
    finished: dict[str, Any] | None = None
    validated: list[dict[str, Any]] = field(default_factory=list)
    _session_start: float | None = None
    _session_last: float | None = None
    _wall_before: float = 0.0

    # ---- reading events ---------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        kind, it = event["event"], event.get("iteration", 0)
        t = _ts(event)
        if kind in ("run_started", "resumed"):
            if self._session_start is not None:
                self._wall_before += self._session_last - self._session_start
            self._session_start = t
        self._session_last = t
        self.iteration = max(self.iteration, it)
        pid = event.get("proposal_id")
        if kind == "proposal":
            cand = Candidate(pid, it, event.get("spec"), event.get("spec_hash"))
            self.candidates[pid] = cand
            self.order.append(pid)
            if cand.spec_hash:
                self.seen_hashes.add(cand.spec_hash)
            self.tokens_in += int(event.get("tokens_in") or 0)
            self.tokens_out += int(event.get("tokens_out") or 0)
            self.cost_usd += float(event.get("cost_usd") or 0.0)
        elif kind == "proposal_rejected":
            self.candidates[pid].rejected = event["reason"]
        elif kind == "filtered":
            self.candidates[pid].kept = bool(event["kept"])
        elif kind == "evaluated":
            self.candidates[pid].evaluation = event
            self.evaluations += 1
            self.device_s += float(event.get("device_s") or 0.0)
            if pid == "baseline" and not event.get("failure"):
                self.baseline_id = self.first_baseline_id = "baseline"
        elif kind == "decision":
            self.candidates[pid].decision = event
            if event["accepted"]:
                self.baseline_id = pid
                self.accepted += 1
        elif kind == "validated":
            self.validated.append(event)
        elif kind == "run_finished":
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

    def in_iteration(self, iteration: int) -> list[Candidate]:
        return [self.candidates[p] for p in self.order if self.candidates[p].iteration == iteration]

    def history_item(self, cand: Candidate, M: int) -> HistoryItem:
        from agent.rule import predicted_ens_error

        s = cand.stats
        d = cand.decision or {}
        return HistoryItem(
            proposal_id=cand.proposal_id, spec=cand.spec or {},
            E=s.E if s else None, sigma2=s.sigma2 if s else None, rho=s.rho if s else None,
            predicted_ens_error=predicted_ens_error(s, M) if s else None,
            accepted=bool(d.get("accepted")) or cand.proposal_id == "baseline",
            explanation=d.get("explanation") or cand.rejected
            or (cand.evaluation or {}).get("failure", {}).get("message", "") or "")

    def best_accepted(self, M: int, n: int = 5) -> list[HistoryItem]:
        from agent.rule import predicted_ens_error

        accepted = [c for c in self.candidates.values()
                    if c.decision and c.decision["accepted"] and c.stats]
        accepted.sort(key=lambda c: predicted_ens_error(c.stats, M))
        return [self.history_item(c, M) for c in accepted[:n]]

    def last_rejected(self, M: int, n: int = 5) -> list[HistoryItem]:
        rejected = [self.candidates[p] for p in self.order
                    if (self.candidates[p].decision and not self.candidates[p].decision["accepted"])
                    or self.candidates[p].rejected
                    or (self.candidates[p].evaluation or {}).get("failure")]
        return [self.history_item(c, M) for c in rejected[-n:]]
