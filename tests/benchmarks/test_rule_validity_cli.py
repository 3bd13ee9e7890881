"""benchmarks/rule_validity.py's refusals, run as a user runs it (a subprocess): each bad flag is one
line quoting the value, exit code 2, before any training."""

from __future__ import annotations

import subprocess

import pytest

from tests.benchmarks.runscript import run_script


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("rule_validity.py", *args, timeout=120)


@pytest.mark.parametrize("flags, needle", [
    (("--fidelity", "foo"), "'foo'"),
    (("--fidelity", "low:0"), "'low:0'"),
    (("--n-samples", "-5"), "'-5'"),
    (("--resolution", "-3"), "'-3'"),
    (("--decision-learners", "0"), "'0'"),
    (("--true-ensemble", "0"), "'0'"),
])
def test_bad_flags_are_refused_in_one_line_that_quotes_them(flags, needle):
    proc = run(*flags)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and flags[0] in lines[-1] and needle in lines[-1], proc.stderr


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    proc = run("--out", str(tmp_path / "f"))
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr
