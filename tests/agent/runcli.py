"""Running the real entry points in tests: ``python -m agent.run …`` in a subprocess, with a
fake provider key in the environment that must never reach a run folder."""

import os
import re
import subprocess
import sys
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
