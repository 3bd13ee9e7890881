"""The search loop: propose → filter → evaluate learners → decide (adding learners on close
calls) → log, until a budget ends.

This is the only module that sequences the verbs. Every fact it learns is written to the
trajectory first and then applied to the :class:`~agent.state.SearchState`, so a run killed at
any moment resumes from its log: logged proposals are reused, logged learners are never trained
again (evaluations are kept per spec hash + fidelity and only grow), and the step in flight is
done again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.budget import Budget, StopRequested
from agent.config import RunConfig
from agent.events import evaluation_fields, failure_fields
from agent.pipeline import Pipeline
from agent.proposers.base import ProposalContext, Proposer, ProposerFatal, ProposerOutOfTime
from agent.rule import decide, learner_schedule, next_learners, row_name
from agent.rungs import one_conservative, plan_promotions, refit
from agent.state import Candidate, SearchState
from agent.trajectory import EVALS, Trajectory
from evaluators.data import Task
from evaluators.evaluator import EvalJob, Evaluator, gain_between
from evaluators.fidelity import Fidelity
from evaluators.predictor.base import CandidateFilter
from evaluators.promotion import RungPredictor
from evaluators.results import EvalFailure, EvalResult
from spaces.base import SearchSpace, SizeCap

__all__ = ["SearchLoop", "StopRequested"]


@dataclass
class SearchLoop:
    config: RunConfig
    run_dir: Path
    space: SearchSpace
    task: Task
    rungs: list[Fidelity]  # the fidelity schedule, lowest first; one rung = single fidelity
    proposer: Proposer
    cand_filter: CandidateFilter
    trajectory: Trajectory
    state: SearchState
    stop: StopRequested
    evaluator: Evaluator
    progress: Any = None  # agent.progress.LiveProgress or None

    def __post_init__(self) -> None:
        self.budget = Budget(self.config, self.state, self.proposer, self.stop)
        self.rung_predictor = RungPredictor(self.config.ensemble_size)
        self.ahead = Pipeline(self.proposer, self.config.proposals)  # --pipeline's next call
        self.call_s = 0.0  # wall seconds the last proposer call took (this session)

    @property
    def fidelity(self) -> Fidelity:
        """The top rung: where decisions that move the baseline are made."""
        return self.rungs[-1]

    @property
    def width_mult(self) -> float:
        """The widest training width of the schedule (proposals are size-checked at it)."""
        return max(r.width_mult for r in self.rungs)

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
    def ensure_baseline(self, baseline_spec: BaseModel) -> None:
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
            self.evaluate([cand], self.config.baseline_learners, self.rungs[0])

    def baseline_at(self, rung: Fidelity) -> bool:
        """Evaluate the current baseline at ``rung`` the first time a decision there needs it;
        False if the wall budget cut it or it failed there (then nothing can be decided)."""
        base = self.state.baseline
        if rung.name not in base.results and rung.name not in base.failures:
            self.evaluate([base], self.config.baseline_learners, rung)
        return rung.name in base.results

    def context(self, iteration: int) -> ProposalContext:
        M = self.config.ensemble_size
        return ProposalContext(
            space=self.space, task=self.task.info, task_name=self.task.name, iteration=iteration,
            ensemble_size=M, rule=self.config.rule,
            baseline=self.state.history_item(self.state.baseline, M),
            best_accepted=self.state.best_accepted(M), last_rejected=self.state.last_rejected(M),
            budget_left=self.budget.left(), seen_hashes=frozenset(self.state.seen_hashes),
            deadline=self.budget.deadline(), cap=self.cap, width_mult=self.width_mult)

    def propose(self, iteration: int) -> None:
        """Ask for K proposals (or take the ones ``--pipeline`` asked for ahead) and log them."""
        proposals = self.ahead.take(iteration)
        if proposals is None:
            start = self.state.wall_s(time.time())
            proposals = self.proposer.propose(self.context(iteration), self.config.proposals)
            self.call_s = self.state.wall_s(time.time()) - start
        self.log_proposals(iteration, proposals)

    def ask_ahead(self, iteration: int) -> None:
        """``--pipeline``: start the call for ``iteration`` now, from decided history only,
        when the loop would make it (budgets, the conservative rule) as far as is known now."""
        if (self.config.pipeline and self.ahead.pending is None
                and not self.state.in_iteration(iteration)
                and not self.stop.requested and not self.budget.holds_first_rung()
                and self.budget.stop_reason(iteration) is None):
            self.ahead.ask(iteration, self.context(iteration))

    def log_proposals(self, iteration: int, proposals: list) -> None:
        """Log each proposal: valid ones, and why the others were rejected."""
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
            reason = prop.error if prop.spec is None else self.space.refusal(
                prop.spec, self.task.info, self.cap, self.width_mult)
            if reason is None and duplicate:
                reason = f"duplicate: architecture {spec_hash} was already proposed in this run"
            if reason is not None:
                self.log("proposal_rejected", iteration, proposal_id=pid, reason=reason)

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

    def _train(self, cands: list[Candidate], learners: int, rung: Fidelity
               ) -> Iterator[tuple[Candidate, EvalResult | EvalFailure]]:
        """Train each of ``cands`` up to ``learners`` learners at ``rung`` (only the seeds it
        lacks) as one batch of independent jobs, yielding each result as it arrives; a job the
        run's wall budget cut (not the candidate) yields nothing and stays resumable."""
        several = len(self.rungs) > 1
        jobs = [EvalJob(row_name(c.proposal_id, rung.name, several), self.space.parse(c.spec),
                        c.spec_hash, rung, self.config.learner_seeds(learners),
                        c.results.get(rung.name), self.config.eval_time_limit,
                        self.budget.deadline()) for c in cands]
        progress = self.progress.training if self.progress is not None else None
        for i, result in self.evaluator.evaluate_many(jobs, on_epoch=progress):
            if not (isinstance(result, EvalFailure) and result.by_deadline):
                if self.progress is not None:
                    self.progress.finished(jobs[i].label)
                yield cands[i], result

    def evaluate(self, cands: list[Candidate], learners: int, rung: Fidelity) -> None:
        """Train ``learners`` learners of each of ``cands`` at ``rung`` at once (or reuse a
        logged evaluation of the same architecture there); log each ``evaluated`` as it comes."""
        todo, r, M = [], self.rungs.index(rung), self.config.ensemble_size
        for cand in cands:
            logged = self.state.results.get((cand.spec_hash, rung.name))
            if logged is None:
                todo.append(cand)
                continue
            self.log("evaluated", cand.iteration, rung=r,
                     **evaluation_fields(cand.proposal_id, logged, M), learners=logged.learners,
                     params=logged.params, flops=logged.flops, cached=True)
        for cand, result in self._train(todo, learners, rung) if todo else ():
            if isinstance(result, EvalFailure):
                self.log("evaluated", cand.iteration, rung=r,
                         **failure_fields(cand.proposal_id, result))
                continue
            self.log("evaluated", cand.iteration, rung=r,
                     **evaluation_fields(cand.proposal_id, result, M),
                     learners=result.learners, params=result.params, flops=result.flops,
                     learner_epochs=rung.learner_epochs(len(result.learners)))
            if r == 0:
                self.cand_filter.observe(self.space.parse(cand.spec), result.stats.ens_error(M))

    def extend(self, cands: list[Candidate], learners: int, rung: Fidelity) -> bool:
        """Grow each of ``cands``' evaluations at ``rung`` to ``learners`` learners, as one batch
        of jobs (a close call's candidate and baseline train at once on a distributed
        evaluator), and log ``extended`` for each; False when the wall budget cut one (nothing
        logged for it) — a failure is logged and counts as done."""
        before = {c.proposal_id: len(c.results[rung.name].learners) for c in cands}
        done = 0
        for cand, result in self._train(cands, learners, rung):
            done += 1
            if isinstance(result, EvalFailure):
                self.log("extended", cand.iteration, **failure_fields(cand.proposal_id, result))
                continue
            self.log("extended", cand.iteration,
                     **evaluation_fields(cand.proposal_id, result, self.config.ensemble_size),
                     new_learners=result.learners[before[cand.proposal_id]:],
                     learner_epochs=rung.learner_epochs(len(result.learners)
                                                        - before[cand.proposal_id]))
        return done == len(cands)

    def affordable(self, cand: Candidate, r: int, reserved: float = 0.0) -> bool:
        """Whether ``--max-learner-epochs`` pays for ``cand`` at rung ``r`` (MIN learners, and
        the baseline's learners there if it has none yet)."""
        rung, base = self.rungs[r], self.state.baseline
        need = rung.learner_epochs(self.config.min_learners) + reserved
        if rung.name not in base.results:
            need += rung.learner_epochs(self.config.baseline_learners)
        return self.budget.affords(need)

    def within_budget(self, cands: list[Candidate], r: int) -> list[Candidate]:
        """The first of ``cands`` whose MIN learners at rung ``r`` fit the learner-epoch budget
        together (the rest wait; the run ends as ``max_learner_epochs`` when none fits)."""
        out: list[Candidate] = []
        for cand in cands:
            if not self.affordable(cand, r, self.rungs[r].learner_epochs(self.config.min_learners)
                                   * len(out)):
                break
            out.append(cand)
        return out

    def decide(self, cand: Candidate, rung: Fidelity) -> None:
        """The sequential rule at ``rung``: look at the gain with the learners both sides have
        there; while it is not confident and the candidate is below ``--learners MAX``, add
        learners to it (and, with the same seeds, to the baseline, which keeps them) and look
        again. Logs the ``decision`` once confident or at MAX (then *undecided*); it is final
        at the top rung or at the highest rung the budget allowed."""
        c, M, r = self.config, self.config.ensemble_size, self.rungs.index(rung)
        looks = learner_schedule(c.min_learners, c.max_learners)  # the information at each look
        failed_growth: set[str] = set()
        while True:
            base = self.state.baseline
            new, old = cand.results[rung.name], base.results[rung.name]
            L_new, L_old = len(new.learners), len(old.learners)
            if L_old < L_new and base.proposal_id not in failed_growth:
                if not self.extend([base], L_new, rung):
                    return  # the wall budget ended: the decision stays in flight
                if len(base.results[rung.name].learners) < L_new:
                    failed_growth.add(base.proposal_id)
                continue
            more = next_learners(L_new, c.min_learners, c.max_learners)
            if cand.proposal_id in failed_growth or base.proposal_id in failed_growth:
                more = None
            cost = None if more is None else (  # the candidate's and the baseline's extra
                rung.learner_epochs(more - L_new) + rung.learner_epochs(max(0, more - L_old)))
            short = cost is not None and not self.budget.affords(cost)
            more = None if short else more  # extra learners must fit the learner-epoch budget
            estimate = gain_between(self.run_dir / EVALS, new, old, M,
                                    pool=self.state.seed_pool(rung.name))
            d = decide(new.stats, old.stats, M, c.rule, c.margin, estimate,
                       confidence=c.confidence, looks=looks, final=more is None,
                       reject_confidence=c.reject_confidence, futility=c.futility)
            if d.confident or more is None or d.futile:
                top = r == len(self.rungs) - 1
                final = top or (d.accepted and not self.affordable(cand, r + 1))
                why = d.explanation
                if short and not d.confident:  # say why the looks stopped below MAX
                    why += (f"; stopped at {L_new} learners: {cost:g} more learner-epochs were "
                            "needed, beyond --max-learner-epochs")
                if final and not top:
                    why += f"; final at {rung.name}, the highest rung the learner-epoch budget allowed"
                self.log("decision", cand.iteration, proposal_id=cand.proposal_id,
                         baseline_id=base.proposal_id, **(d.to_dict() | {"explanation": why}),
                         fidelity=rung.name, rung=r, final=final)
                return
            if self.stop.requested or self.out_of_time() is not None:
                return
            both = [cand] + ([base] if L_old < more else [])  # the baseline's same seeds too
            if not self.extend(both, more, rung):
                return
            failed_growth.update(x.proposal_id for x in both
                                 if len(x.results[rung.name].learners) < more)

    def advance(self) -> None:
        """Bring every active candidate as far as the log and the rules allow: evaluate those
        entered at a rung (one batch per rung), decide them in proposal order against the
        baseline at that rung, then promote and repeat. Resumes whatever step was cut."""
        while not (self.stop.requested or self.out_of_time()):
            for rung in self.rungs:
                active = [c for c in (self.state.candidates[p] for p in self.state.order)
                          if c.proposal_id != "baseline" and c.kept and not c.rejected
                          and (c.rung or self.rungs[0].name) == rung.name and not c.stopped]
                pending = self.within_budget([c for c in active if rung.name not in c.results],
                                           self.rungs.index(rung))
                if pending and not self.baseline_at(rung):
                    return
                if pending:
                    self.evaluate(pending, self.config.min_learners, rung)
                for cand in active:
                    if rung.name not in cand.results:
                        if not cand.failures:
                            return  # cut by a budget: stays in flight
                        continue
                    if rung.name not in cand.decisions:
                        if self.stop.requested or self.out_of_time() is not None:
                            return
                        if not self.baseline_at(rung):
                            return
                        self.decide(cand, rung)
            if len(self.rungs) == 1 or not self.promote():
                return

    def promote(self, ahead_s: float = 0.0) -> bool:
        """Log the promotions :func:`agent.rungs.plan_promotions` finds; True if any.
        ``ahead_s``: seconds about to be spent (:meth:`agent.budget.Budget.conservative`)."""
        refit(self.rung_predictor, self.state, self.rungs)
        reserved = [0.0]

        def affordable(cand: Candidate, r: int) -> bool:
            ok = self.affordable(cand, r, reserved[0])
            if ok:
                reserved[0] += self.rungs[r].learner_epochs(self.config.min_learners)
            return ok

        conservative = self.budget.conservative(ahead_s)
        plan = plan_promotions(self.state, self.rungs, self.rung_predictor, self.config.eta,
                               conservative, affordable, self.config.halving)
        if conservative is not None and not self.budget.holds_first_rung():
            plan = one_conservative(plan, self.rungs)  # the wall budget is nearly spent
        for p in plan:
            self.log("promoted", p.candidate.iteration, proposal_id=p.candidate.proposal_id,
                     **{"from": p.src}, to=p.dst, score=p.score, fitted=p.fitted, reason=p.reason)
        return bool(plan)

    def run_iteration(self, iteration: int) -> None:
        """One iteration; on resume, picks up whatever part of it the log already holds."""
        if not self.state.in_iteration(iteration):
            if self.budget.holds_first_rung():
                return  # no new first-rung work: only promotions of waiting candidates
            while (not self.stop.requested and self.out_of_time() is None
                   and self.promote(ahead_s=self.call_s)):
                self.advance()  # the call would end in the wall's last 20 %: finish these first
            if self.stop.requested or self.out_of_time() is not None:
                return
            self.propose(iteration)
        if self.stop.requested:
            return
        self.ask_ahead(iteration + 1)
        self.filter(iteration)
        self.advance()

    def run(self, baseline_spec: BaseModel) -> str:
        """Run until a budget ends; returns the stop reason."""
        try:
            reason = self._run(baseline_spec)
            self.ahead.settle(self.log_proposals)  # a --pipeline call still pending is logged
            return reason
        finally:
            self.ahead.close()

    def _run(self, baseline_spec: BaseModel) -> str:
        try:
            self.ensure_baseline(baseline_spec)
            base = self.state.candidates["baseline"]
            if not base.evaluated:  # cut by the wall budget
                return self.out_of_time() or "max_wall_seconds"
            if base.failure is not None:
                return f"baseline_failed: {base.failure.kind}: {base.failure.message}"
            iteration = max(1, self.state.iteration)
            while True:
                reason = self.budget.stop_reason(iteration, asked=self.ahead.pending == iteration)
                if reason is not None:
                    return reason
                logged = self.state.events_applied
                self.run_iteration(iteration)
                if self.budget.holds_first_rung() and self.state.events_applied == logged:
                    return "max_learner_epochs"  # nothing left to promote, no new work to start
                iteration += 1
        except ProposerOutOfTime:  # the call in flight was cut: nothing of it was logged
            return self.out_of_time() or "max_wall_seconds"
        except ProposerFatal as err:
            return f"proposer_error: {err}"

