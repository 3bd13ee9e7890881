"""The run's budgets in one place: iterations, wall seconds, device seconds, learner-epochs,
LLM dollars.

Every figure is read from the :class:`~agent.state.SearchState` (so a resumed run counts what
earlier sessions spent) and the :class:`~agent.config.RunConfig`; nothing here has state of its
own except the Ctrl-C flag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.config import RunConfig
from agent.proposers.base import Proposer
from agent.state import SearchState
from evaluators.promotion import CONSERVATIVE_SHARE

__all__ = ["Budget", "StopRequested"]


class StopRequested:
    """A flag the SIGINT handler sets; the loop stops after the event in flight."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, *_: Any) -> None:
        self.requested = True


@dataclass
class Budget:
    config: RunConfig
    state: SearchState
    proposer: Proposer
    stop: StopRequested

    def stop_reason(self, next_iteration: int, asked: bool = False) -> str | None:
        """Why no further iteration may start, or None. ``asked``: its proposer call was
        already made (``--pipeline``), so the cost and supply checks, made before that call,
        are not made again."""
        c, s = self.config, self.state
        if self.stop.requested:
            return "interrupted"
        if next_iteration > c.iterations:
            return "iterations"
        if (reason := self.out_of_time()) is not None:
            return reason
        if c.max_learner_epochs is not None and not self.affords(
                c.rungs()[0].learner_epochs(c.min_learners)):
            return "max_learner_epochs"  # not even one first-rung evaluation fits
        if asked:
            return None
        if c.max_cost_usd is not None and (
                s.cost_usd + self.proposer.expected_call_cost_usd() > c.max_cost_usd):
            return "max_cost_usd"
        if self.proposer.exhausted():
            return "proposer_exhausted"
        return None

    def wall_left(self) -> float | None:
        """Seconds left of ``--max-wall-seconds`` (negative once spent); None without one."""
        if self.config.max_wall_seconds is None:
            return None
        return self.config.max_wall_seconds - self.state.wall_s(time.time())

    def out_of_time(self) -> str | None:
        c, s = self.config, self.state
        if (wall := self.wall_left()) is not None and wall <= 0:
            return "max_wall_seconds"
        if c.max_device_seconds is not None and s.device_s >= c.max_device_seconds:
            return "max_device_seconds"
        return None

    def conservative(self, ahead_s: float = 0.0) -> str | None:
        """PMF-NAS's conservative rule, or None when it does not apply: with a schedule of two or
        more rungs and under :data:`CONSERVATIVE_SHARE` (20 %) of ``--max-learner-epochs`` or
        of ``--max-wall-seconds`` left, the best waiting candidates go up a rung rather than
        wait for company. Under the learner-epoch share no new first-rung work starts either
        (:meth:`holds_first_rung`); under the wall share it may, after the promotions, since
        wall time left unused is lost. ``ahead_s``: wall seconds about to be spent first (a
        proposer call), so the rule can act before a call that would end inside the share. A
        one-rung schedule has nothing to promote, so the rule never holds it back. Returns the
        reason in words."""
        if len(self.config.rungs()) < 2:
            return None
        if self.holds_first_rung():
            return f"under {CONSERVATIVE_SHARE * 100:g} % of the learner-epoch budget left"
        wall = self.wall_left()
        if wall is not None and wall - ahead_s < CONSERVATIVE_SHARE * self.config.max_wall_seconds:
            return f"under {CONSERVATIVE_SHARE * 100:g} % of the wall budget left"
        return None

    def holds_first_rung(self) -> bool:
        """No new first-rung work: two or more rungs and under 20 % of ``--max-learner-epochs``
        left (the conservative rule on the learner-epoch budget)."""
        cap = self.config.max_learner_epochs
        return (len(self.config.rungs()) >= 2 and cap is not None
                and cap - self.state.learner_epochs_spent < CONSERVATIVE_SHARE * cap)

    def affords(self, learner_epochs: float) -> bool:
        """Whether ``learner_epochs`` more fit ``--max-learner-epochs`` (always without one)."""
        cap = self.config.max_learner_epochs
        return cap is None or self.state.learner_epochs_spent + learner_epochs <= cap

    def left(self) -> dict[str, float]:
        """What is left of each budget, as the prompt shows it."""
        c, s = self.config, self.state
        left = {"iterations": float(c.iterations - s.iteration)}
        if (wall := self.wall_left()) is not None:
            left["wall_s"] = wall
        if c.max_device_seconds is not None:
            left["device_s"] = c.max_device_seconds - s.device_s
        if c.max_cost_usd is not None:
            left["cost_usd"] = c.max_cost_usd - s.cost_usd
        if c.max_learner_epochs is not None:
            left["learner_epochs"] = c.max_learner_epochs - s.learner_epochs_spent
        return left

    def deadline(self) -> float | None:
        """Epoch seconds by which a proposer call must return (None: no wall budget)."""
        wall = self.wall_left()
        return None if wall is None else time.time() + wall
