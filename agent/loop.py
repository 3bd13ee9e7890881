"""The search loop: propose → filter → evaluate learners → decide (adding learners on close
calls) → log, until a budget ends.

This is the only module that sequences the verbs. Every fact it learns is written to the
trajectory first and then applied to the :class:`~agent.state.SearchState`, so a run killed at
any moment resumes from its log: logged proposals are reused, logged learners are never trained
again (evaluations are kept per spec hash + fidelity and only grow), and the step in flight is
done again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.budget import Budget, StopRequested
from agent.config import RunConfig
from agent.proposers.base import ProposalContext, Proposer, ProposerFatal, ProposerOutOfTime
from agent.rule import decide, learner_schedule, next_learners
from agent.state import Candidate, SearchState
from agent.trajectory import EVALS, Trajectory
from evaluators.data import Task
from evaluators.evaluator import EvalJob, Evaluator, gain_between
from evaluators.fidelity import Fidelity
from evaluators.predictor.base import CandidateFilter
from evaluators.results import EvalFailure, EvalResult
from spaces.base import SearchSpace, SizeCap, SpecTooLarge

__all__ = ["SearchLoop", "StopRequested"]


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
    evaluator: Evaluator
    progress: Any = None  # agent.progress.LiveProgress or None

    def __post_init__(self) -> None:
        self.budget = Budget(self.config, self.state, self.proposer, self.stop)

    # ---- logging ----------------------------------------------------------------------
    def log(self, event: str, iteration: int, **fields: Any) -> dict[str, Any]:
        record = self.trajectory.append(event, iteration, **fields)
        self.state.apply(record)
        if self.progress is not None:
            self.progress.update(self.state, self.config)
        return record

    @property
    def cap(self) -> SizeCap:
        return self.config.size_cap

    def out_of_time(self) -> str | None:
        return self.budget.out_of_time()

    # ---- steps ------------------------------------------------------------------------
    def ensure_baseline(self, baseline_spec) -> None:
        """Log and evaluate the first baseline (iteration 0) unless the log already has it.
        It gets :attr:`RunConfig.baseline_learners` learners, so the run's pooled seed variance
        exists before the first decision."""
        cand = self.state.candidates.get("baseline")
        if cand is None:
            self.log("proposal", 0, proposal_id="baseline", call_id="baseline",
                     source="baseline", raw=baseline_spec.model_dump_json(),
                     spec=baseline_spec.model_dump(),
                     spec_hash=self.space.canonical_hash(baseline_spec),
                     tokens_in=0, tokens_out=0, cost_usd=0.0)
            cand = self.state.candidates["baseline"]
        if not cand.evaluated:
            self.evaluate([cand], self.config.baseline_learners)

    def context(self, iteration: int) -> ProposalContext:
        M = self.config.ensemble_size
        return ProposalContext(
            space=self.space, task=self.task.info, task_name=self.task.name, iteration=iteration,
            ensemble_size=M, rule=self.config.rule,
            baseline=self.state.history_item(self.state.baseline, M),
            best_accepted=self.state.best_accepted(M), last_rejected=self.state.last_rejected(M),
            budget_left=self.budget.left(), seen_hashes=frozenset(self.state.seen_hashes),
            deadline=self.budget.deadline(), cap=self.cap, width_mult=self.fidelity.width_mult)

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

    def _train(self, cands: list[Candidate], learners: int
               ) -> Iterator[tuple[Candidate, EvalResult | EvalFailure]]:
        """Train each of ``cands`` up to ``learners`` learners (only the seeds it lacks) as one
        batch of independent jobs, yielding each result as it arrives; a job the run's wall
        budget cut (not the candidate) yields nothing and stays resumable."""
        jobs = [EvalJob(c.proposal_id, self.space.parse(c.spec), c.spec_hash, self.fidelity,
                        self.config.learner_seeds(learners), c.result,
                        self.config.eval_time_limit, self.budget.deadline()) for c in cands]
        progress = self.progress.training if self.progress is not None else None
        for i, result in self.evaluator.evaluate_many(jobs, on_epoch=progress):
            if not (isinstance(result, EvalFailure) and result.by_deadline):
                yield cands[i], result

    def evaluate(self, cands: list[Candidate], learners: int) -> None:
        """Train ``learners`` learners of each of ``cands`` at once (or reuse a logged evaluation
        of the same architecture at this fidelity); log each ``evaluated`` event as it comes."""
        todo = []
        for cand in cands:
            logged = self.state.results.get((cand.spec_hash, self.fidelity.name))
            if logged is None:
                todo.append(cand)
                continue
            self.log("evaluated", cand.iteration, **_statistics(cand, logged, self.config),
                     learners=logged.learners, params=logged.params, flops=logged.flops,
                     cached=True)
        for cand, result in self._train(todo, learners) if todo else ():
            if isinstance(result, EvalFailure):
                self.log("evaluated", cand.iteration, **_failure(cand, result))
                continue
            self.log("evaluated", cand.iteration, **_statistics(cand, result, self.config),
                     learners=result.learners, params=result.params, flops=result.flops)
            self.cand_filter.observe(self.space.parse(cand.spec),
                                     result.stats.ens_error(self.config.ensemble_size))

    def extend(self, cand: Candidate, learners: int) -> bool:
        """Grow ``cand``'s evaluation to ``learners`` learners and log ``extended``; False when
        the wall budget cut it (nothing logged) — a failure is logged and returns True."""
        before = len(cand.result.learners)
        for _, result in self._train([cand], learners):
            if isinstance(result, EvalFailure):
                self.log("extended", cand.iteration, **_failure(cand, result))
            else:
                self.log("extended", cand.iteration, **_statistics(cand, result, self.config),
                         new_learners=result.learners[before:])
            return True
        return False

    def decide(self, cand: Candidate) -> None:
        """The sequential rule: look at the gain with the learners both sides have; while it is
        not confident and the candidate is below ``--learners MAX``, add learners to it (and,
        with the same seeds, to the baseline, which keeps them) and look again. Logs the
        ``decision`` once it is confident or MAX is reached (then *undecided*)."""
        c, M = self.config, self.config.ensemble_size
        looks = len(learner_schedule(c.min_learners, c.max_learners))
        failed_growth: set[str] = set()
        while True:
            base = self.state.baseline
            L_new, L_old = len(cand.result.learners), len(base.result.learners)
            if L_old < L_new and base.proposal_id not in failed_growth:
                if not self.extend(base, L_new):
                    return  # the wall budget ended: the decision stays in flight
                if len(base.result.learners) < L_new:
                    failed_growth.add(base.proposal_id)
                continue
            more = next_learners(L_new, c.min_learners, c.max_learners)
            if cand.proposal_id in failed_growth or base.proposal_id in failed_growth:
                more = None
            estimate = gain_between(self.run_dir / EVALS, cand.result, base.result, M,
                                    pool=self.state.seed_pool())
            d = decide(cand.stats, base.stats, M, c.rule, c.margin, estimate,
                       confidence=c.confidence, looks=looks, final=more is None)
            if d.confident or more is None:
                self.log("decision", cand.iteration, proposal_id=cand.proposal_id,
                         baseline_id=base.proposal_id, **d.to_dict())
                return
            if self.stop.requested or self.out_of_time() is not None:
                return
            if not self.extend(cand, more):
                return
            if len(cand.result.learners) < more:
                failed_growth.add(cand.proposal_id)

    def run_iteration(self, iteration: int) -> None:
        """One iteration; on resume, picks up whatever part of it the log already holds."""
        if not self.state.in_iteration(iteration):
            self.propose(iteration)
        if self.stop.requested:
            return
        self.filter(iteration)
        kept = [c for c in self.state.in_iteration(iteration) if c.kept and not c.rejected]
        pending = [c for c in kept if not c.evaluated]
        if pending:  # independent trainings: one batch (parallel where the evaluator can)
            if self.stop.requested or self.out_of_time() is not None:
                return
            self.evaluate(pending, self.config.min_learners)
        for cand in kept:  # decisions in proposal order, against the baseline as it stands then
            if not cand.evaluated:
                return  # cut by the wall budget: stays in flight
            if cand.stats is not None and cand.decision is None:
                if self.stop.requested or self.out_of_time() is not None:
                    return
                self.decide(cand)

    def run(self, baseline_spec) -> str:
        """Run until a budget ends; returns the stop reason."""
        try:
            self.ensure_baseline(baseline_spec)
            base = self.state.candidates["baseline"]
            if not base.evaluated:  # cut by the wall budget
                return self.out_of_time() or "max_wall_seconds"
            if base.failure is not None:
                return f"baseline_failed: {base.failure.kind}: {base.failure.message}"
            iteration = max(1, self.state.iteration)
            while True:
                reason = self.budget.stop_reason(iteration)
                if reason is not None:
                    return reason
                self.run_iteration(iteration)
                iteration += 1
        except ProposerOutOfTime:  # the call in flight was cut: nothing of it was logged
            return self.out_of_time() or "max_wall_seconds"
        except ProposerFatal as err:
            return f"proposer_error: {err}"


def _statistics(cand: Candidate, result: EvalResult, config: RunConfig) -> dict[str, Any]:
    """The fields an ``evaluated`` or ``extended`` event shares (statistics over all learners)."""
    return {"proposal_id": cand.proposal_id, "spec_hash": result.spec_hash,
            "fidelity": result.fidelity, "seeds": list(result.seeds), "E": result.E,
            "sigma2": result.sigma2, "rho": result.rho, "ci": result.ci, "se": result.se,
            "seed_var": result.seed_var,
            "predicted_ens_error": result.stats.ens_error(config.ensemble_size),
            "npz": f"{EVALS}/{result.npz}", "wall_s": result.wall_s, "device_s": result.device_s}


def _failure(cand: Candidate, result: EvalFailure) -> dict[str, Any]:
    return {"proposal_id": cand.proposal_id, "spec_hash": result.spec_hash,
            "fidelity": result.fidelity, "seeds": list(result.seeds),
            "failure": {"kind": result.kind, "message": result.message},
            "wall_s": result.wall_s, "device_s": 0.0}
