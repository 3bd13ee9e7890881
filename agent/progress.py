"""The live progress display (stderr) and the end-of-run summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.rule import predicted_ens_error

__all__ = ["LiveProgress", "summary_table"]


def _baseline_text(state, M: int) -> str:
    base = state.baseline
    if base is None or base.stats is None:
        return "baseline: pending"
    return f"baseline {base.proposal_id}: E_ens({M})={predicted_ens_error(base.stats, M):.4f}"


class LiveProgress:
    """Iteration bar plus budget used and the current baseline, refreshed on every event."""

    def __init__(self, console: Console, config):
        self.progress = Progress(TextColumn("[bold]iteration"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.task_id = self.progress.add_task("search", total=max(1, config.iterations), info="")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, state, config) -> None:
        info = (f"{_baseline_text(state, config.ensemble_size)} · evals {state.evaluations} · "
                f"accepted {state.accepted} · device {state.device_s:.0f}s")
        if state.cost_usd:
            info += f" · ${state.cost_usd:.4f}"
        done = max(0, state.iteration - 1) if state.finished is None else state.iteration
        self.progress.update(self.task_id, completed=min(done, config.iterations), info=info)


def summary_table(state, config, reason: str, wall_s: float) -> Table:
    M = config.ensemble_size
    table = Table(title=f"search finished: {reason}")
    for col in ("proposal", "iteration", "E", "σ²", "ρ", f"E_ens(M={M})", "decision"):
        table.add_column(col)
    for pid in state.order:
        c = state.candidates[pid]
        if c.stats is None and c.evaluation is None:
            continue
        if c.stats is None:
            table.add_row(pid, str(c.iteration), "-", "-", "-", "-",
                          f"failed: {c.evaluation['failure']['kind']}")
            continue
        d = c.decision
        verdict = ("baseline" if pid == "baseline" else
                   ("accepted" if d and d["accepted"] else "rejected") +
                   (" (near tie)" if d and d.get("near_tie") else ""))
        if pid == state.baseline_id:
            verdict += " ★"
        s = c.stats
        table.add_row(pid, str(c.iteration), f"{s.E:.4f}", f"{s.sigma2:.4f}", f"{s.rho:.3f}",
                      f"{predicted_ens_error(s, M):.4f}", verdict)
    table.caption = (f"{state.evaluations} evaluations, {state.accepted} accepted, "
                     f"device {state.device_s:.1f}s, wall {wall_s:.1f}s"
                     + (f", ${state.cost_usd:.4f}" if state.cost_usd else ""))
    return table
