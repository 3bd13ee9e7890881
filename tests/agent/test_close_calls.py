"""A close call grows the candidate and the baseline together: their extra learners are one
batch of jobs for the evaluator (``evaluate_many``), so a distributed evaluator trains both at
once instead of one after the other."""

import json

from agent.replay import main as replay_main
from agent.run import main
from evaluators.evaluator import LocalEvaluator
from tests.agent.runcli import TINY, events_of


class Recording(LocalEvaluator):
    """The local evaluator, noting the (proposal id, learner count) of every batch it is given."""

    batches: list[list[tuple[str, int]]] = []

    def evaluate_many(self, jobs, on_epoch=None):
        Recording.batches.append([(j.label, len(j.seeds)) for j in jobs])
        yield from super().evaluate_many(jobs, on_epoch)


def test_a_close_calls_candidate_and_baseline_grow_in_one_batch(tmp_path, monkeypatch):
    """--confidence 0.999999 makes every decision close, so each candidate goes 2 → 3 → 4 → 6
    learners (--learners 2:6); the baseline has 4, so the step to 6 adds learners to both: that
    step, for the first candidate, must be one batch holding both jobs, and every decision must
    name 6 learners a side."""
    Recording.batches = []
    monkeypatch.setattr("evaluators.evaluator.LocalEvaluator", Recording)
    rc = main([*TINY, "--iterations", "1", "--learners", "2:6", "--confidence", "0.999999",
               "--futility", "0", "--out", str(tmp_path)])
    assert rc == 0
    (run_dir,) = tmp_path.iterdir()
    decisions = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert decisions and all((d["learners"], d["learners_old"]) == (6, 6) for d in decisions)
    first = decisions[0]
    assert sorted([(first["proposal_id"], 6), (first["baseline_id"], 6)]) in map(
        sorted, Recording.batches), Recording.batches
    # the baseline grew to 6 alongside the first candidate, never in a batch of its own (the
    # later candidates find it at 6 already)
    assert not any(b == [(first["baseline_id"], 6)] for b in Recording.batches)
    assert sum((first["baseline_id"], 6) in b for b in Recording.batches) == 1


def _replayed(run_dir, capsys) -> list[dict]:
    capsys.readouterr()
    assert replay_main([str(run_dir), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]


def test_replay_with_the_runs_settings_repeats_every_logged_look(tmp_path, capsys):
    """A run whose candidates grow (2:6 at 0.999, the baseline grown alongside and kept grown
    for later candidates, the seed pool growing with them): replayed with its own settings,
    every decision has the logged verdict, learner counts and gain ± SE (to 1e-9)."""
    rc = main([*TINY, "--iterations", "2", "--learners", "2:6", "--confidence", "0.999",
               "--futility", "0", "--out", str(tmp_path)])
    assert rc == 0
    (run_dir,) = tmp_path.iterdir()
    logged = [e for e in events_of(run_dir) if e["event"] == "decision"]
    rows = _replayed(run_dir, capsys)
    assert len(rows) == len(logged) >= 3
    assert any(d["learners"] > 2 for d in logged)  # some grew, so the pool changed on the way
    for r, d in zip(rows, logged, strict=True):
        assert (r["proposal_id"], r["verdict"], r["learners"], r["learners_old"]) == (
            d["proposal_id"], d["verdict"], d["learners"], d["learners_old"])
        assert abs(r["gain"] - d["gain"]) < 1e-9
        assert abs(r["gain_se_total"] - d["gain_se_total"]) < 1e-9


def test_a_losing_candidate_stops_at_the_reject_bound(tmp_path):
    """--reject-confidence 0 rejects on the point estimate while acceptances keep z(0.999999):
    a candidate is rejected, confidently, at the first look where it is behind the baseline; one
    never behind is grown to MAX and stays undecided (no 6-learner gain clears z ≈ 5)."""
    rc = main([*TINY, "--iterations", "1", "--learners", "2:6", "--confidence", "0.999999",
               "--reject-confidence", "0", "--futility", "0", "--out", str(tmp_path)])
    assert rc == 0
    (run_dir,) = tmp_path.iterdir()
    decisions = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert decisions and all(d["reject_confidence"] == 0 and d["z_reject"] == 0 for d in decisions)
    for d in decisions:  # the logged look is the last: behind → rejected there, else MAX
        if d["gain"] < 0:
            assert d["confident"] and d["verdict"] == "rejected"
        else:
            assert d["learners"] == 6 and d["verdict"] == "undecided"


def test_futility_ends_near_ties_before_max_and_says_so(tmp_path, capsys):
    """--futility 0.999 (almost any look is futile) at --confidence 0.999999: no decision is
    confident, so every candidate stops undecided at its first look (2 learners, not MAX 6),
    each logged futile with its conditional power under 0.999; the report counts them."""
    rc = main([*TINY, "--iterations", "1", "--learners", "2:6", "--confidence", "0.999999",
               "--futility", "0.999", "--out", str(tmp_path)])
    assert rc == 0
    (run_dir,) = tmp_path.iterdir()
    decisions = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert decisions
    for d in decisions:
        assert d["futile"] and d["verdict"] == "undecided" and d["learners"] == 2
        assert d["conditional_power"] < 0.999 and d["futility"] == 0.999
    report = (run_dir / "report" / "report.md").read_text()
    assert f"{len(decisions)} undecided stopped before MAX by the futility bound" in report
    rows = _replayed(run_dir, capsys)  # the run's futility is replayed with the rest
    assert [(r["futile"], r["learners"]) for r in rows] == [(True, 2)] * len(decisions)


def test_a_look_cut_by_the_learner_epoch_budget_says_so(tmp_path):
    """At the low fidelity a learner costs 3 learner-epochs: the baseline's 4 (12) and two
    candidates' 2 each (12) spend the whole --max-learner-epochs 24, so no extra learner can be
    bought. A decision that is not confident then ends at 2 learners, below MAX 6, and its
    explanation says that the budget, not the rule, stopped the looks."""
    rc = main([*TINY, "--fidelity", "low", "--iterations", "1", "--learners", "2:6",
               "--confidence", "0.999999", "--futility", "0", "--max-learner-epochs", "24",
               "--out", str(tmp_path)])
    assert rc == 0
    (run_dir,) = tmp_path.iterdir()
    decisions = [e for e in events_of(run_dir) if e["event"] == "decision"]
    open_calls = [d for d in decisions if not d["confident"]]
    assert open_calls, decisions
    for d in open_calls:
        assert d["verdict"] == "undecided" and d["learners"] == 2
        assert "stopped at 2 learners: 3 more learner-epochs were needed, beyond " \
               "--max-learner-epochs" in d["explanation"]
    for d in decisions:
        if d["confident"]:
            assert "stopped at" not in d["explanation"]
