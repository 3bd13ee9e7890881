"""A budget that ends before anything is learned is said plainly (issue 15): the default wall
budget belongs to the default task only, the end reason names what ended the run, and the
summary says what was cut, where, and the command that finishes it."""

import re
import shlex
from types import SimpleNamespace

import pytest

from agent.cli import build_parser, config_from_args
from agent.finish import cut_evaluations, end_reason, finishing_budget, pending_evaluations
from agent.progress import TrainingTick
from evaluators.train import EpochTick
from tests.agent.runcli import events_of, run_cli, run_dir_of


@pytest.mark.parametrize("flags, expected", [
    ([], 135.0),
    (["--dataset", "fashion-mnist"], None),
    (["--space", "hierarchical"], None),
    (["--fidelity", "medium"], None),
    (["--fidelity-schedule", "low,medium"], None),  # a schedule of one's own is not the default
    (["--dataset", "fashion-mnist", "--max-wall-seconds", "30"], 30.0),
    (["--max-wall-seconds", "400"], 400.0),
])
def test_the_default_wall_budget_applies_to_the_default_task_only(flags, expected):
    assert config_from_args(build_parser().parse_args(flags)).max_wall_seconds == expected


def cand(kept=True, evaluated=False, rejected=None):
    return SimpleNamespace(kept=kept, evaluated=evaluated, rejected=rejected)


def test_iterations_is_not_the_reason_when_a_budget_left_kept_candidates_untrained():
    state = SimpleNamespace(order=["baseline", "it1-p1", "it1-p2", "it1-p3"], candidates={
        "baseline": cand(kept=None, evaluated=True), "it1-p1": cand(evaluated=True),
        "it1-p2": cand(), "it1-p3": cand(kept=False)})
    loop = SimpleNamespace(state=state, out_of_time=lambda: "max_wall_seconds",
                           config=SimpleNamespace(max_learner_epochs=300.0))
    assert pending_evaluations(state) == ["it1-p2"]
    assert end_reason(loop, "iterations") == "max_wall_seconds"
    # time left: the learner-epoch cap left the kept candidate untrained (its learners did not fit)
    loop.out_of_time = lambda: None
    assert end_reason(loop, "iterations") == "max_learner_epochs"
    loop.out_of_time = lambda: "max_wall_seconds"
    state.candidates["it1-p2"].evaluated = True
    assert end_reason(loop, "iterations") == "iterations"
    assert end_reason(loop, "interrupted") == "interrupted"


def test_the_finishing_budget_covers_what_was_spent_plus_the_cut_evaluations():
    assert finishing_budget(150.0, [400.0]) == 680  # 150 + 30 + 1.25 * 400, rounded up to 10
    assert finishing_budget(100.0, [None]) == 380  # no estimate: twice what was spent


def test_a_progressive_cut_names_each_evaluation_at_its_rung_and_not_by_a_finished_ones_tick():
    """The default run's end (2026-11-25): the wall cut the baseline ``it2-p2`` while it grew at
    ``low``, and ``it1-p2``, just promoted to ``low``, had not started; ``it1-p2``'s last tick was
    from its finished ``low-2ep`` training, which the summary once gave as where it was cut."""
    def result(wall_s):
        return SimpleNamespace(wall_s=wall_s)

    state = SimpleNamespace(order=["baseline", "it1-p2", "it2-p2"], candidates={
        "baseline": SimpleNamespace(kept=None, evaluated=True, rejected=None, rung="low",
                                    results={"low-2ep": result(4.0), "low": result(12.0)}),
        "it1-p2": SimpleNamespace(kept=True, evaluated=False, rejected=None, rung="low",
                                  results={"low-2ep": result(2.0)}),
        "it2-p2": SimpleNamespace(kept=True, evaluated=True, rejected=None, rung="low",
                                  results={"low-2ep": result(2.0), "low": result(6.0)})},
        wall_s=lambda now: 135.0)
    loop = SimpleNamespace(state=state, rungs=[SimpleNamespace(name="low-2ep"), SimpleNamespace(name="low")],
                           run_dir="runs/x")
    stale = TrainingTick("it1-p2 @ low-2ep", EpochTick(1, 1, 2, 2), 1.0)
    growing = TrainingTick("it2-p2 @ low", EpochTick(1, 1, 1, 6), 1.0)
    progress = SimpleNamespace(started={"it2-p2 @ low": None},
                               last_ticks={t.label: t for t in (stale, growing)})
    cut = cut_evaluations(loop, "max_wall_seconds", progress)
    assert [(i["label"], i["proposal_id"], i["where"]) for i in cut.items] == [
        ("it2-p2 @ low", "it2-p2", "cut after learner 1/1, epoch 1/6"),
        ("it1-p2 @ low", "it1-p2", "not started")]
    # the estimates: the growing one's own ticks (1 s for 1/6), the mean call at the other's rung
    # (12 and 6 s at `low`; 5.2 s over all rungs would underestimate it)
    assert [i["estimate_s"] for i in cut.items] == [pytest.approx(6.0), pytest.approx(9.0)]
    assert cut.text().startswith("max_wall_seconds cut 2 evaluation(s) short: it2-p2 @ low (cut "
                                 "after learner 1/1, epoch 1/6), it1-p2 @ low (not started).")
    assert cut_evaluations(loop, "max_learner_epochs", progress) is None


@pytest.mark.slow
def test_a_cut_baseline_is_named_with_its_epoch_and_the_printed_command_finishes_it(tmp_path):
    # medium fidelity: the baseline's four 15-epoch learners outlast 8 s even on an idle machine
    args = ["--model", "builtin", "--dataset", "mnist1d", "--n-samples", "4000", "--predictor",
            "none", "--fidelity", "medium", "--iterations", "0", "--out", tmp_path]
    proc = run_cli("agent.run", *args, "--max-wall-seconds", "8")
    run_dir = run_dir_of(proc)
    finished = events_of(run_dir)[-1]
    assert finished["reason"] == "max_wall_seconds" and finished["evaluations"] == 0
    cut = finished["cut"]["evaluations"]
    assert [c["proposal_id"] for c in cut] == ["baseline"]
    assert re.fullmatch(r"cut after learner \d+/\d+, epoch \d+/\d+", cut[0]["where"]), cut
    text = " ".join(proc.stderr.split())
    assert "baseline (cut after learner" in text
    command = re.search(r"To finish: (python -m agent\.run --resume \S+ --max-wall-seconds \d+)",
                        text).group(1)
    assert command == finished["cut"]["resume_command"]
    argv = shlex.split(command)[3:]
    assert float(argv[-1]) > 8
    run_cli("agent.run", *argv, timeout=600)
    events = events_of(run_dir)
    evaluated = [e for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == 1 and not evaluated[0].get("failure")
    assert events[-1]["reason"] == "iterations"
