"""benchmarks/ctr_strategies.py --summarise and its refusals, run as a user runs it (a subprocess):
a bad summary file is one line naming it, exit code 2, nothing trained."""

from __future__ import annotations

import subprocess

import pytest

from tests.benchmarks.runscript import run_script


def run(*args: str) -> subprocess.CompletedProcess:
    return run_script("ctr_strategies.py", *args, timeout=120)


@pytest.mark.parametrize("name, content", [
    ("missing.json", None),
    ("binary.json", b"\xff\xfe\x00\x80"),
    ("empty.json", b""),
    ("object.json", b'{"seed": 0}'),
    ("nokeys.json", b'[{"seed": 0, "s1": {}}]'),
])
def test_a_bad_summary_file_is_refused_in_one_line_that_names_it(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    proc = run("--summarise", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_a_folder_given_as_summary_is_refused(tmp_path):
    proc = run("--summarise", str(tmp_path))
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
