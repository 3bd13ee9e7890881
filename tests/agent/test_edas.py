"""End-to-end runs of ``python -m agent.edas`` (strategies 1–3) and ``python -m agent.run --space
ctr`` on tiny synthetic CTR settings, and their one-line refusals of bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.trajectory import read_events

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "evaluators" / "data" / "criteo_tiny.txt"
TINY = ["--n-samples", "200", "--ensemble-size", "2"]


def run(module: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_dir_of(proc) -> Path:
    return Path(re.search(r"run folder: (\S+)", proc.stderr).group(1))


@pytest.mark.slow
def test_closed_form_end_to_end(tmp_path):
    proc = run("agent.edas", "--strategy", "closed-form", *TINY, "--rates", "0.5,1.0",
               "--check-grid", "0.5,1.0", "--check-repeats", "2", "--test-rows", "400",
               "--out", tmp_path)
    run_dir = run_dir_of(proc)
    result = json.loads((run_dir / "result.json").read_text())
    assert 0 < result["r_star"] <= 1 and len(result["curve"]) == 39
    assert result["trainings"] == 4 and result["grid_trainings"] == 4
    events = [e["event"] for e in read_events(run_dir).events]
    assert events.count("dual_evaluated") == 2 and "optimum" in events
    duals = [e for e in read_events(run_dir).events if e["event"] == "dual_evaluated"]
    assert [d["seeds"] for d in duals] == [[0, 1], [2, 3]]  # a fresh pair per rate
    assert events.count("ensemble_checked") == len({0.5, 1.0, result["r_star"]})
    # two disjoint 2-ensembles per checked rate, averaged, with their spread
    assert result["check_trainings"] == 2 * 2 * len(result["checks"])
    assert all(c["test_true_ens_sd"] >= 0 and c["true_ens_sd"] >= 0 for c in result["checks"])
    assert 1 <= result["verdict_test"]["r_star_rank"] <= 3
    for split in ("val", "test"):  # each 2-ensemble judges the other's pick and r*
        held = result[f"held_out_{split}"]  # on a 2-point grid the best two are the whole grid
        assert held["judges"] == 2 and held["grid_hit"] == held["closed_form_hit"] == 1.0
        assert held["grid_regret"] >= 0  # a pick on the grid cannot beat the judge's best
    assert all(len(c["test_true_ens_each"]) == 2 for c in result["checks"])
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["test_rows"] == 400
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert (run_dir / "report" / "closed_form_curve.png").stat().st_size > 10_000


@pytest.mark.slow
def test_differentiable_end_to_end_logs_every_step(tmp_path):
    proc = run("agent.edas", "--strategy", "differentiable", *TINY, "--pool", "3", "--steps", "5",
               "--final-learners", "3", "--check", "--out", tmp_path)
    run_dir = run_dir_of(proc)
    events = read_events(run_dir).events
    steps = [e for e in events if e["event"] == "step"]
    assert [s["iteration"] for s in steps] == list(range(6))  # step 0 is π_old
    assert all(len(s["pi"]) == 39 and "constraint" in s and "multiplier" in s for s in steps)
    decision = next(e for e in events if e["event"] == "decision")
    assert decision["M"] == 2 and isinstance(decision["accepted"], bool)
    # the final check: 3 learners a side on common seeds, a seed-aware SE, the 0.95 bound
    assert (decision["learners"], decision["learners_old"]) == (3, 3)
    assert decision["gain_se_seed"] > 0 and decision["confidence"] == 0.95
    assert decision["confident"] == (abs(decision["gain"]) > decision["z"] * decision["gain_se_total"])
    assert decision["accepted"] == (decision["confident"] and decision["gain"] > 0)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["surrogate_constraint_final"] <= 0 and result["trainings"] == 2 + 3 + 3 + 1
    assert set(result["checks"]) == {"old", "final"}
    assert result["returned"] == ("final" if decision["accepted"] else "baseline")
    kept = result["checks"]["final" if decision["accepted"] else "old"]
    assert result["returned_test_true_ens"] == kept["test_true_ens"]
    assert (run_dir / "report" / "constraint_path.png").is_file()


@pytest.mark.slow
def test_search_loop_runs_on_the_ctr_space(tmp_path):
    proc = run("agent.run", "--space", "ctr", "--dataset", "synthetic-ctr", "--model", "builtin",
               "--n-samples", "200", "--iterations", "1", "--proposals", "2", "--keep", "1",
               "--predictor", "none", "--ensemble-size", "8", "--out", tmp_path)
    events = read_events(run_dir_of(proc)).events
    assert any(e["event"] == "decision" for e in events)
    assert events[-1]["event"] == "run_finished"


@pytest.mark.slow
def test_llm_strategy_is_the_search_loop(tmp_path):
    proc = run("agent.edas", "--strategy", "llm", "--model", "builtin", "--iterations", "1",
               *TINY, "--out", tmp_path)
    config = json.loads((run_dir_of(proc) / "config.json").read_text())["config"]
    assert config["space"] == "ctr" and config["dataset"] == "synthetic-ctr"


@pytest.mark.parametrize("args, needle", [
    (["--rates", "0,2"], "rates must lie in (0, 1]"),
    (["--rates", "0.5"], "--rates needs 2 to 40 rates, >= 2 of them distinct"),
    (["--ensemble-size", "1"], "--ensemble-size must be >= 2"),
    (["--check-repeats", "0"], "--check-repeats must be in 1..100, got 0"),
    (["--final-learners", "1"], "need 2 <= --final-learners <= 50"),
    (["--test-rows", "0"], "test_rows must be in 1..1000000, got 0"),
    (["--ensemble-size", "200", "--check-repeats", "5"], "must be <= 900, got 200 × 5"),
    (["--baseline", "/nonexistent/spec.json"], "--baseline /nonexistent/spec.json: cannot read it"),
    (["--baseline", str(FIXTURE)], "not a valid ctr spec"),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, needle):
    proc = run("agent.edas", "--strategy", "closed-form", *args, "--out", tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


@pytest.mark.parametrize("module", ["agent.edas", "agent.run"])
def test_a_bad_criteo_file_is_one_line_naming_file_and_line(tmp_path, module):
    bad = tmp_path / "train.txt"
    rows = FIXTURE.read_text().splitlines()
    bad.write_text("\n".join(rows[:4] + ["1\tseven" + "\t" * 38] + rows[4:]) + "\n")
    extra = (["--strategy", "closed-form"] if module == "agent.edas"
             else ["--space", "ctr", "--model", "builtin"])
    proc = run(module, *extra, "--dataset", "criteo", "--data-dir", tmp_path, "--out", tmp_path / "runs",
               check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{bad}:5: integer field I1 is not an integer: 'seven'" in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before any run folder


def test_grid_verdict_ranks_r_star_among_the_grid_points():
    from agent.edas_strategies import grid_verdict

    checks = [{"rate": 0.5, "e": 0.30}, {"rate": 0.7, "e": 0.20}, {"rate": 0.74, "e": 0.21},
              {"rate": 0.9, "e": 0.25}, {"rate": 1.0, "e": 0.22}]
    v = grid_verdict(0.74, checks, [0.5, 0.7, 0.9, 1.0], "e")
    # best two by error: 0.7 (0.20) and 1.0 (0.22); the grid point nearest 0.74 is 0.7
    assert v["best_two"] == [0.7, 1.0] and v["nearest_grid_rate"] == 0.7 and v["within_best_two"]
    assert v["r_star_rank"] == 2  # only 0.7 is better than r*'s 0.21
    far = grid_verdict(0.9, checks, [0.5, 0.7, 0.9, 1.0], "e")
    assert not far["within_best_two"] and far["r_star_rank"] == 3


def test_held_out_verdict_judges_each_ensemble_on_the_others_picks():
    from agent.edas_strategies import held_out_verdict

    grid = [0.5, 0.7, 1.0]
    # three true ensembles per rate; r* = 0.74 (off the grid) has its own three
    checks = [{"rate": 0.5, "e_each": [0.21, 0.30, 0.30]},
              {"rate": 0.7, "e_each": [0.20, 0.26, 0.26]},
              {"rate": 0.74, "e_each": [0.22, 0.21, 0.23]},
              {"rate": 1.0, "e_each": [0.25, 0.22, 0.22]}]
    v = held_out_verdict(0.74, checks, grid, "e")
    # judge 0: best two 0.7 (0.20), 0.5 (0.21); the others' means pick 1.0 (0.22 against 0.26
    #          and 0.30): a miss, regret 0.25 − 0.20; r*'s nearest grid point 0.7: a hit, 0.02
    # judge 1: best two 1.0 (0.22), 0.7 (0.26); the others pick 0.7 (0.23 against 0.235 and
    #          0.255): a hit, regret 0.04; r* (0.21) beats the best grid point: a hit, −0.01
    # judge 2: best two 1.0, 0.7; the others pick 0.7 (0.23 < 0.235): a hit, 0.04; r*: 0.01
    assert v["judges"] == 3
    assert v["grid_hit"] == pytest.approx(2 / 3) and v["closed_form_hit"] == pytest.approx(1.0)
    assert v["grid_regret"] == pytest.approx((0.05 + 0.04 + 0.04) / 3, abs=1e-12)
    assert v["closed_form_regret"] == pytest.approx((0.02 - 0.01 + 0.01) / 3, abs=1e-12)
    with pytest.raises(ValueError, match=">= 2 true ensembles"):
        held_out_verdict(0.74, [{"rate": r, "e_each": [0.2]} for r in (0.5, 0.7, 0.74, 1.0)],
                         grid, "e")
