"""``--pipeline``: the proposer is asked for iteration i+1 while iteration i's candidates train,
from decided history only; the trajectory stays in order, resume asks again what was not logged,
and a call pending when the run ends is waited for, logged and paid for.

Tiny settings (digits, 300 samples, no predictor, 3 proposals, keep 2) as in test_cli. The
in-process runs replace the proposer by a recording builtin one (``agent.proposers.open_proposer``
is looked up when ``agent.run.main`` starts)."""

import threading
import time

import pytest

import agent.proposers
from agent.proposers.base import ProposerOutOfTime
from agent.proposers.builtin import BuiltinProposer
from agent.run import main
from agent.state import SearchState
from agent.trajectory import read_events
from tests.agent.runcli import TINY, events_of, kill_when, run_cli, run_dir_of, trained_seeds

M = 50  # RunConfig's default ensemble size, which TINY keeps
PROPOSAL_EVENTS = ("proposal", "repair", "proposal_rejected")


class Recording(BuiltinProposer):
    """The builtin proposer, noting for each call its context, its thread, and the log as it
    stood when the call began; optionally charging ``cost`` per call or running out of time."""

    def __init__(self, space, seed, out, cost=0.0, out_of_time_from=None):
        super().__init__(space, seed=seed)
        self.out, self.cost, self.out_of_time_from = out, cost, out_of_time_from
        self.calls: list[dict] = []

    def expected_call_cost_usd(self) -> float:
        return self.cost

    def propose(self, context, k):
        logs = list(self.out.glob("*/trajectory.jsonl"))
        logged = read_events(logs[0].parent).events if logs else []
        self.calls.append({"context": context, "thread": threading.current_thread(),
                           "logged": logged})
        if self.out_of_time_from is not None and context.iteration >= self.out_of_time_from:
            raise ProposerOutOfTime("the run's wall budget ended during the call")
        proposals = super().propose(context, k)
        proposals[0].cost_usd = self.cost
        return proposals


def run_in_process(monkeypatch, out, *flags, **recording):
    made = []

    def open_proposer(model, *, space, seed, **_):
        made.append(Recording(space, seed, out, **recording))
        return made[0], "builtin", None

    monkeypatch.setattr(agent.proposers, "open_proposer", open_proposer)
    rc = main([*map(str, TINY), *map(str, flags), "--out", str(out)])
    (run_dir,) = out.iterdir()
    return rc, made[0], events_of(run_dir)


def assert_in_order(events):
    """Every proposal of iteration i+1 comes after the last decision of iteration i."""
    last = max(e["iteration"] for e in events)
    for i in range(1, last):
        decided = [n for n, e in enumerate(events) if e["event"] == "decision"
                   and e["iteration"] == i]
        proposed = [n for n, e in enumerate(events) if e["event"] == "proposal"
                    and e["iteration"] == i + 1]
        if decided and proposed:
            assert max(decided) < min(proposed), f"iteration {i + 1} proposed before {i} decided"


def ids(items):
    return [h.proposal_id for h in items]


def no_thread_left():
    return not [t for t in threading.enumerate() if t.name.startswith("proposer-ahead")]


def test_next_iteration_is_asked_before_decisions_from_decided_history_only(tmp_path,
                                                                            monkeypatch):
    rc, proposer, events = run_in_process(monkeypatch, tmp_path, "--pipeline", "--iterations", 3,
                                          "--seed", 3)
    assert rc == 0 and events[-1]["reason"] == "iterations"
    calls = proposer.calls
    assert [c["context"].iteration for c in calls] == [1, 2, 3]  # one call per iteration
    assert calls[0]["thread"] is threading.main_thread()  # nothing trains before iteration 1
    for call in calls[1:]:
        n, ctx = call["context"].iteration, call["context"]
        assert call["thread"] is not threading.main_thread()
        # asked while iteration n-1 was in flight: its proposals logged, none of its decisions
        at_call = call["logged"]
        assert any(e["event"] == "proposal" and e["iteration"] == n - 1 for e in at_call)
        assert not any(e["event"] == "decision" and e["iteration"] == n - 1 for e in at_call)
        assert any(e["event"] == "decision" and e["iteration"] == n - 1 for e in events)
        # the context is the state as it stood when iteration n-1's proposals were logged
        upto = max(k for k, e in enumerate(events) if e["event"] in PROPOSAL_EVENTS
                   and e["iteration"] == n - 1)
        decided = SearchState.from_events(events[:upto + 1])
        assert ctx.baseline.proposal_id == decided.baseline_id
        assert ids(ctx.best_accepted) == ids(decided.best_accepted(M))
        assert ids(ctx.last_rejected) == ids(decided.last_rejected(M))
        assert ctx.seen_hashes == frozenset(decided.seen_hashes)
        in_flight = {pid for pid, c in decided.candidates.items() if c.iteration == n - 1}
        assert not in_flight & {ctx.baseline.proposal_id, *ids(ctx.best_accepted)}
        for item in ctx.last_rejected:  # only refusals at proposal time, decided when logged
            assert item.proposal_id not in in_flight or decided.candidates[item.proposal_id].rejected
    assert_in_order(events)
    assert no_thread_left()


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    out = tmp_path_factory.mktemp("piped")
    return run_dir_of(run_cli("agent.run", *TINY, "--pipeline", "--iterations", 2, "--seed", 3,
                              "--out", out))


def test_every_proposal_comes_after_the_last_decision_of_the_iteration_before(piped):
    events = events_of(piped)
    assert {e["iteration"] for e in events if e["event"] == "proposal"} == {0, 1, 2}
    assert_in_order(events)
    assert read_events(piped).events[0]["config"]["pipeline"] is True


def _decisions(events):
    keys = ("proposal_id", "verdict", "gain", "se", "confident", "learners", "baseline_id")
    return [{k: e.get(k) for k in keys} for e in events if e["event"] == "decision"]


def test_pipelined_run_decides_as_a_sequential_replay_of_its_proposals(piped, tmp_path):
    """Not the same decisions as a run without --pipeline by design: from iteration 2 on the
    builtin proposer mutates the baseline as it stood before the previous iteration's
    decisions, so its proposals differ. What holds: iteration 1 (asked after the baseline, as
    without) is identical, and the decisions depend only on the proposals, not on when they
    were asked — a sequential replay of the pipelined run's proposals decides exactly alike."""
    piped_events = events_of(piped)
    plain = events_of(run_dir_of(run_cli("agent.run", *TINY, "--iterations", 2, "--seed", 3,
                                         "--out", tmp_path / "plain")))
    volatile = {"time", "wall_s", "device_s", "config", "from_event"}

    def first_iteration(events):
        return [{k: v for k, v in e.items() if k not in volatile} for e in events
                if 1 <= e["iteration"] <= 1]

    assert len(first_iteration(plain)) > 5
    assert first_iteration(piped_events) == first_iteration(plain)
    replay = events_of(run_dir_of(run_cli("agent.run", *TINY, "--iterations", 2, "--seed", 3,
                                          "--model", f"replay:{piped}",
                                          "--out", tmp_path / "replay")))

    def proposed(events):
        return [(e["iteration"], e["spec_hash"]) for e in events if e["event"] == "proposal"]

    assert proposed(replay) == proposed(piped_events)
    assert len(_decisions(piped_events)) == 4
    assert _decisions(replay) == _decisions(piped_events)  # equal floats: same learners, same math


def test_kill_before_next_proposals_are_logged_then_resume_asks_again(tmp_path):
    # kill once iteration 1 trains: iteration 2 has been asked
    run_dir = kill_when(tmp_path, [*TINY, "--pipeline", "--iterations", 2, "--seed", 7],
                        lambda events: any(e["event"] == "evaluated" and e["iteration"] == 1
                                           for e in events), timeout=240)
    before = events_of(run_dir)
    assert before[-1]["event"] != "run_finished"
    assert not any(e["event"] == "proposal" and e["iteration"] == 2 for e in before)
    run_cli("agent.run", "--resume", run_dir)
    events = events_of(run_dir)
    assert events[-1]["event"] == "run_finished" and events[-1]["reason"] == "iterations"
    pids = [e["proposal_id"] for e in events if e["event"] == "proposal"]
    assert sorted(pids) == sorted(["baseline"] + [f"it{i}-p{j}" for i in (1, 2)
                                                  for j in (1, 2, 3)])  # each asked for once
    trained = trained_seeds(events)
    assert len(trained) == len(set(trained))  # nothing trained twice
    assert set(trained_seeds(before)) <= set(trained)
    assert sorted(d["proposal_id"] for d in _decisions(events)) == [
        "it1-p1", "it1-p2", "it2-p1", "it2-p2"]
    assert_in_order(events)


def test_call_pending_when_budget_ends_is_logged_and_its_cost_counted(tmp_path, monkeypatch):
    # learner-epochs: baseline 4 x 3, iteration 1 2 x 2 x 3 (confidence 0: MIN learners only)
    # = 24 of 28; iteration 2 was asked during iteration 1, then cannot afford 6 more
    rc, proposer, events = run_in_process(
        monkeypatch, tmp_path, "--pipeline", "--iterations", 3, "--seed", 3, "--confidence", 0,
        "--max-learner-epochs", 28, "--max-cost-usd", 1, cost=0.01)
    assert rc == 0 and events[-1]["reason"] == "max_learner_epochs"
    assert [c["context"].iteration for c in proposer.calls] == [1, 2]
    it2 = [e for e in events if e["iteration"] == 2]
    assert [e["event"] for e in it2] == ["proposal"] * 3  # logged, never filtered nor trained
    assert_in_order(events)
    cost = sum(e["cost_usd"] for e in events if e["event"] == "proposal")
    assert cost == pytest.approx(0.02, abs=1e-12)  # both calls paid for and logged
    assert events[-1]["event"] == "run_finished"
    assert no_thread_left()


def test_call_cut_by_the_wall_deadline_logs_nothing_and_the_run_exits(tmp_path, monkeypatch):
    started = time.time()
    rc, proposer, events = run_in_process(monkeypatch, tmp_path, "--pipeline", "--iterations", 3,
                                          "--seed", 3, "--max-wall-seconds", 600,
                                          out_of_time_from=2)
    assert rc == 0 and events[-1]["reason"] == "max_wall_seconds"
    ctx = proposer.calls[1]["context"]
    assert ctx.iteration == 2 and proposer.calls[1]["thread"] is not threading.main_thread()
    assert ctx.deadline == pytest.approx(started + 600, abs=30)  # the run's own wall deadline
    assert not any(e["iteration"] == 2 for e in events)
    assert any(e["event"] == "decision" and e["iteration"] == 1 for e in events)
    assert no_thread_left()
