"""End of a run: the optional true-ensemble validation, ``best_spec.json``, ``run_finished``
and the report — and, when a budget cut evaluations short, what was cut and the exact command
that finishes them."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.rule import row_name
from agent.trajectory import BEST_SPEC, resume_command

if TYPE_CHECKING:
    from rich.console import Console

    from agent.loop import SearchLoop
    from agent.progress import LiveProgress
    from agent.state import SearchState

__all__ = ["validate_baselines", "finish_run", "end_reason", "pending_evaluations",
           "cut_evaluations", "CutReport", "finishing_budget"]

#: reasons under which evaluations left in flight were cut by a budget, and its flag
_BUDGET_FLAGS = {"max_wall_seconds": "--max-wall-seconds",
                 "max_device_seconds": "--max-device-seconds"}


def pending_evaluations(state: SearchState) -> list[str]:
    """Proposal ids the search meant to train and has no evaluation for (the baseline, and
    candidates the filter kept), in log order."""
    out = []
    for pid in state.order:
        c = state.candidates[pid]
        if not c.evaluated and not c.rejected and (pid == "baseline" or c.kept):
            out.append(pid)
    return out


def end_reason(loop: SearchLoop, reason: str) -> str:
    """The reason that actually ended the run: the loop reports ``iterations`` when the last
    iteration was reached, even if a budget had left some of its kept candidates untrained;
    then that budget is the reason: the wall or device seconds when they are spent, else the
    learner-epochs when capped (a kept candidate waits when its learners do not fit)."""
    if reason == "iterations" and pending_evaluations(loop.state):
        if (why := loop.out_of_time()) is not None:
            return why
        return "max_learner_epochs" if loop.config.max_learner_epochs is not None else "max_wall_seconds"
    return reason


def finishing_budget(spent_s: float, estimates_s: list[float | None]) -> int:
    """A budget (whole run, seconds, rounded up to 10) that fits what was spent plus each cut
    evaluation trained again from the start with 25 % slack and 30 s for start-up; an
    evaluation with no estimate counts as twice what was spent."""
    need = spent_s + 30.0 + 1.25 * sum(e if e is not None else 2 * spent_s for e in estimates_s)
    return int(math.ceil(need / 10.0) * 10)


@dataclass
class CutReport:
    """Evaluations a budget cut, where each one was, and the command that finishes them."""

    reason: str
    items: list[dict] = field(default_factory=list)  # proposal_id, label, where, estimate_s
    command: str = ""

    def to_dict(self) -> dict:
        return {"budget": self.reason, "evaluations": self.items, "resume_command": self.command}

    def text(self) -> str:
        parts = [f"{i['label']} ({i['where']})" for i in self.items]
        return (f"{self.reason} cut {len(self.items)} evaluation(s) short: {', '.join(parts)}. "
                f"To finish: {self.command}")


def cut_evaluations(loop: SearchLoop, reason: str, progress: LiveProgress | None = None
                    ) -> CutReport | None:
    """What the budget named by ``reason`` cut (None when it cut nothing): every training still
    in flight (``progress.started``: begun and not returned, a baseline's or a candidate's added
    learners included) and every evaluation the search meant to make and had not started, each
    named ``id @ rung`` in a run with several rungs. ``progress``: the
    :class:`~agent.progress.LiveProgress` whose ``last_ticks`` say where each training was."""
    flag = _BUDGET_FLAGS.get(reason)
    if flag is None:
        return None
    several = len(loop.rungs) > 1
    names = {row_name(pid, r.name, several): (pid, r.name)
             for pid in loop.state.order for r in loop.rungs}
    in_flight = list(getattr(progress, "started", {}) or {})
    ticks = getattr(progress, "last_ticks", {}) or {}
    items = [(label, *names.get(label, (label, None)), True) for label in in_flight]
    for pid in pending_evaluations(loop.state):
        rung = loop.state.candidates[pid].rung or loop.rungs[0].name
        if (label := row_name(pid, rung, several)) not in in_flight:
            items.append((label, pid, rung, False))
    out = []
    for label, pid, rung, started in items:
        tick = ticks.get(label)
        estimate = (tick.full_s if tick is not None else None) or _typical_s(loop.state, rung)
        where = (f"cut after {tick.tick.where()}" if tick is not None else
                 "cut during its first epoch" if started else "not started")
        out.append({"proposal_id": pid, "label": label, "where": where,
                    "estimate_s": None if estimate is None else round(estimate, 1)})
    if not out:
        return None
    now = time.time()
    spent = loop.state.wall_s(now) if reason == "max_wall_seconds" else loop.state.device_s
    budget = finishing_budget(spent, [i["estimate_s"] for i in out])
    command = resume_command(loop.run_dir, flag, budget)
    return CutReport(reason, out, command)


def _typical_s(state: SearchState, rung: str | None) -> float | None:
    """Mean seconds of the logged evaluation calls at ``rung`` (of all of them when none is
    there): the estimate for a cut evaluation that left no tick."""
    calls = [(f, r.wall_s) for c in state.candidates.values() for f, r in c.results.items()
             if r.wall_s]
    walls = [w for f, w in calls if f == rung] or [w for _, w in calls]
    return sum(walls) / len(walls) if walls else None


def validate_baselines(loop: SearchLoop, console: Console) -> None:
    """``--validate``: train the real M-ensemble of the first and the final baseline."""
    if not loop.config.validate_ensemble:
        return
    from evaluators.ensemble import validate_ensemble

    state, M = loop.state, loop.config.ensemble_size
    done = {e.spec_hash for e in state.validated}
    for pid in dict.fromkeys([state.first_baseline_id, state.baseline_id]):
        cand = state.candidates.get(pid) if pid else None
        if cand is None or cand.spec_hash in done or loop.stop.requested:
            continue
        at = cand.highest_rung  # the prediction's rung: the top, unless the budget stopped lower
        below = f" (predicted at {at}, below the top rung {loop.fidelity.name})" \
            if at != loop.fidelity.name else ""
        console.print(f"validating {pid}: training the real {M}-ensemble at "
                      f"{loop.fidelity.name} …{below}")
        v = validate_ensemble(loop.space.parse(cand.spec), loop.space, loop.task, loop.fidelity,
                              M, seed0=loop.config.learner_seeds(1)[0],
                              compile_model=loop.config.compile)
        loop.log("validated", 0, proposal_id=pid, spec_hash=cand.spec_hash, M=M,
                 predicted_ens_brier=cand.results[at].stats.ens_error(M), fidelity=at,
                 true_ens_brier=v.true_ens_brier, true_ens_error01=v.true_ens_error01,
                 test_predicted_ens_brier=v.test_predicted_ens_brier,
                 test_true_ens_brier=v.test_true_ens_brier,
                 test_true_ens_error01=v.test_true_ens_error01, single_brier=v.single_brier,
                 wall_s=v.wall_s)
        done.add(cand.spec_hash)


def finish_run(loop: SearchLoop, reason: str, console: Console, cut: CutReport | None = None
               ) -> str | None:
    """Write ``best_spec.json`` and ``run_finished`` (with ``cut`` when a budget cut
    evaluations short), then the report; returns the report path."""
    state, config = loop.state, loop.config
    best = state.baseline
    if best is not None and best.highest_result is not None:
        ev, at = best.highest_result, best.highest_rung  # a progressive run's top figures
        test_accs = [l.test_acc for l in ev.learners if l.test_acc is not None]
        (loop.run_dir / BEST_SPEC).write_text(json.dumps({
            "space": config.space, "proposal_id": best.proposal_id, "spec_hash": best.spec_hash,
            "spec": best.spec, "E": ev.E, "sigma2": ev.sigma2, "rho": ev.rho,
            "learners": len(ev.learners), "M": config.ensemble_size,
            "predicted_ens_error": ev.stats.ens_error(config.ensemble_size),
            "test_acc": sum(test_accs) / len(test_accs) if test_accs else None,
            "dataset": config.dataset, "fidelity": at}, indent=2))
    loop.log("run_finished", 0, reason=reason, iterations=state.iteration,
             evaluations=state.evaluations, accepted=state.accepted,
             best_spec_hash=best.spec_hash if best else None, device_s=state.device_s,
             wall_s=state.wall_s(time.time()), tokens_in=state.tokens_in,
             tokens_out=state.tokens_out, cost_usd=state.cost_usd,
             **({"cut": cut.to_dict()} if cut is not None else {}))
    loop.trajectory.close()
    try:
        from agent.report import write_report
    except ImportError:
        return None
    try:
        return str(write_report(loop.run_dir))
    except Exception as err:  # the run's evidence is on disk already; say why the report failed
        console.print(f"[yellow]report failed:[/] {type(err).__name__}: {err}")
        return None
