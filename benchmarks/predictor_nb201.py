"""Predictor quality on NAS-Bench-201 tables: Kendall τ, Spearman and top-10 % recall on 1,000
held-out architectures, per number of training labels.

    python benchmarks/predictor_nb201.py --table ../shared/data/nb201/cifar10_200ep.csv \\
        --table ../shared/data/nb201/all_12ep.csv --target cifar10_test_acc_200ep \\
        --low-fidelity cifar10_val_acc_12ep --labels 20,50,100,200 --seeds 10 [--json]

Predictors: ``ours`` (the ensemble predictor, structure and static features), ``ours+lowfi``
(plus the low-fidelity column as a feature), ``rf-onehot`` (a random forest on a one-hot
encoding of the six edges), ``lowfi-only`` (the low-fidelity value itself). Top-10 % recall:
the fraction of the held-out set's best 10 % (by the target) kept when keeping the predicted
top half. The low-fidelity column must be a validation column, never a test column.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from rich.console import Console
from rich.progress import Progress
from scipy.stats import kendalltau, spearmanr
from sklearn.ensemble import RandomForestRegressor

from evaluators.predictor.ensemble import EnsemblePredictor, Record
from evaluators.tabular import TabularBenchmark
from spaces import get_space
from spaces.nb201 import EDGES, OPS, NB201Space


def onehot(spec) -> np.ndarray:
    return np.array([float(getattr(spec, n) == o) for n, _, _ in EDGES for o in OPS])


def scores(pred_loss: np.ndarray, true_loss: np.ndarray) -> dict[str, float]:
    """Both arrays are losses (lower is better)."""
    n = len(true_loss)
    top = set(np.argsort(true_loss)[: max(1, n // 10)].tolist())
    kept = set(np.argsort(pred_loss)[: n // 2].tolist())
    return {"kendall_tau": float(kendalltau(pred_loss, true_loss)[0]),
            "spearman": float(spearmanr(pred_loss, true_loss)[0]),
            "top10_recall": len(top & kept) / len(top)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="append", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--low-fidelity", default=None)
    p.add_argument("--labels", default="20,50,100,200")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--held-out", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.low_fidelity and "test" in args.low_fidelity:
        p.error("--low-fidelity must be a validation column, not a test column")
    table = TabularBenchmark(args.table, args.target, args.low_fidelity)
    space = get_space("nb201")
    specs = [NB201Space.from_arch_string(a) for a in table.archs]
    loss = 100.0 - table.columns[args.target]
    low = 100.0 - table.columns[args.low_fidelity] if args.low_fidelity else None
    names = ["ours", "rf-onehot"] + (["ours+lowfi", "lowfi-only"] if low is not None else [])
    labels = [int(x) for x in args.labels.split(",")]
    results: dict[tuple[str, int], list[dict]] = {}
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("fitting", total=len(labels) * args.seeds)
        for n in labels:
            for seed in range(args.seeds):
                order = np.random.default_rng(seed).permutation(len(specs))
                tr, te = order[:n], order[n:n + args.held_out]
                te_specs = [specs[i] for i in te]
                for name in names:
                    if name == "lowfi-only":
                        pred = low[te]
                    elif name == "rf-onehot":
                        rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
                        rf.fit(np.stack([onehot(specs[i]) for i in tr]), loss[tr])
                        pred = rf.predict(np.stack([onehot(s) for s in te_specs]))
                    else:
                        use_low = name == "ours+lowfi"
                        model = EnsemblePredictor(space, use_low_fidelity=use_low, seed=seed)
                        model.fit([Record(specs[i], loss[i], low[i] if use_low else None) for i in tr])
                        pred = model.predict(te_specs, low[te] if use_low else None)[0]
                    results.setdefault((name, n), []).append(scores(pred, loss[te]))
                progress.advance(task)
    rows = [{"predictor": name, "labels": n,
             **{k: float(np.mean([r[k] for r in results[(name, n)]]))
                for k in ("kendall_tau", "spearman", "top10_recall")}}
            for n in labels for name in names]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"target {args.target}, {args.held_out} held-out architectures, mean over {args.seeds} seeds")
    print(f"{'predictor':12} {'labels':>6} {'tau':>7} {'spearman':>9} {'top10 recall':>13}")
    for r in rows:
        print(f"{r['predictor']:12} {r['labels']:>6} {r['kendall_tau']:>7.3f} {r['spearman']:>9.3f} "
              f"{r['top10_recall']:>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
