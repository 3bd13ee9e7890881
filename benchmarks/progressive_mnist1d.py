"""Progressive fidelity against single high fidelity on MNIST-1D (real training), per seed.

    python benchmarks/progressive_mnist1d.py --seeds 3 --schedule low,medium --single medium \\
        --max-learner-epochs 400 --iterations 6 --n-samples 1500 --ensemble-size 8 [--json]

For each seed, two real runs of ``python -m agent.run --model builtin --predictor none
--validate`` in subprocesses, with the same ``--iterations``, ``--proposals``/``--keep``,
``--n-samples``, ``--ensemble-size`` M and ``--baseline`` (optional): (a) progressive,
``--fidelity-schedule SCHEDULE``; (b) single fidelity, ``--fidelity SINGLE`` (the schedule's
top rung; a one-rung ``--fidelity-schedule`` when it names custom epochs, e.g. ``medium:8``).
Read back from each run's trajectory: the **final baseline's true M-ensemble Brier on the test
split** (``--validate`` trains M real learners at the top rung, the same fidelity in
both runs), the learner-epochs the search spent (the validation ensembles not counted), the
run's wall time and, for the progressive run, Kendall τ between its rungs
(:func:`agent.report_rungs.rung_tau`, over the candidates evaluated at both). Lower Brier is
better. Budgets: single fidelity gets ``--max-learner-epochs``, progressive ``--budget-share``
of it. Target (issue 11): progressive at least as good as single fidelity with ≤ 60 % of its
learner-epochs, i.e. ``--budget-share 0.6``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cli_types import at_least, check_folder, check_out_file, finite_at_least  # this folder
from rich.console import Console
from rich.progress import Progress

from agent.report_rungs import rung_tau
from agent.state import SearchState
from agent.trajectory import read_events
from evaluators.fidelity import parse_schedule
from evaluators.promotion import HALVINGS

ROOT = Path(__file__).resolve().parents[1]


def run_once(flags: list[str], seed: int, out: Path, common: list[str],
             device: str = "cpu") -> tuple[Path, float]:
    """One ``agent.run`` in a subprocess; its run folder and wall seconds."""
    cmd = [sys.executable, "-m", "agent.run", "--model", "builtin", "--predictor", "none",
           "--validate", "--device", device, "--seed", str(seed), "--out", str(out), *common, *flags]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}: " + " | ".join(tail))
    runs = [p for p in out.iterdir() if (p / "trajectory.jsonl").is_file()]
    if len(runs) != 1:
        raise SystemExit(f"error: expected one run folder under {out}, found {len(runs)}")
    return runs[0], wall


def read_run(run_dir: Path, M: int) -> dict:
    """Final baseline's true test M-ensemble Brier, learner-epochs spent, τ between rungs."""
    state = SearchState.from_events(read_events(run_dir).events)
    final = [v for v in state.validated if v.proposal_id == state.baseline_id]
    if not final or final[-1].test_true_ens_brier is None:
        raise SystemExit(f"error: {run_dir}: no validated test ensemble for the final baseline")
    config = state.config or {}
    rungs = [r.name for r in parse_schedule(config.get("fidelity_schedule") or config["fidelity"])]
    first = [v for v in state.validated if v.proposal_id == state.first_baseline_id]
    return {"test_ens_brier": final[-1].test_true_ens_brier,
            "val_ens_brier": final[-1].true_ens_brier,
            "first_test_ens_brier": first[-1].test_true_ens_brier if first else None,
            "learner_epochs": state.learner_epochs_spent,
            "moved": state.baseline_id != state.first_baseline_id,
            "end": state.finished.reason if state.finished else "unfinished",
            "tau": [(lo, hi, n, tau) for lo, hi, n, tau in rung_tau(state, rungs, M)]}


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _mean_sd(values) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.4f}±{_sd(values):.4f}"


ROW_KEYS = ("seed", "method", "test_ens_brier", "learner_epochs", "wall_s", "moved", "end", "tau")
METHODS = ("progressive", "single")


def load_rows(paths: list[str]) -> list[dict]:
    """The rows ``--json`` printed, from one or more files (several processes' shares of one
    comparison). Every line must be a JSON object with :data:`ROW_KEYS`, one row per (seed,
    method), and every seed must have both methods; anything else is refused naming the file, the
    line and the value."""
    rows: dict[tuple[int, str], dict] = {}
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ValueError(f"--from-log {path!r}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"--from-log {path!r}: not a UTF-8 text file (expected the JSON rows "
                             "--json printed)") from None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{i}: not a JSON row: {line[:80]!r}") from None
            missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
            if missing or row["method"] not in METHODS:
                raise ValueError(f"{path}:{i}: not a row of this benchmark (missing {missing}, "
                                 f"method {row.get('method') if isinstance(row, dict) else None!r}): "
                                 f"{line[:80]!r}")
            wrong = _row_problem(row)
            if wrong:
                raise ValueError(f"{path}:{i}: {wrong}: {line[:80]!r}")
            key = (row["seed"], row["method"])
            if key in rows:
                raise ValueError(f"{path}:{i}: seed {row['seed']!r} {row['method']} appears twice")
            rows[key] = row
    seeds = sorted({seed for seed, _ in rows})
    lone = [f"{seed} ({m})" for seed in seeds for m in METHODS if (seed, m) not in rows]
    if not rows or lone:
        raise ValueError(f"--from-log: every seed needs both methods; missing: {lone or 'all rows'}")
    return [rows[(seed, m)] for seed in seeds for m in METHODS]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _row_problem(row: dict) -> str | None:
    """What is wrong with the types or ranges of a row's values, quoting the value; None if nothing."""
    checks = (
        ("seed", isinstance(row["seed"], int) and not isinstance(row["seed"], bool) and row["seed"] >= 0,
         "an integer >= 0"),
        ("test_ens_brier", _number(row["test_ens_brier"]) and math.isfinite(row["test_ens_brier"])
         and row["test_ens_brier"] >= 0, "a finite number >= 0"),
        ("learner_epochs", _number(row["learner_epochs"]) and math.isfinite(row["learner_epochs"])
         and row["learner_epochs"] > 0, "a finite number > 0"),
        ("wall_s", _number(row["wall_s"]) and math.isfinite(row["wall_s"]) and row["wall_s"] >= 0,
         "a finite number >= 0"),
        ("moved", isinstance(row["moved"], bool), "true or false"),
        ("end", isinstance(row["end"], str), "a string"),
        ("tau", isinstance(row["tau"], list) and all(
            isinstance(t, list) and len(t) == 4 and isinstance(t[0], str) and isinstance(t[1], str)
            and isinstance(t[2], int) and not isinstance(t[2], bool) and _number(t[3])
            and (math.isnan(t[3]) or -1.0 <= t[3] <= 1.0) for t in row["tau"]),
         "a list of [lower rung, upper rung, n, τ in -1..1]"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"{key} {row[key]!r}: expected {expected}"
    return None


@dataclass(frozen=True)
class Summary:
    """Per-seed pairs of the two searches, read as the target reads them: progressive is *as
    good* on a seed when its final baseline's true test ensemble Brier is ≤ single fidelity's."""

    seeds: list[int]
    as_good: int  # seeds with progressive ≤ single
    better: int  # seeds with progressive < single
    diff_mean: float  # mean over seeds of progressive − single Brier (≤ 0: progressive as good)
    diff_se: float  # its standard error over seeds (sd / √n)
    share_mean: float  # progressive's learner-epochs / single's, mean over seeds
    share_sd: float
    share_max: float  # the largest per seed (a seed whose single-fidelity run stopped short)


def _paired(rows: list[dict]) -> tuple[list[int], dict[int, dict], dict[int, dict]]:
    """The seeds with both methods, and each method's row by seed."""
    prog = {r["seed"]: r for r in rows if r["method"] == "progressive"}
    single = {r["seed"]: r for r in rows if r["method"] == "single"}
    return sorted(prog.keys() & single.keys()), prog, single


def summarise(rows: list[dict]) -> Summary | None:
    """The paired comparison of :func:`load_rows`' rows (or a run's own); None when no seed has
    both methods."""
    seeds, prog, single = _paired(rows)
    if not seeds:
        return None
    diff = np.array([prog[s]["test_ens_brier"] - single[s]["test_ens_brier"] for s in seeds])
    share = np.array([prog[s]["learner_epochs"] / single[s]["learner_epochs"] for s in seeds])
    return Summary(seeds=seeds, as_good=int(np.sum(diff <= 0)), better=int(np.sum(diff < 0)),
                   diff_mean=float(diff.mean()), diff_se=_sd(diff) / math.sqrt(len(seeds)),
                   share_mean=float(share.mean()), share_sd=_sd(share), share_max=float(share.max()))


def print_summary(rows: list[dict], summary: Summary | None) -> None:
    """Every row, then each method's mean ± sd and the paired verdict."""
    print(f"{'seed':>4} {'method':12} {'test ens Brier':>15} {'learner-ep':>11} {'wall s':>7} "
          f"{'moved':>6} {'end':>18}  τ between rungs (n)")
    for r in rows:
        taus = ", ".join(f"{lo}→{hi} {tau:+.2f} ({n})" for lo, hi, n, tau in r["tau"]) or "-"
        print(f"{r['seed']:>4} {r['method']:12} {r['test_ens_brier']:>15.4f} "
              f"{r['learner_epochs']:>11.1f} {r['wall_s']:>7.0f} {str(r['moved']):>6} "
              f"{r['end']:>18}  {taus}")
    for name in METHODS:
        mine = [r for r in rows if r["method"] == name]
        taus = [r["tau"][0][3] for r in mine if r["tau"]]
        print(f"mean±sd {name:12} Brier {_mean_sd([r['test_ens_brier'] for r in mine])}, "
              f"learner-epochs {_mean_sd([r['learner_epochs'] for r in mine])}, wall "
              f"{_mean_sd([r['wall_s'] for r in mine])} s" + (f", τ {_mean_sd(taus)}" if taus else ""))
    if summary is None:
        return
    n = len(summary.seeds)
    print(f"progressive as good or better on {summary.as_good}/{n} seeds (better on "
          f"{summary.better}); paired Brier difference progressive − single "
          f"{summary.diff_mean:+.4f} (SE {summary.diff_se:.4f}); its learner-epochs / single's: "
          f"{summary.share_mean:.2f}±{summary.share_sd:.2f} (max {summary.share_max:.2f})")


def plot(rows: list[dict], path: Path) -> None:
    """Left: each seed's final true ensemble Brier, progressive against single (below the
    diagonal: progressive better; filled: progressive moved its baseline). Right: progressive's
    learner-epochs as a share of single's, with the target's 0.6."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds, prog, single = _paired(rows)
    x = [single[s]["test_ens_brier"] for s in seeds]
    y = [prog[s]["test_ens_brier"] for s in seeds]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    lo, hi = min(x + y), max(x + y)
    a.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    moved = [prog[s]["moved"] for s in seeds]
    for flag, label in ((True, "progressive moved its baseline"), (False, "it did not")):
        a.scatter([xi for xi, m in zip(x, moved, strict=True) if m is flag],
                  [yi for yi, m in zip(y, moved, strict=True) if m is flag],
                  color="C0" if flag else "white", edgecolors="C0", label=label)
    for s, xi, yi in zip(seeds, x, y, strict=True):
        a.annotate(str(s), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    a.set(xlabel="single fidelity: final test ensemble Brier",
          ylabel="progressive: final test ensemble Brier",
          title="per seed (below the line: progressive better)")
    a.legend(loc="upper left", fontsize=8)
    b.bar([str(s) for s in seeds], [prog[s]["learner_epochs"] / single[s]["learner_epochs"] for s in seeds])
    b.axhline(0.6, color="C3", lw=1, label="target ≤ 0.6")
    b.set(xlabel="seed", ylabel="learner-epochs, progressive / single", title="cost")
    b.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def taken_runs(out: str | None, runs: list[str]) -> str | None:
    """Why ``--out`` cannot take these run folders (it holds an earlier run's, which are never
    overwritten), or None."""
    taken = [name for name in runs if out is not None and (Path(out) / name).exists()]
    return (f"already holds {', '.join(taken)} from an earlier run (never overwritten): choose "
            "another folder or remove them") if taken else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=at_least(1, 1000), default=3)
    p.add_argument("--first-seed", type=at_least(0, 2**31 - 1), default=0,
                   help="seeds first … first + seeds - 1 "
                        "(several processes can share the seeds of one comparison)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--schedule", default="low,medium", help="progressive rungs, lowest first")
    p.add_argument("--single", default="medium", help="the single fidelity (the top rung)")
    p.add_argument("--max-learner-epochs", type=finite_at_least(0), default=400)
    p.add_argument("--budget-share", type=finite_at_least(0), default=1.0,
                   help="the progressive run's --max-learner-epochs as a share of single "
                        "fidelity's (0.6: the issue's target, as good at ≤ 60 %%)")
    p.add_argument("--iterations", type=at_least(1), default=6)
    p.add_argument("--proposals", type=at_least(1), default=4)
    p.add_argument("--keep", type=at_least(1), default=2)
    p.add_argument("--n-samples", type=at_least(100), default=1500)
    p.add_argument("--ensemble-size", type=at_least(2), default=8)
    p.add_argument("--eta", type=at_least(2), default=3)
    p.add_argument("--halving", choices=HALVINGS, default="asynchronous",
                   help="the progressive run's --halving")
    p.add_argument("--batch-size", type=at_least(1), default=None, help="passed to every run (default: 128)")
    p.add_argument("--max-wall-seconds", type=finite_at_least(0), default=3600,
                   help="passed to every run: without it a low-first schedule on nb201/mnist1d "
                   "gets the default task's 150 s wall budget")
    p.add_argument("--baseline", help="JSON spec of the first baseline, passed to every run (e.g. "
                   "benchmarks/weak_nb201_baseline.json, a cell a search can improve on)")
    p.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--methods", default="progressive,single", help="which searches to run: a "
                   "schedule compared with single-fidelity rows an earlier run printed (same "
                   "flags, same seeds: the runs are deterministic) needs only 'progressive'")
    p.add_argument("--png", help="plot the per-seed comparison here")
    p.add_argument("--from-log", nargs="+", metavar="FILE", help="no search: summarise (and "
                   "--png) the rows earlier --json runs printed, e.g. several processes' shares")
    args = p.parse_args(argv)
    check_out_file(p, "--png", args.png)
    if args.from_log:
        try:
            rows = load_rows(args.from_log)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print_summary(rows, summarise(rows))
        if args.png:
            plot(rows, Path(args.png))
        return 0
    try:
        rungs = parse_schedule(args.schedule)
        single = parse_schedule(args.single)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(single) != 1 or single[0].name != rungs[-1].name:
        print(f"error: --single {args.single!r} must be the schedule's top rung "
              f"{rungs[-1].name!r}", file=sys.stderr)
        return 2
    if not 0.0 < args.budget_share <= 1.0:
        print(f"error: --budget-share {args.budget_share!r}: expected a share in (0, 1]",
              file=sys.stderr)
        return 2
    chosen = args.methods.split(",")
    if set(chosen) - set(METHODS) or not args.methods:
        print(f"error: --methods {args.methods!r}: expected a comma-separated subset of "
              f"{','.join(METHODS)}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.max_learner_epochs <= 0:
        print(f"error: need --seeds ≥ 1 and --max-learner-epochs > 0 (got {args.seeds!r}, "
              f"{args.max_learner_epochs!r})", file=sys.stderr)
        return 2
    common = ["--iterations",
              str(args.iterations), "--proposals", str(args.proposals), "--keep", str(args.keep),
              "--n-samples", str(args.n_samples), "--ensemble-size", str(args.ensemble_size),
              "--eta", str(args.eta), "--max-wall-seconds", f"{args.max_wall_seconds:g}"]
    if args.baseline:
        common += ["--baseline", str(Path(args.baseline).resolve())]
    if args.batch_size is not None:
        common += ["--batch-size", str(args.batch_size)]
    budget = {"progressive": args.budget_share * args.max_learner_epochs,
              "single": args.max_learner_epochs}
    methods = {"progressive": ["--fidelity-schedule", args.schedule, "--halving", args.halving],
               "single": ["--fidelity-schedule" if ":" in args.single else "--fidelity", args.single]}
    methods = {k: [*v, "--max-learner-epochs", f"{budget[k]:g}"] for k, v in methods.items()
               if k in chosen}
    if args.out is not None:
        check_folder(p, "--out", args.out)
    wrong = taken_runs(args.out, [f"{name}-s{seed}" for seed in range(args.first_seed,
                                                                   args.first_seed + args.seeds)
                                  for name in methods])
    if wrong:
        print(f"error: --out {args.out!r}: {wrong}", file=sys.stderr)
        return 2
    rows: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Progress(console=Console(stderr=True)) as progress:
        base = Path(args.out) if args.out else Path(tmp)
        task = progress.add_task("runs", total=args.seeds * len(methods))
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name, flags in methods.items():
                out = base / f"{name}-s{seed}"
                out.mkdir(parents=True, exist_ok=False)
                run_dir, wall = run_once(flags, seed, out, common, args.device)
                row = {"seed": seed, "method": name, "wall_s": wall, **read_run(run_dir, args.ensemble_size)}
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
                progress.advance(task)
    total = time.perf_counter() - start
    if args.json:
        return 0
    print(f"MNIST-1D, {args.device}, {args.n_samples} samples, M = {args.ensemble_size}, budget "
          f"{budget['progressive']:g} (progressive) and {budget['single']:g} (single) "
          f"learner-epochs, {args.iterations} iterations each; "
          f"progressive {args.schedule} vs single {args.single}; true test {args.ensemble_size}-"
          f"ensemble Brier of the final baseline (lower is better)")
    print_summary(rows, summarise(rows))
    print(f"total wall {total:.0f} s")
    if args.png:
        plot(rows, Path(args.png))
    return 0

if __name__ == "__main__":
    sys.exit(main())
