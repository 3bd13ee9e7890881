"""A short search with the real local model (Gemma 3 270M on llama.cpp), when the extra is installed."""

import importlib.util
import subprocess
import sys
import time

import pytest

from agent.proposers.local import local_model_available
from tests.agent.runcli import ROOT
from tests.agent.test_cli import events_of, run_cli, run_dir_of

pytestmark = [pytest.mark.local_llm,
              pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="the [local] extra (llama-cpp-python) is not installed")]


def test_local_model_writes_valid_specs_in_a_short_search(tmp_path):
    assert local_model_available() == (True, None)
    proc = run_cli("agent.run", "--model", "local", "--dataset", "digits", "--n-samples", "300",
                   "--predictor", "none", "--iterations", "1", "--proposals", "2", "--keep", "1",
                   "--out", tmp_path, "--max-wall-seconds", "1500", timeout=1800)
    events = events_of(run_dir_of(proc))
    props = [e for e in events if e["event"] == "proposal" and e["proposal_id"] != "baseline"]
    assert props and all(p["source"] == "local" for p in props)
    assert all(p["spec"] is not None for p in props)  # grammar-constrained: every spec validated
    assert sum(p["tokens_out"] for p in props) > 0
    assert events[-1]["event"] == "run_finished" and events[-1]["reason"] == "iterations"


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_dies_at_once_with_a_run_stopped_by_sigterm():
    """A run stopped by a plain SIGTERM (``timeout``, a scheduler) runs no clean-up; the server
    must not outlive it (its graceful shutdown once kept both cores busy for 82 s)."""
    script = ("import time; from agent.proposers.local import LocalServer, model_path; "
              "s = LocalServer(model_path()); print(s.process.pid, s.log.name, flush=True); time.sleep(600)")
    run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pid, log = run.stdout.readline().split()
    server = int(pid)
    assert _alive(server)
    run.terminate()
    run.wait(timeout=30)
    deadline = time.time() + 5
    while _alive(server) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(server)
    # killed, not shut down: a graceful shutdown would first finish a generation in flight
    assert "shutdown" not in open(log).read().lower()
