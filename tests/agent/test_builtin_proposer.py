"""The builtin proposer's random numbers depend on (seed, iteration, call), not on its past."""

import pytest

from agent.proposers.base import HistoryItem, ProposalContext
from agent.proposers.builtin import BuiltinProposer
from spaces import TaskInfo, get_space

SPACE = get_space("nb201")


def context(iteration: int) -> ProposalContext:
    ref = SPACE.reference()
    base = HistoryItem("baseline", ref.model_dump(), 0.06, 0.06, 0.6, 0.04, True, "")
    return ProposalContext(space=SPACE, task=TaskInfo((1, 40), 10), task_name="mnist1d",
                           iteration=iteration, ensemble_size=50, rule="exact", baseline=base,
                           best_accepted=[], last_rejected=[], budget_left={"iterations": 5.0},
                           seen_hashes=frozenset({SPACE.canonical_hash(ref)}))


def hashes(proposals):
    return [p.spec_hash for p in proposals]


def test_a_resumed_proposer_repeats_what_the_uninterrupted_one_proposed():
    uninterrupted = BuiltinProposer(SPACE, seed=3)
    for it in (1, 2):
        uninterrupted.propose(context(it), 4)
    third = uninterrupted.propose(context(3), 4)
    resumed = BuiltinProposer(SPACE, seed=3)  # a fresh process picking up at iteration 3
    assert hashes(resumed.propose(context(3), 4)) == hashes(third)
    assert third[0].call_id == "builtin-it3"
    other_seed = BuiltinProposer(SPACE, seed=4).propose(context(3), 4)
    assert hashes(other_seed) != hashes(third)


def test_asking_again_for_the_same_iteration_gives_new_proposals():
    p = BuiltinProposer(SPACE, seed=0)
    ctx = context(1)
    first, again = p.propose(ctx, 4), p.propose(ctx, 4)
    assert hashes(first) != hashes(again) and again[0].call_id == "builtin-it1-2"


def test_a_default_local_model_that_fails_at_start_up_falls_back_to_builtin(monkeypatch):
    from agent.proposers import local, open_proposer

    def broken(**_):
        raise local.LocalModelUnavailable("the llama.cpp server exited (1)")

    monkeypatch.setattr(local, "local_model_available", lambda: (True, None))
    monkeypatch.setattr(local, "make_local_proposer", broken)
    proposer, name, note = open_proposer(None, space=SPACE, seed=0)
    assert isinstance(proposer, BuiltinProposer) and name == "builtin"
    assert "server exited" in note and "builtin" in note
    with pytest.raises(local.LocalModelUnavailable):  # asked for by name: the user sees why
        open_proposer("local", space=SPACE, seed=0)
