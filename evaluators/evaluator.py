"""The evaluation seam: what the loop asks of whoever trains learners (Archai-style).

One obligation: :meth:`Evaluator.evaluate` trains a spec's learners at a fidelity for given seeds
(or only the seeds an earlier evaluation lacks) and returns an
:class:`~evaluators.results.EvalResult` or an :class:`~evaluators.results.EvalFailure`. The
local implementation trains in this process; a distributed one (Ray) can sit behind the same
call. :func:`load_probs` and :func:`gain_between` read the saved probabilities back, so
decisions and replays need no training.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from evaluators.data import Task
from evaluators.dual import evaluate
from evaluators.fidelity import Fidelity
from evaluators.results import EvalFailure, EvalResult
from evaluators.stats import GainEstimate, gain_estimate
from evaluators.train import EpochTick
from spaces.base import SearchSpace, SizeCap

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Evaluator", "EvalJob", "LocalEvaluator", "run_job", "within_limit", "load_probs",
           "gain_between"]

R = TypeVar("R")


@dataclass(frozen=True)
class EvalJob:
    """One training request: ``spec`` at ``fidelity`` for ``seeds`` (only those ``previous``
    lacks); ``label`` names it in progress and errors. It may train ``time_limit_s`` seconds
    (``--eval-time-limit``) and never past ``deadline`` (epoch seconds: the run's wall budget)."""

    label: str
    spec: object
    spec_hash: str
    fidelity: Fidelity
    seeds: tuple[int, ...]
    previous: EvalResult | None = None
    time_limit_s: float | None = None
    deadline: float | None = None

    def limit(self) -> tuple[float | None, bool]:
        """Seconds it may train if it starts now, and whether the deadline sets them."""
        if self.deadline is None:
            return self.time_limit_s, False
        left = self.deadline - time.time()
        if self.time_limit_s is not None and self.time_limit_s <= left:
            return self.time_limit_s, False
        return left, True


def run_job(evaluator: Evaluator, job: EvalJob,
            on_epoch: Callable[[EpochTick], None] | None = None) -> EvalResult | EvalFailure:
    """Run one job now: a deadline already past or cutting the training gives a timeout
    failure marked ``by_deadline``."""
    return within_limit(job, lambda limit: evaluator.evaluate(
        job.spec, job.fidelity, job.seeds, previous=job.previous, time_limit_s=limit,
        on_epoch=on_epoch))


def within_limit(job: EvalJob, train: Callable[[float | None], R]) -> R | EvalFailure:
    """``train(seconds it may take)`` under ``job``'s limits, started now (here or on a remote
    worker): a deadline already past or cutting the training gives a timeout failure marked
    ``by_deadline``."""
    limit, by_deadline = job.limit()
    if by_deadline and limit <= 0:
        return EvalFailure(spec_hash=job.spec_hash,
                           fidelity=job.fidelity.name, seeds=job.seeds, kind="timeout",
                           message="the run's wall budget ended before it started",
                           by_deadline=True)
    result = train(limit)
    if isinstance(result, EvalFailure) and result.kind == "timeout" and by_deadline:
        return result.model_copy(update={"by_deadline": True})
    return result


class Evaluator(ABC):
    """Trains learners of specs; the loop's only way to get statistics.

    :meth:`evaluate` is synchronous; :meth:`evaluate_many` takes independent jobs at once and
    returns their results in the jobs' order (here one after the other; a distributed evaluator
    runs them in parallel)."""

    @abstractmethod
    def evaluate(self, spec: BaseModel, fidelity: Fidelity, seeds: Sequence[int], *,
                 previous: EvalResult | None = None, time_limit_s: float | None = None,
                 on_epoch: Callable[[EpochTick], None] | None = None
                 ) -> EvalResult | EvalFailure:
        """Statistics of one learner per seed of ``spec`` at ``fidelity``; with ``previous``
        (same spec and fidelity, its seeds a prefix of ``seeds``) only the new seeds train.
        ``on_epoch`` is called as training goes (progress)."""

    def evaluate_many(self, jobs: Sequence[EvalJob],
                      on_epoch: Callable[[str], Callable[[EpochTick], None]] | None = None
                      ) -> Iterator[tuple[int, EvalResult | EvalFailure]]:
        """(index, result) of every job as each finishes (here one after the other; a
        distributed evaluator runs them at once and yields in completion order).
        ``on_epoch(label)`` gives a job's progress callback where progress can be shown."""
        for i, job in enumerate(jobs):
            yield i, run_job(self, job, on_epoch(job.label) if on_epoch else None)


@dataclass
class LocalEvaluator(Evaluator):
    """Trains in this process on ``task``'s device; writes ``.npz`` files into ``npz_dir``.

    ``M`` is the ensemble size at which each result's seed variance is measured."""

    space: SearchSpace
    task: Task
    npz_dir: Path
    M: int
    cap: SizeCap | None = None
    compile_model: bool = False
    packed: bool | Literal["auto"] = "auto"

    def evaluate(self, spec: BaseModel, fidelity: Fidelity, seeds: Sequence[int], *,
                 previous: EvalResult | None = None, time_limit_s: float | None = None,
                 on_epoch: Callable[[EpochTick], None] | None = None
                 ) -> EvalResult | EvalFailure:
        return evaluate(spec, self.space, self.task, fidelity, seeds, npz_dir=self.npz_dir,
                        M=self.M, previous=previous, time_limit_s=time_limit_s, cap=self.cap,
                        packed=self.packed, compile_model=self.compile_model,
                        on_epoch=on_epoch)


def load_probs(npz_dir: str | Path, result: EvalResult,
               learners: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The saved validation probabilities (L, N, K) of ``result`` (its first ``learners`` only,
    when given) and the labels (N,)."""
    with np.load(Path(npz_dir) / result.npz) as saved:
        probs, labels = saved["probs"], saved["labels"]
    if learners is not None:
        if learners > len(probs):
            raise ValueError(f"{result.npz} holds {len(probs)} learners, {learners} asked for")
        probs = probs[:learners]
    return probs, labels


def gain_between(npz_dir: str | Path, new: EvalResult, old: EvalResult, M: int, *,
                 pool: tuple[float, int] | None, learners: tuple[int, int] | None = None
                 ) -> GainEstimate:
    """:func:`evaluators.stats.gain_estimate` of candidate ``new`` over baseline ``old`` from
    their saved probabilities (with ``learners`` = (L_new, L_old): the first L of each)."""
    pn, labels = load_probs(npz_dir, new, learners[0] if learners else None)
    po, labels_old = load_probs(npz_dir, old, learners[1] if learners else None)
    if not np.array_equal(labels, labels_old):
        raise ValueError(f"{new.npz} and {old.npz} were not evaluated on the same samples")
    return gain_estimate(pn, po, labels, M, pool=pool)
