"""Running a benchmark script as a user runs it, in a subprocess from the repository root (the
benchmarks' twin of ``tests/agent/runcli.py``)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python benchmarks/<name> <args>``, its output captured; never raises on a failure."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)], cwd=ROOT,
                          text=True, capture_output=True, timeout=timeout)
