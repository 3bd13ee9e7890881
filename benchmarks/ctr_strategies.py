"""EDAS strategies 1–3 on the synthetic CTR task, checked against true M-ensembles.

For each seed:

1. **closed-form** (``python -m agent.edas --strategy closed-form``): dual learners at r ∈
   {0.2, 0.4, 0.6, 0.8, 1} (10 trainings, a fresh seed pair per rate) → r*; the true
   M-ensemble on the grid r = 0.1, …, 1.0 and at r* (what a grid search would have cost: 10·M
   trainings), averaged over ``--check-repeats``
   K disjoint M-ensembles per rate (default 3: one M-ensemble's seed noise is as large as the
   differences between neighbouring rates). Passes when the grid point nearest r* is one of the
   two best grid points of the true curve; r*'s own rank among the grid points is printed too.
   A second table sets r* against a grid search on a truth neither saw: each of the K true
   ensembles judges in turn the grid search on the other K − 1 and r*
   (``agent.edas_strategies.held_out_verdict``).
2. **differentiable** (``--strategy differentiable --check``): baseline duals (π_old = every
   field) + 10 random-mask learners → π, then 4 learners of π and 4 of π_old (2 of them the
   baseline's duals) for the rule at confidence 0.95 (18 trainings); the true M-ensembles of
   π_old and π (K of each, averaged). Passes when E_ens_true(π) ≤ E_ens_true(π_old) (the
   monotonic condition).
3. **llm** (``python -m agent.run --space ctr`` with the builtin proposer, 2 learners per
   candidate, 3 iterations × 2 candidates = 16 trainings, about strategy 2's budget; the
   point-estimate rule, ``--confidence 0``, since two learners give no seed SE) → the final
   baseline;
   its true M-ensembles (K, averaged). ``--s3-rule sequential`` runs it with the product's default
   rule instead (``--learners 2:4``, confidence 0.95, futility stop), held to the same 48
   learner-epochs (16 trainings at fidelity low) by ``--max-learner-epochs``; with ``--only-s3``
   the reference spec's true ensembles are trained too, so each row says whether the final spec
   kept the monotonic condition.

Every true ensemble uses the seeds 1000·seed + 100 … (never seen by a strategy); errors are the
2-class Brier error (= 2 × the binary Brier score) on the held-out test split and on validation.
``--test-rows`` (default 20,000) makes the synthetic test split large enough that the test curve
is not ruled by its sample noise (the 1,000 default rows ordered neighbouring rates differently
from validation); train and validation rows do not depend on it.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/ctr_strategies.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from cli_types import at_least, check_folder, check_out_file  # this folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"


class ChildFailed(RuntimeError):
    """A strategy's own command (agent.edas, agent.run) returned non-zero; it printed why."""


SUMMARY_KEYS = {"s1": ("r_star", "test_true_ens", "grid_best_test", "within_best_two_val",
                       "within_best_two_test", "trainings", "grid_trainings", "curve_test"),
                "s2": ("old_test_true_ens", "test_true_ens", "mean_pi", "rule_accepted",
                       "monotonic_val", "monotonic_test", "trainings"),
                "s3": ("test_true_ens", "trainings")}


def load_summaries(paths: list[str]) -> list[dict]:
    """The rows of earlier runs' summary.json files, joined; ValueError with one line naming the
    file (and row) when one is unreadable, not JSON, not a list of this benchmark's rows."""
    rows = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ValueError(f"--summarise {path!r}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise ValueError(f"--summarise {path!r}: not a UTF-8 text file (expected summary.json)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"--summarise {path!r}: not JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(data, list) or not data:
            raise ValueError(f"--summarise {path!r}: expected a non-empty JSON list of rows "
                             f"(summary.json), got {type(data).__name__} {str(data)[:60]!r}")
        for i, row in enumerate(data):
            if not isinstance(row, dict) or not isinstance(row.get("seed"), int):
                raise ValueError(f"--summarise {path!r}: row {i} is not a row with an integer 'seed': "
                                 f"{str(row)[:60]!r}")
            for part, keys in SUMMARY_KEYS.items():
                lacking = [k for k in keys if not isinstance(row.get(part), dict) or k not in row[part]]
                if lacking:
                    raise ValueError(f"--summarise {path!r}: row {i} (seed {row['seed']}) lacks "
                                     f"{part}.{lacking[0]}")
        rows += data
    return rows


def _newest(out: Path, pattern: str) -> Path:
    return max(out.glob(pattern), key=lambda p: p.stat().st_mtime)


S3_TRAININGS = 16  # strategy 3 with the point rule: the baseline's 4 + 3 iterations × 2 × 2


def _s3_rule_flags(rule: str) -> list[str]:
    """Strategy 3's acceptance rule as agent.run flags: ``point`` (two learners, the point
    estimate) or ``sequential`` (the product's default rule: 2:4, 95 %, futility stop) held to
    the point rule's trainings by a learner-epoch budget."""
    from evaluators.fidelity import get_fidelity

    if rule == "point":
        return ["--learners", "2:2", "--confidence", "0"]
    return ["--max-learner-epochs", str(S3_TRAININGS * get_fidelity("low").learner_epochs())]


def _strategy3(seed: int, M: int, out: Path, n_samples: int | None, repeats: int,
               test_rows: int, model: str = "builtin", rule: str = "point",
               with_baseline: bool = False) -> dict:
    from agent.run import main as run_main
    from evaluators.data import load_task
    from evaluators.edas.common import true_ensemble
    from evaluators.fidelity import get_fidelity
    from spaces import get_space

    argv = ["--space", "ctr", "--dataset", "synthetic-ctr", "--model", model, "--seed", str(seed),
            "--iterations", "3", "--proposals", "2", "--keep", "2", *_s3_rule_flags(rule),
            "--predictor", "none", "--ensemble-size", str(M), "--out", str(out),
            "--max-wall-seconds", "3000"]
    if n_samples:
        argv += ["--n-samples", str(n_samples)]
    if run_main(argv) != 0:
        raise ChildFailed(f"strategy 3 (agent.run) failed for seed {seed} (its error is above)")
    run_dir = _newest(out, f"*-ctr-synthetic-ctr-s{seed}")
    space = get_space("ctr")
    spec = space.parse(json.loads((run_dir / "best_spec.json").read_text())["spec"])
    task = load_task("synthetic-ctr", seed=seed, n_samples=n_samples, test_rows=test_rows)
    events = [json.loads(line) for line in (run_dir / "trajectory.jsonl").read_text().splitlines()]
    per_candidate: dict[str, int] = {}  # learners trained = the most seeds a candidate reached
    for e in events:
        if e["event"] in ("evaluated", "extended") and e.get("seeds"):
            per_candidate[e["proposal_id"]] = max(per_candidate.get(e["proposal_id"], 0), len(e["seeds"]))
    learners = sum(per_candidate.values())
    def truth(spec) -> dict:  # K true M-ensembles on the seeds every strategy's check uses
        return true_ensemble(spec, space, task, get_fidelity("low"), M, 1000 * seed + 100, repeats)

    true = truth(spec)
    proposals = [e for e in events if e["event"] == "proposal"]
    refused = [e for e in events if e["event"] == "proposal_rejected"]
    row = {"run_dir": str(run_dir), "spec": spec.model_dump(), "trainings": learners,
           "model": model, "rule": rule, "proposals": len(proposals), "refused": len(refused),
           "moved": space.canonical_hash(spec) != space.canonical_hash(space.reference()), **true}
    if with_baseline:  # the reference spec's true ensembles, on the same seeds as strategy 2's
        row["baseline_test_true_ens"] = (truth(space.reference())["test_true_ens"]
                                         if row["moved"] else true["test_true_ens"])
    return row


def run_seed(seed: int, M: int, out: Path, n_samples: int | None, repeats: int,
             test_rows: int, s3_model: str = "builtin", s3_rule: str = "point") -> dict:
    from agent.edas import main as edas_main

    common = ["--seed", str(seed), "--ensemble-size", str(M), "--out", str(out),
              "--check-repeats", str(repeats), "--test-rows", str(test_rows)]
    if n_samples:
        common += ["--n-samples", str(n_samples)]
    if edas_main(["--strategy", "closed-form", "--check-grid", GRID, *common]) != 0:
        raise ChildFailed(f"strategy 1 (agent.edas closed-form) failed for seed {seed} (its error is above)")
    s1_dir = _newest(out, f"*-edas-closed-form-*-s{seed}")
    s1 = json.loads((s1_dir / "result.json").read_text())
    if edas_main(["--strategy", "differentiable", "--check", *common]) != 0:
        raise ChildFailed(f"strategy 2 (agent.edas differentiable) failed for seed {seed} "
                          "(its error is above)")
    s2_dir = _newest(out, f"*-edas-differentiable-*-s{seed}")
    s2 = json.loads((s2_dir / "result.json").read_text())
    s3 = _strategy3(seed, M, out, n_samples, repeats, test_rows, s3_model, s3_rule)
    at_star = next(c for c in s1["checks"] if c["rate"] == s1["r_star"])
    grid = [c for c in s1["checks"] if c["rate"] in [float(r) for r in GRID.split(",")]]
    best = {k: min(c[k] for c in grid) for k in ("true_ens", "test_true_ens")}
    return {
        "seed": seed,
        "s1": {"run_dir": str(s1_dir), "r_star": s1["r_star"], "trainings": s1["trainings"],
               "grid_trainings": s1["grid_trainings"],
               "within_best_two_val": s1["verdict_val"]["within_best_two"],
               "within_best_two_test": s1["verdict_test"]["within_best_two"],
               "best_two_test": s1["verdict_test"]["best_two"], "true_ens": at_star["true_ens"],
               "rank_val": s1["verdict_val"]["r_star_rank"],
               "rank_test": s1["verdict_test"]["r_star_rank"], "repeats": repeats,
               "test_sd": float(np.median([c.get("test_true_ens_sd", np.nan) for c in grid])),
               "test_true_ens": at_star["test_true_ens"], "grid_best_val": best["true_ens"],
               "grid_best_test": best["test_true_ens"],
               "curve_test": [(c["rate"], c["test_true_ens"]) for c in grid],
               "held_out_val": s1.get("held_out_val"), "held_out_test": s1.get("held_out_test")},
        "s2": {"run_dir": str(s2_dir), "trainings": s2["trainings"],
               "mean_pi": float(np.mean(s2["pi_final"])),
               "rule_accepted": s2["decision"]["accepted"], "verdict": s2["decision"]["verdict"],
               "monotonic_val": s2["monotonic_val"],
               "monotonic_test": s2["monotonic_test"], "true_ens": s2["checks"]["final"]["true_ens"],
               "test_true_ens": s2["checks"]["final"]["test_true_ens"],
               "old_true_ens": s2["checks"]["old"]["true_ens"],
               "old_test_true_ens": s2["checks"]["old"]["test_true_ens"]},
        "s3": s3,
    }


def _mean_sd(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def summarise(rows: list[dict], M: int) -> str:
    def returned(s2: dict) -> float:  # the rule keeps the baseline when it rejects π
        return s2["test_true_ens"] if s2["rule_accepted"] else s2["old_test_true_ens"]

    lines = ["| seed | baseline r=1 | S1 r* | S1 at r* | grid best | S1 in best two (val/test) | "
             "r* rank (val/test) | S2 mean π | S2 rule | S2 π | S2 π monotonic (val/test) | "
             "S2 returned | S3 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s1, s2, s3 = r["s1"], r["s2"], r["s3"]
        lines.append(f"| {r['seed']} | {s2['old_test_true_ens']:.4f} | {s1['r_star']:.3f} | "
                     f"{s1['test_true_ens']:.4f} | {s1['grid_best_test']:.4f} | "
                     f"{s1['within_best_two_val']}/{s1['within_best_two_test']} | "
                     f"{s1.get('rank_val', '?')}/{s1.get('rank_test', '?')} | {s2['mean_pi']:.3f} | "
                     f"{s2.get('verdict', 'accepted' if s2['rule_accepted'] else 'rejected')} | "
                     f"{s2['test_true_ens']:.4f} | "
                     f"{s2['monotonic_val']}/{s2['monotonic_test']} | {returned(s2):.4f} | "
                     f"{s3['test_true_ens']:.4f} |")
    lines.append(f"| mean ± sd | {_mean_sd([r['s2']['old_test_true_ens'] for r in rows])} | | "
                 f"{_mean_sd([r['s1']['test_true_ens'] for r in rows])} | "
                 f"{_mean_sd([r['s1']['grid_best_test'] for r in rows])} | | | | | "
                 f"{_mean_sd([r['s2']['test_true_ens'] for r in rows])} | | "
                 f"{_mean_sd([returned(r['s2']) for r in rows])} | "
                 f"{_mean_sd([r['s3']['test_true_ens'] for r in rows])} |")
    t = rows[0]
    k = t["s1"].get("repeats", 1)
    lines.append(f"\nTrue {M}-ensemble Brier error (2-class) on the test split, the mean of {k} "
                 f"disjoint {M}-ensembles per spec" + (f" (one {M}-ensemble's SD over them: median "
                 f"{np.median([r['s1']['test_sd'] for r in rows]):.4f} on the grid)" if k > 1 else "")
                 + ". Trainings per seed: "
                 f"S1 {t['s1']['trainings']} (grid: {t['s1']['grid_trainings']}), "
                 f"S2 {t['s2']['trainings']}, S3 {t['s3']['trainings']}.")
    return "\n".join(lines + held_out_table(rows, M))


def held_out_table(rows: list[dict], M: int) -> list[str]:
    """Strategy 1 against a grid search, each judged on a true M-ensemble it never saw
    (``agent.edas_strategies.held_out_verdict``); empty without ``--check-repeats`` >= 2."""
    rows = [r for r in rows if r["s1"].get("held_out_test")]
    if not rows:
        return []
    K = rows[0]["s1"]["held_out_test"]["judges"]
    lines = [f"\nHeld out: each of the K = {K} true {M}-ensembles per rate judges in turn; the grid "
             f"search picks the grid rate best on the other {K - 1} ({(K - 1) * M} trainings per "
             f"rate), strategy 1 brings r* ({rows[0]['s1']['trainings']} trainings). Hit: the pick "
             "(r*'s nearest grid point) is among the judge's best two grid points; regret: the "
             "judge's error at the pick (r*'s own) minus its best grid point's, ×10⁻³.\n",
             "| seed | S1 hit (val/test) | grid hit (val/test) | S1 regret (val/test) | "
             "grid regret (val/test) |", "| --- | --- | --- | --- | --- |"]
    cols = {(who, m, split): [] for who in ("closed_form", "grid") for m in ("hit", "regret")
            for split in ("val", "test")}

    def cells(v: dict) -> str:  # the four val/test pairs of one row
        def pair(who: str, m: str) -> str:
            fmt = (lambda x: f"{x:.2f}") if m == "hit" else (lambda x: f"{1e3 * x:+.2f}")
            return f"{fmt(v[who, m, 'val'])}/{fmt(v[who, m, 'test'])}"
        return " | ".join(pair(who, m) for m in ("hit", "regret") for who in ("closed_form", "grid"))

    for r in rows:
        for key in cols:
            cols[key].append(r["s1"][f"held_out_{key[2]}"][f"{key[0]}_{key[1]}"])
        lines.append(f"| {r['seed']} | {cells({key: vals[-1] for key, vals in cols.items()})} |")
    lines.append(f"| mean | {cells({key: float(np.mean(vals)) for key, vals in cols.items()})} |")
    return lines


def plot(rows: list[dict], path: Path, M: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, r in enumerate(rows):
        rates, errs = zip(*r["s1"]["curve_test"], strict=True)
        ax.plot(rates, errs, "o-", color=f"C{i}", alpha=0.6, label=f"seed {r['seed']}: true grid")
        ax.plot([r["s1"]["r_star"]], [r["s1"]["test_true_ens"]], "*", color=f"C{i}", ms=14)
        ax.axhline(r["s2"]["test_true_ens"], color=f"C{i}", ls="--", lw=1)
        ax.axhline(r["s3"]["test_true_ens"], color=f"C{i}", ls=":", lw=1)
    ax.set_xlabel("feature-bagging rate r")
    ax.set_ylabel(f"true {M}-ensemble Brier error (test)")
    ax.set_title("★ strategy 1's r*; -- strategy 2's π; ··· strategy 3's final spec", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def strategy3_table(rows: list[dict]) -> str:
    """Strategy 3 alone (``--only-s3``): the final baseline's true ensembles per seed."""
    lines = ["| seed | proposer | rule | proposals (refused) | trainings | final spec | "
             "test true ens | baseline | monotonic |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        spec, base = r["spec"], r["baseline_test_true_ens"]
        lines.append(f"| {r['seed']} | {r['model']} | {r['rule']} | {r['proposals']} ({r['refused']}) | "
                     f"{r['trainings']} | d={spec['embed_dim']} {spec['interaction']} "
                     f"{spec['mlp_width']}×{spec['mlp_depth']} p={spec['dropout']} "
                     f"r={spec['bagging_rate']} | {r['test_true_ens']:.4f} | {base:.4f} | "
                     f"{r['test_true_ens'] <= base} |")
    kept = sum(r["test_true_ens"] <= r["baseline_test_true_ens"] for r in rows)
    lines.append(f"| mean ± sd | | | | | | {_mean_sd([r['test_true_ens'] for r in rows])} | "
                 f"{_mean_sd([r['baseline_test_true_ens'] for r in rows])} | {kept}/{len(rows)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=at_least(0, 2**31 - 1), nargs="+", default=[0, 1, 2])
    p.add_argument("--ensemble-size", type=at_least(2, 10000), default=8)
    p.add_argument("--n-samples", type=at_least(100), default=None)
    p.add_argument("--check-repeats", type=at_least(1, 100), default=3,
                   help="K: disjoint true M-ensembles per checked spec, averaged")
    p.add_argument("--test-rows", type=at_least(100), default=20_000, help="synthetic test rows")
    p.add_argument("--out", default="runs/bench-ctr")
    p.add_argument("--figure", default=None, help="also write the summary PNG here")
    p.add_argument("--s3-model", default="builtin",
                   help="strategy 3's proposer (agent.run --model): builtin, local, gpt-4o, …")
    p.add_argument("--s3-rule", choices=("point", "sequential"), default="point",
                   help="strategy 3's rule: point (2 learners, point estimate) or sequential "
                   "(the product's default 2:4 at 95 %%, held to the same 48 learner-epochs)")
    p.add_argument("--only-s3", action="store_true",
                   help="run strategy 3 alone (e.g. with another --s3-model) and print its table")
    p.add_argument("--summarise", default=None, nargs="+", metavar="SUMMARY_JSON",
                   help="print the table of earlier runs' summary.json files (their rows joined, "
                   "e.g. seeds run in two processes; with --figure, plot them); trains nothing")
    args = p.parse_args(argv)
    check_out_file(p, "--figure", args.figure)
    if args.summarise:
        try:
            rows = load_summaries(args.summarise)
            table = summarise(sorted(rows, key=lambda r: r["seed"]), args.ensemble_size)
        except (ValueError, KeyError, TypeError) as err:
            print(f"error: {err if isinstance(err, ValueError) else f'--summarise: a row lacks {err}'}",
                  file=sys.stderr)
            return 2
        print(table)
        if args.figure:
            plot(rows, Path(args.figure), args.ensemble_size)
        return 0
    check_folder(p, "--out", args.out)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, out)
    except ChildFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args, out: Path) -> int:
    if args.only_s3:
        rows = [{"seed": s, **_strategy3(s, args.ensemble_size, out, args.n_samples,
                                         args.check_repeats, args.test_rows, args.s3_model,
                                         args.s3_rule, with_baseline=True)}
                for s in args.seeds]
        (out / "strategy3.json").write_text(json.dumps(rows, indent=2))
        print(strategy3_table(rows))
        return 0
    rows = [run_seed(s, args.ensemble_size, out, args.n_samples, args.check_repeats, args.test_rows,
                     args.s3_model, args.s3_rule) for s in args.seeds]
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    table = summarise(rows, args.ensemble_size)
    (out / "summary.md").write_text(table + "\n")
    plot(rows, out / "summary.png", args.ensemble_size)
    if args.figure:
        plot(rows, Path(args.figure), args.ensemble_size)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
