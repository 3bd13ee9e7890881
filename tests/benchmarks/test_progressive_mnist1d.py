"""benchmarks/progressive_mnist1d.py, run as a user runs it (a subprocess): a tiny real comparison,
then ``--from-log`` summarising the rows it printed, and its refusals."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.runscript import run_script


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("progressive_mnist1d.py", *args)


def row(seed: int, method: str, brier: float, epochs: float, moved: bool = False) -> dict:
    return {"seed": seed, "method": method, "wall_s": 1.0, "test_ens_brier": brier,
            "learner_epochs": epochs, "moved": moved, "end": "max_learner_epochs", "tau": []}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def verdict(stdout: str) -> tuple[int, int, int, float, float, float, float]:
    m = re.search(r"as good or better on (\d+)/(\d+) seeds \(better on (\d+)\); paired Brier "
                  r"difference progressive − single ([+-][\d.]+) \(SE ([\d.]+)\); its learner-epochs "
                  r"/ single's: ([\d.]+)±[\d.]+ \(max ([\d.]+)\)", stdout)
    assert m, stdout
    return (int(m[1]), int(m[2]), int(m[3]), float(m[4]), float(m[5]), float(m[6]), float(m[7]))


def test_from_log_pairs_the_seeds_of_several_files_and_states_the_paired_difference(tmp_path):
    a = write(tmp_path / "a.jsonl", [row(0, "progressive", 0.10, 60), row(0, "single", 0.12, 100),
                                     row(1, "progressive", 0.20, 55), row(1, "single", 0.20, 100)])
    b = write(tmp_path / "b.jsonl", [row(2, "single", 0.15, 90), row(2, "progressive", 0.18, 54, True)])
    proc = run("--from-log", str(a), str(b), "--png", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    as_good, n, better, diff, se, share, share_max = verdict(proc.stdout)
    d = np.array([-0.02, 0.0, 0.03])
    assert (as_good, n, better) == (2, 3, 1)  # a tie counts as good, not better
    assert diff == pytest.approx(d.mean(), abs=5e-5)
    assert se == pytest.approx(d.std(ddof=1) / np.sqrt(3), abs=5e-5)
    assert share == pytest.approx(np.mean([0.6, 0.55, 0.6]), abs=5e-3)
    b2 = write(tmp_path / "b2.jsonl", [row(2, "single", 0.15, 85), row(2, "progressive", 0.18, 54)])
    # a seed whose single-fidelity run stopped short has the largest share, which is printed
    _, _, _, _, _, share, share_max = verdict(run("--from-log", str(a), str(b2)).stdout)
    assert share_max == pytest.approx(54 / 85, abs=5e-3) and share < share_max
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize("rows, needle", [
    ([row(0, "progressive", 0.1, 60), row(0, "single", 0.1, 100), row(0, "single", 0.2, 100)],
     "seed 0 single appears twice"),
    ([row(0, "progressive", 0.1, 60), row(1, "single", 0.1, 100)], "0 (single)"),
    ([{"seed": 0, "method": "grid"}], "method 'grid'"),
])
def test_from_log_refuses_rows_that_do_not_pair_in_one_line_that_names_them(tmp_path, rows, needle):
    proc = run("--from-log", str(write(tmp_path / "r.jsonl", rows)))
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_from_log_refuses_a_line_that_is_not_json_quoting_it(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"seed": 0\n')
    proc = run("--from-log", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2 and "r.jsonl:1" in proc.stderr and '{"seed": 0' in proc.stderr


def test_one_real_seed_gives_rows_that_from_log_reads_back(tmp_path):
    """Two real agent.run searches (a two-rung schedule against its top rung alone) at a tiny
    size: every row holds what the README's tables print, each run stayed in its budget, and the
    rows summarise without a search."""
    proc = run("--seeds", "1", "--schedule", "low:1,low:2", "--single", "low:2",
               "--max-learner-epochs", "12", "--budget-share", "0.6", "--iterations", "1",
               "--n-samples", "300", "--ensemble-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["method"] for r in rows] == ["progressive", "single"]
    budget = {"progressive": 0.6 * 12, "single": 12}
    for r in rows:
        assert 0.0 < r["test_ens_brier"] < 2.0
        assert 0.0 < r["learner_epochs"] <= budget[r["method"]]
    log = write(tmp_path / "rows.jsonl", rows)
    again = run("--from-log", str(log))
    assert again.returncode == 0, again.stderr
    as_good, n, *_ = verdict(again.stdout)
    assert n == 1 and as_good == int(rows[0]["test_ens_brier"] <= rows[1]["test_ens_brier"])


def test_an_unknown_method_is_refused_in_one_line_that_quotes_it():
    proc = run("--methods", "progressive,grid")
    assert proc.returncode == 2 and "'progressive,grid'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("field, value, needle", [
    ("test_ens_brier", "0.1", "test_ens_brier '0.1'"),
    ("test_ens_brier", None, "test_ens_brier None"),
    ("tau", 5, "tau 5"),
    ("seed", [1], "seed [1]"),
    ("learner_epochs", 0, "learner_epochs 0"),
])
def test_from_log_refuses_a_row_of_wrong_types_naming_file_line_and_value(tmp_path, field, value, needle):
    bad = {**row(0, "progressive", 0.1, 60), field: value}
    proc = run("--from-log", str(write(tmp_path / "r.jsonl", [row(0, "single", 0.1, 100), bad])))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "r.jsonl:2" in lines[0] and needle in lines[0], proc.stderr


def test_from_log_refuses_a_binary_file_naming_it(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe\x00\x80binary")
    proc = run("--from-log", str(tmp_path / "b.bin"))
    assert proc.returncode == 2 and "b.bin" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bad_output_paths_are_refused_before_any_search(tmp_path):
    (tmp_path / "f").write_text("x")
    log = write(tmp_path / "r.jsonl", [row(0, "progressive", 0.1, 60), row(0, "single", 0.1, 100)])
    proc = run("--from-log", str(log), "--png", str(tmp_path / "f" / "p.png"))
    assert proc.returncode == 2 and "--png" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "out" / "single-s0").mkdir(parents=True)
    proc = run("--seeds", "1", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "single-s0" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
