"""Evaluations as Ray tasks: an iteration's candidates (and their learners) train at once, on one
machine's cores and GPUs or on a cluster.

:class:`RayEvaluator` keeps :meth:`~evaluators.evaluator.Evaluator.evaluate_many`'s contract:
each job's ``(index, result)`` is yielded as soon as the job is done, in completion order. A job
is cut into *parts*: one task per new learner (``split="learner"``) or one task for all of its
learners (``split="job"``, where they can train packed with ``vmap``). ``auto`` cuts per job
where the worker would pack them (:func:`~evaluators.dual.choose_packed`: on CUDA, at least
:data:`~evaluators.dual.PACK_MIN_LEARNERS` new learners of a step under
``PACK_MAX_STEP_FLOPS``), per learner otherwise, so a large network's learners never queue in
one task (measured on an H100: 8 candidates × 4 learners, one task per learner 43.5 s, one
packed task per job 47.7 s).
Each task asks Ray for ``num_cpus=1`` and
``num_gpus=min(1, gpus_per_learner × learners it trains)``; at most ``max_concurrent`` tasks are
in flight.

A worker rebuilds the data from its recipe (:class:`TaskRecipe`: ``load_task``'s arguments; no
tensor is shipped from the driver) and the space from its name, trains through
:func:`evaluators.dual.train_new_learners` — the code path of the local evaluator — and returns
the learners' probabilities and curves. The driver alone joins the parts, writes the ``.npz``
and computes the statistics (:func:`evaluators.dual.summarise`), so results equal the local
evaluator's. A worker that dies is retried ``max_retries`` times by Ray; after that the job is an
:class:`~evaluators.results.EvalFailure` of kind ``error`` naming the worker's death.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import torch

from evaluators.dual import (
    TrainedLearners,
    choose_packed,
    step_flops,
    summarise,
    train_new_learners,
)
from evaluators.evaluator import EvalJob, Evaluator, within_limit
from evaluators.fidelity import Fidelity
from evaluators.results import EvalFailure, EvalResult
from evaluators.train import EpochTick
from spaces.base import SizeCap, TaskInfo

if TYPE_CHECKING:
    from pydantic import BaseModel
    from ray import ObjectRef

__all__ = ["RayEvaluator", "TaskRecipe", "RayUnavailable", "ClusterUnreachable", "connect",
           "import_ray", "INSTALL_HINT", "KILL_ONCE_ENV"]

INSTALL_HINT = "--executor ray needs the [ray] extra: pip install -e '.[ray]'"
#: fault injection for tests: a worker that finds this variable naming a file that does not
#: exist creates it and kills itself (SIGKILL) before training — once per file
KILL_ONCE_ENV = "EDAS_RAY_KILL_ONCE"


class RayUnavailable(RuntimeError):
    """Ray is not installed (the ``[ray]`` extra)."""


class ClusterUnreachable(RuntimeError):
    """``--ray-address`` names no Ray cluster that answers."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayUnavailable` saying which extra to install."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None,
            timeout_s: float = 10.0) -> dict[str, float]:
    """Start a local Ray (``address`` empty; ``num_cpus`` caps it) or join a running cluster
    (``auto``, or ``host:port`` of its head). Returns the cluster's resources. A ``host:port``
    that does not answer a TCP connection within ``timeout_s`` raises
    :class:`ClusterUnreachable` before Ray is asked (Ray itself would retry for a minute)."""
    ray = import_ray()
    if not ray.is_initialized():
        if address and address != "auto":
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ClusterUnreachable(f"--ray-address {address!r}: expected host:port or auto")
            try:
                socket.create_connection((host, int(port)), timeout=timeout_s).close()
            except OSError as err:
                raise ClusterUnreachable(f"--ray-address {address}: no Ray cluster answers there "
                                         f"({err.strerror or err})") from None
        try:
            ray.init(address=address or None, num_cpus=None if address else num_cpus,
                     include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ClusterUnreachable(f"--ray-address {address}: cannot join a Ray cluster "
                                     f"({first})") from None
    return dict(ray.cluster_resources())


@dataclass(frozen=True)
class TaskRecipe:
    """How a worker rebuilds the run's data: the arguments of
    :func:`evaluators.data.load_task` (name, device, folder, sample cap and seed)."""

    dataset: str
    device: str = "cpu"
    data_dir: str | None = None
    n_samples: int | None = None
    seed: int = 0


_TASKS: dict[TaskRecipe, object] = {}  # per worker process: the data, loaded once


def _kill_once_for_tests() -> None:
    flag = os.environ.get(KILL_ONCE_ENV)
    if flag and not Path(flag).exists():
        Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def train_part(space_name: str, recipe: TaskRecipe, job: EvalJob, only: tuple[int, ...],
               options: dict) -> TrainedLearners | EvalFailure:
    """One Ray task: train the learners ``only`` of ``job`` (within its limits) in this
    process. ``options``: ``cap``, ``packed``, ``compile_model`` of
    :func:`~evaluators.dual.train_new_learners`."""
    _kill_once_for_tests()
    from evaluators.data import load_task
    from spaces import get_space

    if recipe not in _TASKS:
        _TASKS[recipe] = load_task(recipe.dataset, device=recipe.device, data_dir=recipe.data_dir,
                                   n_samples=recipe.n_samples, seed=recipe.seed)
    task, space = _TASKS[recipe], get_space(space_name)
    return within_limit(job, lambda limit: train_new_learners(
        job.spec, space, task, job.fidelity, job.seeds, previous=job.previous,
        time_limit_s=limit, only=only, **options))


def join_parts(parts: Sequence[TrainedLearners]) -> TrainedLearners:
    """One evaluation's new learners from its parts: runs in seed order, device seconds added
    (learner-seconds spent), wall seconds of the slowest part."""
    order = {s: i for i, s in enumerate(parts[0].seeds)}
    runs = sorted((r for p in parts for r in p.runs), key=lambda r: order[r.seed])
    return replace(parts[0], runs=runs, wall_s=max(p.wall_s for p in parts),
                   device_s=sum(p.device_s for p in parts))


def _error_failure(job: EvalJob, err: BaseException, retries: int, wall_s: float) -> EvalFailure:
    """A task that raised or whose worker died, as the job's failure (one line)."""
    ray = import_ray()
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    kind = "error"
    if isinstance(err, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        message = f"the Ray worker training it died (retried {retries} times): {first}"
    elif isinstance(err, ray.exceptions.OutOfMemoryError):
        kind, message = "oom", f"out of memory: Ray killed the worker: {first}"
    elif isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        lines = str(cause).strip().splitlines()
        message = f"{type(cause).__name__}: {lines[0] if lines else ''}"
    else:
        message = f"{type(err).__name__}: {first}"
    return EvalFailure(spec_hash=job.spec_hash, fidelity=job.fidelity.name, seeds=job.seeds,
                       kind=kind, message=message, wall_s=wall_s)


@dataclass
class _Batch:
    """The bookkeeping of one :meth:`RayEvaluator.evaluate_many` call."""

    jobs: Sequence[EvalJob]
    parts: dict[int, list[TrainedLearners]] = field(default_factory=dict)
    left: dict[int, int] = field(default_factory=dict)  # parts still to come per job
    started: dict[int, float] = field(default_factory=dict)
    ticks: dict[int, Callable[[EpochTick], None]] = field(default_factory=dict)


@dataclass
class RayEvaluator(Evaluator):
    """Trains on Ray workers; writes ``.npz`` files into ``npz_dir`` (on the driver only).

    ``space_name``/``recipe``: what workers rebuild; ``M``: the ensemble size of each result's
    seed variance; ``gpus_per_learner``: the GPU fraction one learner asks for (0 on CPU);
    ``max_concurrent``: tasks in flight at most (None: as many as Ray's resources allow);
    ``max_retries``: Ray's retries of a task whose worker died; ``split``: one task per new
    learner or per job (``auto``: per job where the worker would train them packed,
    :func:`~evaluators.dual.choose_packed`: on CUDA, ≥ ``PACK_MIN_LEARNERS`` new learners of a
    small step; else per learner); ``task_info``/``n_train``: the task's shape and training
    samples, for a step's FLOPs in that choice (without them every step counts as small);
    ``address``: the
    cluster to join when Ray is not yet initialised (None: a local Ray)."""

    space_name: str
    recipe: TaskRecipe
    npz_dir: Path
    M: int
    cap: SizeCap | None = None
    compile_model: bool = False
    packed: bool | Literal["auto"] = "auto"
    gpus_per_learner: float = 0.0
    max_concurrent: int | None = None
    max_retries: int = 2
    split: Literal["learner", "job", "auto"] = "auto"
    address: str | None = None
    task_info: TaskInfo | None = None
    n_train: int | None = None

    def __post_init__(self) -> None:
        if self.gpus_per_learner < 0 or (self.max_concurrent is not None and self.max_concurrent < 1):
            raise ValueError(f"gpus_per_learner {self.gpus_per_learner} must be >= 0 and "
                             f"max_concurrent {self.max_concurrent} >= 1")

    def _parts(self, job: EvalJob) -> list[tuple[int, ...]]:
        new = job.seeds[len(job.previous.seeds) if job.previous is not None else 0:]
        split = self.split
        if split == "auto":  # one task where its learners would train packed, as the worker decides
            flops = 0.0
            if self.task_info is not None and self.n_train is not None:
                from spaces import get_space

                flops = step_flops(get_space(self.space_name), job.spec, self.task_info, job.fidelity,
                                   self.n_train)
            packs = choose_packed(torch.device(self.recipe.device), self.packed, len(new), flops)
            split = "job" if packs else "learner"
        return [(s,) for s in new] if split == "learner" else [tuple(new)]

    def evaluate(self, spec: BaseModel, fidelity: Fidelity, seeds: Sequence[int], *,
                 previous: EvalResult | None = None, time_limit_s: float | None = None,
                 on_epoch: Callable[[EpochTick], None] | None = None
                 ) -> EvalResult | EvalFailure:
        from spaces import get_space

        job = EvalJob("evaluation", spec, get_space(self.space_name).canonical_hash(spec),
                      fidelity, tuple(int(s) for s in seeds), previous, time_limit_s)
        return next(iter(self.evaluate_many([job], (lambda _: on_epoch) if on_epoch else None)))[1]

    def evaluate_many(self, jobs: Sequence[EvalJob],
                      on_epoch: Callable[[str], Callable[[EpochTick], None]] | None = None
                      ) -> Iterator[tuple[int, EvalResult | EvalFailure]]:
        """Submit every job's parts (at most ``max_concurrent`` in flight) and yield each job's
        result when its last part is back. Progress is per job: a tick when each part ends
        (per-epoch progress stays inside the worker process)."""
        ray = import_ray()
        if not ray.is_initialized():
            connect(self.address)
        remote = ray.remote(train_part)
        options = {"cap": self.cap, "packed": self.packed, "compile_model": self.compile_model}
        batch = _Batch(jobs)
        queue = deque((i, part) for i, job in enumerate(jobs) for part in self._parts(job))
        for i, _ in queue:
            batch.left[i] = batch.left.get(i, 0) + 1
        inflight: dict = {}
        limit = self.max_concurrent or len(queue)
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    i, part = queue.popleft()
                    if i not in batch.left:  # the job already failed
                        continue
                    gpus = min(1.0, self.gpus_per_learner * len(part))
                    ref = remote.options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries,
                                         retry_exceptions=False).remote(
                        self.space_name, self.recipe, jobs[i], part, options)
                    inflight[ref] = i
                    if i not in batch.started:
                        batch.started[i] = time.monotonic()
                        if on_epoch is not None:
                            batch.ticks[i] = on_epoch(jobs[i].label)
                if not inflight:
                    continue
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    i = inflight.pop(ref)
                    result = self._collect(ray, ref, i, batch)
                    if result is None:
                        continue
                    for other in [r for r, j in inflight.items() if j == i]:
                        ray.cancel(other, force=True)  # a failed job's other parts are moot
                        inflight.pop(other)
                    yield i, result
        finally:
            for ref in inflight:  # the caller stopped early (interrupt, error): stop the rest
                ray.cancel(ref, force=True)

    def _collect(self, ray: ModuleType, ref: ObjectRef, i: int,
                 batch: _Batch) -> EvalResult | EvalFailure | None:
        """Take one finished part of job ``i``; the job's result once it is complete or has
        failed, None while parts are still out (or the job is already answered)."""
        if i not in batch.left:
            return None
        job = batch.jobs[i]
        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as err:
            out = _error_failure(job, err, self.max_retries, time.monotonic() - batch.started[i])
        if isinstance(out, EvalFailure):
            del batch.left[i]
            return out
        batch.parts.setdefault(i, []).append(out)
        batch.left[i] -= 1
        if i in batch.ticks:  # learners done of the job's new learners, all epochs
            done = sum(len(p.runs) for p in batch.parts[i])
            total = len(job.seeds) - (len(job.previous.seeds) if job.previous else 0)
            batch.ticks[i](EpochTick(done, total, job.fidelity.epochs, job.fidelity.epochs))
        if batch.left[i]:
            return None
        del batch.left[i]
        return summarise(join_parts(batch.parts.pop(i)), npz_dir=self.npz_dir, M=self.M,
                         previous=job.previous)
