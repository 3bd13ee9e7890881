"""benchmarks/progressive_nb201.py, run as a user runs it, on the committed NB201 excerpt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "progressive_nb201.py"
TABLE = ["--table", str(ROOT / "tests" / "fixtures" / "nb201_excerpt.csv"), "--target",
         "cifar10_test_acc_200ep", "--low-fidelity", "cifar10_val_acc_12ep"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *TABLE, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=600)


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
