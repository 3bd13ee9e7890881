"""The offline proposer: regularized-evolution-style mutation plus random samples (seeded).

Each proposal is, with probability ``1 − p_random``, a one-choice mutation of a parent picked
by a tournament among the current baseline and the best accepted candidates (lower predicted
ensemble error wins), and otherwise a uniform random sample of the space. Already-seen
architectures (by canonical hash) are skipped where possible. The random numbers of a call
depend only on (seed, iteration, n-th call for that iteration), so a resumed run proposes what
the uninterrupted run would have proposed from the same history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.proposers.base import HistoryItem, Proposal, ProposalContext, Proposer

if TYPE_CHECKING:
    from spaces.base import SearchSpace

__all__ = ["BuiltinProposer"]


class BuiltinProposer(Proposer):
    source = "builtin"

    def __init__(self, space: SearchSpace, seed: int = 0, p_random: float = 0.25, tournament: int = 3,
                 max_tries: int = 50) -> None:
        self.space, self.seed = space, seed
        self.p_random, self.tournament, self.max_tries = p_random, tournament, max_tries
        self.calls_at: dict[int, int] = {}  # iteration -> calls made for it in this process

    def _parent(self, context: ProposalContext, rng: np.random.Generator) -> dict:
        pool: list[HistoryItem] = [context.baseline, *context.best_accepted]
        picks = rng.choice(len(pool), size=min(self.tournament, len(pool)), replace=False)

        def key(i: int) -> float:
            value = pool[i].predicted_ens_error
            return float("inf") if value is None else value

        return pool[min(picks, key=key)].spec

    def propose(self, context: ProposalContext, k: int) -> list[Proposal]:
        n = self.calls_at.get(context.iteration, 0)
        self.calls_at[context.iteration] = n + 1
        rng = np.random.default_rng([self.seed, context.iteration, n])
        call_id = f"builtin-it{context.iteration}" + (f"-{n + 1}" if n else "")
        seen = set(context.seen_hashes)
        proposals: list[Proposal] = []
        for _ in range(k):
            spec = None
            for _ in range(self.max_tries):
                if rng.random() < self.p_random:
                    spec = self.space.sample(rng)
                else:
                    spec = self.space.mutate(self.space.parse(self._parent(context, rng)), rng)
                if self.space.canonical_hash(spec) not in seen:
                    break
            spec_hash = self.space.canonical_hash(spec)
            seen.add(spec_hash)
            proposals.append(Proposal(source="builtin", call_id=call_id,
                                      raw=spec.model_dump_json(), spec=spec, spec_hash=spec_hash))
        return proposals
