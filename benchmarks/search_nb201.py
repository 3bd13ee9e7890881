"""Search on NAS-Bench-201 tables: our loop (builtin proposer + predictor) against random search,
regularized evolution and local search, every table lookup counted as a query.

    python benchmarks/search_nb201.py --table ../shared/data/nb201/cifar10_200ep.csv \\
        --target cifar10_test_acc_200ep --queries 50,100,150 --seeds 50 [--json]

Prints the mean best target (accuracy, higher is better) after each query count, over seeds.
No low-fidelity lookups are made: they would make the search trivial.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from rich.console import Console
from rich.progress import Progress

from agent.tabular_search import tabular_search
from evaluators.tabular import TabularBenchmark
from spaces.nb201 import EDGES, OPS, NB201Space


def _random_arch(rng):
    spec = NB201Space().sample(rng).model_copy(update={"channels": 16, "cells_per_stage": 5})
    return NB201Space.to_arch_string(spec)


def random_search(table, queries, seed):
    rng, best, curve = np.random.default_rng(seed), -np.inf, []
    for _ in range(queries):
        best = max(best, table.query(_random_arch(rng)))
        curve.append(best)
    return curve


def _mutate(arch, rng):
    spec = NB201Space.from_arch_string(arch)
    name = EDGES[int(rng.integers(len(EDGES)))][0]
    options = [o for o in OPS if o != getattr(spec, name)]
    return NB201Space.to_arch_string(spec.model_copy(update={name: options[int(rng.integers(len(options)))]}))


def regularized_evolution(table, queries, seed, population=10, sample=3):
    rng, pop, curve, best = np.random.default_rng(seed), [], [], -np.inf
    while len(curve) < queries:
        if len(pop) < population:
            arch = _random_arch(rng)
        else:
            picks = rng.choice(len(pop), sample, replace=False)
            arch = _mutate(max((pop[i] for i in picks), key=lambda p: p[1])[0], rng)
            pop.pop(0)
        value = table.query(arch)
        pop.append((arch, value))
        best = max(best, value)
        curve.append(best)
    return curve


def local_search(table, queries, seed):
    """First-improvement hill climbing over one-edge neighbours, restarting at local optima."""
    rng, curve, best = np.random.default_rng(seed), [], -np.inf
    seen: dict[str, float] = {}

    def q(arch):
        nonlocal best
        if arch not in seen:
            seen[arch] = table.query(arch)
            best = max(best, seen[arch])
            curve.append(best)
        return seen[arch]

    while len(curve) < queries:
        current = _random_arch(rng)
        value = q(current)
        improved = True
        while improved and len(curve) < queries:
            improved = False
            spec = NB201Space.from_arch_string(current)
            neighbours = [NB201Space.to_arch_string(spec.model_copy(update={n: o}))
                          for n, _, _ in EDGES for o in OPS if o != getattr(spec, n)]
            for i in rng.permutation(len(neighbours)):
                if len(curve) >= queries:
                    break
                v = q(neighbours[i])
                if v > value:
                    current, value, improved = neighbours[i], v, True
                    break
    return curve[:queries]


def ours(table, queries, seed):
    return [100.0 - v for v in tabular_search(table, queries, seed)]


METHODS = {"ours": ours, "random": random_search, "regularized-evolution": regularized_evolution,
           "local-search": local_search}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="append", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--queries", default="50,100,150")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    counts = [int(q) for q in args.queries.split(",")]
    table = TabularBenchmark(args.table, args.target)
    results = {}
    with Progress(console=Console(stderr=True)) as progress:
        for name in args.methods.split(","):
            task = progress.add_task(name, total=args.seeds)
            curves = []
            for seed in range(args.seeds):
                curves.append(METHODS[name](table, max(counts), seed))
                progress.advance(task)
            results[name] = np.mean(np.array(curves), axis=0)
    if args.json:
        for name, curve in results.items():
            for q in counts:
                print(json.dumps({"method": name, "queries": q, "mean_best": float(curve[q - 1]),
                                  "seeds": args.seeds}))
        return 0
    print(f"mean best {args.target} over {args.seeds} seeds (optimum "
          f"{table.columns[args.target].max():.2f})")
    print(f"{'method':24}" + "".join(f"{q:>10}" for q in counts))
    for name, curve in results.items():
        print(f"{name:24}" + "".join(f"{curve[q - 1]:>10.2f}" for q in counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
