"""One readable training loop for L learners of one architecture.

Data stays on the device; each learner has its own seed for initialisation *and* data order.
``packed=False`` trains the learners one after the other; ``packed=True`` trains them at once
with ``torch.func`` (stacked parameters and batch-norm buffers, ``vmap`` over learners), which
pays on a GPU. Both give the same learners up to floating-point reassociation.
``compile_model=True`` runs the training forward through ``torch.compile`` (pays on a GPU for
long trainings; the first steps are slower while it compiles). ``on_epoch`` is called with an
:class:`EpochTick` after every epoch (progress display; ETA from the fraction done).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LearnerRun", "TrainingDiverged", "TimeLimitExceeded", "train_learners",
           "TrainData", "EpochTick", "steps_per_epoch"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TimeLimitExceeded(RuntimeError):
    """Training ran past its wall-clock limit; ``tick`` is the last epoch finished (None when
    the first epoch was cut)."""

    def __init__(self, message: str, tick: EpochTick | None = None) -> None:
        super().__init__(message)
        self.tick = tick


@dataclass(frozen=True)
class EpochTick:
    """One finished epoch: of learner ``learner`` (1-based) of ``learners``, epoch ``epoch``
    (1-based) of ``epochs``. ``packed``: learners ``first`` … ``learner`` train at once (one
    pack; ``first`` = 1 and ``learner`` = ``learners`` when every learner is in it), so
    ``epoch`` counts for each of them."""

    learner: int
    learners: int
    epoch: int
    epochs: int
    packed: bool = False
    first: int = 1

    @property
    def fraction(self) -> float:
        """Fraction of the evaluation's learner-epochs done, in (0, 1]."""
        if self.packed:
            in_pack = self.learner - self.first + 1
            return ((self.first - 1) * self.epochs + self.epoch * in_pack) / (self.learners * self.epochs)
        return ((self.learner - 1) * self.epochs + self.epoch) / (self.learners * self.epochs)

    def where(self) -> str:
        """``learner 1/2, epoch 3/10`` (``learners 1-8/8`` when packed)."""
        who = (f"learners {self.first}-{self.learner}/{self.learners}" if self.packed
               else f"learner {self.learner}/{self.learners}")
        return f"{who}, epoch {self.epoch}/{self.epochs}"


class _Clock:
    """The wall-clock limit and the last finished epoch, for a timeout message that says both."""

    def __init__(self, deadline: float | None, on_epoch: Callable[[EpochTick], None] | None) -> None:
        self.deadline, self.on_epoch = deadline, on_epoch
        self.limit_s = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.last: EpochTick | None = None

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            done = f"after {self.last.where()}" if self.last else "during the first epoch"
            limit = f"{self.limit_s:.1f}" if self.limit_s >= 1 else f"{self.limit_s:.2g}"
            raise TimeLimitExceeded(f"training ran past its time limit of {limit} s ({done})",
                                    self.last)

    def tick(self, tick: EpochTick) -> None:
        self.last = tick
        if self.on_epoch is not None:
            self.on_epoch(tick)


@dataclass(frozen=True)
class TrainData:
    """Tensors on one device: training set, and the sets whose probabilities we return."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor


@dataclass
class LearnerRun:
    """One trained learner: its probabilities on validation and test, and its curves."""

    seed: int
    val_probs: np.ndarray  # (N_val, K) float32
    test_probs: np.ndarray  # (N_test, K) float32
    train_loss: list[float]
    val_acc: list[float]
    grad_norm: list[float]


def _init(factory: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().to(device)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` samples: full batches only (the last, partial
    batch is dropped), at least one."""
    return max(1, n // batch_size)


def _schedule(total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first 10 % of steps, then cosine decay to zero."""
    warm = max(1, total_steps // 10)
    return lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(
        math.pi * (s - warm) / max(1, total_steps - warm)))


@torch.no_grad()
def _predict(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             batch: int = 1024) -> torch.Tensor:
    """Softmax probabilities, computed in chunks; forward returns (..., B, K) logits."""
    return torch.cat([forward(x[i:i + batch]).float().softmax(-1)
                      for i in range(0, len(x), batch)], dim=-2)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (``None``: leave torch's setting)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_learners(factory: Callable[[], nn.Module], data: TrainData, *, seeds: list[int],
                   epochs: int, batch_size: int, lr: float, weight_decay: float = 5e-4,
                   packed: bool = False, pack_size: int | None = None,
                   deadline: float | None = None,
                   use_amp: bool = False, threads: int | None = None,
                   compile_model: bool = False,
                   on_epoch: Callable[[EpochTick], None] | None = None) -> list[LearnerRun]:
    """Train one learner per seed (L = ``len(seeds)``) with AdamW and a warm-up + cosine schedule.

    ``deadline`` is a ``time.monotonic()`` value; passing it raises :class:`TimeLimitExceeded`,
    whose message states the limit and the last epoch finished. A NaN/inf loss raises
    :class:`TrainingDiverged`. ``packed`` trains the learners at once, in packs of at most
    ``pack_size`` (all of them when ``None``; the L learners split into ⌈L / pack_size⌉ packs of
    near-equal size, so memory stays that of one pack however large the ensemble). ``threads``
    fixes the CPU intra-op thread count for the duration (results on CPU are reproducible for a
    given thread count). ``on_epoch`` gets an
    :class:`EpochTick` after each epoch (learner i/L, epoch e/E).
    """
    if pack_size is not None and pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    clock = _Clock(deadline, on_epoch)
    device = data.x_train.device
    with cpu_threads(threads if device.type == "cpu" else None):
        if packed:
            runs = []
            n_packs = math.ceil(len(seeds) / (pack_size or len(seeds)))
            for pack in np.array_split(np.asarray(seeds), n_packs):
                pack = [int(s) for s in pack]
                with _training_rng(pack[0], device):
                    runs += _train_packed(factory, data, pack, epochs, batch_size, lr, weight_decay,
                                          clock, use_amp, compile_model, len(runs), len(seeds))
            return runs
        runs = []
        for i, s in enumerate(seeds, start=1):
            with _training_rng(s, device):
                runs += _train_one(factory, data, [s], epochs, batch_size, lr, weight_decay,
                                   clock, use_amp, compile_model, (i, len(seeds)))
        return runs


@contextlib.contextmanager
def _training_rng(seed: int, device: torch.device) -> Iterator[None]:
    """The global RNG (dropout and other in-model randomness) seeded from the learner's seed
    for its training, then restored: a learner is a function of its seed, whatever ran before."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 104729)
        yield


def _train_one(factory: Callable[[], nn.Module], data: TrainData, seeds: list[int], epochs: int,
               batch_size: int, lr: float, weight_decay: float, clock: _Clock, use_amp: bool,
               compile_model: bool, position: tuple[int, int] = (1, 1)) -> list[LearnerRun]:
    seed, device = seeds[0], data.x_train.device
    model = _init(factory, seed, device)
    if use_amp and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last) if data.x_train.dim() == 4 else model
    train_forward = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(data.y_train)
    steps = epochs * steps_per_epoch(n, batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    order_rng = torch.Generator(device="cpu").manual_seed(seed + 7919)
    curves = {"train_loss": [], "val_acc": [], "grad_norm": []}
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order_rng).to(device)
        losses, norms = [], []
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = perm[i:i + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = F.cross_entropy(train_forward(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
            opt.step()
            sched.step()
            losses.append(loss.detach())
            clock.check()
        epoch_loss = torch.stack(losses).mean().item()
        if not math.isfinite(epoch_loss):
            raise TrainingDiverged(f"training loss became {epoch_loss} (seed {seed})")
        model.eval()
        curves["train_loss"].append(epoch_loss)
        curves["grad_norm"].append(torch.stack(norms).mean().item())
        val_probs = _predict(model, data.x_val)
        curves["val_acc"].append(_accuracy(val_probs, data.y_val))
        clock.tick(EpochTick(position[0], position[1], epoch, epochs))
    test_probs = _predict(model, data.x_test)
    return [LearnerRun(seed, val_probs.cpu().numpy().astype(np.float32),
                       test_probs.cpu().numpy().astype(np.float32), **curves)]


def _accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(-1) == labels).float().mean().item()


def _plain_batch_norm(m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``m``'s batch norm in plain tensor ops, in fp32: what the packed path runs instead of
    the fused kernel. Under ``vmap`` on CUDA the fused kernel failed twice: bf16 activations
    with fp32 running statistics in its backward, and cuDNN refusing the learner-folded input
    (CUDNN_STATUS_NOT_SUPPORTED at 8 learners). Same statistics as ``nn.BatchNorm``: batch
    mean and biased variance normalise in training, the running variance is updated with the
    unbiased one; ``momentum=None`` is the cumulative average."""
    x32, dims = x.float(), [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    if m.training or m.running_mean is None:
        mean, var = x32.mean(dims), x32.var(dims, unbiased=False)
        if m.training and m.running_mean is not None:
            with torch.no_grad():
                m.num_batches_tracked.add_(1)
                momentum = m.momentum if m.momentum is not None else (
                    1.0 / m.num_batches_tracked.float())
                n = x32.numel() / x32.shape[1]
                m.running_mean.mul_(1 - momentum).add_(momentum * mean)
                m.running_var.mul_(1 - momentum).add_(momentum * var * n / max(n - 1, 1))
    else:
        mean, var = m.running_mean, m.running_var
    y = (x32 - mean.view(shape)) * torch.rsqrt(var.view(shape) + m.eps)
    if m.weight is not None:
        y = y * m.weight.view(shape) + m.bias.view(shape)
    return y


def _train_packed(factory: Callable[[], nn.Module], data: TrainData, seeds: list[int], epochs: int,
                  batch_size: int, lr: float, weight_decay: float, clock: _Clock, use_amp: bool,
                  compile_model: bool, before: int, total: int) -> list[LearnerRun]:
    """All learners at once: parameters and buffers stacked on a leading learner axis.
    ``before`` / ``total``: learners in the packs before this one / in all packs (progress)."""
    from torch.func import functional_call, stack_module_state, vmap

    device, L = data.x_train.device, len(seeds)
    models = [_init(factory, s, device) for s in seeds]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    for m in base.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = functools.partial(_plain_batch_norm, m)
    opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=weight_decay)
    n = len(data.y_train)
    steps = epochs * steps_per_epoch(n, batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    order_rngs = [torch.Generator(device="cpu").manual_seed(s + 7919) for s in seeds]

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    train_fwd = vmap(forward, randomness="different")
    if compile_model:
        train_fwd = torch.compile(train_fwd)
    eval_fwd = vmap(forward, in_dims=(0, 0, None))
    curves = [{"train_loss": [], "val_acc": [], "grad_norm": []} for _ in seeds]
    for epoch in range(1, epochs + 1):
        base.train()
        perms = torch.stack([torch.randperm(n, generator=g) for g in order_rngs]).to(device)
        losses, norms = [], []
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = perms[:, i:i + batch_size]  # (L, B)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = train_fwd(params, buffers, data.x_train[idx])  # (L, B, K)
                per_learner = F.cross_entropy(logits.flatten(0, 1).float(),
                                              data.y_train[idx].flatten(),
                                              reduction="none").view(L, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            per_learner.sum().backward()
            sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in params.values()
                     if p.grad is not None)  # an op cut off by 'none' edges gets no gradient
            norms.append(sq.sqrt())
            opt.step()
            sched.step()
            losses.append(per_learner.detach())
            clock.check()
        epoch_loss = torch.stack(losses).mean(0)
        if not torch.isfinite(epoch_loss).all():
            raise TrainingDiverged(f"training loss became {epoch_loss.tolist()} (seeds {seeds})")
        base.eval()
        val_probs = _predict(lambda x: eval_fwd(params, buffers, x), data.x_val)
        grad_norm = torch.stack(norms).mean(0)
        for l in range(L):
            curves[l]["train_loss"].append(epoch_loss[l].item())
            curves[l]["grad_norm"].append(grad_norm[l].item())
            curves[l]["val_acc"].append(_accuracy(val_probs[l], data.y_val))
        clock.tick(EpochTick(before + L, total, epoch, epochs, packed=True, first=before + 1))
    test_probs = _predict(lambda x: eval_fwd(params, buffers, x), data.x_test)
    return [LearnerRun(seeds[l], val_probs[l].cpu().numpy().astype(np.float32),
                       test_probs[l].cpu().numpy().astype(np.float32), **curves[l])
            for l in range(L)]
