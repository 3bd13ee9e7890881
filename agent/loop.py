"""The search loop: propose → filter → evaluate two learners → decide → log, until a budget ends.

This is the only module that sequences the verbs. Every fact it learns is written to the
trajectory first and then applied to the :class:`~agent.state.SearchState`, so a run killed at
any moment resumes from its log: logged proposals are reused, logged evaluations are never
repeated (cache: spec hash + fidelity + seeds), and the proposal in flight is evaluated again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from agent.config import RunConfig
from agent.proposers.base import ProposalContext, Proposer, ProposerFatal, ProposerOutOfTime
from agent.rule import decide, predicted_ens_error
from agent.state import Candidate, SearchState
from agent.trajectory import EVALS, Trajectory
from evaluators.data import Task
from evaluators.dual import evaluate
from evaluators.fidelity import Fidelity
from evaluators.predictor.base import CandidateFilter
from evaluators.results import EvalFailure
from evaluators.stats import paired_gain_se
from spaces.base import SearchSpace, SizeCap, SpecTooLarge

__all__ = ["SearchLoop", "StopRequested"]


class StopRequested:
    """A flag the SIGINT handler sets; the loop stops after the event in flight."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, *_: Any) -> None:
        self.requested = True


@dataclass
class SearchLoop:
    config: RunConfig
    run_dir: Path
    space: SearchSpace
    task: Task
    fidelity: Fidelity
    proposer: Proposer
    cand_filter: CandidateFilter
    trajectory: Trajectory
    state: SearchState
    stop: StopRequested
    progress: Any = None  # agent.progress.LiveProgress or None

    # ---- logging ----------------------------------------------------------------------
    def log(self, event: str, iteration: int, **fields: Any) -> dict[str, Any]:
        record = self.trajectory.append(event, iteration, **fields)
        self.state.apply(record)
        if self.progress is not None:
            self.progress.update(self.state, self.config)
        return record

    @property
    def cap(self) -> SizeCap:
        return SizeCap(max_params=self.config.max_params, max_flops=self.config.max_flops)

    # ---- budget -----------------------------------------------------------------------
    def stop_reason(self, next_iteration: int) -> str | None:
        c, s = self.config, self.state
        if self.stop.requested:
            return "interrupted"
        if next_iteration > c.iterations:
            return "iterations"
        if (reason := self.out_of_time()) is not None:
            return reason
        if c.max_cost_usd is not None and (
                s.cost_usd + self.proposer.expected_call_cost_usd() > c.max_cost_usd):
            return "max_cost_usd"
        if self.proposer.exhausted():
            return "proposer_exhausted"
        return None

    def wall_left(self) -> float | None:
        """Seconds left of ``--max-wall-seconds`` (negative once spent); None without one."""
        if self.config.max_wall_seconds is None:
            return None
        return self.config.max_wall_seconds - self.state.wall_s(time.time())

    def out_of_time(self) -> str | None:
        c, s = self.config, self.state
        if (wall := self.wall_left()) is not None and wall <= 0:
            return "max_wall_seconds"
        if c.max_device_seconds is not None and s.device_s >= c.max_device_seconds:
            return "max_device_seconds"
        return None

    def time_limit(self) -> tuple[float | None, bool]:
        """Seconds this evaluation may train (``--eval-time-limit``, never past the wall budget),
        and whether the wall budget is what sets them."""
        own, wall = self.config.eval_time_limit, self.wall_left()
        if wall is None:
            return own, False
        left = max(1.0, wall)
        return (own, False) if own is not None and own <= left else (left, True)

    def budget_left(self) -> dict[str, float]:
        c, s = self.config, self.state
        left = {"iterations": float(c.iterations - s.iteration)}
        if (wall := self.wall_left()) is not None:
            left["wall_s"] = wall
        if c.max_device_seconds is not None:
            left["device_s"] = c.max_device_seconds - s.device_s
        if c.max_cost_usd is not None:
            left["cost_usd"] = c.max_cost_usd - s.cost_usd
        return left

    # ---- steps ------------------------------------------------------------------------
    def ensure_baseline(self, baseline_spec) -> None:
        """Log and evaluate the first baseline (iteration 0) unless the log already has it."""
        cand = self.state.candidates.get("baseline")
        if cand is None:
            self.log("proposal", 0, proposal_id="baseline", call_id="baseline",
                     source="baseline", raw=baseline_spec.model_dump_json(),
                     spec=baseline_spec.model_dump(),
                     spec_hash=self.space.canonical_hash(baseline_spec),
                     tokens_in=0, tokens_out=0, cost_usd=0.0)
            cand = self.state.candidates["baseline"]
        if cand.evaluation is None:
            self.evaluate(cand)

    def context(self, iteration: int) -> ProposalContext:
        M = self.config.ensemble_size
        wall = self.wall_left()
        return ProposalContext(
            space=self.space, task=self.task.info, task_name=self.task.name, iteration=iteration,
            ensemble_size=M, rule=self.config.rule,
            baseline=self.state.history_item(self.state.baseline, M),
            best_accepted=self.state.best_accepted(M), last_rejected=self.state.last_rejected(M),
            budget_left=self.budget_left(), seen_hashes=frozenset(self.state.seen_hashes),
            deadline=None if wall is None else time.time() + wall, cap=self.cap,
            width_mult=self.fidelity.width_mult)

    def propose(self, iteration: int) -> None:
        """Ask for K proposals and log each: valid ones, and why the others were rejected."""
        proposals = self.proposer.propose(self.context(iteration), self.config.proposals)
        for j, prop in enumerate(proposals, start=1):
            pid = f"it{iteration}-p{j}"
            spec_hash = prop.spec_hash if prop.spec is not None else None
            duplicate = spec_hash is not None and spec_hash in self.state.seen_hashes
            self.log("proposal", iteration, proposal_id=pid, call_id=prop.call_id,
                     source=prop.source, raw=prop.raw,
                     spec=prop.spec.model_dump() if prop.spec is not None else None,
                     spec_hash=spec_hash, tokens_in=prop.tokens_in, tokens_out=prop.tokens_out,
                     cost_usd=prop.cost_usd)
            for error in prop.repairs:
                self.log("repair", iteration, proposal_id=pid, error=error)
            reason = prop.error if prop.spec is None else self.refusal(prop.spec)
            if reason is None and duplicate:
                reason = f"duplicate: architecture {spec_hash} was already proposed in this run"
            if reason is not None:
                self.log("proposal_rejected", iteration, proposal_id=pid, reason=reason)

    def refusal(self, spec) -> str | None:
        """Why a parsed spec cannot be trained (re-validated, size-capped), or None."""
        try:
            spec = self.space.parse(spec.model_dump())
            self.space.check_size(spec, self.task.info, self.cap, self.fidelity.width_mult)
        except ValidationError as err:
            return f"invalid spec: {self.space.validation_error_text(err)}"
        except SpecTooLarge as err:
            return str(err)
        return None

    def filter(self, iteration: int) -> None:
        """Let the predictor keep k of this iteration's valid, not yet filtered proposals."""
        todo = [c for c in self.state.in_iteration(iteration) if c.spec and not c.rejected
                and c.kept is None]
        if not todo:
            return
        specs = [self.space.parse(c.spec) for c in todo]
        already = sum(1 for c in self.state.in_iteration(iteration) if c.kept)
        scores = self.cand_filter.keep(specs, max(0, self.config.keep - already), iteration)
        for cand, score in zip(todo, scores, strict=True):
            self.log("filtered", iteration, proposal_id=cand.proposal_id,
                     predicted_mean=score.predicted_mean, predicted_std=score.predicted_std,
                     score=score.score, kept=score.kept, note=score.note)

    def evaluate(self, cand: Candidate) -> None:
        """Train the dual learners (or reuse a logged evaluation of the same architecture)."""
        cached = self.cached_evaluation(cand.spec_hash)
        if cached is not None:
            fields = {k: v for k, v in cached.items()
                      if k not in ("event", "time", "iteration", "proposal_id")}
            self.log("evaluated", cand.iteration, proposal_id=cand.proposal_id, cached=True,
                     **fields)
            return
        spec = self.space.parse(cand.spec)
        limit, budget_bound = self.time_limit()
        result = evaluate(spec, self.space, self.task, self.fidelity, self.config.seeds,
                          npz_dir=self.run_dir / EVALS, time_limit_s=limit, cap=self.cap,
                          compile_model=self.config.compile)
        if isinstance(result, EvalFailure) and result.kind == "timeout" and budget_bound:
            return  # the run's wall budget ended, not the candidate: it stays in flight (resumable)
        common = {"proposal_id": cand.proposal_id, "spec_hash": result.spec_hash,
                  "fidelity": self.fidelity.name, "seeds": list(result.seeds)}
        if isinstance(result, EvalFailure):
            self.log("evaluated", cand.iteration, **common,
                     failure={"kind": result.kind, "message": result.message},
                     wall_s=result.wall_s, device_s=0.0)
            return
        data = result.model_dump()
        self.log("evaluated", cand.iteration, **common, E=result.E, sigma2=result.sigma2,
                 rho=result.rho, ci=data["ci"], se=data["se"],
                 predicted_ens_error=result.predicted_ensemble_error(self.config.ensemble_size),
                 learners=data["learners"], npz=f"{EVALS}/{result.npz}", wall_s=result.wall_s,
                 device_s=result.device_s, params=result.params, flops=result.flops)
        self.cand_filter.observe(spec, result.predicted_ensemble_error(self.config.ensemble_size))

    def cached_evaluation(self, spec_hash: str) -> dict[str, Any] | None:
        for c in self.state.candidates.values():
            ev = c.evaluation
            if (ev and not ev.get("failure") and ev.get("spec_hash") == spec_hash
                    and ev.get("fidelity") == self.fidelity.name
                    and list(ev.get("seeds", [])) == list(self.config.seeds)):
                return ev
        return None

    def decide(self, cand: Candidate) -> None:
        base = self.state.baseline
        M = self.config.ensemble_size
        gain, gain_se = gain_and_se(self.run_dir, cand.evaluation, base.evaluation, M)
        d = decide(cand.stats, base.stats, M, self.config.rule, self.config.margin, gain_se)
        self.log("decision", cand.iteration, proposal_id=cand.proposal_id,
                 baseline_id=base.proposal_id, **d.to_dict())

    def run_iteration(self, iteration: int) -> None:
        """One iteration; on resume, picks up whatever part of it the log already holds."""
        if not self.state.in_iteration(iteration):
            self.propose(iteration)
        if self.stop.requested:
            return
        self.filter(iteration)
        for cand in self.state.in_iteration(iteration):
            if not cand.kept or cand.rejected:
                continue
            if cand.evaluation is None:
                if self.stop.requested or self.out_of_time() is not None:
                    return
                self.evaluate(cand)
            if cand.stats is not None and cand.decision is None:
                self.decide(cand)

    def run(self, baseline_spec) -> str:
        """Run until a budget ends; returns the stop reason."""
        try:
            self.ensure_baseline(baseline_spec)
            if self.state.candidates["baseline"].evaluation is None:  # cut by the wall budget
                return self.out_of_time() or "max_wall_seconds"
            if self.state.baseline is None:
                failure = (self.state.candidates["baseline"].evaluation or {}).get("failure", {})
                return (f"baseline_failed: {failure.get('kind', 'error')}: "
                        f"{failure.get('message', 'no evaluation')}")
            iteration = max(1, self.state.iteration)
            while True:
                reason = self.stop_reason(iteration)
                if reason is not None:
                    return reason
                self.run_iteration(iteration)
                iteration += 1
        except ProposerOutOfTime:  # the call in flight was cut: nothing of it was logged
            return self.out_of_time() or "max_wall_seconds"
        except ProposerFatal as err:
            return f"proposer_error: {err}"


def gain_and_se(run_dir: Path, new_ev: dict, old_ev: dict, M: int) -> tuple[float, float | None]:
    """Predicted gain and its paired-bootstrap SE from the two logged npz files."""
    try:
        a = np.load(run_dir / new_ev["npz"])
        b = np.load(run_dir / old_ev["npz"])
    except (OSError, KeyError):
        return (predicted_ens_error_from(old_ev, M) - predicted_ens_error_from(new_ev, M), None)
    if not np.array_equal(a["labels"], b["labels"]):
        return (predicted_ens_error_from(old_ev, M) - predicted_ens_error_from(new_ev, M), None)
    return paired_gain_se(a["probs"], b["probs"], a["labels"], M, n_boot=200, seed=0)


def predicted_ens_error_from(ev: dict, M: int) -> float:
    from agent.rule import Stats

    return predicted_ens_error(Stats(ev["E"], ev["sigma2"], ev["rho"]), M)
