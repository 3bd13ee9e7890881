"""benchmarks/progressive_nb201.py, run as a user runs it, on the committed NB201 excerpt."""

from __future__ import annotations

import json
import subprocess

from tests.benchmarks.runscript import ROOT, run_script

TABLE = ["--table", str(ROOT / "tests" / "fixtures" / "nb201_excerpt.csv"), "--target",
         "cifar10_test_acc_200ep", "--low-fidelity", "cifar10_val_acc_12ep"]


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("progressive_nb201.py", *TABLE, *args)


def test_both_halving_rules_are_logged_per_seed_and_joined_with_the_chooser_they_used(tmp_path):
    log = tmp_path / "seeds.jsonl"
    proc = run("--budgets", "2,4", "--seeds", "2", "--refit-every", "4", "--gnn-epochs", "2",
               "--proposals", "4", "--halving", "asynchronous,capped", "--no-single",
               "--seed-log", str(log), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert r["chooser"] == {"refit_every": 4, "gnn_epochs": 2, "proposals": 4}
        for name in ("progressive-top", "progressive-top-capped"):
            assert len(r[name]) == 2 and r[name][0] <= r[name][1]  # best-so-far by budget
    joined = run("--budgets", "2,4", "--from-log", str(log))
    assert joined.returncode == 0, joined.stderr
    # the settings the seeds ran with, not this command's defaults (10, 80, 64)
    assert "chooser {'refit_every': 4, 'gnn_epochs': 2, 'proposals': 4}" in joined.stdout
    assert "progressive-top-capped" in joined.stdout


def test_an_unknown_halving_rule_is_refused_quoting_it():
    proc = run("--halving", "synchronous")
    assert proc.returncode == 2 and "'synchronous'" in proc.stderr


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_a_malformed_seed_log_line_is_named_by_file_and_line(tmp_path):
    log = tmp_path / "seeds.jsonl"
    log.write_text('{"seed": 0, "budgets": [2, 4], "single": [90.0, 91.0]}\n{"seed": 1, "budg\n')
    line = error_line(run("--budgets", "2,4", "--from-log", str(log)))
    assert f"{log}:2: not JSON" in line
    log.write_text('{"seed": 0, "budgets": [2, 4], "single": [90.0, 91.0]}\n\n')
    assert f"{log}:2: blank line" in error_line(run("--budgets", "2,4", "--from-log", str(log)))
    log.write_text('[1, 2]\n')
    assert f"{log}:1: expected a JSON object" in error_line(run("--budgets", "2,4", "--from-log", str(log)))
    log.write_text('{"seed": 0}\n')
    assert f"{log}:1: no 'budgets' key" in error_line(run("--budgets", "2,4", "--from-log", str(log)))
    line = error_line(run("--from-log", str(tmp_path)))
    assert repr(str(tmp_path)) in line and "folder" in line


def test_a_seed_log_in_a_missing_folder_and_bad_counts_are_refused_before_searching(tmp_path):
    where = str(tmp_path / "nope" / "seeds.jsonl")
    line = error_line(run("--budgets", "2", "--seeds", "1", "--seed-log", where))
    assert repr(where) in line
    assert "'-1'" in error_line(run("--gnn-epochs", "-1"))
    assert "'0'" in error_line(run("--proposals", "0"))
    assert "'0'" in error_line(run("--refit-every", "0"))
