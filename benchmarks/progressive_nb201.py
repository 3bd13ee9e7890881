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
from cli_types import at_least, int_list  # this folder
from rich.console import Console
from rich.progress import Progress

from agent.tabular_progressive import STEERS, progressive_tabular_search
from agent.tabular_search import tabular_search
from evaluators.promotion import HALVINGS
from evaluators.tabular import TableError, TabularBenchmark

#: extensions matplotlib's Agg backend saves (``--png``)
PNG_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "pgf", "raw",
               "rgba")


class LogError(ValueError):
    """A ``--from-log`` file that cannot be joined: the message names the file and line."""


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
    methods: list[str] | None = None
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except IsADirectoryError:
            raise LogError(f"--from-log {path!r}: is a folder, not a seed log") from None
        except OSError as err:
            raise LogError(f"--from-log {path!r}: cannot read it ({err.strerror or err})") from None
        except UnicodeDecodeError as err:
            raise LogError(f"--from-log {path!r}: not UTF-8 text ({err.reason} at byte "
                           f"{err.start})") from None
        row = None
        for n, line in enumerate(text.splitlines(), 1):
            where = f"{path}:{n}"
            if not line.strip():
                raise LogError(f"{where}: blank line (a seed log holds one JSON object per line)")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise LogError(f"{where}: not JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise LogError(f"{where}: expected a JSON object, got {type(row).__name__} {line[:60]!r}")
            missing_keys = [k for k in ("seed", "budgets") if k not in row]
            if missing_keys:
                raise LogError(f"{where}: no {', '.join(map(repr, missing_keys))} key (keys: "
                               f"{', '.join(map(repr, row))})")
            seed, logged = row["seed"], row["budgets"]
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise LogError(f"{where}: seed {seed!r} is not an integer")
            if not isinstance(logged, list) or not all(isinstance(b, int) for b in logged):
                raise LogError(f"{where}: budgets {logged!r} is not a list of integers")
            if seed in rows:
                raise LogError(f"{where}: seed {seed} is in two logs")
            missing = set(budgets) - set(logged)
            if missing:
                raise LogError(f"{where}: no figures at budgets {sorted(missing)}")
            mine = [k for k, v in row.items() if isinstance(v, list) and k != "budgets"]
            if methods is None:
                methods = mine
            elif set(mine) != set(methods):
                raise LogError(f"{where}: methods {sorted(mine)} differ from the first line's "
                               f"{sorted(methods)}")
            for m in (m for m in mine if not m.endswith(" low/top")):
                if len(row[m]) != len(logged) or not all(isinstance(v, int | float) for v in row[m]):
                    raise LogError(f"{where}: {m!r} is not one number per budget ({row[m]!r})")
            for k, v in row.items():
                if k.endswith(" low/top") and not (isinstance(v, list) and len(v) == 2):
                    raise LogError(f"{where}: {k!r} is not a [low, top] pair ({v!r})")
            rows[seed] = row
        logged_seconds = (row or {}).get("seconds", {})
        if not isinstance(logged_seconds, dict) or not all(
                isinstance(v, int | float) for v in logged_seconds.values()):
            raise LogError(f"{path}: its last line's 'seconds' {logged_seconds!r} is not a mapping "
                           "to numbers")
        for k, v in logged_seconds.items():  # a log's seconds run on: its last
            seconds[k] = seconds.get(k, 0.0) + v
    seeds = sorted(rows)
    if not seeds:
        raise LogError(f"--from-log: no seed lines in {', '.join(map(repr, paths))}")
    choosers = {json.dumps(rows[s].get("chooser"), sort_keys=True) for s in seeds}
    first = rows[seeds[0]]
    best = {m: np.array([[rows[s][m][rows[s]["budgets"].index(b)] for b in budgets] for s in seeds])
            for m in methods or [] if not m.endswith(" low/top")}
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
    p.add_argument("--budgets", type=int_list(1), default=[25, 50, 100])
    p.add_argument("--seeds", type=at_least(1), default=50)
    p.add_argument("--eta", type=at_least(2), default=3)
    p.add_argument("--refit-every", type=at_least(1), default=10)
    p.add_argument("--gnn-epochs", type=at_least(1), default=80)
    p.add_argument("--proposals", type=at_least(1), default=64)
    p.add_argument("--png")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed-log", help="append one JSON line per finished seed to this file")
    p.add_argument("--steer", default="top", help="progressive variants, comma-separated: top, "
                   "low, mf (what the chooser learns from: promoted cells' top-rung answers; every "
                   "low-rung answer; or as top, its GIN first pretrained on every low-rung answer)")
    p.add_argument("--halving", default="asynchronous", help="asynchronous, capped or "
                   "asynchronous,capped (agent.rungs.plan_promotions; each with every --steer)")
    p.add_argument("--no-single", action="store_true", help="leave the single-fidelity search out")
    p.add_argument("--first-seed", type=at_least(0), default=0, help="seeds first … first + seeds - 1")
    p.add_argument("--from-log", nargs="+", default=None, metavar="SEED_LOG",
                   help="join the lines of earlier --seed-log files and report them; no search")
    args = p.parse_args(argv)
    budgets = sorted(set(args.budgets))
    try:
        low_cost = Fraction(args.low_cost)
    except (ValueError, ZeroDivisionError):
        print(f"error: --low-cost must be a number or a fraction, got {args.low_cost!r}", file=sys.stderr)
        return 2
    if not 0 < low_cost < 1:
        print(f"error: --low-cost {args.low_cost!r}: must lie strictly between 0 and 1", file=sys.stderr)
        return 2
    if args.png is not None:
        png = Path(args.png)
        if png.suffix.lower().lstrip(".") not in PNG_FORMATS:
            print(f"error: --png {args.png!r}: the extension must be one matplotlib writes "
                  f"({', '.join('.' + e for e in PNG_FORMATS)})", file=sys.stderr)
            return 2
        if not png.parent.is_dir():
            print(f"error: --png {args.png!r}: no folder {str(png.parent)!r} to write it in", file=sys.stderr)
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
        try:
            out = from_log(args.from_log, budgets)
        except LogError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        args.seeds = len(out["seeds"])
    else:
        try:
            seed_log = open(args.seed_log, "a") if args.seed_log else None  # noqa: SIM115
        except OSError as err:
            print(f"error: --seed-log {args.seed_log!r}: cannot append to it ({err.strerror or err})",
                  file=sys.stderr)
            return 2
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
              f"{out['seconds'].get('progressive', 0.0):.0f}, "
              f"single {out['seconds'].get('single', 0.0):.0f}")
    if args.png:
        try:  # after the figures are printed: a plot that fails loses no results
            _plot(best, budgets, args.png, table.columns[args.target].max())
        except (OSError, ValueError) as err:
            print(f"error: --png {args.png!r}: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
