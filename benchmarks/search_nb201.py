"""Search on NAS-Bench-201 tables: our loop (builtin proposer + predictor; ``ours+zc`` with the
SynFlow proxy among its features), DCL-ENAS's loop
(the predictor ranks many offspring, only the top k are queried), random search, regularized
evolution and local search, every table lookup counted as a query.

    python benchmarks/search_nb201.py --table ../shared/data/nb201/cifar10_200ep.csv \\
        --target cifar10_test_acc_200ep --queries 50,100,150 --seeds 50 [--json]

Prints the mean best target (accuracy, higher is better) after each query count, over seeds.
No low-fidelity lookups are made: they would make the search trivial. Oracle protocol: every
method both steers on and reports the table's target column (for the README's figures, the
200-epoch *test* accuracy); no validation/test split is made.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from cli_types import at_least, int_list  # this folder
from predictor_nb201 import proxy_task  # the proxy's task for a target column (this folder)
from rich.console import Console
from rich.progress import Progress

from agent.tabular_search import tabular_search
from evaluators.predictor.ensemble import EnsemblePredictor, Record
from evaluators.predictor.zero_cost import ZeroCostProxy, cache_path
from evaluators.tabular import TableError, TabularBenchmark
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


def ours_zc(table, queries, seed):
    """Ours with the SynFlow proxy among the predictor's features, at the image size and class
    count of the table's target (``predictor_nb201.proxy_task``), read from (or added to) the
    proxy cache ``predictor_nb201.py --predictors …+zc`` fills."""
    space, task = NB201Space(), proxy_task(table.target)
    proxy = ZeroCostProxy(space, task, cache_path(space, task))
    curve = tabular_search(table, queries, seed, zero_cost=proxy)
    proxy.save()
    return [100.0 - v for v in curve]


def dcl_search(table, queries, seed, *, n_init=10, population=20, offspring=100, top_k=10,
               tournament=3, gnn="pretrained"):
    """DCL-ENAS's loop: each generation mutates tournament winners of the best ``population``
    into ``offspring`` unseen children, the predictor (fit on every query so far; its GIN from
    the stage-1 contrastive encoder) ranks them, and only the predicted best ``top_k`` are
    queried. The first ``n_init`` queries are random."""
    space, rng = NB201Space(), np.random.default_rng(seed)
    seen: dict[str, float] = {}  # canonical hash -> accuracy
    archs: list[tuple[str, float]] = []
    curve: list[float] = []

    def q(arch):
        value = table.query(arch)
        seen[space.canonical_hash(NB201Space.from_arch_string(arch))] = value
        archs.append((arch, value))
        curve.append(max(curve[-1], value) if curve else value)

    while len(curve) < min(n_init, queries):
        arch = _random_arch(rng)
        if space.canonical_hash(NB201Space.from_arch_string(arch)) not in seen:
            q(arch)
    while len(curve) < queries:
        model = EnsemblePredictor(space, seed=seed, gnn=gnn, gnn_epochs=80)
        model.fit([Record(NB201Space.from_arch_string(a), 100.0 - v) for a, v in archs])
        pop = sorted(archs, key=lambda h: -h[1])[:population]
        children: dict[str, str] = {}
        for _ in range(20 * offspring):
            if len(children) == offspring:
                break
            picks = rng.choice(len(pop), min(tournament, len(pop)), replace=False)
            child = _mutate(pop[int(min(picks))][0], rng)  # pop is sorted: the lowest index wins
            h = space.canonical_hash(NB201Space.from_arch_string(child))
            if h not in seen and h not in children:
                children[h] = child
        if not children:
            q(_random_arch(rng))
            continue
        kids = list(children.values())
        order = model.rank([NB201Space.from_arch_string(a) for a in kids])
        for i in order[: min(top_k, queries - len(curve))]:
            q(kids[int(i)])
    return curve[:queries]


FULL_TABLE = 15_625  # cells in NAS-Bench-201

METHODS = {"ours": ours, "ours+zc": ours_zc, "dcl": dcl_search, "random": random_search,
           "regularized-evolution": regularized_evolution, "local-search": local_search}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="append", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--queries", type=int_list(1), default=[50, 100, 150])
    p.add_argument("--seeds", type=at_least(1), default=50)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    counts = args.queries
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    try:
        table = TabularBenchmark(args.table, args.target)
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "ours+zc" in methods:
        try:
            proxy_task(args.target)
        except ValueError as err:
            p.error(f"--methods ours+zc: {err}")
    # these draw and mutate arbitrary cells, so every NB201 cell must be in the table
    anywhere = [m for m in methods if m in ("random", "regularized-evolution", "local-search", "dcl")]
    if anywhere and len(table) < FULL_TABLE:
        print(f"error: the tables hold {len(table):,} architectures; {', '.join(anywhere)} query any "
              f"NB201 cell, so search needs the full NB201 table ({FULL_TABLE:,})", file=sys.stderr)
        return 2
    results = {}
    with Progress(console=Console(stderr=True)) as progress:
        for name in methods:
            task = progress.add_task(name, total=args.seeds)
            curves = []
            for seed in range(args.seeds):
                curves.append(METHODS[name](table, max(counts), seed))
                progress.advance(task)
            results[name] = np.array(curves)
    sem = {name: c.std(0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.zeros(c.shape[1])
           for name, c in results.items()}
    if args.json:
        for name, curves in results.items():
            for q in counts:
                print(json.dumps({"method": name, "queries": q, "mean_best": float(curves[:, q - 1].mean()),
                                  "sem": float(sem[name][q - 1]), "seeds": args.seeds}))
        return 0
    print(f"mean best {args.target} ± standard error over {args.seeds} seeds (optimum "
          f"{table.columns[args.target].max():.2f}); oracle protocol: steered on the same column")
    print(f"{'method':24}" + "".join(f"{q:>14}" for q in counts))
    for name, curves in results.items():
        cells = [f"{curves[:, q - 1].mean():.2f}±{sem[name][q - 1]:.2f}" for q in counts]
        print(f"{name:24}" + "".join(f"{c:>14}" for c in cells))
    return 0

if __name__ == "__main__":
    sys.exit(main())
