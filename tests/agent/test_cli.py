"""End-to-end runs of the real entry points on tiny settings (digits, a few hundred samples)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.state import SearchState
from evaluators.stats import gain_estimate, residual_stats
from tests.agent.runcli import (
    FAKE_KEY,
    ROOT,
    TINY,
    events_of,
    kill_when,
    run_cli,
    run_dir_of,
    trained_seeds,
)


def test_run_writes_the_contract(tiny_run):
    run_dir, proc = tiny_run
    events = events_of(run_dir)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    for e in events:
        assert {"event", "time", "iteration"} <= set(e)
    base = [e for e in events if e.get("proposal_id") == "baseline"]
    assert base[0]["event"] == "proposal" and base[0]["iteration"] == 0
    for e in (e for e in events if e["event"] == "evaluated" and not e.get("failure")):
        assert (run_dir / e["npz"]).is_file() and not Path(e["npz"]).is_absolute()
        for key in ("E", "sigma2", "rho", "learners", "seeds", "fidelity", "wall_s", "device_s"):
            assert key in e
    kept = {e["proposal_id"] for e in events if e["event"] == "filtered" and e["kept"]}
    trained = {e["proposal_id"] for e in events if e["event"] == "evaluated"} - {"baseline"}
    assert trained == kept and len(kept) == 4  # k=2 per iteration, 2 iterations
    best = json.loads((run_dir / "best_spec.json").read_text())
    assert 0 <= best["test_acc"] <= 1 and best["spec_hash"] == events[-1]["best_spec_hash"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["ensemble_size"] == 50 and "torch" in config["versions"]
    assert (run_dir / "report" / "report.md").is_file()
    assert (run_dir / "report" / "decision_plane.png").stat().st_size > 1000
    assert "search finished" in proc.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def _learners_at(run_dir, events, pid, L):
    """The first L learners' probabilities of ``pid``'s evaluation (its last npz holds all)."""
    npz = [e["npz"] for e in events if e.get("proposal_id") == pid
           and e["event"] in ("evaluated", "extended") and not e.get("failure")][-1]
    saved = np.load(run_dir / npz)
    return saved["probs"][:L], saved["labels"]


def test_every_logged_decision_agrees_with_the_rule(tiny_run):
    """Each decision's E, σ², ρ are those of the learners it names, recomputed from the npz,
    and its verdict is the sequential rule's: confident iff |gain| > z·SE_total, accepted iff
    confident with a positive gain, undecided only at MAX learners or by the futility stop."""
    run_dir, _ = tiny_run
    events = events_of(run_dir)
    decisions = [e for e in events if e["event"] == "decision"]
    assert decisions
    for d in decisions:
        p_new, labels = _learners_at(run_dir, events, d["proposal_id"], d["learners"])
        p_old, _ = _learners_at(run_dir, events, d["baseline_id"], d["learners_old"])
        assert len(p_new) == d["learners"] and len(p_old) == d["learners_old"]
        new, old = residual_stats(p_new, labels), residual_stats(p_old, labels)
        assert (d["E"], d["sigma2"], d["rho"]) == pytest.approx((new.E, new.sigma2, new.rho))
        assert d["E_old"] == pytest.approx(old.E)
        M = d["M"]
        e_new = new.E - new.sigma2 * (1 - new.rho) * (M - 1) / M
        e_old = old.E - old.sigma2 * (1 - old.rho) * (M - 1) / M
        assert d["predicted_ens_error"] == pytest.approx(e_new) and d["gain"] == pytest.approx(e_old - e_new)
        assert d["confident"] == (abs(d["gain"]) > d["z"] * d["gain_se_total"])
        assert d["accepted"] == (d["confident"] and e_new < e_old)
        assert (d["verdict"] == "undecided") == (not d["confident"])
        if not d["confident"]:  # undecided only with MAX learners (--learners 2:4), or
            # before them when a confident call at 4 had a chance under --futility (0.05)
            assert d["learners"] == 4 or (d["futile"] and d["conditional_power"] < 0.05)


def test_logged_gain_and_se_match_a_recomputation_from_npz(tiny_run):
    """The gain, its sample and seed parts, recomputed from the saved probabilities and the
    pool the log held just before the decision."""
    run_dir, _ = tiny_run
    events = events_of(run_dir)
    for n, d in enumerate(events):
        if d["event"] != "decision":
            continue
        pool = SearchState.from_events(events[:n]).seed_pool(d["fidelity"])
        assert pool is not None  # the baseline's four learners seed it
        p_new, labels = _learners_at(run_dir, events[:n], d["proposal_id"], d["learners"])
        p_old, _ = _learners_at(run_dir, events[:n], d["baseline_id"], d["learners_old"])
        est = gain_estimate(p_new, p_old, labels, d["M"], pool=pool)
        assert est.gain == pytest.approx(d["gain"], rel=1e-9)
        assert est.se_sample == pytest.approx(d["gain_se_sample"], rel=1e-9)
        assert est.se_seed == pytest.approx(d["gain_se_seed"], rel=1e-9)
        assert d["gain_se_total"] == pytest.approx(np.hypot(est.se_sample, est.se_seed))


def _point_estimate_walk(run_dir, M):
    """The point-estimate rule by hand, candidates on their first two learners, the first
    baseline on its first four (as replay --learners 2:2 --confidence 0 does)."""
    events = events_of(run_dir)
    base, out = "baseline", []
    for d in (e for e in events if e["event"] == "decision"):
        p_new, labels = _learners_at(run_dir, events, d["proposal_id"], 2)
        p_old, _ = _learners_at(run_dir, events, base, 4 if base == "baseline" else 2)
        ens = [residual_stats(p, labels).ens_error(M) for p in (p_new, p_old)]
        out.append((d["proposal_id"], base, ens[0] < ens[1]))
        if ens[0] < ens[1]:
            base = d["proposal_id"]
    return out


def test_replay_redecides_from_logged_learners(tiny_run):
    run_dir, _ = tiny_run
    for M in (50, 2):
        proc = run_cli("agent.replay", run_dir, "--ensemble-size", M, "--json",
                       "--confidence", 0, "--learners", "2:2")
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        decisions = [(r["proposal_id"], r["baseline_id"], r["accepted"]) for r in rows[:-1]]
        assert decisions == _point_estimate_walk(run_dir, M)
    proc = run_cli("agent.replay", run_dir, "--json", "--learners", "2:16", "--confidence", 0.999)
    rows = [json.loads(line) for line in proc.stdout.splitlines()][:-1]
    logged = {e["proposal_id"]: e for e in events_of(run_dir) if e["event"] == "decision"}
    for r in rows:  # asking more than the log holds is said, never invented
        assert r["needs_more_learners"] == (not r["confident"] and not r["futile"])
        assert r["learners"] <= max(logged[r["proposal_id"]]["learners"], 4)
    proc = run_cli("agent.replay", run_dir, "--json", "--learners", "2:2", "--confidence", 0.999,
                   "--reject-confidence", 0)
    rows = [json.loads(line) for line in proc.stdout.splitlines()][:-1]
    assert rows and all(r["z_reject"] == 0 and r["z"] > 3 for r in rows)
    for r in rows:  # rejections on the point estimate, acceptances only beyond z = 3.29 SE
        if r["gain"] < 0:
            assert r["confident"] and r["verdict"] == "rejected"
        else:
            assert r["confident"] == (r["gain"] > r["z"] * r["gain_se_total"])
    bad = run_cli("agent.replay", run_dir, "--reject-confidence", 1.5, check=False)
    assert bad.returncode == 2 and "--reject-confidence 1.5: expected a level in [0, 1)" in bad.stderr
    bad = run_cli("agent.replay", run_dir, "--futility", -0.1, check=False)
    assert bad.returncode == 2 and "--futility -0.1: expected a chance in [0, 1)" in bad.stderr
    table = run_cli("agent.replay", run_dir, "--ensemble-size", 2, "--confidence", 0)
    assert "decisions differ" in table.stdout
    bad = run_cli("agent.replay", run_dir, "--learners", "9:3", check=False)
    assert bad.returncode == 2 and "'9:3'" in bad.stderr


def test_same_seed_gives_the_same_trajectory(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    proc = run_cli("agent.run", *TINY, "--iterations", 1, "--out", tmp_path, "--seed", 3)
    first = events_of(run_dir)
    second = events_of(run_dir_of(proc))
    volatile = {"time", "wall_s", "device_s", "config", "from_event"}

    def strip(e):
        return {k: v for k, v in e.items() if k not in volatile}

    n = [e["event"] for e in second].index("run_finished")
    comparable = [strip(e) for e in second[:n] if e["iteration"] <= 1]
    assert comparable == [strip(e) for e in first if e["iteration"] <= 1
                          and e["event"] not in ("run_finished", "validated")][:len(comparable)]
    assert len(comparable) > 5


def test_sigkill_then_resume_finishes_without_duplicate_evaluations(tmp_path):
    run_dir = kill_when(tmp_path, [*TINY, "--iterations", 3, "--seed", 5],
                        lambda events: sum(e["event"] == "evaluated" for e in events) >= 2,
                        timeout=240)
    before = events_of(run_dir)
    assert before[-1]["event"] != "run_finished"
    report = Path(run_cli("agent.report", run_dir).stdout.strip()).read_text()
    assert f"**not finished**: the log ends in iteration {max(e['iteration'] for e in before)} " \
        f"without `run_finished`" in report and f"--resume {run_dir}` continues it" in report
    with open(run_dir / "trajectory.jsonl", "a") as f:
        f.write('{"event": "filtered", "ti')  # a torn last line, as a crash mid-write leaves
    run_cli("agent.run", "--resume", run_dir)
    events = events_of(run_dir)
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["truncated_line"].startswith('{"event": "filtered"')
    evaluated = [e["proposal_id"] for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == len(set(evaluated))
    assert events[-1]["event"] == "run_finished" and events[-1]["iterations"] == 3
    assert len([e for e in events if e["event"] == "decision"]) == 6
    assert "not finished" not in Path(run_cli("agent.report", run_dir).stdout.strip()).read_text()


def test_sigkill_while_adding_learners_then_resume_retrains_nothing_logged(tmp_path):
    run_dir = kill_when(tmp_path, [*TINY, "--iterations", 2, "--seed", 6, "--learners", "2:5",
                                   "--confidence", "0.999", "--futility", "0"], '"event": "extended"')
    before = events_of(run_dir)
    assert any(e["event"] == "extended" for e in before) and before[-1]["event"] != "run_finished"
    run_cli("agent.run", "--resume", run_dir)
    events = events_of(run_dir)
    trained = trained_seeds(events)
    assert len(trained) == len(set(trained))  # no learner trained twice
    assert set(trained_seeds(before)) <= set(trained)
    assert events[-1]["event"] == "run_finished"
    assert len([e for e in events if e["event"] == "decision"]) == 4
    for d in (e for e in events if e["event"] == "decision"):
        assert d["learners"] == 5 or d["confident"]


def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path):
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text('{"edge_1_0": "conv_9x9"}')
    blocked = tmp_path / "file"
    blocked.write_text("x")
    (tmp_path / "binary.json").write_bytes(b"\x8e\x00\xff")
    (tmp_path / "huge.json").write_text('{"edge_1_0": "' + "a" * 200_000 + '"}')  # refused unread
    cases = [
        (["--space", "transformers"], "unknown space"),
        (["--dataset", "imagenet"], "unknown dataset"),
        (["--baseline", tmp_path / "missing.json"], "cannot read"),
        (["--baseline", bad_spec], "edge_1_0"),
        (["--baseline", tmp_path / "binary.json"], "binary.json: not UTF-8 text (invalid start byte at byte"),
        (["--baseline", tmp_path / "huge.json"], "huge.json: 200,016 bytes; a spec file has at most 200,000"),
        (["--out", blocked / "runs"], "--out"),
        (["--resume", tmp_path], "not a resumable run"),
        (["--keep", "9", "--proposals", "2"], "--keep"),
        (["--reject-confidence", "2"], "--reject-confidence 2.0: Input should be less than 1"),
        (["--batch-size", "0"], "--batch-size 0: Input should be greater than or equal to 1"),
        (["--prompt", tmp_path / "missing.j2"], "no such file or folder"),  # even with builtin
        (["--ray-address", "10.0.0.5:6379"],  # would be ignored: the run trains locally
         "--ray-address '10.0.0.5:6379': needs --executor ray (this run trains locally)"),
    ]
    for extra, needle in cases:
        proc = run_cli("agent.run", "--model", "builtin", "--out", tmp_path / "runs", *extra,
                       check=False, timeout=120)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert needle in proc.stderr and lines[-1].startswith("error:"), (extra, proc.stderr)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_ray_setting_on_resume_of_a_local_run_is_refused_and_the_log_is_untouched(tiny_run):
    run_dir, _ = tiny_run
    before = (run_dir / "trajectory.jsonl").read_bytes()
    proc = run_cli("agent.run", "--resume", run_dir, "--max-concurrent", "2", check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("error: --max-concurrent 2: needs --executor ray "
                                            "(this run trains locally)")
    assert (run_dir / "trajectory.jsonl").read_bytes() == before


def test_resuming_a_ray_run_locally_drops_its_ray_settings(tmp_path):
    from agent.cli import build_parser
    from agent.config import RunConfig
    from agent.resume import _load, explicit_flags

    stored = RunConfig(executor="ray", ray_address="10.0.0.5:6379", max_concurrent=4)
    (tmp_path / "config.json").write_text(json.dumps({"config": stored.model_dump()}))
    (tmp_path / "trajectory.jsonl").write_text("")
    args, given = explicit_flags(build_parser(), ["--resume", str(tmp_path), "--executor", "local"])
    config, _, _, settings = _load(tmp_path, args, given)
    assert config.executor == "local" and config.ray_address is None and config.max_concurrent is None
    assert settings == {"executor": "local", "ray_address": None, "gpus_per_learner": None,
                        "max_concurrent": None}


def test_a_bad_budget_on_resume_is_refused_and_the_log_is_untouched(tiny_run):
    run_dir, _ = tiny_run
    before = (run_dir / "trajectory.jsonl").read_bytes()
    proc = run_cli("agent.run", "--resume", run_dir, "--max-wall-seconds", "-3", check=False)
    assert proc.returncode == 2 and "--max-wall-seconds" in proc.stderr.splitlines()[-1]
    assert (run_dir / "trajectory.jsonl").read_bytes() == before


def test_predictor_filters_before_training_and_only_kept_proposals_train(tmp_path):
    args = [a for a in TINY if a not in ("--predictor", "none")]
    proc = run_cli("agent.run", *args, "--predictor", "gnn-ensemble", "--predictor-min-labels", "2",
                   "--zero-cost", "synflow", "--iterations", 2, "--out", tmp_path, "--seed", 1)
    events = events_of(run_dir_of(proc))
    filtered = [e for e in events if e["event"] == "filtered"]
    scored = [e for e in filtered if e["score"] is not None]
    assert scored and all(e["predicted_std"] is not None and "UCB" in e["note"] for e in scored)
    assert all("SynFlow" in e["note"] for e in scored)
    assert any("warming up" in e["note"] for e in filtered)
    kept = {e["proposal_id"] for e in filtered if e["kept"]}
    trained = {e["proposal_id"] for e in events if e["event"] == "evaluated"} - {"baseline"}
    assert trained == kept
    for it in (1, 2):
        assert sum(1 for e in filtered if e["kept"] and e["iteration"] == it) == 2


def test_validate_logs_true_vs_predicted_ensemble_error(tmp_path):
    proc = run_cli("agent.run", *TINY, "--iterations", 1, "--ensemble-size", 3, "--validate",
                   "--out", tmp_path, "--seed", 2)
    run_dir = run_dir_of(proc)
    events = events_of(run_dir)
    validated = [e for e in events if e["event"] == "validated"]
    assert 1 <= len(validated) <= 2 and validated[0]["proposal_id"] == "baseline"
    base = next(e for e in events if e["event"] == "evaluated" and e["proposal_id"] == "baseline")
    v = validated[0]
    assert v["M"] == 3 and v["spec_hash"] == base["spec_hash"]
    assert v["predicted_ens_brier"] == pytest.approx(
        base["E"] - base["sigma2"] * (1 - base["rho"]) * 2 / 3)
    # the real 3-ensemble's error is predicted within 20 % (tiny digits runs, 4 learners)
    assert abs(v["predicted_ens_brier"] - v["true_ens_brier"]) <= 0.2 * v["true_ens_brier"]
    assert abs(v["test_predicted_ens_brier"] - v["test_true_ens_brier"]) <= 0.2 * v["test_true_ens_brier"]
    assert (run_dir / "report" / "validation.png").is_file()


def test_sigint_stops_cleanly_and_the_run_resumes(tmp_path):
    args = [sys.executable, "-m", "agent.run", *TINY, "--iterations", 3, "--out", tmp_path, "--seed", 4]
    proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        dirs = list(tmp_path.iterdir())
        if dirs and (dirs[0] / "trajectory.jsonl").exists() and \
                '"event": "decision"' in (dirs[0] / "trajectory.jsonl").read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    run_dir = list(tmp_path.iterdir())[0]
    events = events_of(run_dir)
    assert events[-1]["event"] == "run_finished" and events[-1]["reason"] == "interrupted"
    assert f"interrupted: python -m agent.run --resume {run_dir} continues it" in err.splitlines()
    run_cli("agent.run", "--resume", run_dir)
    events = events_of(run_dir)
    assert events[-1]["reason"] == "iterations" and events[-1]["iterations"] == 3
    evaluated = [e["proposal_id"] for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == len(set(evaluated))


def test_failed_baseline_ends_the_run_with_its_reason(tmp_path):
    proc = run_cli("agent.run", *TINY, "--iterations", 1, "--eval-time-limit", "0.001",
                   "--out", tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    events = events_of(run_dir_of(proc))
    failed = [e for e in events if e["event"] == "evaluated"]
    assert len(failed) == 1 and failed[0]["failure"]["kind"] == "timeout"
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["reason"].startswith("baseline_failed: timeout")
    assert not any(e["event"] == "proposal" and e["iteration"] > 0 for e in events)


def test_evaluation_cut_by_the_wall_budget_stays_in_flight_and_resumes(tmp_path):
    cut = ["--model", "builtin", "--dataset", "mnist1d", "--n-samples", "2000", "--predictor",
           "none", "--iterations", "0", "--out", tmp_path]
    proc = run_cli("agent.run", *cut, "--max-wall-seconds", "0.5")
    run_dir = run_dir_of(proc)
    events = events_of(run_dir)
    assert events[-1]["reason"] == "max_wall_seconds"
    assert not [e for e in events if e["event"] == "evaluated"]  # not logged as a failure
    run_cli("agent.run", "--resume", run_dir, "--max-wall-seconds", "1200")
    events = events_of(run_dir)
    evaluated = [e for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == 1 and not evaluated[0].get("failure")
    assert events[-1]["reason"] == "iterations"


def test_an_unknown_predictor_weighting_is_one_line_that_quotes_it(tmp_path):
    proc = run_cli("agent.run", "--model", "builtin", "--out", tmp_path / "runs",
                   "--predictor-weights", "median", check=False, timeout=120)
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert proc.returncode == 2 and "--predictor-weights" in last and "'median'" in last
    assert not (tmp_path / "runs").exists()


def test_help_gives_each_default_once_and_no_empty_ones():
    from agent.cli import build_parser

    text = " ".join(build_parser().format_help().split())  # argparse wraps lines
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "schedule low:2,low) --fidelity-schedule" in text  # its own default note, nothing appended
    assert "--keep KEEP k proposals trained per iteration (default: 2)" in text
