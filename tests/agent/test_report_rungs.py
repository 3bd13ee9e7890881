"""The report's budget line (``agent/report_rungs.budget_lines``): what a learner-epoch budget
left unspent and why, and no reason when nothing was left."""

import pytest

from agent.events import RunFinished
from agent.report_rungs import budget_lines
from agent.state import SearchState

CONFIG = {"max_learner_epochs": 12, "fidelity_schedule": "low:3,medium", "min_learners": 2}


def ended_on_budget(spent: float) -> SearchState:
    state = SearchState(config=dict(CONFIG), learner_epochs={"low-3ep": spent})
    state.finished = RunFinished(time="2026-11-25T00:00:00", event="run_finished",
                                 reason="max_learner_epochs")
    return state


def test_a_budget_left_unspent_is_explained_by_the_conservative_rule_and_a_top_look():
    line = budget_lines(ended_on_budget(10.5))[-1]
    assert line.startswith("Learner-epochs: 10.5 of 12 spent; the run ended with 1.5 left: ")
    assert "under 20% (2.4)" in line and "one look at medium with 2 learners costs" in line


@pytest.mark.parametrize("spent", [12.0, 12.0 - 1e-12])
def test_a_budget_spent_to_the_end_gets_no_reason_for_a_remainder_it_does_not_have(spent):
    assert budget_lines(ended_on_budget(spent)) == ["", f"Learner-epochs: {spent:g} of 12 spent, all of it."]


def test_without_a_learner_epoch_budget_there_is_no_line():
    assert budget_lines(SearchState(config={"fidelity_schedule": "low:3,medium"})) == []
