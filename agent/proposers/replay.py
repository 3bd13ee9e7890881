"""Feeds a logged run's proposals, in their logged order, to a new run (no LLM call)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.proposers.base import Proposal, ProposalContext, Proposer, ProposerFatal
from agent.trajectory import RunFolderError, read_events

if TYPE_CHECKING:
    from spaces.base import SearchSpace

__all__ = ["ReplayProposer"]


class ReplayProposer(Proposer):
    """Replays the ``raw`` text of every non-baseline proposal of ``run_dir``.

    Each raw reply is validated again against the space, so a replay into another space or
    with stricter caps rejects what no longer fits.
    """

    source = "replay"

    def __init__(self, run_dir: Path, space: SearchSpace) -> None:
        from agent.state import SearchState  # here: agent.state itself imports agent.proposers

        self.space = space
        try:
            state = SearchState.from_events(read_events(run_dir).events)
        except RunFolderError as err:
            raise ProposerFatal(f"replay:{run_dir}: {err}") from None
        self.queue = [state.candidates[p] for p in state.order if p != "baseline"]
        if not self.queue:  # a run of nothing but its baseline would be a baseline-only run
            raise ProposerFatal(f"replay:{run_dir}: its log holds no proposals to replay")
        self.position = 0
        self.calls = 0

    def exhausted(self) -> bool:
        return self.position >= len(self.queue)

    def propose(self, context: ProposalContext, k: int) -> list[Proposal]:
        from pydantic import ValidationError

        self.calls += 1
        batch = self.queue[self.position:self.position + k]
        self.position += len(batch)
        out = []
        for cand in batch:
            source_spec = cand.spec
            prop = Proposal(source="replay", call_id=f"replay-{self.calls}", raw=cand.raw or "")
            if source_spec is None:
                prop.error = f"replayed proposal {cand.proposal_id} was invalid in its run"
            else:
                try:
                    prop.spec = self.space.parse(source_spec)
                    prop.spec_hash = self.space.canonical_hash(prop.spec)
                except ValidationError as err:
                    prop.error = f"invalid spec: {self.space.validation_error_text(err)}"
            out.append(prop)
        return out
