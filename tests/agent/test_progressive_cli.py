"""Progressive fidelity end to end: rungs, promotions, like-against-like decisions, kill -9
mid-rung then resume, replay per rung, the report's rung section, the conservative rule."""

import json

import pytest
from scipy.stats import kendalltau

from agent.state import SearchState
from tests.agent.runcli import TINY, events_of, kill_when, run_cli, run_dir_of, trained_seeds

PROGRESSIVE = [*TINY, "--fidelity-schedule", "low:1,low:3", "--eta", "2", "--learners", "2:3"]


@pytest.fixture(scope="module")
def progressive_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run_cli("agent.run", *PROGRESSIVE, "--iterations", 3, "--out", out, "--seed", 1)
    return run_dir_of(proc), proc


def test_candidates_climb_rungs_and_only_top_rung_decisions_move_the_baseline(progressive_run):
    run_dir, proc = progressive_run
    events = events_of(run_dir)
    state = SearchState.from_events(events)
    promoted = [e for e in events if e["event"] == "promoted"]
    assert promoted and all(e["from"] == "low-1ep" and e["to"] == "low-3ep" for e in promoted)
    assert all(e["reason"] and e["score"] is not None for e in promoted)
    for e in (e for e in events if e["event"] == "evaluated"):
        assert e["rung"] == ["low-1ep", "low-3ep"].index(e["fidelity"])
    for d in (e for e in events if e["event"] == "decision"):
        assert d["final"] == (d["fidelity"] == "low-3ep")  # no --max-learner-epochs
        # like against like: the baseline's learners at the same rung
        base_rung = [e for e in events if e["event"] == "evaluated"
                     and e["proposal_id"] == d["baseline_id"] and e["fidelity"] == d["fidelity"]]
        assert base_rung
    top = [p["proposal_id"] for p in promoted]
    decided_top = [d["proposal_id"] for d in events if d["event"] == "decision"
                   and d["fidelity"] == "low-3ep"]
    assert sorted(decided_top) == sorted(top)
    accepted = [d for d in events if d["event"] == "decision" and d["accepted"] and d["final"]]
    assert state.baseline_id == (accepted[-1]["proposal_id"] if accepted else "baseline")
    # successive halving at η=2 (asynchronous): when promoted, a candidate was within the top
    # ⌊n/2⌋ of the n candidates decided at its rung so far, ranked on the logged score
    # (the fallback score is the rung's own E_ens while fewer than MIN_PAIRS (8) pairs exist)
    for n, p in enumerate(events):
        if p["event"] != "promoted" or not p["reason"].startswith("successive halving"):
            continue
        so_far = SearchState.from_events(events[:n])
        done = [c for c in so_far.candidates.values()
                if c.proposal_id != "baseline" and "low-1ep" in c.decisions]
        if "fewer than" in p["reason"]:
            ranked = sorted(done, key=lambda c: c.results["low-1ep"].stats.ens_error(50))
            assert p["proposal_id"] in [c.proposal_id for c in ranked[:len(done) // 2]]
        assert f"of {len(done)} at η=2" in p["reason"]
    spent = sum(e.get("learner_epochs", 0) for e in events if e["event"] in ("evaluated", "extended"))
    assert state.learner_epochs_spent == pytest.approx(spent) and spent > 0


def _halving_promotions(events: list[dict]):
    """Each successive-halving promotion with the candidates decided at the first rung before
    it and how many of them had already gone up."""
    for n, p in enumerate(events):
        if p["event"] == "promoted" and p["reason"].startswith("successive halving"):
            so_far = SearchState.from_events(events[:n])
            done = [c for c in so_far.candidates.values()
                    if c.proposal_id != "baseline" and "low-1ep" in c.decisions]
            yield p, len(done), sum(c.rung != "low-1ep" for c in done)


def test_capped_halving_passes_on_at_most_a_one_in_eta_share(tmp_path):
    """--halving capped: a successive-halving promotion happens only while fewer than ⌊n/η⌋ of
    the rung's n decided candidates have gone up (asynchronous halving has no such cap)."""
    runs = {h: run_dir_of(run_cli("agent.run", *PROGRESSIVE, "--halving", h, "--iterations", 4,
                                  "--out", tmp_path / h, "--seed", 4))
            for h in ("asynchronous", "capped")}
    over = [(n, up) for _, n, up in _halving_promotions(events_of(runs["asynchronous"]))
            if up + 1 > n // 2]
    assert over  # on this seed asynchronous halving promotes past the share (e.g. a 4th of 6)
    assert json.loads((runs["capped"] / "config.json").read_text())["config"]["halving"] == "capped"
    seen = 0
    for p, n, up in _halving_promotions(events_of(runs["capped"])):
        assert up + 1 <= n // 2, (p["proposal_id"], n, up)
        assert f"{up} of them already up (capped)" in p["reason"]
        seen += 1
    assert seen >= 1


def test_summary_table_reads_every_row_at_one_rung(progressive_run):
    """The terminal table has a row per (proposal, rung) evaluated, named `id @ rung`, so a
    candidate's top-rung E_ens sits beside that rung's gain and the baseline has a row per rung
    (before, one row per proposal mixed the baseline's first rung with a candidate's last)."""
    run_dir, proc = progressive_run
    events = events_of(run_dir)
    lines = proc.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "search finished" in line)
    rows = []  # at COLUMNS=120 a long cell wraps onto a line whose first cell is empty
    for line in (line for line in lines[start:] if line.startswith("│")):
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    evaluated = {(e["proposal_id"], e["fidelity"]) for e in events if e["event"] == "evaluated"}
    assert sorted(r[0] for r in rows) == sorted(f"{p} @ {f}" for p, f in evaluated)
    by_name = {r[0]: r for r in rows}
    for d in (e for e in events if e["event"] == "decision"):
        row = by_name[f"{d['proposal_id']} @ {d['fidelity']}"]
        assert row[6] == f"{d['gain']:+.4f} ± {d['gain_se_total']:.4f}"
    state = SearchState.from_events(events)
    starred = [r[0] for r in rows if "★" in r[7]]
    base = state.candidates[state.baseline_id]
    top = max(base.results, key=["low-1ep", "low-3ep"].index)
    assert starred == [f"{state.baseline_id} @ {top}"]


def test_live_line_shows_the_baseline_at_its_highest_rung(progressive_run):
    """The live display's baseline figure is its E_ens at the highest rung it was trained at,
    named, not its first rung's (which a top-rung candidate is never compared with)."""
    from agent.progress import _baseline_text

    run_dir, _ = progressive_run
    state = SearchState.from_events(events_of(run_dir))
    base = state.candidates[state.baseline_id]
    top = max(base.results, key=["low-1ep", "low-3ep"].index)
    expected = base.results[top].stats.ens_error(50)
    # the first baseline is named once ("baseline baseline:" before), a moved one by its id
    name = "baseline" if state.baseline_id == "baseline" else f"baseline {state.baseline_id}"
    assert _baseline_text(state, 50, ["low-1ep", "low-3ep"]) == (
        f"{name}: E_ens(50)={expected:.4f} at {top} "
        f"({len(base.results[top].learners)} learners)")
    assert " at " not in _baseline_text(state, 50, [top])  # one rung: nothing to name
    events = events_of(run_dir)
    cut = next(i for i, e in enumerate(events) if e["event"] == "decision")
    first = SearchState.from_events(events[:cut])
    assert first.baseline_id == "baseline"
    assert _baseline_text(first, 50, ["low-1ep", "low-3ep"]).startswith("baseline: E_ens(50)=")


def test_report_and_replay_per_rung(progressive_run):
    run_dir, _ = progressive_run
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Progressive fidelity" in report and (run_dir / "report" / "rungs.png").is_file()
    assert "Kendall" in report
    assert "fidelity schedule `low:1,low:3` (η=2)" in report.splitlines()[2]  # not `low`
    # the rung flow's outcomes partition what entered each rung, counted from the events
    from agent.report_rungs import rung_flow

    events = events_of(run_dir)
    flow = {f.rung: f for f in rung_flow(SearchState.from_events(events), ["low-1ep", "low-3ep"])}
    for rung, f in flow.items():
        entered = {e["proposal_id"] for e in events if e["event"] == "evaluated"
                   and e["fidelity"] == rung and e["proposal_id"] != "baseline"}
        up = {e["proposal_id"] for e in events if e["event"] == "promoted" and e["from"] == rung}
        final = {e["proposal_id"] for e in events if e["event"] == "decision"
                 and e["fidelity"] == rung and e["final"]}
        lost = {e["proposal_id"] for e in events if e["event"] == "decision" and e["fidelity"] == rung
                and not e["final"] and e["confident"] and e["verdict"] == "rejected"}
        waiting = entered - up - final - lost
        assert (f.entered, f.promoted, f.decided, f.stopped, f.waiting) == (
            len(entered), len(up), len(final), len(lost), len(waiting)), (rung, f)
        assert f"| {rung} | {f.entered} | {f.promoted} | {f.stopped} | {f.decided} | {f.waiting} |" \
            in report
    assert flow["low-3ep"].promoted == 0 and flow["low-3ep"].decided > 0
    # the decision plane draws a win below the top rung apart from an accept that moved the
    # baseline (it only let the candidate go up)
    from agent.report import _plane_label

    decisions = SearchState.from_events(events_of(run_dir)).decisions()
    top = next(d for d in decisions if d.final and d.accepted)
    lower = top.model_copy(update={"final": False, "fidelity": "low-1ep"})
    assert (_plane_label(top), _plane_label(lower)) == ("accepted", "ahead at a lower rung (not final)")
    assert all(_plane_label(d) == d.verdict for d in decisions if not d.accepted)
    promoted = [e for e in events_of(run_dir) if e["event"] == "promoted"]
    listed = report.split("Promotions:")[1].split("\n## ")[0]
    assert promoted and all(f"- {e['proposal_id']}: {e['from']} → {e['to']}" in listed
                            for e in promoted), listed
    # each promotion says whether its score is on the top rung's scale; before the predictor
    # has its pairs it is the lower rung's own E_ens, and the report's table says which
    assert all(e["fitted"] is ("fewer than" not in e["reason"]) for e in promoted)
    state = SearchState.from_events(events_of(run_dir))
    own = []
    for e in promoted:
        cand = state.candidates[e["proposal_id"]]
        if "low-3ep" in cand.results and cand.promotions[-1].to == "low-3ep":
            kind = "predicted top-rung E_ens" if e["fitted"] else "lower rung's own E_ens"
            measured = cand.results["low-3ep"].stats.ens_error(50)
            assert f"| {e['proposal_id']} | {e['score']:.4f} | {kind} | {measured:.4f} |" in report
            own += [(e["score"], measured)] if not e["fitted"] else []
    if len(own) >= 3:  # τ over the scores of one kind only
        tau = kendalltau(*zip(*own, strict=True)).statistic
        assert (f"Score (lower rung's own E_ens) against measured over the {len(own)} promoted "
                f"with it: Kendall τ = {tau:.2f}.") in report
    proc = run_cli("agent.replay", run_dir, "--json", "--confidence", 0)
    rows = [json.loads(line) for line in proc.stdout.splitlines()][:-1]
    assert {r["fidelity"] for r in rows} == {"low-1ep", "low-3ep"}
    logged_final = [r for r in rows if r["final"]]
    assert all(r["fidelity"] == "low-3ep" for r in logged_final)
    # with the run's own settings the replay repeats every look of every rung
    same = [json.loads(line) for line in run_cli("agent.replay", run_dir, "--json")
            .stdout.splitlines()][:-1]
    logged = [e for e in events_of(run_dir) if e["event"] == "decision"]
    assert len(same) == len(logged) > 0
    for r, d in zip(same, logged, strict=True):
        assert (r["proposal_id"], r["fidelity"], r["verdict"], r["learners"], r["learners_old"]) \
            == (d["proposal_id"], d["fidelity"], d["verdict"], d["learners"], d["learners_old"])
        assert abs(r["gain_se_total"] - d["gain_se_total"]) < 1e-9
    # ... and its table says so in the log's own words, a lower rung's "behind at low-1ep" too
    table = run_cli("agent.replay", run_dir, env={"COLUMNS": ""}).stdout.splitlines()
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table if line.startswith("│")]
    assert len(cells) == len(logged)
    assert all(row[3] == row[4] and row[-1] == "" for row in cells), cells
    assert any(row[3].endswith("at low-1ep") or " at low-1ep," in row[3] for row in cells), cells
    # each row names its rung, as the report does: a candidate decided at two rungs has two rows
    assert [row[0] for row in cells] == [f"{d['proposal_id']} @ {d['fidelity']}" for d in logged]


def test_sigkill_mid_rung_then_resume_evaluates_nothing_twice(tmp_path):
    run_dir = kill_when(tmp_path, [*PROGRESSIVE, "--iterations", 3, "--seed", 2],
                        '"event": "promoted"')
    before = events_of(run_dir)
    assert any(e["event"] == "promoted" for e in before)
    run_cli("agent.run", "--resume", run_dir)
    events = events_of(run_dir)
    trained = trained_seeds(events)
    assert len(trained) == len(set(trained))  # (hash, fidelity, seed) never trained twice
    keys = [(e["proposal_id"], e["fidelity"]) for e in events if e["event"] == "evaluated"]
    assert len(keys) == len(set(keys))
    promoted = [(e["proposal_id"], e["to"]) for e in events if e["event"] == "promoted"]
    assert len(promoted) == len(set(promoted))
    assert events[-1]["event"] == "run_finished"


def test_a_resumed_filter_relearns_first_rung_results_as_trained(progressive_run):
    """The proposal filter learns each first-rung result as it is trained (2 learners, the
    first rung's scale). A resumed run relearns it from the state: that must be the same figure,
    not the candidate's current rung (a promoted one's is the top rung's, as it was before)."""
    run_dir, _ = progressive_run
    events = events_of(run_dir)
    state = SearchState.from_events(events)
    trained = {e["proposal_id"]: e for e in events if e["event"] == "evaluated"
               and e["rung"] == 0 and not e.get("cached") and "E" in e}
    assert {p for p, c in state.candidates.items() if c.screened is not None} == set(trained)
    promoted = {e["proposal_id"] for e in events if e["event"] == "promoted"}
    assert promoted
    for pid, e in trained.items():
        s = state.candidates[pid].screened
        assert (s.E, s.sigma2, s.rho) == (e["E"], e["sigma2"], e["rho"])
    for pid in promoted:
        assert state.candidates[pid].stats != state.candidates[pid].screened


def test_validation_and_best_spec_read_the_baseline_at_its_top_rung(tmp_path):
    """--validate trains the real M-ensemble at the top rung, so its prediction is the
    baseline's top-rung E_ens (it used to be the first rung's, never compared with anything),
    and the event names that rung; best_spec.json reports the same rung's figures."""
    from agent.report import write_report

    proc = run_cli("agent.run", *PROGRESSIVE, "--iterations", 1, "--ensemble-size", 3,
                   "--validate", "--out", tmp_path, "--seed", 1)
    run_dir = run_dir_of(proc)
    events = events_of(run_dir)
    state = SearchState.from_events(events)
    base = state.candidates["baseline"]
    assert set(base.results) == {"low-1ep", "low-3ep"} and base.rung == "low-1ep"
    assert base.highest_rung == "low-3ep"
    v = next(e for e in events if e["event"] == "validated" and e["proposal_id"] == "baseline")
    top = base.results["low-3ep"].stats.ens_error(3)
    assert v["fidelity"] == "low-3ep" and v["predicted_ens_brier"] == pytest.approx(top, rel=1e-12)
    assert abs(base.results["low-1ep"].stats.ens_error(3) - top) > 1e-6  # the two rungs differ
    best = json.loads((run_dir / "best_spec.json").read_text())
    final = state.baseline.highest_result
    assert best["fidelity"] == state.baseline.highest_rung == "low-3ep"
    assert (best["E"], best["learners"]) == (final.E, len(final.learners))
    assert "| baseline | 3 | low-3ep |" in write_report(run_dir).read_text()


def test_conservative_rule_stops_new_first_rung_work(tmp_path):
    """A learner-epoch budget that the baseline and a few candidates use up: the run ends with
    max_learner_epochs, no first-rung evaluation starts once under 20 % is left, and the
    budget is never exceeded (evaluations, promotions and extra learners all check it)."""
    proc = run_cli("agent.run", *PROGRESSIVE, "--iterations", 8, "--max-learner-epochs", 12,
                   "--out", tmp_path, "--seed", 1)
    events = events_of(run_dir_of(proc))
    assert events[-1]["reason"] == "max_learner_epochs"
    spent = 0.0
    for e in events:
        if e["event"] == "evaluated" and e["fidelity"] == "low-1ep" and e["proposal_id"] != "baseline":
            assert 12 - spent >= 0.2 * 12  # started only with 20 % or more left
        if e["event"] in ("evaluated", "extended"):
            spent += e.get("learner_epochs", 0)
    assert spent <= 12 + 1e-9
    # the report says what was left and why it stayed unspent (low:3 at width 0.5, 2 learners: 3)
    report = (run_dir_of(proc) / "report" / "report.md").read_text()
    assert (f"Learner-epochs: {spent:g} of 12 spent; the run ended with {12 - spent:g} left: no new "
            "first-rung work starts under 20% (2.4), and one look at low-3ep with 2 learners "
            "costs 3.") in report


def test_one_rung_spends_its_whole_learner_epoch_budget(tmp_path):
    """The conservative rule (no new first-rung work under 20 % of the budget left) is for
    schedules with a rung to promote to; a one-rung run used to stop at 80 % of its budget.
    low:1 at width 0.5: a first-rung evaluation (2 learners) costs 1 learner-epoch, so the run
    stops only once less than 1 of its 16 is left."""
    proc = run_cli("agent.run", *TINY, "--fidelity-schedule", "low:1", "--learners", "2:3",
                   "--iterations", 60, "--max-learner-epochs", 16, "--out", tmp_path, "--seed", 1)
    events = events_of(run_dir_of(proc))
    assert events[-1]["reason"] == "max_learner_epochs"
    spent = sum(e.get("learner_epochs", 0) for e in events if e["event"] in ("evaluated", "extended"))
    assert 15 < spent <= 16, spent
    assert not [e for e in events if e["event"] == "promoted"]


def test_near_the_end_of_the_wall_budget_waiting_candidates_go_up_one_at_a_time(tmp_path, monkeypatch):
    """Wall-clock conservative rule. A fake clock: each logged event takes 2 s and each proposer
    call 50 s of a 300 s budget. The rule holds under 60 s left, and before a call once the
    call would end there (under 110 s left). η = 16 keeps successive halving from promoting
    anything among the few candidates, so every promotion here is the rule's: none before the
    rule holds, at least one *before* a call that would have left too little time to decide it,
    and each evaluated and decided at the top rung before the next one goes up and before the
    next proposer call."""
    from agent import run as run_module
    from agent.proposers.builtin import BuiltinProposer

    calls = [0]
    propose = BuiltinProposer.propose

    def slow_propose(self, context, k):
        out = propose(self, context, k)
        calls[0] += 1
        return out

    monkeypatch.setattr(BuiltinProposer, "propose", slow_propose)
    monkeypatch.setattr(SearchState, "wall_s", lambda self, now: 2.0 * self.events_applied
                        + 50.0 * calls[0])
    argv = [*map(str, TINY), "--max-wall-seconds", "300", "--fidelity-schedule", "low:1,low:3",
            "--eta", "16", "--learners", "2:3", "--iterations", "40", "--out", str(tmp_path),
            "--seed", "1"]
    assert run_module.main(argv) == 0
    events = events_of(next(tmp_path.iterdir()))
    assert events[-1]["reason"] == "max_wall_seconds"

    def clock(n: int) -> float:  # the fake clock when event n was logged
        calls_before = {e["call_id"] for e in events[:n] if e["event"] == "proposal"
                        and e["proposal_id"] != "baseline"}
        return 2.0 * n + 50.0 * len(calls_before)

    promoted = [(n, e) for n, e in enumerate(events) if e["event"] == "promoted"]
    assert len(promoted) >= 2, "waiting candidates did not go up near the end of the wall budget"
    for k, (n, p) in enumerate(promoted):
        assert p["reason"].startswith("conservative: under 20 % of the wall budget left"), p["reason"]
        assert 300 - clock(n) < 110, (n, clock(n))
        decided = [m for m, e in enumerate(events) if e["event"] == "decision"
                   and e["proposal_id"] == p["proposal_id"] and e["fidelity"] == "low-3ep"]
        if k + 1 < len(promoted):  # decided at the top rung before the next promotion
            assert decided and decided[0] < promoted[k + 1][0], (p, decided)
        calls_after = [m for m, e in enumerate(events[n:], n) if e["event"] == "proposal"]
        if calls_after:  # ... and before the next proposer call
            assert decided and decided[0] < calls_after[0], (p, decided)
    assert any(300 - clock(n) >= 60 for n, _ in promoted), "the rule waited for the call"
