"""The search loop in tabular mode (NB201 tables instead of training).

A table has no σ² or ρ, so a candidate is kept when its target improves; every table lookup is a
query and counts against the budget. Proposals come from the offline builtin proposer (mutation
of the best candidates plus random samples); the predictor's UCB filter picks which of them to
query, before any query is spent. A table may hold part of the space: only its rows are asked,
and after ``MAX_MISSES`` rounds without a new one a random unseen row is.
"""

from __future__ import annotations

import numpy as np

from agent.proposers.base import HistoryItem, ProposalContext
from agent.proposers.builtin import BuiltinProposer
from evaluators.predictor.filter import UCBFilter
from evaluators.tabular import TableError, TabularBenchmark
from spaces.base import TaskInfo
from spaces.nb201 import NB201Space

__all__ = ["tabular_search"]

#: rounds in a row without a new in-table proposal before a random unseen table row is asked
MAX_MISSES = 20


def _item(pid: str, spec, target: float) -> HistoryItem:
    return HistoryItem(pid, spec.model_dump(), None, None, None, target, True, "")


def tabular_search(table: TabularBenchmark, queries: int, seed: int, *, n_init: int = 10,
                   proposals: int = 64, refit_every: int = 10, gnn_epochs: int = 80,
                   use_predictor: bool = True, to_loss=lambda accuracy: 100.0 - accuracy) -> list[float]:
    """Best loss (``to_loss`` of the table's target; lower is better) after each query."""
    space = NB201Space()
    rng = np.random.default_rng(seed)
    proposer = BuiltinProposer(space, seed=seed, p_random=0.1)
    filt = UCBFilter(space, None, refit_every=refit_every, min_labels=n_init, seed=seed,
                     total_iterations=queries, gnn_epochs=gnn_epochs)
    seen: set[str] = set()
    history: list[tuple[float, object]] = []
    best_curve: list[float] = []

    def ask(spec) -> None:
        value = to_loss(table.query(NB201Space.to_arch_string(spec)))
        seen.add(space.canonical_hash(spec))
        history.append((value, spec))
        if use_predictor:
            filt.observe(spec, value)
        best_curve.append(min(best_curve[-1], value) if best_curve else value)

    def in_table(spec) -> bool:
        return NB201Space.to_arch_string(spec) in table

    def unseen_from_table():
        """A random table row not yet asked (for tables holding part of the space)."""
        left = [a for a in table.archs
                if space.canonical_hash(NB201Space.from_arch_string(a)) not in seen]
        if not left:
            raise TableError(f"the table's {len(table)} architectures are all asked; "
                             f"{queries} queries cannot be made")
        return NB201Space.from_arch_string(left[int(rng.integers(len(left)))])

    misses = 0

    def missed() -> None:
        """A round without a new in-table architecture; after MAX_MISSES, ask a table row."""
        nonlocal misses
        misses += 1
        if misses >= MAX_MISSES:
            ask(unseen_from_table())
            misses = 0

    while len(best_curve) < min(n_init, queries):
        spec = space.sample(rng).model_copy(update={"channels": 16, "cells_per_stage": 5})
        if space.canonical_hash(spec) not in seen and in_table(spec):
            ask(spec)
            misses = 0
        else:
            missed()
    misses = 0
    while len(best_curve) < queries:
        ranked = sorted(history, key=lambda h: h[0])
        context = ProposalContext(
            space=space, task=TaskInfo((3, 32, 32), 10), task_name="nb201-table",
            iteration=len(best_curve), ensemble_size=2, rule="exact",
            baseline=_item("best", ranked[0][1], ranked[0][0]),
            best_accepted=[_item(f"h{i}", s, v) for i, (v, s) in enumerate(ranked[1:10])],
            last_rejected=[], budget_left={"queries": float(queries - len(best_curve))},
            seen_hashes=frozenset(seen))
        cands, hashes = [], set()
        for p in proposer.propose(context, proposals if use_predictor else 1):
            spec = p.spec.model_copy(update={"channels": 16, "cells_per_stage": 5})
            h = space.canonical_hash(spec)
            if h not in seen and h not in hashes and in_table(spec):
                cands.append(spec)
                hashes.add(h)
        if not cands:  # every proposal was seen or missing from a partial table
            missed()
            continue
        misses = 0
        scores = filt.keep(cands, 1, len(best_curve)) if use_predictor else None
        pick = next(i for i, s in enumerate(scores) if s.kept) if scores else 0
        ask(cands[pick])
    return best_curve
