"""``python -m agent.run --executor ray`` end to end on a local Ray (this machine's 2 CPUs): the
local executor's decisions with a worker killed mid-run, a driver killed with tasks in flight
and resumed (nothing trained twice), a local run moved onto Ray by ``--resume --executor ray``,
and the one-line errors for a missing extra and an
unreachable cluster."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.trajectory import TRAJECTORY, read_events
from tests.agent.runcli import ROOT, TINY, events_of, run_cli, run_dir_of

pytest.importorskip("ray")

#: --confidence 0: decide on the point estimate, so the baseline moves and verdicts vary
FLAGS = [*TINY, "--iterations", "2", "--confidence", "0", "--device", "cpu", "--seed", "3"]
TOL = 1e-6


def decisions(run_dir: Path) -> list[tuple]:
    return [(e["proposal_id"], e["baseline_id"], e["verdict"], e["E"])
            for e in events_of(run_dir) if e["event"] == "decision"]


def assert_same_decisions(got: list[tuple], want: list[tuple]) -> None:
    assert [d[:3] for d in got] == [d[:3] for d in want]
    assert all(abs(g[3] - w[3]) <= TOL for g, w in zip(got, want, strict=True))


def trained_seeds(run_dir: Path) -> Counter:
    """(spec_hash, fidelity, seed) of every learner the log says was trained."""
    out = Counter()
    for e in events_of(run_dir):
        if e["event"] == "evaluated" and not e.get("cached") and not e.get("failure"):
            out.update((e["spec_hash"], e["fidelity"], s) for s in e["seeds"])
        elif e["event"] == "extended" and not e.get("failure"):
            out.update((e["spec_hash"], e["fidelity"], lr["seed"]) for lr in e["new_learners"])
    return out


def session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the killed driver's: its Ray processes)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return run_dir_of(run_cli("agent.run", *FLAGS, "--out", out))


@pytest.mark.slow
def test_ray_gives_the_local_executors_decisions_with_a_worker_killed(local_run, tmp_path):
    flag = tmp_path / "killed"
    proc = run_cli("agent.run", *FLAGS, "--executor", "ray", "--out", tmp_path / "runs",
                   env={"EDAS_RAY_KILL_ONCE": str(flag)})
    assert flag.read_text().isdigit()  # one worker died mid-task; Ray retried its task
    ray_run = run_dir_of(proc)
    want = decisions(local_run)
    assert len(want) >= 2 and {d[2] for d in want} & {"accepted", "rejected"}
    assert_same_decisions(decisions(ray_run), want)
    assert not [e for e in events_of(ray_run) if e.get("failure")]
    assert all(n == 1 for n in trained_seeds(ray_run).values())


def kill_when_iteration_1_is_submitted(executor: str, out: Path) -> Path:
    """Start a run with ``executor``, SIGKILL its whole session (driver and any Ray processes)
    just after iteration 1's candidates were kept (their learners in flight), return its folder."""
    proc = subprocess.Popen([sys.executable, "-m", "agent.run", *FLAGS, "--executor", executor,
                             "--out", str(out)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "120"})
    try:
        deadline = time.monotonic() + 300
        run_dir = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob(f"*/{TRAJECTORY}"))
            if found:
                run_dir = found[0].parent
                events = read_events(run_dir).events
                if any(e["event"] == "filtered" and e["iteration"] == 1 for e in events):
                    break  # iteration 1's candidates were just submitted
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        time.sleep(2)
        for pid in session_pids(proc.pid):  # Ray processes the killed driver left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert run_dir is not None, "the run never reached iteration 1"
    at_kill = events_of(run_dir)
    kept = {e["proposal_id"] for e in at_kill if e["event"] == "filtered" and e["kept"]}
    assert kept and not [e for e in at_kill if e["event"] == "evaluated"
                         and e["proposal_id"] in kept], "killed after the tasks ended"
    return run_dir


def assert_resumed_whole(run_dir: Path, local_run: Path) -> None:
    """The resumed run finished, trained every learner once, and decided as the local run."""
    events = events_of(run_dir)
    assert events[-1]["event"] == "run_finished"
    counts = trained_seeds(run_dir)
    assert counts and all(n == 1 for n in counts.values()), counts
    assert_same_decisions(decisions(run_dir), decisions(local_run))


@pytest.mark.slow
def test_a_driver_killed_with_tasks_in_flight_resumes_and_trains_nothing_twice(local_run, tmp_path):
    run_dir = kill_when_iteration_1_is_submitted("ray", tmp_path / "runs")
    resumed = run_cli("agent.run", "--resume", run_dir)
    assert run_dir_of(resumed) == run_dir
    assert_resumed_whole(run_dir, local_run)


@pytest.mark.slow
def test_a_local_run_killed_mid_iteration_goes_on_on_ray_and_decides_alike(local_run, tmp_path):
    """Moving a run to a cluster on --resume: a local run killed with learners in flight, resumed
    with --executor ray, trains nothing twice, gives the local run's decisions, and its
    ``resumed`` event says where it went on."""
    run_dir = kill_when_iteration_1_is_submitted("local", tmp_path / "runs")
    resumed = run_cli("agent.run", "--resume", run_dir, "--executor", "ray")
    assert run_dir_of(resumed) == run_dir
    assert_resumed_whole(run_dir, local_run)
    moved = [e for e in events_of(run_dir) if e["event"] == "resumed"]
    assert [e["settings"] for e in moved] == [{"executor": "ray"}]


def test_an_unreachable_cluster_is_one_line_and_exit_2_within_30_s(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = run_cli("agent.run", *FLAGS, "--executor", "ray", "--ray-address",
                   f"127.0.0.1:{port}", "--out", tmp_path, check=False, timeout=120)
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there"), proc.stderr
    assert not list(tmp_path.iterdir())  # no run folder was made


def test_missing_ray_is_one_line_naming_the_extra(tmp_path):
    stand_in = tmp_path / "site"
    stand_in.mkdir()
    (stand_in / "ray.py").write_text("raise ImportError('No module named ray (test stand-in)')\n")
    proc = run_cli("agent.run", *FLAGS, "--executor", "ray", "--out", tmp_path / "runs",
                   check=False, timeout=120, env={"PYTHONPATH": str(stand_in)})
    assert proc.returncode == 2
    assert proc.stderr == "error: --executor ray needs the [ray] extra: pip install -e '.[ray]'\n"
    assert not (tmp_path / "runs").exists()


def test_the_gpus_a_task_asks_for_and_a_cluster_without_gpus(monkeypatch):
    """make_evaluator: G defaults to 1/MIN on CUDA and 0 on CPU; GPUs asked of a cluster that
    has none are refused at start-up in one line (Ray would queue the tasks for ever)."""
    import torch

    import evaluators.ray_evaluator as rx
    from agent.cli import UsageError
    from agent.config import RunConfig
    from agent.run import make_evaluator
    from spaces import get_space

    cluster = {"CPU": 2.0}
    monkeypatch.setattr(rx, "connect", lambda address: cluster)
    from spaces import TaskInfo

    info, y_train = TaskInfo((1, 8, 8), 10), torch.zeros(210)
    space, cpu = get_space("nb201"), SimpleNamespace(device=torch.device("cpu"), info=info, y_train=y_train)
    config = RunConfig(executor="ray", dataset="digits", n_samples=300, seed=3, max_concurrent=3)
    ev = make_evaluator(config, space, cpu)(Path("evals"))
    assert (ev.gpus_per_learner, ev.max_concurrent, ev.npz_dir) == (0.0, 3, Path("evals"))
    assert ev.recipe == rx.TaskRecipe("digits", "cpu", None, 300, 3)
    assert (ev.task_info, ev.n_train) == (info, 210)  # for the step FLOPs of the auto split
    with pytest.raises(UsageError, match=r"^--gpus-per-learner 0.5: the Ray cluster has no GPU$"):
        make_evaluator(config.model_copy(update={"gpus_per_learner": 0.5}), space, cpu)
    cluster["GPU"] = 1.0
    cuda = SimpleNamespace(device=torch.device("cuda"), info=info, y_train=y_train)
    ev = make_evaluator(config.model_copy(update={"min_learners": 4, "max_learners": 8}), space,
                        cuda)(Path("evals"))
    assert ev.gpus_per_learner == 0.25 and ev.recipe.device == "cuda"
