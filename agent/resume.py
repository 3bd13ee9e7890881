"""``--resume RUN_DIR``: reopen a run folder safely, or refuse with one line and change nothing.

In order: the folder must hold a trajectory; it must be writable (checked without writing); it
is locked for this process (:mod:`agent.lock`: a second process is refused, naming the holder's
pid); its log and ``config.json`` are read; flags that would change the run are refused (only
budgets, ``--iterations``, ``--api-base`` and where learners train — ``--executor``,
``--ray-address``, ``--gpus-per-learner``, ``--max-concurrent`` — may be given: a run started on
one machine can go on on a Ray cluster, since a learner is a function of its seed wherever it
trains); every event is applied to a fresh
:class:`~agent.state.SearchState` one at a time, so an inconsistent log is reported by file and
line; and a run that already finished is continued only when the budget that ended it was raised.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cli import RAY_ONLY, UsageError, check_executor, checked_config, config_from_args
from agent.config import RunConfig
from agent.lock import RunFolderBusy, RunFolderLock, RunFolderUnwritable
from agent.redact import REDACTED
from agent.state import SearchState
from agent.trajectory import CONFIG, TRAJECTORY, ReadResult, RunFolderError, read_events

__all__ = ["Resumed", "explicit_flags", "reopen", "RESUME_FLAGS"]

#: flags a resumed run takes (budgets may be raised; the server address may move; learners may
#: train elsewhere)
RESUME_FLAGS = ("iterations", "max_wall_seconds", "max_device_seconds", "max_cost_usd",
                "max_learner_epochs", "api_base", "executor", "ray_address", "gpus_per_learner",
                "max_concurrent")
#: the flag that must be raised to continue a run that ended for this reason
_RAISE_FOR = {"iterations": "iterations", "max_wall_seconds": "max_wall_seconds",
              "max_device_seconds": "max_device_seconds", "max_cost_usd": "max_cost_usd",
              "max_learner_epochs": "max_learner_epochs"}
#: flag dest → the RunConfig fields it sets, where they are not the same name
_FIELDS = {"validate": ("validate_ensemble",), "learners": ("min_learners", "max_learners")}


@dataclass
class Resumed:
    config: RunConfig
    read: ReadResult
    state: SearchState
    #: the :data:`RESUME_FLAGS` given this time, as config fields (logged in ``resumed``)
    settings: dict[str, Any]
    lock: RunFolderLock


def explicit_flags(parser: argparse.ArgumentParser,
                   argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """Parsed flags and the names of those given on the command line (argparse leaves a
    pre-set attribute alone when its flag is absent, so a sentinel tells them apart)."""
    unset = object()
    dests = vars(parser.parse_args([])).keys()
    args = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(dests, unset)))
    given = {d for d in dests if getattr(args, d) is not unset}
    for d in dests - given:
        setattr(args, d, parser.get_default(d))
    return args, given


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_writable(run_dir: Path) -> None:
    """Open what resuming writes, without writing: a read-only folder is refused up front."""
    path = run_dir / TRAJECTORY
    try:
        with open(path, "r+b"):
            pass
    except OSError as err:
        raise UsageError(f"--resume {run_dir}: cannot write {path} ({err.strerror}); nothing "
                         "was changed") from None
    if not os.access(run_dir, os.W_OK):
        raise UsageError(f"--resume {run_dir}: the folder is not writable; nothing was changed")


def _changed(config: RunConfig, args: argparse.Namespace, given: set[str]) -> list[str]:
    """Given flags (other than :data:`RESUME_FLAGS`) whose value differs from the run's, each
    as ``--flag VALUE (the run has OLD)``; the flags are read as a fresh run would read them."""
    asked = config_from_args(args)  # a bad value is refused here, as for a fresh run
    out = []
    for dest in sorted(given - set(RESUME_FLAGS) - {"resume"}):
        fields = [f for f in _FIELDS.get(dest, (dest,)) if f in RunConfig.model_fields]
        old = [getattr(config, f) for f in fields]
        if old != [getattr(asked, f) for f in fields]:
            out.append(f"{_flag(dest)} {getattr(args, dest)} (the run has "
                       f"{', '.join(map(repr, old))})")
    return out


def _state(run_dir: Path, read: ReadResult) -> SearchState:
    """The state the log describes, applied one event at a time so a bad one is located."""
    state = SearchState()
    for event, line in zip(read.events, read.lines, strict=True):
        try:
            state.apply(event)
        except Exception as err:  # any event the state cannot take makes the log inconsistent
            what = (f"names unknown proposal {err.args[0]!r}" if isinstance(err, KeyError)
                    else f"{type(err).__name__}: {err}")
            raise UsageError(f"--resume {run_dir}: {run_dir / TRAJECTORY} line {line}: event "
                             f"{event.get('event')!r} cannot be applied ({what}); the log is "
                             "inconsistent, nothing was changed") from None
    return state


def _finished_check(run_dir: Path, read: ReadResult, config: RunConfig, old: RunConfig,
                    given: set[str]) -> None:
    last = read.events[-1] if read.events else {}
    if last.get("event") != "run_finished":
        return
    reason = str(last.get("reason", ""))
    flag = _RAISE_FOR.get(reason)
    if flag is not None and flag in given and getattr(config, flag) != getattr(old, flag):
        return
    if reason == "interrupted" or reason.startswith("proposer_error"):
        return  # the same settings may well succeed this time
    hint = (f"raise {_flag(flag)} to continue it" if flag is not None
            else "it cannot be continued; start a new run")
    raise UsageError(f"--resume {run_dir}: the run already finished ({reason}); {hint}")


def _load(run_dir: Path, args: argparse.Namespace, given: set[str]
          ) -> tuple[RunConfig, ReadResult, SearchState, dict[str, Any]]:
    try:
        read = read_events(run_dir)
        stored: dict[str, Any] = json.loads((run_dir / CONFIG).read_text())["config"]
        old = RunConfig(**stored)
    except (RunFolderError, OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--resume {run_dir}: not a resumable run ({err})") from None
    if changed := _changed(old, args, given):
        raise UsageError(f"--resume {run_dir}: {'; '.join(changed)}: a resumed run keeps its "
                         f"settings; only {', '.join(map(_flag, RESUME_FLAGS))} may be given")
    overrides = {name: getattr(args, name) for name in RESUME_FLAGS if name in given}
    if overrides.get("executor") == "local":  # back from a cluster: its settings go with it
        overrides |= {name: None for name in RAY_ONLY if name not in given}
    config = checked_config(old.model_dump() | overrides)  # overrides obey the same bounds
    check_executor(config)
    if config.api_base and REDACTED in config.api_base:
        raise UsageError(f"--resume {run_dir}: the run's --api-base was stored with its "
                         f"credentials redacted ({config.api_base}); give --api-base again")
    state = _state(run_dir, read)
    _finished_check(run_dir, read, config, old, given)
    return config, read, state, overrides


def reopen(run_dir: Path, args: argparse.Namespace, given: set[str]) -> Resumed:
    """Check, lock and read a run folder for ``--resume``; every refusal is a UsageError and
    leaves the folder as it was (the checks run before the lock is taken, since taking it
    writes our pid, and once more after, on what the log holds then)."""
    if not (run_dir / TRAJECTORY).is_file():
        raise UsageError(f"--resume {run_dir}: not a resumable run ({run_dir} has no {TRAJECTORY})")
    _check_writable(run_dir)
    _load(run_dir, args, given)
    lock = RunFolderLock(run_dir)
    try:
        lock.acquire()
    except (RunFolderBusy, RunFolderUnwritable) as err:
        raise UsageError(f"--resume {run_dir}: {err}") from None
    try:
        return Resumed(*_load(run_dir, args, given), lock)
    except UsageError:
        lock.release()
        raise
