"""The proposer interface: every proposer (builtin, llm, local, replay) turns a context into specs.

A proposer never sees the loop's internals: the loop builds a :class:`ProposalContext` from what
the trajectory holds and passes it in; the proposer returns :class:`Proposal` values, valid or
not. The loop numbers them (``proposal_id``), logs them, and drops the invalid ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from spaces.base import SearchSpace, SizeCap, TaskInfo

__all__ = ["Proposal", "HistoryItem", "ProposalContext", "Proposer", "ProposerFatal",
           "ProposerOutOfTime", "Source"]

Source = Literal["builtin", "llm", "local", "replay"]


class ProposerFatal(RuntimeError):
    """An error the user must act on (bad key, bad request, unreachable server): ends the run."""


class ProposerOutOfTime(RuntimeError):
    """The run's wall budget (``ProposalContext.deadline``) ended before a reply came back: the
    loop ends the run with the wall-budget reason, and nothing of the cut call is logged."""


@dataclass
class Proposal:
    """One proposed spec, or the reason it is not one.

    Exactly one of ``spec`` / ``error`` is set. ``repairs`` lists the validation errors quoted in
    repair turns (each becomes a ``repair`` event). A call's tokens and cost go on the first
    proposal it produced and 0 on the others.
    """

    source: Source
    call_id: str
    raw: str
    spec: BaseModel | None = None
    spec_hash: str | None = None
    error: str | None = None
    repairs: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    @property
    def valid(self) -> bool:
        return self.spec is not None


@dataclass(frozen=True)
class HistoryItem:
    """A past candidate as the prompt shows it: its spec, statistics and the rule's verdict."""

    proposal_id: str
    spec: dict[str, Any]
    E: float | None
    sigma2: float | None
    rho: float | None
    predicted_ens_error: float | None
    accepted: bool
    explanation: str


@dataclass(frozen=True)
class ProposalContext:
    """Everything a proposer may use to write the next proposals."""

    space: SearchSpace
    task: TaskInfo
    task_name: str
    iteration: int
    ensemble_size: int  # M
    rule: str  # "exact" | "paper"
    baseline: HistoryItem
    best_accepted: list[HistoryItem]
    last_rejected: list[HistoryItem]
    budget_left: dict[str, float]
    seen_hashes: frozenset[str] = frozenset()
    #: epoch seconds (``time.time()``) by which ``propose`` must return; None = no wall budget
    deadline: float | None = None
    #: the run's size cap and the width multiplier its fidelity trains at: a proposal over the
    #: cap is invalid (an LLM gets a repair turn quoting it)
    cap: SizeCap | None = None
    width_mult: float = 1.0


class Proposer(ABC):
    """Writes ``k`` proposals for a context. Implementations: builtin, llm, local, replay."""

    source: Source

    @abstractmethod
    def propose(self, context: ProposalContext, k: int) -> list[Proposal]:
        """Return up to ``k`` proposals (fewer only when the source is exhausted, e.g. replay)."""

    def expected_call_cost_usd(self) -> float:
        """What the next :meth:`propose` call is expected to cost (0 for offline proposers)."""
        return 0.0

    def priced(self) -> bool:
        """Whether the costs this proposer reports are real, so that a cost cap can act on them
        (offline proposers cost nothing, which is exact)."""
        return True

    def exhausted(self) -> bool:
        """True when this proposer can produce nothing more (a replay that ran out)."""
        return False

    def close(self) -> None:
        """Release resources (servers, sessions). Called once when the run ends."""
        return None
