"""benchmarks/search_nb201.py refuses bad flags and tables in one line, exit code 2, before searching."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.benchmarks.runscript import ROOT, run_script

EXCERPT = str(ROOT / "tests" / "fixtures" / "nb201_excerpt.csv")


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("search_nb201.py", *args, timeout=120)


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_a_missing_table_is_one_line_naming_it(tmp_path):
    missing = str(tmp_path / "nope.csv")
    line = error_line(run("--table", missing, "--target", "cifar10_test_acc_200ep"))
    assert line.startswith("error: ") and missing in line


def test_bad_queries_and_seeds_are_refused_quoting_them():
    line = error_line(run("--table", EXCERPT, "--target", "cifar10_test_acc_200ep", "--queries", "abc"))
    assert "--queries" in line and "'abc'" in line
    line = error_line(run("--table", EXCERPT, "--target", "cifar10_test_acc_200ep", "--queries", "5,-3"))
    assert "--queries" in line and "'-3'" in line
    line = error_line(run("--table", EXCERPT, "--target", "cifar10_test_acc_200ep", "--seeds", "0"))
    assert "--seeds" in line and "'0'" in line


def test_a_partial_table_is_refused_for_searches_that_query_any_cell():
    line = error_line(run("--table", EXCERPT, "--target", "cifar10_test_acc_200ep", "--methods",
                          "ours,random"))
    assert "300 architectures" in line and "15,625" in line and "random" in line


def test_ours_zc_needs_a_target_it_can_size_the_proxy_for(tmp_path):
    table = tmp_path / "renamed.csv"
    text = Path(EXCERPT).read_text()
    table.write_text(text.replace("cifar10_test_acc_200ep", "acc_200ep", 1))
    line = error_line(run("--table", str(table), "--target", "acc_200ep", "--methods", "ours+zc"))
    assert "'acc_200ep'" in line and "prefix" in line
