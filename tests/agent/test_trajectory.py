import json

import pytest

from agent.state import SearchState
from agent.trajectory import RunFolderError, Trajectory, read_events


def test_append_read_and_torn_tail(tmp_path):
    t = Trajectory(tmp_path).open()
    t.append("run_started", 0, config={"a": 1})
    t.append("proposal", 1, proposal_id="it1-p1", spec=None, spec_hash=None)
    t.close()
    with open(tmp_path / "trajectory.jsonl", "a") as f:
        f.write('{"event": "evaluated", "time": "2026-')  # crash mid-write
    read = read_events(tmp_path)
    assert [e["event"] for e in read.events] == ["run_started", "proposal"]
    assert read.truncated_line.startswith('{"event": "evaluated"')
    t = Trajectory(tmp_path).open(truncate_to=read.valid_bytes)
    t.append("resumed", 0, from_event=2, truncated_line=read.truncated_line)
    t.close()
    again = read_events(tmp_path)
    assert [e["event"] for e in again.events] == ["run_started", "proposal", "resumed"]
    assert again.truncated_line is None
    for line in (tmp_path / "trajectory.jsonl").read_text().splitlines():
        event = json.loads(line)
        assert {"event", "time", "iteration"} <= set(event) and event["time"].endswith("Z")


def test_corrupt_middle_line_and_missing_folder_are_errors(tmp_path):
    (tmp_path / "trajectory.jsonl").write_text('{"event": "a", "time": "x", "iteration": 0}\nnot json\n'
                                               '{"event": "b", "time": "x", "iteration": 0}\n')
    with pytest.raises(RunFolderError, match="line 2"):
        read_events(tmp_path)
    with pytest.raises(RunFolderError, match="not a run folder"):
        read_events(tmp_path / "nope")


def test_state_tracks_baseline_and_budget(tmp_path):
    t = Trajectory(tmp_path).open()
    t.append("run_started", 0, config={})
    t.append("proposal", 0, proposal_id="baseline", source="baseline", spec={"x": 1},
             spec_hash="h0", tokens_in=0, tokens_out=0, cost_usd=0.0)
    t.append("evaluated", 0, proposal_id="baseline", spec_hash="h0", fidelity="low",
             seeds=[0, 1], E=0.3, sigma2=0.2, rho=0.5, device_s=2.0, predicted_ens_error=0.2,
             ci={"E": [0.2, 0.4]}, se={"E": 0.05}, npz="evals/h0.npz", params=10, flops=100)
    t.append("proposal", 1, proposal_id="it1-p1", source="llm", spec={"x": 2}, spec_hash="h1",
             tokens_in=10, tokens_out=5, cost_usd=0.01)
    t.append("filtered", 1, proposal_id="it1-p1", kept=True)
    t.append("evaluated", 1, proposal_id="it1-p1", spec_hash="h1", fidelity="low", seeds=[0, 1],
             failure={"kind": "timeout", "message": "training ran past its time limit of 9.0 s"},
             device_s=3.0)
    t.close()
    state = SearchState.from_events(read_events(tmp_path).events)
    assert state.baseline_id == "baseline" and state.first_baseline_id == "baseline"
    assert state.device_s == 5.0 and state.tokens_in == 10 and state.cost_usd == pytest.approx(0.01)
    assert state.seen_hashes == {"h0", "h1"} and state.iteration == 1
    assert state.candidates["it1-p1"].failure.kind == "timeout"


def test_read_events_gives_each_events_line_number(tmp_path):
    (tmp_path / "trajectory.jsonl").write_text(
        '{"event": "a", "time": "x", "iteration": 0}\n\n{"event": "b", "time": "x", "iteration": 0}\n'
        '{"event": "c", "time": "x", "iteration": 0}')  # a blank line, and no final newline
    read = read_events(tmp_path)
    assert [e["event"] for e in read.events] == ["a", "b", "c"] and read.lines == [1, 3, 4]


def test_every_string_of_an_event_is_redacted_before_it_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "svc-key-0123456789")
    t = Trajectory(tmp_path).open()
    record = t.append("proposal", 1, proposal_id="it1-p1", source="llm",
                      raw="echo: Bearer svc-key-0123456789 and sk-abcdefghijklmnop",
                      spec={"note": ["http://u:pw@host/v1?key=QQQ"]}, spec_hash=None)
    t.close()
    text = (tmp_path / "trajectory.jsonl").read_text()
    for secret in ("svc-key-0123456789", "sk-abcdefghijklmnop", "pw@", "QQQ"):
        assert secret not in text, secret
    assert json.loads(text)["raw"] == record["raw"] == "echo: Bearer [redacted] and [redacted]"
