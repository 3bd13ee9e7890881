"""Learner evaluation: L ≥ 2 trainings of one spec → E, σ², ρ (see ``evaluators.stats``).

``evaluate`` trains one learner per seed with independent initialisation and data order (or
extends an earlier evaluation with more seeds, training only those), saves the validation
probabilities of all learners to ``<spec_hash>-<fidelity>-<seed1>-…-<seedL>.npz`` (``probs``
(L, N, K) float32, ``labels`` (N,) int64) so anyone can recompute every statistic, and returns
an :class:`~evaluators.results.EvalResult` — or an :class:`~evaluators.results.EvalFailure` for
NaN losses, out-of-memory, time limits and any other error. Failures are results, not crashes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.data import Task
from evaluators.fidelity import Fidelity
from evaluators.results import Curves, EvalFailure, EvalResult, LearnerResult
from evaluators.stats import bootstrap_stats, brier, residual_stats, residuals, seed_variance
from evaluators.train import (
    EpochTick,
    LearnerRun,
    TimeLimitExceeded,
    TrainData,
    TrainingDiverged,
    steps_per_epoch,
    train_learners,
)
from spaces.base import SearchSpace, SizeCap, SpecTooLarge, TaskInfo

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["evaluate", "train_new_learners", "summarise", "TrainedLearners", "train_spec",
           "prepare_data", "step_flops", "learner_steps", "choose_packed", "choose_threads", "npz_name",
           "SMALL_STEP_FLOPS"]

# Below this many forward FLOPs per training step, CPU ops last microseconds and intra-op
# threads cost more in synchronisation than they save; on a shared machine they are much worse
# (measured: one low-fidelity MNIST-1D evaluation took 5 s with 1 thread and 91–96 s with 2
# threads at load 7 on 2 cores).
SMALL_STEP_FLOPS = 1e10
# On CUDA, packing learners under vmap pays only for many learners of a small network (the
# measured crossover lies between the two networks of benchmarks/trainer_speed.py): see
# choose_packed.
PACK_MIN_LEARNERS = 8
PACK_MAX_STEP_FLOPS = 1e10
# The most learners in one pack: the largest pack measured (5.7x at L = 32 on an H100). A
# validation ensemble of M = 50-200 trains as ceil(M / 32) packs, so its memory is one pack's.
PACK_MAX_LEARNERS = 32


def npz_name(spec_hash: str, fidelity: Fidelity, seeds: tuple[int, ...]) -> str:
    return f"{spec_hash}-{fidelity.name}-" + "-".join(str(s) for s in seeds) + ".npz"


def _kept(n_train: int, fidelity: Fidelity) -> int:
    """How many of the task's ``n_train`` training samples the fidelity trains on."""
    return max(1, int(round(n_train * fidelity.train_fraction)))


def _info_at(info: TaskInfo, fidelity: Fidelity) -> TaskInfo:
    """The task's shape at the fidelity's input resolution (``prepare_data`` resizes to it)."""
    if fidelity.resolution is None:
        return info
    return type(info)((info.input_shape[0],) + (fidelity.resolution,) * info.spatial_dims,
                      info.num_classes)


def prepare_data(task: Task, fidelity: Fidelity) -> TrainData:
    """Apply the fidelity's training fraction and input resolution, staying on the device."""
    keep = _kept(len(task.y_train), fidelity)
    x_train, y_train = task.x_train[:keep], task.y_train[:keep]  # train order is already random
    xs = [x_train, task.x_val, task.x_test]
    if fidelity.resolution is not None:
        size = _info_at(task.info, fidelity).input_shape[1:]
        mode = "linear" if task.info.spatial_dims == 1 else "bilinear"
        xs = [F.interpolate(x, size=size, mode=mode, align_corners=False) for x in xs]
    return TrainData(xs[0], y_train, xs[1], task.y_val, xs[2])


def step_flops(space: SearchSpace, spec: BaseModel, info: TaskInfo, fidelity: Fidelity,
               n_train: int) -> float:
    """Forward FLOPs of one training step of one learner: the spec's FLOPs per sample at the
    fidelity's width and input resolution, times the batch (at most the ``n_train`` samples the
    task has; the fidelity keeps a fraction of them)."""
    flops = space.cost(spec, _info_at(info, fidelity), fidelity.width_mult)["flops"]
    return float(flops) * min(fidelity.batch_size, _kept(n_train, fidelity))


def learner_steps(fidelity: Fidelity, n_train: int) -> int:
    """Optimizer steps one learner takes at ``fidelity`` on a task with ``n_train`` training
    samples (the fraction the fidelity keeps, in batches of at most that many)."""
    kept = _kept(n_train, fidelity)
    return fidelity.epochs * steps_per_epoch(kept, min(fidelity.batch_size, kept))


def choose_packed(device: torch.device, packed: bool | Literal["auto"], learners: int,
                  step_flops: float) -> bool:
    """``auto``: packed (vmap) only on CUDA, for ``learners`` ≥ ``PACK_MIN_LEARNERS`` of a small
    step (< ``PACK_MAX_STEP_FLOPS`` forward FLOPs per learner); else one learner at a time.

    Measured on an H100 (``benchmarks/trainer_speed.py --device cuda``, README): an NB201
    MNIST-1D learner (2.5e8 FLOPs per step) trains 0.6× as fast packed at L = 2, 2.2× at L = 8,
    5.7× at L = 32; an airbench-size CNN (1.8e11 per step) 0.3× as fast packed at L = 2 and 8,
    and 32 of them do not fit 80 GB. On CPU the two run at about the same speed."""
    if packed != "auto":
        return bool(packed)
    return (device.type == "cuda" and learners >= PACK_MIN_LEARNERS
            and step_flops < PACK_MAX_STEP_FLOPS)


def choose_threads(device: torch.device, step_flops: float,
                   threads: int | None | Literal["auto"]) -> int | None:
    """CPU intra-op threads for training. ``auto``: 1 for small steps (< ``SMALL_STEP_FLOPS``
    forward FLOPs; also makes CPU results independent of the machine's core count), torch's
    setting otherwise; ignored off the CPU."""
    if device.type != "cpu":
        return None
    if threads == "auto":
        return 1 if step_flops < SMALL_STEP_FLOPS else None
    return threads


def train_spec(spec: BaseModel, space: SearchSpace, task: Task, fidelity: Fidelity, seeds: list[int], *,
               cap: SizeCap | None = None, packed: bool | Literal["auto"] = "auto",
               time_limit_s: float | None = None,
               threads: int | None | Literal["auto"] = "auto",
               compile_model: bool = False,
               on_epoch: Callable[[EpochTick], None] | None = None) -> list[LearnerRun]:
    """Build ``spec`` (size-checked first) and train one learner per seed at ``fidelity``;
    ``compile_model`` puts the training forward through ``torch.compile``; ``on_epoch`` is
    called after every epoch (progress)."""
    data = prepare_data(task, fidelity)
    info = _info_at(task.info, fidelity)
    space.check_size(spec, info, cap, width_mult=fidelity.width_mult)
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    device = task.device
    batch_size = min(fidelity.batch_size, len(data.y_train))
    flops = step_flops(space, spec, task.info, fidelity, len(task.y_train))
    return train_learners(
        lambda: space.construct(spec, info, fidelity.width_mult), data, seeds=list(seeds),
        epochs=fidelity.epochs, batch_size=batch_size, lr=fidelity.lr,
        packed=choose_packed(device, packed, len(seeds), flops), pack_size=PACK_MAX_LEARNERS,
        deadline=deadline, use_amp=device.type == "cuda",
        threads=choose_threads(device, flops, threads),
        compile_model=compile_model, on_epoch=on_epoch)


def classify_failure(err: BaseException) -> tuple[str, str]:
    """Map an exception from training to a failure kind and a one-line message."""
    if isinstance(err, TrainingDiverged):
        return "nan", str(err)
    if isinstance(err, TimeLimitExceeded):
        return "timeout", str(err)
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "oom", f"out of memory: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    if isinstance(err, SpecTooLarge):
        return "error", str(err)
    return "error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


@dataclass
class TrainedLearners:
    """The new learners of one evaluation before any statistics: what a training process (this
    one, or a remote worker) hands back. ``seeds`` are all the evaluation's seeds (the earlier
    ones first), ``runs`` the new learners only; ``labels``/``y_test`` are the validation and
    test labels; ``wall_s``/``device_s`` the seconds spent so far and training."""

    spec_hash: str
    fidelity: Fidelity
    seeds: tuple[int, ...]
    runs: list[LearnerRun]
    labels: np.ndarray
    y_test: np.ndarray
    cost: dict[str, int]
    wall_s: float
    device_s: float


def train_new_learners(spec: BaseModel, space: SearchSpace, task: Task, fidelity: Fidelity,
                       seeds: Sequence[int], *, previous: EvalResult | None = None,
                       time_limit_s: float | None = None, cap: SizeCap | None = None,
                       packed: bool | Literal["auto"] = "auto",
                       threads: int | None | Literal["auto"] = "auto",
                       compile_model: bool = False,
                       on_epoch: Callable[[EpochTick], None] | None = None,
                       only: Sequence[int] | None = None) -> TrainedLearners | EvalFailure:
    """The training half of :func:`evaluate`: train the seeds ``previous`` lacks (``only``: just
    these of them, a part of the evaluation trained apart from the rest); reads and writes no
    file."""
    spec_hash = space.canonical_hash(spec)
    seeds = tuple(int(s) for s in seeds)
    old_seeds = tuple(previous.seeds) if previous is not None else ()
    if previous is not None and (previous.spec_hash != spec_hash or seeds[:len(old_seeds)] != old_seeds):
        raise ValueError(f"cannot extend evaluation {previous.npz} with seeds {seeds}")
    new_seeds = list(seeds[len(old_seeds):])
    if len(seeds) < 2 or not new_seeds:
        raise ValueError(f"an evaluation needs >= 2 learners and new seeds, got {seeds}")
    if only is not None:
        if not only or not set(only) <= set(new_seeds):
            raise ValueError(f"seeds {tuple(only)} are not among the new seeds {tuple(new_seeds)}")
        new_seeds = [s for s in new_seeds if s in set(only)]
    start = time.monotonic()
    try:
        cost = space.check_size(spec, task.info, cap, width_mult=fidelity.width_mult)
        t_train = time.monotonic()
        runs = train_spec(spec, space, task, fidelity, new_seeds, cap=cap, packed=packed,
                          time_limit_s=time_limit_s, threads=threads,
                          compile_model=compile_model, on_epoch=on_epoch)
        device_s = time.monotonic() - t_train
    except Exception as err:  # failures are results: the loop logs them and goes on
        if task.device.type == "cuda":
            torch.cuda.empty_cache()
        kind, message = classify_failure(err)
        return EvalFailure(spec_hash=spec_hash, fidelity=fidelity.name, seeds=seeds, kind=kind,
                           message=message, wall_s=time.monotonic() - start)
    return TrainedLearners(spec_hash, fidelity, seeds, runs,
                           task.y_val.cpu().numpy().astype(np.int64), task.y_test.cpu().numpy(),
                           cost, time.monotonic() - start, device_s)


def summarise(trained: TrainedLearners, *, npz_dir: str | Path, M: int = 50,
              previous: EvalResult | None = None, n_boot: int = 200) -> EvalResult:
    """The statistics half of :func:`evaluate`: join ``previous``'s saved probabilities (read
    from ``npz_dir``) with the new learners', save all of them as the new ``.npz`` and compute
    E, σ², ρ, their CIs and the seed variance at ensemble size ``M``."""
    start = time.monotonic()
    seeds, labels, runs = trained.seeds, trained.labels, trained.runs
    probs = np.stack([r.val_probs for r in runs]).astype(np.float32)
    if previous is not None:
        with np.load(Path(npz_dir) / previous.npz) as saved:
            probs = np.concatenate([saved["probs"], probs])
    name = npz_name(trained.spec_hash, trained.fidelity, seeds)
    Path(npz_dir).mkdir(parents=True, exist_ok=True)
    np.savez(Path(npz_dir) / name, probs=probs, labels=labels)
    stats = residual_stats(probs, labels)
    ci, se = bootstrap_stats(probs, labels, n_boot=n_boot, seed=seeds[0])
    y_test = trained.y_test
    learners = [LearnerResult(
        seed=r.seed, val_acc=float(np.mean(r.val_probs.argmax(1) == labels)),
        val_nll=float(-np.mean(np.log(np.clip(r.val_probs[np.arange(len(labels)), labels],
                                               1e-12, None)))),
        val_brier=brier(r.val_probs, labels),
        test_acc=float(np.mean(r.test_probs.argmax(1) == y_test)),
        curves=Curves(train_loss=r.train_loss, val_acc=r.val_acc, grad_norm=r.grad_norm),
    ) for r in runs]
    return EvalResult(spec_hash=trained.spec_hash, fidelity=trained.fidelity.name, seeds=seeds,
                      E=stats.E, sigma2=stats.sigma2, rho=stats.rho, ci=ci, se=se,
                      seed_var=seed_variance(residuals(probs, labels), M),
                      learners=(list(previous.learners) if previous else []) + learners,
                      npz=name, wall_s=trained.wall_s + time.monotonic() - start,
                      device_s=trained.device_s, params=trained.cost["params"],
                      flops=trained.cost["flops"])


def evaluate(spec: BaseModel, space: SearchSpace, task: Task, fidelity: Fidelity,
             seeds: Sequence[int] = (0, 1), *, npz_dir: str | Path, M: int = 50,
             previous: EvalResult | None = None,
             time_limit_s: float | None = None, cap: SizeCap | None = None,
             packed: bool | Literal["auto"] = "auto", n_boot: int = 200,
             threads: int | None | Literal["auto"] = "auto",
             compile_model: bool = False,
             on_epoch: Callable[[EpochTick], None] | None = None) -> EvalResult | EvalFailure:
    """Train one learner of ``spec`` per seed and return the statistics of all of them, or why
    that failed (:func:`train_new_learners`, then :func:`summarise`).

    ``previous``: an earlier evaluation of the same spec and fidelity to extend; only the seeds
    it lacks are trained, its saved probabilities are read back from ``npz_dir``, and the result
    (saved as a new ``.npz``) covers every learner. ``M``: the ensemble size for ``seed_var``.
    ``threads``: CPU intra-op threads while training (see :func:`choose_threads`);
    ``compile_model``: ``torch.compile`` the training forward; ``on_epoch``: progress callback."""
    trained = train_new_learners(spec, space, task, fidelity, seeds, previous=previous,
                                 time_limit_s=time_limit_s, cap=cap, packed=packed,
                                 threads=threads, compile_model=compile_model, on_epoch=on_epoch)
    if isinstance(trained, EvalFailure):
        return trained
    return summarise(trained, npz_dir=npz_dir, M=M, previous=previous, n_boot=n_boot)
