"""The real entry point against a local OpenAI-compatible server: litellm → HTTP → parse → loop."""

import json
import time

import pytest

from tests.agent.fake_openai_server import FakeServer, error
from tests.agent.runcli import TINY, events_of, run_cli, run_dir_of
from tests.agent.test_llm_proposer import SECRET, good

ARGS = [a for a in TINY if a not in ("--model", "builtin")] + ["--iterations", "1", "--proposals", "2",
                                                              "--keep", "2"]


def test_llm_run_logs_repairs_tokens_and_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeServer([(200, {}, "no JSON here, sorry"), (200, {}, good(2))]) as fake:
        proc = run_cli("agent.run", "--model", "openai/test", "--api-base", fake.url, *ARGS,
                       "--out", tmp_path, env={"OPENAI_API_KEY": SECRET})
    assert fake.headers_seen[0]["Authorization"] == f"Bearer {SECRET}"
    run_dir = run_dir_of(proc)
    events = events_of(run_dir)
    props = [e for e in events if e["event"] == "proposal" and e["proposal_id"] != "baseline"]
    assert [p["source"] for p in props] == ["llm", "llm"] and all(p["spec"] for p in props)
    assert sum(p["tokens_in"] for p in props) == 240 and props[1]["tokens_in"] == 0
    repairs = [e for e in events if e["event"] == "repair"]
    assert repairs and "not usable JSON" in repairs[0]["error"]
    assert len([e for e in events if e["event"] == "evaluated"]) == 3
    finished = events[-1]
    assert finished["tokens_in"] == 240 and finished["tokens_out"] == 80
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in proc.stderr + proc.stdout
    assert json.loads((run_dir / "config.json").read_text())["config"]["model"] == "openai/test"


def test_llm_auth_error_ends_the_run_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeServer([error(401, f"Incorrect API key provided: {SECRET}")]) as fake:
        proc = run_cli("agent.run", "--model", "openai/test", "--api-base", fake.url, *ARGS,
                       "--out", tmp_path, check=False, env={"OPENAI_API_KEY": SECRET})
    assert proc.returncode == 1
    assert "authentication failed" in proc.stderr and SECRET not in proc.stderr
    events = events_of(run_dir_of(proc))
    assert events[-1]["event"] == "run_finished" and "authentication" in events[-1]["reason"]


def test_a_slow_model_cannot_hold_the_run_past_its_wall_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    args = [a for a in ARGS]
    args[args.index("--max-wall-seconds") + 1] = "25"
    with FakeServer([(200, {}, good(2), 120.0)]) as fake:
        started = time.time()
        proc = run_cli("agent.run", "--model", "openai/test", "--api-base", fake.url, *args,
                       "--out", tmp_path)
        took = time.time() - started
    events = events_of(run_dir_of(proc))
    assert events[-1]["event"] == "run_finished" and events[-1]["reason"] == "max_wall_seconds"
    assert took < 90, took  # start-up + 25 s budget + finishing, not the 120 s reply
    if any(e["event"] == "evaluated" for e in events):  # the baseline trained: the call was cut
        assert len(fake.requests) == 1
        assert not [e for e in events if e["event"] == "proposal" and e["proposal_id"] != "baseline"]


@pytest.mark.slow
def test_a_hostile_server_cannot_crash_the_run_bloat_the_log_or_leak_the_key(tmp_path, monkeypatch):
    """An echoed Authorization header inside a 1 MB reply, then a 100k-deep JSON reply to the
    repair turn: both proposals end as logged rejections and the run finishes normally."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def echo_huge(body, headers):
        return f"Authorization: {headers.get('Authorization')} " + "x" * 1_000_000

    with FakeServer([(200, {}, echo_huge), (200, {}, "[" * 100_000)]) as fake:
        proc = run_cli("agent.run", "--model", "openai/test", "--api-base", fake.url, *ARGS,
                       "--out", tmp_path, env={"OPENAI_API_KEY": SECRET})
        repair_request = json.dumps(fake.requests[1])
    run_dir = run_dir_of(proc)
    events = events_of(run_dir)
    assert events[-1]["event"] == "run_finished" and events[-1]["reason"] == "iterations"
    rejected = [e for e in events if e["event"] == "proposal_rejected"]
    assert len(rejected) == 2 and all("nests brackets" in e["reason"] for e in rejected)
    assert "Traceback" not in proc.stderr
    assert (run_dir / "trajectory.jsonl").stat().st_size < 100_000  # not 2 x 1 MB
    assert len(repair_request) < len(json.dumps(fake.requests[0])) + 10_000
    assert SECRET not in repair_request
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in proc.stderr + proc.stdout
