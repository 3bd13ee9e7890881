"""The run folder and its JSONL trajectory: the public evidence of a search.

``runs/<run_id>/`` holds ``config.json``, ``trajectory.jsonl`` (one event per line, appended,
flushed and fsynced per event), ``evals/*.npz``, ``best_spec.json`` and ``report/``. Reading
tolerates a torn last line (a crash mid-write): it is reported and cut off before appending.
Every string of every event is redacted (``agent.redact``) before it is written.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.redact import redact_tree

__all__ = ["Trajectory", "RunFolderError", "read_events", "ReadResult", "now_iso", "resume_command",
           "TRAJECTORY", "CONFIG", "EVALS", "BEST_SPEC", "REPORT"]

TRAJECTORY, CONFIG, EVALS, BEST_SPEC, REPORT = (
    "trajectory.jsonl", "config.json", "evals", "best_spec.json", "report")


class RunFolderError(ValueError):
    """A folder that is not a run, or a run folder that cannot be written."""


def resume_command(run_dir: Path | str, *flags: str | int) -> str:
    """The shell command that continues the run in ``run_dir`` (``flags``: budgets to raise),
    quoted so that it can be copied as it is."""
    return " ".join(["python -m agent.run --resume", shlex.quote(str(run_dir)), *map(str, flags)])


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ReadResult:
    events: list[dict[str, Any]]
    truncated_line: str | None = None  # the torn tail, if any
    valid_bytes: int = 0  # file length up to the last complete event
    lines: list[int] = field(default_factory=list)  # the file's line number of each event


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def read_events(run_dir: str | Path) -> ReadResult:
    """All complete events of a run; a torn or unparsable *last* line is reported, not fatal."""
    path = Path(run_dir) / TRAJECTORY
    if not path.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder: {TRAJECTORY} is missing")
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")  # tail is b"" when the file ends with a newline
    result = ReadResult(events=[])
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        event = _parse(raw)
        if event is None:
            if number == len(complete) and not tail.strip():
                result.truncated_line = raw.decode("utf-8", "replace")
                result.valid_bytes = len(data) - len(raw) - 1
                return result
            raise RunFolderError(f"{path}: line {number} is not a JSON event; the run cannot "
                                 "be read safely")
        result.events.append(event)
        result.lines.append(number)
    result.valid_bytes = len(data) - len(tail)
    if tail.strip():
        event = _parse(tail)
        if event is None:
            result.truncated_line = tail.decode("utf-8", "replace")
        else:  # complete JSON whose newline never reached the disk
            result.events.append(event)
            result.lines.append(len(complete) + 1)
            result.valid_bytes = len(data)
    return result


class Trajectory:
    """Append-only writer of one run's events (flush + fsync after every line)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / TRAJECTORY
        self._file = None

    def open(self, truncate_to: int | None = None) -> Trajectory:
        if truncate_to is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(truncate_to)
                if truncate_to > 0:
                    f.seek(truncate_to - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, event: str, iteration: int, **fields: Any) -> dict[str, Any]:
        if self._file is None:
            raise RuntimeError("trajectory is not open")
        record = redact_tree({"event": event, "time": now_iso(), "iteration": iteration, **fields},
                             default=_jsonable)
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to the trajectory")
