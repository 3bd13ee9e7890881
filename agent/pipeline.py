"""``--pipeline``: the proposer call for the next iteration, made in a thread while this
iteration's candidates train.

The loop builds the call's :class:`~agent.proposers.base.ProposalContext` on its own thread,
before the iteration's candidates are filtered and trained, so the prompt reflects only decided
history (the iteration in flight appears by its proposals' hashes alone). Nothing is logged
here: the loop logs the call's proposals through its usual path when it reaches that iteration,
so the trajectory stays in order and resume and replay read it as any other run's. A run killed
before they are logged asks again on ``--resume``; one that ends with a call pending waits for
it (a call never outlives the wall budget's deadline) and logs what came back, so its tokens and
cost count toward ``--max-cost-usd`` and a resumed run reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from agent.proposers.base import (
    Proposal,
    ProposalContext,
    Proposer,
    ProposerFatal,
    ProposerOutOfTime,
)

__all__ = ["Pipeline"]


class Pipeline:
    """At most one proposer call in flight, for one named iteration."""

    def __init__(self, proposer: Proposer, k: int) -> None:
        self.proposer, self.k = proposer, k
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future] | None = None

    @property
    def pending(self) -> int | None:
        """The iteration whose call is in flight (or done and not taken yet), or None."""
        return self._pending[0] if self._pending is not None else None

    def ask(self, iteration: int, context: ProposalContext) -> None:
        """Start the call for ``iteration`` with ``context`` (built by the caller, now)."""
        if self._pending is not None:
            raise RuntimeError(f"a proposer call for iteration {self._pending[0]} is in flight")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposer-ahead")
        self._pending = (iteration, self._pool.submit(self.proposer.propose, context, self.k))

    def take(self, iteration: int) -> list[Proposal] | None:
        """The proposals of the call made for ``iteration`` (waiting for it), or None when no
        call was made for it. Raises what the call raised (ProposerOutOfTime, ProposerFatal)."""
        if self._pending is None or self._pending[0] != iteration:
            return None
        future = self._pending[1]
        self._pending = None
        return future.result()

    def settle(self, log: Callable[[int, list[Proposal]], None]) -> None:
        """At the end of the loop: wait for a pending call and ``log(iteration, proposals)``
        if it returned any; a call cut by the deadline or failed logs nothing."""
        iteration = self.pending
        if iteration is None:
            return
        try:
            proposals = self.take(iteration)
        except (ProposerOutOfTime, ProposerFatal):
            return
        if proposals:
            log(iteration, proposals)

    def close(self) -> None:
        """Wait for any call still running and end the thread (a run never exits with one
        hanging); a result not taken by then is dropped."""
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
