"""Does the acceptance rule agree with the real ensemble? Fixed two-learner rule vs sequential rule.

Protocol (issue 10, point 5). Sixteen NB201 cells in two families (a base cell and seven
one-edge changes of it each, so real near ties exist); every ordered pair (π, π_old) of
distinct cells is one decision: 16·15 = 240 pairs. For each cell:

* decision learners, seeds 0…D−1 (``--decision-learners``; D = 8 with ``--small``, 16
  otherwise; a cache with fewer is extended by training only the new seeds): the only learners
  the rules see, through their validation probabilities;
* a truth ensemble of T learners (``--true-ensemble``, T ≥ 16), seeds 10000…, never seen by a
  rule. Truth: the real T-ensemble's Brier error (averaged probabilities) on the held-out test
  split. The true gap Brier(π_old) − Brier(π) has two SEs: the test-sample part, from a paired
  bootstrap over test samples, and the truth's own seed part, from a jackknife over its T
  learners (seed i of one cell paired with seed i of the other: they share the seed). A pair is
  *clear* when |true gap| > 2 SE_sample (the issue's first reading), and *clear with seeds* when
  |true gap| > 2·√(SE_sample² + SE_seed²): a T-ensemble is one draw of the learners' seeds, and
  on these tasks its seed SE is about four times its sample SE, so many pairs clear on samples
  alone are a coin flip of the truth's seeds.

Rules, both in the ``exact`` form, deciding about an ensemble of M = T learners (the truth is
the T-ensemble, so that is the M whose sign can be checked; ``--ensemble-size``, the product's
M, gets one extra line against the same truth):

* fixed: the product before issue 10: the point estimate from learners 0–1 of each side.
* sequential (``--learners MIN:MAX``, ``--confidence``, ``--reject-confidence``), as
  ``agent.loop.SearchLoop.decide`` runs it: the baseline starts with
  :func:`agent.config.first_baseline_learners` learners, the candidate with MIN; at each look
  the baseline is brought to the candidate's learner count (same seeds),
  :func:`evaluators.stats.gain_estimate` uses all learners of each side; confident → decided,
  else the candidate grows by :func:`agent.rule.next_learners` until MAX, then *undecided*
  (the baseline stays: not accepted).
* the run-level seed pool (:func:`evaluators.stats.pool_seed_variance`): as if the benchmark
  run had evaluated every cell once as a baseline, the jackknife seed variances of all 16
  cells' first ``baseline_learners`` decision learners, fixed for all pairs (order-free; uses
  decision learners only). ``--pool baseline`` instead pools only the pair's baseline's
  first learners, as at the start of a live run, before other cells have fed the pool.

Spread: every figure is the mean ± SD over seed choices: the fixed rule over the D/2 disjoint
learner pairs (2r, 2r+1); the sequential rule over R = ``--orderings`` orders of the decision
learners (rotated by r·D/R, so with R = 2 the first four learners of the two orders are disjoint).
The line at the product's M uses the first order only.

Trained probabilities are cached per cell under ``--out`` (a rerun with other rule settings
reads them back); the curve of clear-pair agreement against MAX is written as a PNG there.

    python benchmarks/rule_validity.py --small --decision-learners 16 [--dataset fashion-mnist]
        [--learners 2:8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from cli_types import at_least, check_folder  # this folder
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn, track
from rule_validity_report import plot, report, score, spread  # tables, PNG (this folder)
from rule_validity_truth import baseline_learners, gain, gain_key, oracle, truth  # the scoring inputs

from agent.cli import UsageError, parse_learners
from agent.config import RunConfig
from agent.rule import decide, learner_schedule, next_learners
from evaluators import stats as es
from evaluators.data import DatasetUnavailable, load_task
from evaluators.dual import train_spec
from evaluators.fidelity import Fidelity, get_fidelity
from spaces import get_space
from spaces.nb201 import EDGES, NB201Space

#: (family, base cell, one-edge changes of it): each family is its base and seven neighbours.
FAMILIES = (
    ("conv", "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
     (("edge_1_0", "nor_conv_1x1"), ("edge_2_0", "nor_conv_1x1"), ("edge_2_1", "avg_pool_3x3"),
      ("edge_3_0", "none"), ("edge_3_1", "avg_pool_3x3"), ("edge_3_2", "nor_conv_1x1"),
      ("edge_3_1", "nor_conv_3x3"))),
    ("pool",
     "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
     (("edge_1_0", "skip_connect"), ("edge_1_0", "nor_conv_1x1"), ("edge_2_0", "avg_pool_3x3"),
      ("edge_2_1", "none"), ("edge_3_0", "none"), ("edge_3_2", "nor_conv_1x1"),
      ("edge_3_1", "avg_pool_3x3"))),
)
TRUTH_SEED0 = 10_000  # truth learners' seeds start here: never a decision learner's seed
CURVE_MAX = (2, 4, 8, 16)
INSTALL_FASHION = "apt-get update && apt-get install -y dataset-fashion-mnist"


def architectures() -> list[tuple[str, object]]:
    """(family, NB201 spec) for the 16 cells, channels 16, one cell per stage."""
    out = []
    for family, base, edits in FAMILIES:
        spec = NB201Space.from_arch_string(base, channels=16, cells_per_stage=1)
        out.append((family, spec))
        out += [(family, spec.model_copy(update={edge: op})) for edge, op in edits]
    return out


def edge_distance(a, b) -> int:
    return sum(getattr(a, name) != getattr(b, name) for name, _, _ in EDGES)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("mnist1d", "fashion-mnist"), default="mnist1d")
    p.add_argument("--small", action="store_true",
                   help="CPU setting: D=8 decision learners, T=16, MNIST-1D 3000 samples, "
                        "Fashion-MNIST 1000 samples at 14x14 (sized for 2 cores)")
    p.add_argument("--learners", default="2:8", help="sequential rule's MIN:MAX (default 2:8)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--reject-confidence", type=float, default=None,
                   help="the rejection bound's level alone (default: --confidence)")
    p.add_argument("--futility", type=float, default=RunConfig.model_fields["futility"].default,
                   help="stop a candidate undecided when a confident call at MAX has a chance "
                        "under this (as agent.run --futility, and its default; 0: never)")
    p.add_argument("--pool", choices=("cells", "baseline"), default="cells",
                   help="run-level seed pool: every cell's first learners (a run that has seen "
                        "many baselines) or the pair's baseline's alone (a run's start)")
    p.add_argument("--ensemble-size", type=at_least(2, 100000), default=50,
                   help="the product's M (extra line)")
    p.add_argument("--true-ensemble", type=at_least(16, 1000), default=None, help="T ≥ 16 truth learners")
    p.add_argument("--n-samples", type=at_least(100), default=None, help="training+validation samples")
    p.add_argument("--resolution", type=at_least(4, 512), default=None, help="input side (Fashion-MNIST)")
    p.add_argument("--fidelity", default="low")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="train on this device (cuda: learners packed, bf16 autocast; its own cache)")
    p.add_argument("--out", default="benchmarks/out", help="folder for cache, PNG and JSON")
    p.add_argument("--decision-learners", type=at_least(4, 1000), default=None,
                   help="D, decision learners per cell (default 8 with --small, else 16); a cache "
                        "with fewer is extended: only the new seeds are trained")
    p.add_argument("--orderings", type=at_least(1, 1000), default=2,
                   help="seed orderings of the decision learners for the spread (≤ D/2)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    try:
        args.min_learners, args.max_learners = parse_learners(args.learners)
    except UsageError as err:
        p.exit(2, f"error: {err}\n")
    if not 0.0 < args.confidence < 1.0:
        p.exit(2, f"error: --confidence {args.confidence!r}: expected a level in (0, 1)\n")
    if args.reject_confidence is not None and not 0.0 <= args.reject_confidence < 1.0:
        p.exit(2, f"error: --reject-confidence {args.reject_confidence!r}: expected a level in "
                  "[0, 1)\n")
    if not 0.0 <= args.futility < 1.0:
        p.exit(2, f"error: --futility {args.futility!r}: expected a chance in [0, 1)\n")
    if args.orderings < 1:
        p.exit(2, f"error: --orderings {args.orderings!r}: expected at least 1\n")
    if args.ensemble_size < 2:
        p.exit(2, f"error: --ensemble-size {args.ensemble_size!r}: expected M >= 2\n")
    if args.decision_learners is None:
        args.decision_learners = 8 if args.small else 16
    if args.true_ensemble is None:
        args.true_ensemble = 16 if args.small else 32
    check_folder(p, "--out", args.out)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device 'cuda': no CUDA device is available here")
    try:
        fidelity = get_fidelity(args.fidelity)
        if args.resolution is not None:
            Fidelity.model_validate({**fidelity.model_dump(), "resolution": args.resolution})
    except (ValueError, TypeError) as err:
        p.error(f"--fidelity {args.fidelity!r}: {str(err).splitlines()[0]}")
    if args.max_learners > args.decision_learners:
        p.exit(2, f"error: --learners {args.learners!r}: MAX above the {args.decision_learners} "
                  "decision learners this setting trains (raise --decision-learners)\n")
    if args.n_samples is None:
        args.n_samples = (1000 if args.small else None) if args.dataset == "fashion-mnist" else (
            3000 if args.small else 4000)
    if args.resolution is None and args.small and args.dataset == "fashion-mnist":
        args.resolution = 14
    return args


def load_probs(args, archs, err: Console) -> dict[str, np.ndarray]:
    """Train (or read back from the cache) every cell's decision and truth learners."""
    space, D, T = get_space("nb201"), args.decision_learners, args.true_ensemble
    fidelity = get_fidelity(args.fidelity)
    if args.resolution is not None:
        fidelity = fidelity.model_copy(update={"resolution": args.resolution,
                                               "name": f"{fidelity.name}-r{args.resolution}"})
    try:
        task = load_task(args.dataset, n_samples=args.n_samples, data_dir=args.data_dir,
                         device=args.device)
    except DatasetUnavailable as exc:
        print(f"error: --dataset {args.dataset!r}: {exc}; to install: {INSTALL_FASHION}", file=sys.stderr)
        raise SystemExit(2) from None
    where = "" if args.device == "cpu" else f"-{args.device}"  # bf16 learners differ: never mixed
    cache = Path(args.out) / f"cache-{args.dataset}-n{args.n_samples}-{fidelity.name}{where}"
    cache.mkdir(parents=True, exist_ok=True)
    seeds = list(range(D)) + [TRUTH_SEED0 + i for i in range(T)]
    val, test = [], []
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=err) as progress:
        bar = progress.add_task(f"{args.dataset}: {len(archs)} cells × {D}+{T} learners",
                                total=len(archs) * len(seeds))
        for i, (_, spec) in enumerate(archs):
            stem = f"{i:02d}-{space.canonical_hash(spec)[:12]}"
            path = cache / f"{stem}-d{D}-t{T}.npz"
            if not path.exists():
                val_old, test_old = _cached_prefix(cache, stem, D, T)
                todo = seeds[len(val_old):D] + ([] if test_old is not None else seeds[D:])
                done = progress.tasks[bar].completed + len(seeds) - len(todo)
                progress.update(bar, completed=done)
                runs = train_spec(spec, space, task, fidelity, todo, on_epoch=lambda t, d=done:
                                  progress.update(bar, completed=d + t.learner - 1 + t.epoch / t.epochs))
                new_val = [r.val_probs for r in runs[:D - len(val_old)]]
                np.savez(path, val=np.stack([*val_old, *new_val]).astype(np.float32),
                         test=(test_old if test_old is not None else np.stack(
                             [r.test_probs for r in runs[D - len(val_old):]])).astype(np.float32))
            with np.load(path) as saved:
                val.append(saved["val"])
                test.append(saved["test"])
            progress.update(bar, completed=(i + 1) * len(seeds))
    return {"val": np.stack(val), "test": np.stack(test), "y_val": task.y_val.cpu().numpy(),
            "y_test": task.y_test.cpu().numpy(), "fidelity": fidelity.name, "cache": cache}


def _cached_prefix(cache: Path, stem: str, D: int, T: int
                   ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The most decision learners (< D, seeds 0…; one array each) a cache file of this cell
    already holds, with its T truth learners (None when no file of this cell has them):
    extending D trains only the new seeds, since learner l's seed is l whatever D is."""
    best: tuple[list[np.ndarray], np.ndarray | None] = ([], None)
    for f in sorted(cache.glob(f"{stem}-d*-t{T}.npz")):
        d = int(f.stem.split("-d")[-1].split("-t")[0])
        if len(best[0]) < d < D:
            with np.load(f) as saved:
                best = (list(saved["val"]), saved["test"])
    return best


def load_gains(path: Path) -> dict[str, es.GainEstimate]:
    """Gain estimates saved by an earlier run on the same cache (keys: a,b,L_new,L_old,r,M,L0)."""
    if not path.exists():
        return {}
    return {k: es.GainEstimate(**v) for k, v in json.loads(path.read_text()).items()}


def fixed_rule(val, y, pairs, M: int, r: int) -> list[dict]:
    """The point-estimate rule on learners (2r, 2r+1) of each side."""
    stats = [es.residual_stats(v[2 * r:2 * r + 2], y) for v in val]
    out = []
    for a, b in pairs:
        d = decide(stats[a], stats[b], M, "exact")
        out.append({"verdict": d.verdict, "confident": True, "L_new": 2, "L_old_extra": 0})
    return out


def sequential_rule(val, y, pairs, M: int, lo: int, hi: int, confidence: float, r: int,
                    R: int, memo: dict, reject_confidence: float | None = None,
                    futility: float = 0.0, pool_of: str = "cells") -> list[dict]:
    """``SearchLoop.decide`` replayed on cached learners taken in order r of R (rotated by r·D/R).
    ``memo`` keeps statistics and gain estimates (``memo["gains"]``, saved between runs) between
    calls: they do not depend on MAX or the confidence, only z does."""
    order = np.roll(np.arange(val.shape[1]), -r * (val.shape[1] // R))
    base_L = baseline_learners(lo, val.shape[1])
    looks = learner_schedule(lo, hi)  # the information at each look, for z

    def stats(a: int, L: int):
        if ("stats", a, L, r) not in memo:
            memo["stats", a, L, r] = es.residual_stats(val[a][order[:L]], y)
        return memo["stats", a, L, r]

    out = []
    for a, b in pairs:
        L_new, L_old = lo, base_L
        while True:
            L_old = max(L_old, L_new)
            est = gain(memo, val, y, a, b, L_new, L_old, order, r, M, base_L, pool_of)
            more = next_learners(L_new, lo, hi)
            d = decide(stats(a, L_new), stats(b, L_old), M, "exact", 0.0, est,
                       confidence=confidence, looks=looks, final=more is None,
                       reject_confidence=reject_confidence, futility=futility)
            if d.confident or more is None or d.futile:
                break
            L_new = more
        out.append({"verdict": d.verdict, "confident": d.confident, "L_new": L_new,
                    "L_old_extra": L_old - base_L})
    return out


def analyse(args, archs, data, err: Console) -> dict:
    """Replay both rules on every ordered pair and score them against the truth."""
    val, y = data["val"], data["y_val"]
    A, D, T = len(archs), val.shape[1], data["test"].shape[1]
    gap_m, se_m, seed_m = truth(data["test"], data["y_test"])
    pairs = [(a, b) for a in range(A) for b in range(A) if a != b]
    gap = np.array([gap_m[a, b] for a, b in pairs])
    clear = np.array([abs(gap_m[a, b]) > 2 * se_m[a, b] for a, b in pairs])
    clear_seed = np.array([abs(gap_m[a, b]) > 2 * np.hypot(se_m[a, b], seed_m[a, b])
                           for a, b in pairs])
    near = np.array([edge_distance(archs[a][1], archs[b][1]) == 1 for a, b in pairs])
    R = min(args.orderings, D // 2)
    lo, hi, conf = args.min_learners, args.max_learners, args.confidence
    gains_path = data["cache"] / f"gains-d{D}.json"  # keys name learner orders, which depend on D
    memo: dict = {"gains": load_gains(gains_path)}
    fixed_rows = [fixed_rule(val, y, pairs, T, r) for r in range(D // 2)]
    tops = [m for m in sorted({*CURVE_MAX, hi}, reverse=True) if lo <= m <= D]
    jobs = [(T, m, r) for m in tops for r in range(R)] + [(args.ensemble_size, hi, 0)]
    runs: dict[tuple[int, int], list[list[dict]]] = {}
    for M, top, r in track(jobs, description="replaying the rules", console=err):
        runs.setdefault((M, top), []).append(
            sequential_rule(val, y, pairs, M, lo, top, conf, r, R, memo, args.reject_confidence,
                            args.futility, args.pool))
    oracles = {m: oracle(val, y, pairs, gap, clear_seed, T, lo, m, memo) for m in tops}
    gains_path.write_text(json.dumps({k: dataclasses.asdict(v) for k, v in memo["gains"].items()}))

    def scored(rows_by_seed, mask=None):
        m = np.ones(len(pairs), bool) if mask is None else mask
        return spread([score([r for r, k in zip(rows, m, strict=True) if k], gap[m], clear[m],
                             clear_seed[m]) for rows in rows_by_seed])

    def se_parts(L: int) -> dict[str, float]:
        """Median SE parts at the look with L candidate learners, over the pairs the first
        order's run at 2:MAX reached it in (not whatever the gain cache holds for L)."""
        base_L = baseline_learners(lo, D)
        reached = [pair for pair, row in zip(pairs, runs[T, hi][0], strict=True)
                   if row["L_new"] >= L]
        ests = [memo["gains"].get(gain_key(a, b, L, max(L, base_L), 0, T, base_L))
                for a, b in reached]
        ests = [e for e in ests if e is not None]
        return {"looks": len(ests), "se_sample": float(np.median([e.se_sample for e in ests])),
                "se_seed": float(np.median([e.se_seed for e in ests]))} if ests else {}

    pred = np.array([es.residual_stats(v, y).ens_error(T) for v in val])  # all D decision learners
    onehot = np.eye(val.shape[3])
    true_abs = np.array([np.mean(np.sum((t.mean(0) - onehot[data["y_test"]]) ** 2, 1))
                         for t in data["test"].astype(np.float64)])
    single = np.sum((val - onehot[y][None, None]) ** 2, axis=3).mean(axis=2)  # (A, D) Brier
    pred_gap = np.array([pred[b] - pred[a] for a, b in pairs])
    return {
        "dataset": args.dataset, "n_samples": args.n_samples, "fidelity": data["fidelity"],
        "cells": A, "ordered_pairs": len(pairs), "clear_pairs": int(clear.sum()),
        "clear_pairs_seed": int(clear_seed.sum()),
        "one_edge_pairs": int(near.sum()), "one_edge_clear": int((near & clear).sum()),
        "decision_learners": D, "truth_learners": T, "M_decision": T, "learners": [lo, hi],
        "confidence": conf, "reject_confidence": args.reject_confidence,
        "futility": args.futility, "pool": args.pool, "orderings": R,
        "fixed_pairs": D // 2,
        "fixed": scored(fixed_rows), "sequential": scored(runs[T, hi]),
        "one_edge_fixed": scored(fixed_rows, near), "one_edge_sequential": scored(runs[T, hi], near),
        "curve": {m: scored(runs[T, m]) for m in sorted(tops)},
        "oracle_clear_seed": {m: oracles[m] for m in sorted(tops)},
        "product_M": args.ensemble_size, "at_product_M": scored(runs[args.ensemble_size, hi]),
        "se_first_look": se_parts(lo), "se_last_look": se_parts(hi),
        "single_brier_rel_sd": float(np.median(single.std(axis=1, ddof=1) / single.mean(axis=1))),
        "pred_minus_true_ens_mean": float(np.mean(pred - true_abs)),
        "pred_minus_true_ens_sd": float(np.std(pred - true_abs, ddof=1)),
        "gap_correlation": float(np.corrcoef(pred_gap, gap)[0, 1]),
        "truth_gap_se_median": float(np.median(se_m[~np.eye(A, dtype=bool)])),
        "truth_gap_seed_se_median": float(np.median(seed_m[~np.eye(A, dtype=bool)])),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err, out = Console(stderr=True), Path(args.out)
    archs = architectures()
    summary = analyse(args, archs, load_probs(args, archs, err), err)
    out.mkdir(parents=True, exist_ok=True)
    png = out / (f"rule_validity-{args.dataset}-L{args.min_learners}-{args.max_learners}"
                 f"-c{args.confidence:g}"
                 + ("" if args.reject_confidence is None else f"-r{args.reject_confidence:g}")
                 + (f"-f{args.futility:g}" if args.futility else "")
                 + ("-pbaseline" if args.pool == "baseline" else "")
                 + ".png")
    png.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    plot(png, summary["curve"], summary["fixed"], summary["oracle_clear_seed"],
         f"{args.dataset}: {summary['ordered_pairs']} pairs, {summary['clear_pairs']} clear, "
         f"{summary['clear_pairs_seed']} with seeds")
    if args.json:
        print(json.dumps(summary))
    else:
        report(summary, png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
