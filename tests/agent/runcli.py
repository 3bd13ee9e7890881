"""Running the real entry points in tests: ``python -m agent.run …`` in a subprocess, with a
fake provider key in the environment that must never reach a run folder."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.trajectory import read_events

ROOT = Path(__file__).parents[2]
#: tiny settings: digits, a few hundred samples, no predictor, a generous wall budget (the
#: machine may be shared and loaded)
TINY = ["--model", "builtin", "--dataset", "digits", "--n-samples", "300", "--predictor", "none",
        "--max-wall-seconds", "1200", "--proposals", "3", "--keep", "2"]
FAKE_KEY = "sk-test-NEVER-ON-DISK-4f1c"


def run_cli(module, *args, timeout=300, check=True, env=None):
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "120", "OPENAI_API_KEY": FAKE_KEY,
                               "ANTHROPIC_API_KEY": FAKE_KEY, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_dir_of(proc) -> Path:
    return Path(re.search(r"run folder: (\S+)", proc.stderr).group(1))


def events_of(run_dir):
    return read_events(run_dir).events


def kill_when(out: Path, args: list, until: str | Callable[[list[dict]], bool],
              timeout: float = 300) -> Path:
    """Start ``agent.run`` with ``args`` into ``out``, SIGKILL it as soon as its trajectory
    contains ``until`` (a marker string) or ``until(events)`` holds; returns the run folder."""
    proc = subprocess.Popen([sys.executable, "-m", "agent.run", *map(str, args), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, run_dir = time.time() + timeout, None
    while time.time() < deadline:
        dirs = list(out.iterdir())
        if dirs and (dirs[0] / "trajectory.jsonl").exists():
            run_dir = dirs[0]
            if (until in (run_dir / "trajectory.jsonl").read_text() if isinstance(until, str)
                    else until(events_of(run_dir))):
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None, f"no run folder appeared in {out}"
    return run_dir


def trained_seeds(events):
    """(spec hash, fidelity, seed) of every learner the log says was trained (cached copies
    excluded)."""
    out = []
    for e in events:
        if e["event"] == "evaluated" and not e.get("failure") and not e.get("cached"):
            out += [(e["spec_hash"], e["fidelity"], l["seed"]) for l in e["learners"]]
        elif e["event"] == "extended" and not e.get("failure"):
            out += [(e["spec_hash"], e["fidelity"], l["seed"]) for l in e["new_learners"]]
    return out
