"""Progressive fidelity on NAS-Bench-201 tables against our single-fidelity search, at equal cost.

    python benchmarks/progressive_nb201.py --table ../shared/data/nb201/cifar10_200ep.csv \\
        --table ../shared/data/nb201/all_12ep.csv --target cifar10_test_acc_200ep \\
        --low-fidelity cifar10_val_acc_12ep --budgets 25,50,100 --seeds 50 [--png out.png] [--json]

Seeds can be split over processes (``--first-seed 25 --seeds 25 --seed-log part2.jsonl``) and
the parts joined without searching again (``--from-log part1.jsonl part2.jsonl [--png]``).

Two rungs (:func:`agent.tabular_progressive.progressive_tabular_search`): the low-fidelity
column at ``--low-cost`` (12/200: a 12-epoch answer) and the target column at cost 1; cost is
counted in target-column query-equivalents. The single-fidelity search
(:func:`agent.tabular_search.tabular_search`) asks only the target column, one query = 1.
Both use the same chooser settings (``--refit-every``, ``--gnn-epochs``, ``--proposals``).

Protocol: each method runs once per seed with the largest budget and is read at every budget
(the best target value among what it had asked once no more than that budget was spent: an
*anytime* reading, the same for both; the progressive search's conservative end phase therefore
only acts at the largest budget). Oracle protocol: selection and report both use the target
column (for the README, the 200-epoch *test* accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from agent.tabular_progressive import STEERS, progressive_tabular_search
from agent.tabular_search import tabular_search
from evaluators.promotion import HALVINGS
from evaluators.tabular import TableError, TabularBenchmark


def _positive_ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: {name} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"error: {name} must be positive, got {text!r}")
    return values


def _name(steer: str, halving: str = "asynchronous") -> str:
    return f"progressive-{steer}" + ("-capped" if halving == "capped" else "")


def run(table: TabularBenchmark, budgets: list[int], seeds: int, *, low_cost: Fraction, eta: int,
        chooser: dict, progress: Progress, seed_log=None, steers=("top",),
        single: bool = True, first_seed: int = 0, halvings=("asynchronous",)) -> dict:
    """Per method: best target at each budget (seeds × budgets), plus the progressive counts."""
    top = max(budgets)
    variants = [(s, h) for s in steers for h in halvings]
    names = [_name(s, h) for s, h in variants]
    best = {n: np.zeros((seeds, len(budgets))) for n in [*names, *(["single"] if single else [])]}
    counts = {n: {"low": [], "top": [], "reasons": {}} for n in names}
    seconds = {"progressive": 0.0, "single": 0.0}
    task = progress.add_task("seeds", total=seeds)
    for i, seed in enumerate(range(first_seed, first_seed + seeds)):
        t0 = time.perf_counter()
        for steer, halving in variants:
            name = _name(steer, halving)
            result = progressive_tabular_search(table, top, seed, low_cost=low_cost, eta=eta,
                                                steer=steer, halving=halving, **chooser)
            best[name][i] = [result.best_at(b) for b in budgets]
            mine = counts[name]
            mine["low"].append(result.count("low"))
            mine["top"].append(result.count("top"))
            for q in result.queries:
                if q.rung == "top":
                    key = q.reason.split(":")[0]
                    mine["reasons"][key] = mine["reasons"].get(key, 0) + 1
        seconds["progressive"] += time.perf_counter() - t0
        if single:
            t0 = time.perf_counter()
            curve = tabular_search(table, top, seed, **chooser)  # losses: 100 - accuracy
            seconds["single"] += time.perf_counter() - t0
            best["single"][i] = [100.0 - curve[b - 1] for b in budgets]
        if seed_log is not None:  # one line per seed, as it finishes
            print(json.dumps({"seed": seed, "budgets": budgets, "chooser": chooser,
                              **{k: v[i].tolist() for k, v in best.items()},
                              **{f"{n} low/top": [c["low"][-1], c["top"][-1]]
                                 for n, c in counts.items()},
                              "seconds": {k: round(v, 1) for k, v in seconds.items()}}),
                  file=seed_log, flush=True)
        progress.advance(task)
    return {"best": best, "counts": counts, "seconds": seconds}


def from_log(paths: list[str], budgets: list[int]) -> dict:
    """The per-seed lines of ``--seed-log`` files joined (one line per seed; a seed in two
    files is an error), in :func:`run`'s shape; the logs must hold ``budgets``."""
    rows: dict[int, dict] = {}
    seconds: dict[str, float] = {}
    for path in paths:
        row = None
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            row = json.loads(line)
            if row["seed"] in rows:
                raise SystemExit(f"error: {path}:{n}: seed {row['seed']} is in two logs")
            missing = set(budgets) - set(row["budgets"])
            if missing:
                raise SystemExit(f"error: {path}:{n}: no figures at budgets {sorted(missing)}")
            rows[row["seed"]] = row
        for k, v in (row or {}).get("seconds", {}).items():  # a log's seconds run on: its last
            seconds[k] = seconds.get(k, 0.0) + v
    seeds = sorted(rows)
    if not seeds:
        raise SystemExit(f"error: no seed lines in {paths}")
    choosers = {json.dumps(rows[s].get("chooser"), sort_keys=True) for s in seeds}
    first = rows[seeds[0]]
    methods = [k for k, v in first.items() if isinstance(v, list) and k not in ("budgets",)
               and not k.endswith(" low/top")]
    cols = [first["budgets"].index(b) for b in budgets]
    best = {m: np.array([[rows[s][m][j] for j in cols] for s in seeds]) for m in methods}
    counts = {k.removesuffix(" low/top"): {"low": [rows[s][k][0] for s in seeds],
                                           "top": [rows[s][k][1] for s in seeds], "reasons": {}}
              for k in first if k.endswith(" low/top")}
    return {"best": best, "counts": counts, "seconds": seconds, "seeds": seeds,
            "chooser": (rows[seeds[0]].get("chooser") or "not in the logs") if len(choosers) == 1
            else "differs between the logs' seeds"}


def _plot(best: dict, budgets: list[int], path: str, optimum: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in best.items():
        mean, sd = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(budgets))
        ax.errorbar(budgets, mean, yerr=sd, marker="o", capsize=3, label=name)
    ax.axhline(optimum, color="grey", ls=":", label=f"optimum {optimum:.2f}")
    ax.set_xlabel("cost (target-column query-equivalents)")
    ax.set_ylabel("best target (mean ± sd over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="append", required=True)
    p.add_argument("--target", required=True, help="top-rung column (cost 1)")
    p.add_argument("--low-fidelity", required=True, help="low-rung column (a validation column)")
    p.add_argument("--low-cost", default="12/200", help="low-rung cost in top-rung queries")
    p.add_argument("--budgets", default="25,50,100")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--refit-every", type=int, default=10)
    p.add_argument("--gnn-epochs", type=int, default=80)
    p.add_argument("--proposals", type=int, default=64)
    p.add_argument("--png")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed-log", help="append one JSON line per finished seed to this file")
    p.add_argument("--steer", default="top", help="progressive variants, comma-separated: top, "
                   "low, mf (what the chooser learns from: promoted cells' top-rung answers; every "
                   "low-rung answer; or as top, its GIN first pretrained on every low-rung answer)")
    p.add_argument("--halving", default="asynchronous", help="asynchronous, capped or "
                   "asynchronous,capped (agent.rungs.plan_promotions; each with every --steer)")
    p.add_argument("--no-single", action="store_true", help="leave the single-fidelity search out")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first … first + seeds - 1")
    p.add_argument("--from-log", nargs="+", default=None, metavar="SEED_LOG",
                   help="join the lines of earlier --seed-log files and report them; no search")
    args = p.parse_args(argv)
    budgets = sorted(_positive_ints(args.budgets, "--budgets"))
    try:
        low_cost = Fraction(args.low_cost)
    except (ValueError, ZeroDivisionError):
        print(f"error: --low-cost must be a number or a fraction, got {args.low_cost!r}", file=sys.stderr)
        return 2
    if not 0 < low_cost < 1 or args.eta < 2 or args.seeds < 1 or args.first_seed < 0:
        print(f"error: need 0 < --low-cost < 1, --eta ≥ 2, --seeds ≥ 1 and --first-seed ≥ 0 (got "
              f"{args.low_cost!r}, {args.eta!r}, {args.seeds!r}, {args.first_seed!r})",
              file=sys.stderr)
        return 2
    try:
        table = TabularBenchmark(args.table, args.target, args.low_fidelity)
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steers = args.steer.split(",")
    if not steers or any(s not in STEERS for s in steers):
        print(f"error: --steer must list some of {', '.join(STEERS)}, got {args.steer!r}",
              file=sys.stderr)
        return 2
    halvings = args.halving.split(",")
    if not halvings or any(h not in HALVINGS for h in halvings):
        print(f"error: --halving must list {' and/or '.join(HALVINGS)}, got {args.halving!r}",
              file=sys.stderr)
        return 2
    chooser = {"refit_every": args.refit_every, "gnn_epochs": args.gnn_epochs,
               "proposals": args.proposals}
    start = time.perf_counter()
    if args.from_log:
        out = from_log(args.from_log, budgets)
        args.seeds = len(out["seeds"])
    else:
        seed_log = open(args.seed_log, "a") if args.seed_log else None  # noqa: SIM115
        with Progress(console=Console(stderr=True)) as progress:
            out = run(table, budgets, args.seeds, low_cost=low_cost, eta=args.eta, chooser=chooser,
                      progress=progress, seed_log=seed_log, steers=steers,
                      single=not args.no_single, first_seed=args.first_seed, halvings=halvings)
        if seed_log is not None:
            seed_log.close()
    wall = time.perf_counter() - start
    best, counts = out["best"], out["counts"]
    if args.json:
        for name, values in best.items():
            for j, b in enumerate(budgets):
                col = values[:, j]
                print(json.dumps({"method": name, "budget": b, "mean_best": float(col.mean()),
                                  "std": float(col.std(ddof=1)) if len(col) > 1 else 0.0,
                                  "min": float(col.min()), "seeds": args.seeds}))
    else:
        print(f"best {args.target} (mean ± sd, min) over {args.seeds} seeds at each budget in "
              f"{args.target}-equivalents; low rung {args.low_fidelity} at {low_cost}, η={args.eta}; "
              f"optimum {table.columns[args.target].max():.2f}; oracle protocol (selection on the "
              f"reported column); chooser {out.get('chooser', chooser)}")
        print(f"{'method':18}" + "".join(f"{b:>26}" for b in budgets))
        for name, values in best.items():
            cells = [f"{values[:, j].mean():.2f}±{values[:, j].std(ddof=1) if len(values) > 1 else 0:.2f}"
                     f" (min {values[:, j].min():.2f})" for j in range(len(budgets))]
            print(f"{name:18}" + "".join(f"{c:>26}" for c in cells))
        for name, c in counts.items():
            print(f"{name} at budget {max(budgets)}: {np.mean(c['low']):.1f} low-rung and "
                  f"{np.mean(c['top']):.1f} top-rung queries per seed"
                  + (f"; top-rung queries by reason (all seeds): {c['reasons']}"
                     if c["reasons"] else ""))
        print(("joined from the logs: " if args.from_log else f"wall {wall:.0f} s; ")
              + f"seconds searching (summed over processes): progressive "
              f"{out['seconds']['progressive']:.0f}, "
              f"single {out['seconds']['single']:.0f}")
    if args.png:
        _plot(best, budgets, args.png, table.columns[args.target].max())
    return 0


if __name__ == "__main__":
    sys.exit(main())
