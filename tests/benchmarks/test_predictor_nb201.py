"""benchmarks/predictor_nb201.py, run as a user runs it, on the committed NB201 excerpt."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.benchmarks.runscript import ROOT, run_script

TABLE = ["--table", str(ROOT / "tests" / "fixtures" / "nb201_excerpt.csv"), "--target",
         "cifar10_test_acc_200ep"]
sys.path.insert(0, str(ROOT / "benchmarks"))

from predictor_nb201 import Variant, parse_name, screened_cells  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("predictor_nb201.py", *TABLE, *args)


def test_names_take_their_suffixes_in_any_order():
    assert parse_name("dcl-ensemble+lowfi+mf+cv") == Variant("dcl-ensemble", True, False, True, True)
    assert parse_name("gin+mf+lowfi") == Variant("gin", True, False, False, True)
    assert parse_name("rf-onehot") == Variant("rf-onehot", False, False, False, False)


def test_screened_cells_are_neither_training_nor_held_out_nor_a_twin_of_a_held_out_one():
    hashes = [f"h{i % 40}" for i in range(120)]  # cells i, i+40 and i+80 are twins
    train, held = np.arange(0, 10), np.arange(10, 20)
    cells = screened_cells(hashes, train, held, 200, np.random.default_rng(0))
    held_hashes = {hashes[i] for i in held}
    assert len(cells) == len(set(cells.tolist())) == 120 - 20 - 2 * 10  # all that are left
    assert not set(cells.tolist()) & set(range(20))
    assert not {hashes[i] for i in cells} & held_hashes


def test_a_real_run_prints_a_row_per_predictor_and_the_pretraining_changes_the_gins_ranking():
    proc = run("--low-fidelity", "cifar10_val_acc_12ep", "--labels", "20", "--seeds", "1",
               "--held-out", "100", "--screened", "100", "--predictors", "gin,gin+mf", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["predictor"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"gin", "gin+mf"}
    for r in rows.values():
        assert r["labels"] == 20 and -1.0 <= r["kendall_tau"] <= 1.0
    assert rows["gin+mf"]["kendall_tau"] != rows["gin"]["kendall_tau"]  # the pretraining ran


def test_mf_is_refused_without_a_gin_or_without_the_low_fidelity_column():
    proc = run("--low-fidelity", "cifar10_val_acc_12ep", "--predictors", "rf-onehot+mf")
    assert proc.returncode == 2 and "'rf-onehot+mf'" in proc.stderr and "has none" in proc.stderr
    proc = run("--predictors", "gin+mf")
    assert proc.returncode == 2 and "'gin+mf' needs --low-fidelity" in proc.stderr


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_bad_counts_are_refused_quoting_them_before_any_fitting():
    line = error_line(run("--labels", "0"))
    assert "--labels" in line and "'0'" in line
    line = error_line(run("--seeds", "1", "--first-seed", "-1"))
    assert "--first-seed" in line and "'-1'" in line
    line = error_line(run("--predictors", ""))
    assert "--predictors ''" in line


def test_labels_and_held_out_must_fit_in_the_table():
    line = error_line(run("--labels", "250", "--held-out", "100"))  # the excerpt holds 300
    assert "--labels 250" in line and "--held-out 100" in line and "350" in line and "300" in line


def test_a_png_without_a_folder_is_refused_before_fitting(tmp_path):
    png = str(tmp_path / "no-such-folder" / "tau.png")
    line = error_line(run("--labels", "20", "--held-out", "50", "--png", png))
    assert repr(png) in line
