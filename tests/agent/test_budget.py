"""agent/budget.py: the conservative rule reads both budgets and needs a rung to promote to."""

from types import SimpleNamespace

import pytest

from agent.budget import Budget, StopRequested
from agent.config import RunConfig


def budget(schedule: str, spent: float = 0.0, wall: float = 0.0, **limits) -> Budget:
    config = RunConfig(fidelity_schedule=schedule, **limits)
    state = SimpleNamespace(learner_epochs_spent=spent, wall_s=lambda now: wall)
    return Budget(config, state, proposer=None, stop=StopRequested())


@pytest.mark.parametrize("spent, wall, says, holds", [
    (0.0, 0.0, None, False),
    (79.0, 0.0, None, False),            # 21 % of 100 learner-epochs left
    (81.0, 0.0, "under 20 % of the learner-epoch budget left", True),
    (0.0, 79.0, None, False),            # 21 % of 100 s left
    (0.0, 81.0, "under 20 % of the wall budget left", False),
    (81.0, 81.0, "under 20 % of the learner-epoch budget left", True),
])
def test_the_rule_holds_under_20_percent_of_either_budget(spent, wall, says, holds):
    b = budget("low:1,low:3", spent, wall, max_learner_epochs=100.0, max_wall_seconds=100.0)
    assert b.conservative() == says
    assert b.holds_first_rung() is holds  # only the learner-epoch budget stops first-rung work


def test_a_one_rung_schedule_is_never_held_back():
    b = budget("low:1", spent=99.0, wall=99.0, max_learner_epochs=100.0, max_wall_seconds=100.0)
    assert b.conservative() is None and not b.holds_first_rung()


def test_without_budgets_the_rule_never_holds():
    b = budget("low:1,low:3", spent=1e6, wall=1e6, max_wall_seconds=None)
    assert b.conservative() is None


def test_seconds_about_to_be_spent_count_against_the_wall():
    b = budget("low:1,low:3", wall=50.0, max_wall_seconds=100.0)  # 50 s left
    assert b.conservative() is None and b.conservative(ahead_s=29.0) is None
    assert b.conservative(ahead_s=31.0) == "under 20 % of the wall budget left"
