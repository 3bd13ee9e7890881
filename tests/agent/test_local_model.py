"""A short search with the real local model (Gemma 3 270M on llama.cpp), when the extra is installed."""

import importlib.util

import pytest

from agent.proposers.local import local_model_available
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
