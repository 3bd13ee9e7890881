"""Training throughput: one learner, two learners packed vs sequential, and M = 8, 32.

Prints learner-images/s (learners × images / wall second) for an airbench-like CIFAR-size CNN on
synthetic 3×32×32 data and for an MNIST-1D NB201 network, and the ratio of dual to single wall
time. On CUDA the packed path (torch.func vmap over stacked learners) runs in bf16 autocast with
channels_last; on CPU everything runs in fp32 at a reduced size (``--small``).

    python benchmarks/trainer_speed.py --device cuda            # the figures for the README
    python benchmarks/trainer_speed.py --device cpu --small --threads 1   # a quick CPU check
    python benchmarks/trainer_speed.py --device cuda --compile  # the same through torch.compile
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from cli_types import at_least  # this folder
from torch import nn

from evaluators.train import TrainData, train_learners
from spaces import TaskInfo, get_space


def airbench_like(width: int = 64) -> nn.Module:
    """A small ResNet-free CNN in the spirit of airbench: conv-BN-GELU blocks with pooling."""
    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.GELU(), nn.MaxPool2d(2),
                             nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.GELU())
    return nn.Sequential(nn.Conv2d(3, width // 2, 3, padding=1, bias=False),
                         nn.BatchNorm2d(width // 2), nn.GELU(), block(width // 2, width),
                         block(width, 2 * width), block(2 * width, 4 * width),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * width, 10))


def synthetic(shape, n: int, classes: int, device) -> TrainData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, *shape), generator=g).to(device)
    y = torch.randint(0, classes, (n,), generator=g).to(device)
    return TrainData(x, y, x[:256], y[:256], x[:256])


def timed(factory, data, learners: int, packed: bool, batch: int, epochs: int, amp: bool,
          compile_model: bool = False) -> float:
    if data.x_train.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_learners(factory, data, seeds=list(range(learners)), epochs=epochs, batch_size=batch,
                   lr=1e-3, packed=packed, use_amp=amp, compile_model=compile_model)
    if data.x_train.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(name, factory, data, batch, epochs, amp, ensembles, out, compile_model=False):
    """Compiled runs include their compile time: that is what an evaluation pays."""
    n = len(data.y_train) * epochs
    timed(factory, data, 1, False, batch, 1, amp)  # warm-up (kernels, allocator)
    single = timed(factory, data, 1, False, batch, epochs, amp, compile_model)
    seq2 = timed(factory, data, 2, False, batch, epochs, amp, compile_model)
    pack2 = timed(factory, data, 2, True, batch, epochs, amp, compile_model)
    row = {"network": name, "single_img_s": n / single, "dual_seq_img_s": 2 * n / seq2,
           "dual_packed_img_s": 2 * n / pack2, "dual_over_single": min(seq2, pack2) / single}
    for M in ensembles:
        try:
            packed = timed(factory, data, M, True, batch, epochs, amp, compile_model)
        except torch.OutOfMemoryError:  # M learners × the batch did not fit: say so, go on
            row[f"M{M}_packed_out_of_memory"] = float(M)
            torch.cuda.empty_cache()
            continue
        row[f"M{M}_packed_img_s"] = M * n / packed
        row[f"M{M}_packed_over_sequential"] = packed / (M * single)
    out.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)  # each network's figures as they come
    return row


def check_device(p: argparse.ArgumentParser, text: str) -> torch.device:
    """``--device``: cpu, cuda or cuda:N, refused in one line when unknown or absent here."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        p.error(f"--device {text!r}: expected cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {text!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            p.error(f"--device {text!r}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            p.error(f"--device {text!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="reduced sizes for a CPU check")
    p.add_argument("--threads", type=at_least(1, 1024), default=None,
                   help="CPU intra-op threads (default: torch's setting)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = check_device(p, args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    n, batch, epochs = (50_000, 1024, 2) if cuda and not args.small else (2048, 256, 1)
    ensembles = (8, 32) if not args.small else (8,)
    rows: list[dict] = []
    cifar = synthetic((3, 32, 32), n, 10, device)
    width = 64 if not args.small else 16
    measure("airbench-like CNN, 3x32x32", lambda: airbench_like(width), cifar, batch, epochs,
            cuda, ensembles, rows, args.compile)
    space = get_space("nb201")
    task = TaskInfo((1, 40), 10)
    spec = space.reference()
    mnist = synthetic((1, 40), 4000, 10, device)
    measure("nb201 reference, MNIST-1D", lambda: space.build(spec, task, width_mult=0.5), mnist,
            128 if not cuda else 512, 1 if args.small else 3, cuda, ensembles, rows, args.compile)
    if args.json:
        for r in rows:
            print(json.dumps({"device": str(device), "compile": args.compile, **r}))
        return 0
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({where}){', torch.compile' if args.compile else ''}")
    for r in rows:
        print(f"\n{r['network']}")
        for k, v in r.items():
            if k != "network":
                print(f"  {k:32} {v:,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
