"""End of a run: the optional true-ensemble validation, ``best_spec.json``, ``run_finished``
and the report."""

from __future__ import annotations

import json
import time

from agent.rule import predicted_ens_error
from agent.trajectory import BEST_SPEC

__all__ = ["validate_baselines", "finish_run"]


def validate_baselines(loop, console) -> None:
    """``--validate``: train the real M-ensemble of the first and the final baseline."""
    if not loop.config.validate_ensemble:
        return
    from evaluators.ensemble import validate_ensemble

    state, M = loop.state, loop.config.ensemble_size
    done = {e["spec_hash"] for e in state.validated}
    for pid in dict.fromkeys([state.first_baseline_id, state.baseline_id]):
        cand = state.candidates.get(pid) if pid else None
        if cand is None or cand.spec_hash in done or loop.stop.requested:
            continue
        console.print(f"validating {pid}: training the real {M}-ensemble …")
        v = validate_ensemble(loop.space.parse(cand.spec), loop.space, loop.task, loop.fidelity,
                              M, seed0=loop.config.seeds[0], compile_model=loop.config.compile)
        loop.log("validated", 0, proposal_id=pid, spec_hash=cand.spec_hash, M=M,
                 predicted_ens_brier=predicted_ens_error(cand.stats, M),
                 true_ens_brier=v.true_ens_brier, true_ens_error01=v.true_ens_error01,
                 test_predicted_ens_brier=v.test_predicted_ens_brier,
                 test_true_ens_brier=v.test_true_ens_brier,
                 test_true_ens_error01=v.test_true_ens_error01, single_brier=v.single_brier,
                 wall_s=v.wall_s)
        done.add(cand.spec_hash)


def finish_run(loop, reason: str, console) -> str | None:
    """Write ``best_spec.json`` and ``run_finished``, then the report; returns the report path."""
    state, config = loop.state, loop.config
    best = state.baseline
    if best is not None:
        ev = best.evaluation
        test_accs = [l.get("test_acc") for l in ev.get("learners", []) if l.get("test_acc") is not None]
        (loop.run_dir / BEST_SPEC).write_text(json.dumps({
            "space": config.space, "proposal_id": best.proposal_id, "spec_hash": best.spec_hash,
            "spec": best.spec, "E": ev["E"], "sigma2": ev["sigma2"], "rho": ev["rho"],
            "M": config.ensemble_size,
            "predicted_ens_error": predicted_ens_error(best.stats, config.ensemble_size),
            "test_acc": sum(test_accs) / len(test_accs) if test_accs else None,
            "dataset": config.dataset, "fidelity": config.fidelity}, indent=2))
    loop.log("run_finished", 0, reason=reason, iterations=state.iteration,
             evaluations=state.evaluations, accepted=state.accepted,
             best_spec_hash=best.spec_hash if best else None, device_s=state.device_s,
             wall_s=state.wall_s(time.time()), tokens_in=state.tokens_in,
             tokens_out=state.tokens_out, cost_usd=state.cost_usd)
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
