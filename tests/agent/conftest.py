"""Shared fixtures of the agent's CLI tests."""

import pytest

from tests.agent.runcli import TINY, run_cli, run_dir_of


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # stderr is a pipe and $COLUMNS is cleared: the run prints as it would into a log file
    proc = run_cli("agent.run", *TINY, "--iterations", 2, "--out", out, "--seed", 3,
                   env={"COLUMNS": ""})
    return run_dir_of(proc), proc
