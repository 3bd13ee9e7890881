"""One owner per run folder, and refusals that change nothing (issue 15): concurrent resumes, a
read-only folder, an inconsistent log, a finished run, flags a resume cannot take, credentials in
--api-base, --out naming a file."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.lock import RunFolderBusy, RunFolderLock
from tests.agent.fake_openai_server import FakeServer
from tests.agent.runcli import ROOT, TINY, events_of, run_cli, run_dir_of

pytestmark = pytest.mark.slow  # each test starts the real entry point (seconds of imports)

HOLD = ("import sys, time; from agent.lock import RunFolderLock; "
        "RunFolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (one iteration); tests copy it before touching it."""
    out = tmp_path_factory.mktemp("runs")
    proc = run_cli("agent.run", *TINY, "--iterations", 1, "--out", out, "--seed", 7)
    return run_dir_of(proc)


@pytest.fixture
def run_copy(finished_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest)
    return dest


def hold(run_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


# ---- 2. one owner per run folder ------------------------------------------------------------
def test_a_second_resume_of_a_held_folder_exits_2_naming_the_holder_and_changes_nothing(run_copy):
    holder = hold(run_copy)
    try:
        before = snapshot(run_copy)
        proc = run_cli("agent.run", "--resume", run_copy, "--iterations", 3, check=False)
        line = error_line(proc)
        assert f"in use by process {holder.pid}" in line
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_holder_even_by_sigkill(tmp_path):
    holder = hold(tmp_path)
    with pytest.raises(RunFolderBusy, match=str(holder.pid)):
        RunFolderLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    lock = RunFolderLock(tmp_path).acquire()  # a stale lock file never blocks
    assert (tmp_path / "run.lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_a_fresh_run_owns_its_folder_while_it_runs(tmp_path):
    args = [sys.executable, "-m", "agent.run", *TINY, "--iterations", 3, "--out", tmp_path]
    proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(tmp_path.glob("*/trajectory.jsonl")):
            assert proc.poll() is None, "the run ended before it could be observed"
            time.sleep(0.05)
        run_dir = next(tmp_path.glob("*/trajectory.jsonl")).parent
        with pytest.raises(RunFolderBusy, match=f"in use by process {proc.pid}"):
            RunFolderLock(run_dir).acquire()
    finally:
        proc.kill()
        proc.wait()


# ---- 7. refusals name the file (and line) and leave the folder as it was ---------------------
def test_an_event_naming_an_unknown_proposal_is_reported_by_file_and_line(run_copy):
    path = run_copy / "trajectory.jsonl"
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"event": "filtered"' in line)
    bad = json.loads(lines[n]) | {"proposal_id": "it9-p9"}
    lines.insert(n + 1, json.dumps(bad))
    path.write_text("\n".join(lines) + "\n")
    before = snapshot(run_copy)
    proc = run_cli("agent.run", "--resume", run_copy, "--iterations", 3, check=False)
    line = error_line(proc)
    assert f"trajectory.jsonl line {n + 2}" in line and "it9-p9" in line, line
    assert snapshot(run_copy) == before


def _without_dac_override() -> list[str]:
    """A command prefix under which file modes bind (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_a_read_only_run_folder_is_refused_with_one_line(run_copy):
    for p in [*run_copy.rglob("*"), run_copy]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        before = snapshot(run_copy)
        proc = subprocess.run([*_without_dac_override(), sys.executable, "-m", "agent.run",
                               "--resume", str(run_copy), "--iterations", "3"],
                              cwd=ROOT, text=True, capture_output=True, timeout=300,
                              env={**os.environ, "COLUMNS": "120"})
        line = error_line(proc)
        assert "trajectory.jsonl" in line and "Permission denied" in line, line
        assert snapshot(run_copy) == before
    finally:
        for p in [run_copy, *run_copy.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# ---- 9. resume says what it cannot do -------------------------------------------------------
def test_resume_refuses_flags_that_would_change_the_run(run_copy):
    before = snapshot(run_copy)
    proc = run_cli("agent.run", "--resume", run_copy, "--space", "hierarchical", "--ensemble-size",
                   "7", "--iterations", 3, check=False)
    line = error_line(proc)
    assert "--space hierarchical" in line and "'nb201'" in line and "--ensemble-size 7" in line
    assert snapshot(run_copy) == before


def test_resuming_a_finished_run_without_raising_its_budget_is_refused(run_copy):
    before = snapshot(run_copy)
    line = error_line(run_cli("agent.run", "--resume", run_copy, check=False))
    assert "already finished (iterations)" in line and "--iterations" in line
    assert snapshot(run_copy) == before


def test_a_raised_resume_continues_and_its_summary_counts_the_whole_run(run_copy):
    first = events_of(run_copy)[-1]
    proc = run_cli("agent.run", "--resume", run_copy, "--iterations", 2, "--space", "nb201")
    events = events_of(run_copy)
    finished = [e for e in events if e["event"] == "run_finished"]
    assert len(finished) == 2 and finished[-1]["iterations"] == 2
    assert finished[-1]["wall_s"] >= first["wall_s"]
    shown = float(re.search(r"wall ([0-9.]+)\s*s", proc.stderr).group(1))
    assert shown >= first["wall_s"] - 0.1, (shown, first["wall_s"])


def test_out_naming_a_file_says_so(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    proc = run_cli("agent.run", "--model", "builtin", "--out", blocker, check=False, timeout=120)
    line = error_line(proc)
    assert "is a file, not a folder" in line and "File exists" not in line


# ---- 3. credentials in --api-base never reach the folder -------------------------------------
def test_credentials_in_api_base_are_redacted_in_config_and_log(tmp_path):
    key_a, key_b = "userinfo-secret-0001", "query-secret-0002"
    with FakeServer() as fake:  # the start-up check must find a server at the address
        base = f"http://bob:{key_a}@127.0.0.1:{fake.port}/v1?api_key={key_b}"
        proc = run_cli("agent.run", *[a for a in TINY if a not in ("--model", "builtin")], "--model",
                       "openai/test", "--api-base", base, "--iterations", 0, "--out", tmp_path)
    run_dir = run_dir_of(proc)
    for name, data in snapshot(run_dir).items():
        assert key_a.encode() not in data and key_b.encode() not in data, name
    assert key_a not in proc.stderr + proc.stdout and key_b not in proc.stderr + proc.stdout
    stored = json.loads((run_dir / "config.json").read_text())["config"]["api_base"]
    assert stored == f"http://[redacted]@127.0.0.1:{fake.port}/v1?api_key=[redacted]"
    line = error_line(run_cli("agent.run", "--resume", run_dir, "--iterations", 1, check=False))
    assert "give --api-base again" in line
