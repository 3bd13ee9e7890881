"""The live progress display (stderr) and the end-of-run summary table.

Two rows: the iterations of the search, and — while an evaluation trains — its learners and
epochs with an ETA (``LiveProgress.training(label)`` gives the ``on_epoch`` callback that
``evaluators.train.train_learners`` calls), so a slow dataset never looks stuck on
"baseline: pending". The last tick of each evaluation is kept (``last_ticks``): when the wall
budget cuts an evaluation, the summary says where it was cut.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.rule import row_name, verdict_text

if TYPE_CHECKING:
    from agent.config import RunConfig
    from agent.state import Candidate, SearchState
    from evaluators.train import EpochTick

__all__ = ["LiveProgress", "summary_table", "TrainingTick", "eta_seconds", "console_for",
           "LOG_WIDTH"]

#: columns of a console that writes to a log file, a pipe or CI rather than a terminal (rich's
#: own default there is 80, which cuts the summary table's words to "behi…")
LOG_WIDTH = 160


def console_for(stream: TextIO | None = None) -> Console:
    """A rich console on ``stream`` (None: stdout): a terminal's own width, ``$COLUMNS`` when it
    is set, else :data:`LOG_WIDTH` columns."""
    probe = Console(file=stream)
    wide = probe.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit()
    return probe if wide else Console(file=stream, width=LOG_WIDTH)


@dataclass(frozen=True)
class TrainingTick:
    """The last finished epoch of one evaluation and the seconds it had trained by then."""

    label: str
    tick: EpochTick
    elapsed_s: float

    @property
    def full_s(self) -> float | None:
        """Estimated seconds the whole evaluation takes (elapsed / fraction done)."""
        f = self.tick.fraction
        return self.elapsed_s / f if f > 0 else None


def eta_seconds(elapsed_s: float, fraction: float) -> float | None:
    """Seconds left when ``fraction`` of the work took ``elapsed_s`` (None before any)."""
    return elapsed_s * (1 - fraction) / fraction if fraction > 0 else None


def _reached(cand: Candidate, rungs: list[str]) -> list[str]:
    """The rungs ``cand`` was evaluated (or failed) at, lowest first in the schedule ``rungs``."""
    return sorted(set(cand.results) | set(cand.failures),
                  key=lambda r: rungs.index(r) if r in rungs else len(rungs))


def _baseline_text(state: SearchState, M: int, rungs: list[str]) -> str:
    """The baseline's E_ens(M) at the highest rung it was trained at (named when there are
    several rungs: its first rung's figure is not comparable with a top-rung candidate's)."""
    base = state.baseline
    if base is None or not base.results:
        return "baseline: pending"
    rung, result = base.highest_rung, base.highest_result
    at = f" at {rung}" if len(rungs) > 1 else ""
    name = "baseline" if base.proposal_id == "baseline" else f"baseline {base.proposal_id}"
    return (f"{name}: E_ens({M})={result.stats.ens_error(M):.4f}{at} "
            f"({len(result.learners)} learners)")


class LiveProgress:
    """Iteration bar plus budget used and the current baseline, refreshed on every event."""

    def __init__(self, console: Console, config: RunConfig) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.task_id = self.progress.add_task("iteration", total=max(1, config.iterations), info="")
        self.rungs = [r.name for r in config.rungs()]  # parsed once, not on every event
        self.train_id = None
        self.last_ticks: dict[str, TrainingTick] = {}
        self.started: dict[str, None] = {}  # labels whose training began and has not returned

    def training(self, label: str) -> Callable[[EpochTick], None]:
        """The ``on_epoch`` callback for the evaluation of ``label`` (its row name: ``id @ rung``
        with several rungs): each tick shows learner i/L, epoch e/E and the ETA on the training
        row, and is remembered."""
        started = time.monotonic()
        self.started[label] = None
        if self.train_id is None:
            self.train_id = self.progress.add_task("training %", total=100,
                                                   info=f"{label}: starting")
        else:
            self.progress.reset(self.train_id, total=100, info=f"{label}: starting")

        def on_epoch(tick: EpochTick) -> None:
            self.last_ticks[label] = TrainingTick(label, tick, time.monotonic() - started)
            self.progress.update(self.train_id, completed=round(100 * tick.fraction),
                                 info=self.training_text(label))

        return on_epoch

    def finished(self, label: str) -> None:
        """``label``'s training returned (a result or a failure): forget its ticks, so that what
        stays in :attr:`started` when a budget ends the run is what it cut."""
        self.started.pop(label, None)
        self.last_ticks.pop(label, None)

    def training_text(self, label: str) -> str:
        """``baseline: learner 1/2, epoch 3/10 · ETA 42 s`` for the last tick of ``label``."""
        t = self.last_ticks.get(label)
        if t is None:
            return f"{label}: starting"
        eta = eta_seconds(t.elapsed_s, t.tick.fraction)
        return f"{label}: {t.tick.where()}" + (f" · ETA {eta:.0f} s" if eta is not None else "")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, state: SearchState, config: RunConfig) -> None:
        decisions = state.decisions()
        undecided = sum(1 for d in decisions if d.verdict == "undecided")
        info = (f"{_baseline_text(state, config.ensemble_size, self.rungs)} · evals {state.evaluations} · "
                f"accepted {state.accepted} · undecided {undecided} of {len(decisions)} · "
                f"learners {state.learners_trained} · device {state.device_s:.0f}s")
        if state.cost_usd:
            info += f" · ${state.cost_usd:.4f}"
        done = max(0, state.iteration - 1) if state.finished is None else state.iteration
        self.progress.update(self.task_id, completed=min(done, config.iterations), info=info)


def summary_table(state: SearchState, config: RunConfig, reason: str, wall_s: float) -> Table:
    """One row per evaluation: a candidate, or the baseline, at each rung it reached (labelled
    :func:`agent.rule.row_name`); the final baseline's highest row is starred."""
    M = config.ensemble_size
    rungs = [r.name for r in config.rungs()]
    table = Table(title=f"search finished: {reason}")
    # no iteration column: a proposal's id names it (`it3-p2`); `id @ rung` is never broken
    for col in ("proposal", "learners", "E", "σ²", "ρ", f"E_ens(M={M})", "gain ± SE", "decision"):
        table.add_column(col, no_wrap=col == "proposal")
    for pid in state.order:
        c = state.candidates[pid]
        reached = _reached(c, rungs)
        for rung in reached:
            name = row_name(pid, rung, len(rungs) > 1)
            result = c.results.get(rung)
            if result is None:
                table.add_row(name, "-", "-", "-", "-", "-", "-", f"failed: {c.failures[rung].kind}")
                continue
            d = c.decisions.get(rung)
            verdict = "baseline" if pid == "baseline" else (verdict_text(d) if d else "pending")
            if pid == state.baseline_id and rung == reached[-1]:
                verdict += " ★"
            gain = (f"{d.gain:+.4f} ± {d.gain_se_total:.4f}" if d and d.gain_se_total is not None
                    else "-")
            s = result.stats
            table.add_row(name, str(len(result.learners)), f"{s.E:.4f}",
                          f"{s.sigma2:.4f}", f"{s.rho:.3f}", f"{s.ens_error(M):.4f}", gain, verdict)
    decisions = state.decisions()
    confident = sum(1 for d in decisions if d.confident and d.verdict != "undecided")
    undecided = sum(1 for d in decisions if d.verdict == "undecided")
    table.caption = (f"{len(decisions)} decisions: {confident} confident, {undecided} undecided; "
                     f"{state.learners_trained} learners trained\n"  # two short lines, never wrapped
                     f"{state.evaluations} evaluations, {state.accepted} accepted, "
                     f"device {state.device_s:.1f}s, wall {wall_s:.1f}s"
                     + (f", ${state.cost_usd:.4f}" if state.cost_usd else ""))
    return table
