"""The filter interface the search loop uses to decide which proposals are worth training.

A filter scores specs *before* any training (structure and static features) and learns online
from the loop's labelled results. ``keep`` returns one :class:`FilterScore` per proposal, in the
input order, with exactly ``min(k, len(specs))`` of them marked ``kept``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

__all__ = ["FilterScore", "CandidateFilter", "PassThroughFilter"]


@dataclass(frozen=True)
class FilterScore:
    """One proposal's score. ``predicted_mean``/``predicted_std`` are ``None`` when unscored."""

    predicted_mean: float | None
    predicted_std: float | None
    score: float | None
    kept: bool
    note: str


class CandidateFilter(Protocol):
    def keep(self, specs: list[BaseModel], k: int, iteration: int) -> list[FilterScore]:
        """Score ``specs`` and mark the best ``k`` as kept (lower target is better)."""
        ...

    def observe(self, spec: BaseModel, target: float) -> None:
        """Add one labelled record (target = the quantity the loop minimises)."""
        ...


class PassThroughFilter:
    """``--predictor none``: keeps the first ``k`` proposals and says so."""

    def keep(self, specs: list[BaseModel], k: int, iteration: int) -> list[FilterScore]:
        return [
            FilterScore(None, None, None, i < k,
                        "predictor off: kept the first k proposals in proposal order")
            for i in range(len(specs))
        ]

    def observe(self, spec: BaseModel, target: float) -> None:
        return None
