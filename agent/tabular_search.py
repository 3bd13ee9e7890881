"""The search loop in tabular mode (NB201 tables instead of training).

A table has no σ² or ρ, so a candidate is kept when its target improves; every table lookup is a
query and counts against the budget. Proposals come from the offline builtin proposer (mutation
of the best candidates plus random samples); the predictor's UCB filter picks which of them to
query, before any query is spent. A table may hold part of the space: only its rows are asked,
and after ``MAX_MISSES`` rounds without a new one a random unseen row is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agent.proposers.base import HistoryItem, ProposalContext
from agent.proposers.builtin import BuiltinProposer
from evaluators.predictor.filter import UCBFilter
from evaluators.predictor.zero_cost import ZeroCostProxy
from evaluators.tabular import TableError, TabularBenchmark
from spaces.base import TaskInfo
from spaces.nb201 import NB201Space, NB201Spec

__all__ = ["tabular_search", "TableChooser"]

#: rounds in a row without a new in-table proposal before a random unseen table row is asked
MAX_MISSES = 20


def _item(pid: str, spec: NB201Spec, target: float) -> HistoryItem:
    return HistoryItem(pid, spec.model_dump(), None, None, None, target, True, "")


class TableChooser:
    """Which architecture to ask next (shared by :func:`tabular_search` and
    :mod:`agent.tabular_progressive`): random in-table cells for the first ``n_init``, then the
    builtin proposer's unseen in-table proposals, of which the predictor's UCB filter keeps one;
    after ``MAX_MISSES`` rounds without a new in-table proposal, a random unseen table row.
    ``observe`` teaches it each answer (a loss: lower is better)."""

    def __init__(self, table: TabularBenchmark, seed: int, *, n_init: int = 10, proposals: int = 64,
                 refit_every: int = 10, gnn_epochs: int = 80, use_predictor: bool = True,
                 total_iterations: int = 1, zero_cost: ZeroCostProxy | None = None,
                 low_fidelity_pretrain: bool = False):
        self.table, self.space = table, NB201Space()
        self.rng = np.random.default_rng(seed)
        self.proposer = BuiltinProposer(self.space, seed=seed, p_random=0.1)
        self.filt = UCBFilter(self.space, None, refit_every=refit_every, min_labels=n_init,
                              seed=seed, total_iterations=total_iterations, gnn_epochs=gnn_epochs,
                              zero_cost=zero_cost, low_fidelity_pretrain=low_fidelity_pretrain)
        self.n_init, self.proposals, self.use_predictor = n_init, proposals, use_predictor
        self.seen: set[str] = set()
        self.history: list[tuple[float, object]] = []
        self.misses = 0

    def observe(self, spec: NB201Spec, loss: float) -> None:
        self.seen.add(self.space.canonical_hash(spec))
        self.history.append((loss, spec))
        if self.use_predictor:
            self.filt.observe(spec, loss)

    def observe_screened(self, spec: NB201Spec, low_loss: float) -> None:
        """A cheap-rung answer that is not learned as a target: marked seen (never asked again)
        and, with ``low_fidelity_pretrain``, a pretraining label for the filter's GIN."""
        self.seen.add(self.space.canonical_hash(spec))
        if self.use_predictor:
            self.filt.observe_screened(spec, low_loss)

    def _in_table(self, spec: NB201Spec) -> bool:
        return NB201Space.to_arch_string(spec) in self.table

    def _unseen_row(self) -> NB201Spec:
        """A random table row not yet asked (for tables holding part of the space)."""
        left = [a for a in self.table.archs
                if self.space.canonical_hash(NB201Space.from_arch_string(a)) not in self.seen]
        if not left:
            raise TableError(f"the table's {len(self.table)} architectures are all asked; "
                             f"no new one is left after {len(self.history)} queries")
        return NB201Space.from_arch_string(left[int(self.rng.integers(len(left)))])

    def _missed(self) -> NB201Spec | None:
        """A round without a new in-table architecture; after MAX_MISSES, a table row."""
        self.misses += 1
        if self.misses >= MAX_MISSES:
            self.misses = 0
            return self._unseen_row()
        return None

    def next(self, iteration: int, left: float) -> NB201Spec:
        """The next spec to ask; ``iteration`` steps the proposer's seed and the filter's β(t),
        ``left`` is the budget left (shown to the proposer)."""
        space = self.space
        while len(self.history) < self.n_init:
            spec = space.sample(self.rng).model_copy(update={"channels": 16, "cells_per_stage": 5})
            if space.canonical_hash(spec) not in self.seen and self._in_table(spec):
                self.misses = 0
                return spec
            if (row := self._missed()) is not None:
                return row
        while True:
            ranked = sorted(self.history, key=lambda h: h[0])
            context = ProposalContext(
                space=space, task=TaskInfo((3, 32, 32), 10), task_name="nb201-table",
                iteration=iteration, ensemble_size=2, rule="exact",
                baseline=_item("best", ranked[0][1], ranked[0][0]),
                best_accepted=[_item(f"h{i}", s, v) for i, (v, s) in enumerate(ranked[1:10])],
                last_rejected=[], budget_left={"queries": float(left)},
                seen_hashes=frozenset(self.seen))
            cands, hashes = [], set()
            for p in self.proposer.propose(context, self.proposals if self.use_predictor else 1):
                spec = p.spec.model_copy(update={"channels": 16, "cells_per_stage": 5})
                h = space.canonical_hash(spec)
                if h not in self.seen and h not in hashes and self._in_table(spec):
                    cands.append(spec)
                    hashes.add(h)
            if not cands:  # every proposal was seen or missing from a partial table
                if (row := self._missed()) is not None:
                    return row
                continue
            self.misses = 0
            scores = self.filt.keep(cands, 1, iteration) if self.use_predictor else None
            return cands[next(i for i, s in enumerate(scores) if s.kept) if scores else 0]


def tabular_search(table: TabularBenchmark, queries: int, seed: int, *, n_init: int = 10,
                   proposals: int = 64, refit_every: int = 10, gnn_epochs: int = 80,
                   use_predictor: bool = True,
                   to_loss: Callable[[float], float] = lambda accuracy: 100.0 - accuracy,
                   zero_cost: ZeroCostProxy | None = None) -> list[float]:
    """Best loss (``to_loss`` of the table's target; lower is better) after each query;
    ``zero_cost`` adds a data-free proxy (SynFlow) to the predictor's features."""
    chooser = TableChooser(table, seed, n_init=n_init, proposals=proposals, refit_every=refit_every,
                           gnn_epochs=gnn_epochs, use_predictor=use_predictor,
                           total_iterations=queries, zero_cost=zero_cost)
    best_curve: list[float] = []
    while len(best_curve) < queries:
        spec = chooser.next(len(best_curve), queries - len(best_curve))
        value = to_loss(table.query(NB201Space.to_arch_string(spec)))
        chooser.observe(spec, value)
        best_curve.append(min(best_curve[-1], value) if best_curve else value)
    return best_curve
