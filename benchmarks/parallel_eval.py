"""Parallel evaluation: an iteration's candidates trained one after another (LocalEvaluator) vs
as Ray tasks (RayEvaluator), on MNIST-1D at the low fidelity.

Protocol (CPU): C candidates (NB201 samples, one set per round, the same set for both
executors) × L learners each (seeds 0..L-1). First every round with the local evaluator (Ray not
started yet), then Ray: ``ray.init(num_cpus=W)`` and a warm-up job (1 candidate, 1 epoch on 5 %
of the data: worker processes start, import torch and build MNIST-1D) are timed apart as the
start-up overhead, then the same rounds. Speed-up = local wall / Ray wall per round (mean ± sd
over rounds), and once more with the start-up added to one Ray round. Each candidate's E from
both executors must agree (max |ΔE| printed). The machine's load average is printed before and
after: on a shared machine the figures are lower bounds of what idle cores give.

CUDA mode (``--device cuda``): the same candidates on Ray with the GPUs, one task per learner
(``split=learner``, each asking ``1/L`` GPU) vs one task per candidate with its learners packed
(``split=job``, vmap), in learner-images per second (learners × epochs × training images / wall).

    nice -n 10 python benchmarks/parallel_eval.py                 # CPU, 8 × 2, 2 workers
    python benchmarks/parallel_eval.py --device cuda --learners 4 # GPU: per learner vs packed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from cli_types import at_least, check_out_file  # this folder

from evaluators.data import load_task
from evaluators.evaluator import EvalJob, Evaluator, LocalEvaluator
from evaluators.fidelity import get_fidelity
from evaluators.ray_evaluator import RayEvaluator, TaskRecipe, import_ray
from evaluators.results import EvalResult
from spaces import get_space

SPACE = get_space("nb201")


def candidates(n: int, seed: int) -> list:
    """``n`` distinct NB201 specs drawn with ``seed``."""
    rng, out, seen = np.random.default_rng(seed), [], set()
    while len(out) < n:
        spec = SPACE.sample(rng)
        if (h := SPACE.canonical_hash(spec)) not in seen:
            seen.add(h)
            out.append(spec)
    return out


def jobs(specs, fidelity, learners: int) -> list[EvalJob]:
    return [EvalJob(f"c{i}", s, SPACE.canonical_hash(s), fidelity, tuple(range(learners)))
            for i, s in enumerate(specs)]


def timed(evaluator: Evaluator, batch: list[EvalJob]) -> tuple[float, dict[int, EvalResult]]:
    start = time.perf_counter()
    results = dict(evaluator.evaluate_many(batch))
    wall = time.perf_counter() - start
    failed = {i: r for i, r in results.items() if not isinstance(r, EvalResult)}
    if failed:
        raise SystemExit(f"error: evaluations failed: {failed}")
    return wall, results


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def start_ray(workers: int, gpus: int | None) -> float:
    ray = import_ray()
    start = time.perf_counter()
    ray.init(num_cpus=workers, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - start


def cpu_mode(args, task, fidelity, out: Path) -> dict:
    rounds = [candidates(args.candidates, seed) for seed in range(args.rounds)]
    print(f"before: {load()}", flush=True)
    local = LocalEvaluator(SPACE, task, out / "local", 50)
    local_walls, local_results = [], []
    for r, specs in enumerate(rounds):
        wall, res = timed(local, jobs(specs, fidelity, args.learners))
        local_walls.append(wall)
        local_results.append(res)
        print(f"round {r}: local {wall:.1f} s", flush=True)
    init_s = start_ray(args.workers, None)
    remote = RayEvaluator("nb201", TaskRecipe("mnist1d", "cpu", None, args.n_samples, 0),
                          out / "ray", 50)
    warm = fidelity.model_copy(update={"name": "warm", "epochs": 1, "train_fraction": 0.05})
    warm_s, _ = timed(remote, jobs(candidates(1, 99), warm, args.learners))
    print(f"Ray start-up: ray.init {init_s:.1f} s + warm-up job {warm_s:.1f} s", flush=True)
    ray_walls, max_dE = [], 0.0
    for r, specs in enumerate(rounds):
        wall, res = timed(remote, jobs(specs, fidelity, args.learners))
        ray_walls.append(wall)
        max_dE = max(max_dE, *(abs(res[i].E - local_results[r][i].E) for i in res))
        print(f"round {r}: Ray {wall:.1f} s, speed-up {local_walls[r] / wall:.2f}x", flush=True)
    speedups = [a / b for a, b in zip(local_walls, ray_walls, strict=True)]
    overall = statistics.mean(local_walls) / (statistics.mean(ray_walls) + init_s + warm_s)
    print(f"after: {load()}")
    print(f"{args.candidates} candidates x {args.learners} learners, low fidelity "
          f"({fidelity.epochs} epochs), MNIST-1D, {args.rounds} rounds")
    print(f"local  {mean_sd(local_walls)} s per round")
    print(f"Ray    {mean_sd(ray_walls)} s per round on {args.workers} CPU workers")
    print(f"speed-up {mean_sd(speedups)}x (warm workers); {overall:.2f}x with the start-up "
          f"({init_s + warm_s:.1f} s) added to one round; max |E_local - E_ray| = {max_dE:.1e}")
    return {"local_s": local_walls, "ray_s": ray_walls, "speedup": speedups,
            "ray_init_s": init_s, "warmup_s": warm_s, "speedup_with_startup": overall,
            "max_abs_dE": max_dE}


def cuda_mode(args, task, fidelity, out: Path) -> dict:
    import torch

    gpus = torch.cuda.device_count()
    init_s = start_ray(args.workers, gpus)
    specs = candidates(args.candidates, 0)
    images = args.candidates * args.learners * fidelity.epochs * len(task.y_train)
    figures = {"ray_init_s": init_s, "gpus": gpus}
    recipe = TaskRecipe("mnist1d", "cuda", None, args.n_samples, 0)
    for split in ("learner", "job"):  # 1/L GPU per learner: a packed job asks for one GPU
        remote = RayEvaluator("nb201", recipe, out / split, 50,
                              gpus_per_learner=1 / args.learners, split=split)
        warm = fidelity.model_copy(update={"name": "warm", "epochs": 1})
        timed(remote, jobs(candidates(1, 99), warm, args.learners))  # workers start, CUDA inits
        wall, _ = timed(remote, jobs(specs, fidelity, args.learners))
        figures[split] = {"wall_s": wall, "learner_images_per_s": images / wall}
        print(f"{split:>7}: {wall:.1f} s, {images / wall:,.0f} learner-images/s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--candidates", type=at_least(1, 1000), default=8, help="candidates per round")
    p.add_argument("--learners", type=at_least(2, 64), default=2, help="learners per candidate")
    p.add_argument("--workers", type=at_least(1, 1024), default=2, help="Ray CPUs (worker processes)")
    p.add_argument("--rounds", type=at_least(1, 100), default=2, help="candidate sets (seeds 0..R-1)")
    p.add_argument("--n-samples", type=at_least(100), default=None,
                   help="MNIST-1D samples (default 4000)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    check_out_file(p, "--json", args.json)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device 'cuda': no CUDA device is available here")
    task = load_task("mnist1d", device=args.device, n_samples=args.n_samples, seed=0)
    fidelity = get_fidelity("low")
    with TemporaryDirectory() as tmp:
        mode = cpu_mode if args.device == "cpu" else cuda_mode
        figures = mode(args, task, fidelity, Path(tmp))
    figures["args"] = vars(args)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        except OSError as exc:  # the figures are not lost: printed instead
            print(json.dumps(figures, indent=2))
            print(f"error: --json {args.json!r}: {exc.strerror or exc}; the figures are printed above",
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
