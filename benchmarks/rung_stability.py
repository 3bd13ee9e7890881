"""Does a cheap rung rank candidates as the top rung does? Ranking stability on real training.

    python benchmarks/rung_stability.py --n-samples 2000 --rungs low:3,medium:5 --top medium \\
        --cells 24 --baseline benchmarks/weak_nb201_baseline.json --png rungs.png [--json]

A progressive search (issue 11) is only as good as its lowest rung's ranking: a rung whose
order of candidates does not survive longer training promotes the wrong ones and rejects the
right ones. This measures it before a search is run, on the cells a search would meet: the
first baseline and a random walk of one-choice mutations from it (``space.mutate``, what the
builtin proposer does), distinct by canonical hash (``--seed`` fixes the walk and the data).

Per cell:

* at every rung of ``--rungs`` and at ``--top``, ``--learners`` L learners (seeds 0…L−1,
  default 2: what a decision at that rung sees): the predicted M-ensemble error Ê_ens(M) on
  the validation split (:meth:`evaluators.stats.Stats.ens_error`) and the learners' last-epoch
  validation accuracy;
* the truth: ``--truth-learners`` T more learners at the top rung (seeds 10000…, never seen by
  any rung's figure), their real T-ensemble Brier error on the held-out test split.

Printed per rung: its cost per learner (learner-epochs) and optimizer steps per learner,
Kendall τ and Spearman between its Ê_ens(M) and the truth over the cells (90 % bootstrap
interval over cells), and τ of the last validation accuracy. The top rung's own row (L learners
against T others) is the ceiling any cheaper rung can reach. Trained probabilities are cached
under ``--out``; a rerun with more cells trains only the new ones.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from cli_types import at_least, check_folder, check_out_file  # this folder
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table
from scipy.stats import kendalltau, spearmanr

from agent.cli import UsageError, load_baseline
from evaluators import stats as es
from evaluators.data import DatasetUnavailable, list_datasets, load_task
from evaluators.dual import learner_steps, train_spec
from evaluators.fidelity import Fidelity, parse_schedule
from spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
TRUTH_SEED0 = 10000
IMAGE_DATASETS = [d for d in list_datasets() if d not in ("synthetic-ctr", "criteo")]  # nb201 cells


def setting_parser(description: str, *, n_samples: int, cells: int, out: str) -> argparse.ArgumentParser:
    """The flags of a rung measurement (data, rungs, cells, learners, cache), shared with
    ``benchmarks/rung_predictor.py``; :func:`check_setting` reads them."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dataset", default="mnist1d", choices=IMAGE_DATASETS)
    p.add_argument("--data-dir")
    p.add_argument("--n-samples", type=at_least(100), default=n_samples)
    p.add_argument("--rungs", default="low:3,medium:5", help="cheap rungs to test, comma-separated")
    p.add_argument("--top", default="medium", help="the top rung (the truth's fidelity)")
    p.add_argument("--batch-size", type=at_least(1), default=None,
                   help="minibatch size at every rung (default: the presets' 128)")
    p.add_argument("--cells", type=at_least(4, 10000), default=cells)
    p.add_argument("--learners", type=at_least(2, 100), default=2, help="learners per cell and rung (L)")
    p.add_argument("--truth-learners", type=at_least(2, 100), default=4, help="top-rung truth ensemble (T)")
    p.add_argument("--ensemble-size", type=at_least(2, 10000), default=8, help="M of the predicted E_ens(M)")
    p.add_argument("--baseline", help="JSON spec of the first cell (default: the space's default)")
    p.add_argument("--seed", type=at_least(0, 2**31 - 1), default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / out))
    p.add_argument("--json", action="store_true")
    return p


def check_setting(p: argparse.ArgumentParser, args: argparse.Namespace, min_cells: int = 4) -> None:
    """Refuse bad setting flags in one line each (``p.error``, exit 2); set ``args.rung_list``
    (the cheap rungs) and ``args.top_rung``."""
    check_folder(p, "--out", args.out)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device 'cuda': no CUDA device is available here")
    try:
        args.rung_list = [r for part in args.rungs.split(",")
                          for r in parse_schedule(part, args.batch_size)]
        args.top_rung = parse_schedule(args.top, args.batch_size)[0]
    except ValueError as err:
        p.error(str(err))
    if args.top_rung.name in {r.name for r in args.rung_list}:
        p.error(f"--top {args.top!r} is also among --rungs {args.rungs!r}")
    if args.cells < min_cells:
        p.error(f"--cells {args.cells}: must be at least {min_cells}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = setting_parser(__doc__.split("\n\n")[0], n_samples=2000, cells=24, out="rung_stability")
    p.add_argument("--png", help="write predicted-vs-true scatter plots, one per rung")
    args = p.parse_args(argv)
    check_setting(p, args)
    check_out_file(p, "--png", args.png)
    return args


def walk_cells(space, first, n: int, seed: int) -> list:
    """``first`` and n − 1 distinct (canonical hash) cells reached by one-choice mutations of a
    cell already in the list, as a search's builtin proposer would meet them."""
    rng = np.random.default_rng(seed)
    cells, seen = [first], {space.canonical_hash(first)}
    for _ in range(200 * n):
        if len(cells) == n:
            break
        spec = space.mutate(cells[int(rng.integers(len(cells)))], rng)
        key = space.canonical_hash(spec)
        if key not in seen:
            seen.add(key)
            cells.append(spec)
    return cells


def train_cached(cache: Path, space, spec, task, fidelity: Fidelity, seeds: list[int],
                 on_epoch=None) -> dict[str, np.ndarray]:
    """Validation/test probabilities (L, N, K) and per-epoch validation accuracy of one learner
    per seed, read back from ``cache`` when trained before."""
    path = cache / f"{space.canonical_hash(spec)[:16]}-{fidelity.name}-s{seeds[0]}x{len(seeds)}.npz"
    if not path.exists():
        runs = train_spec(spec, space, task, fidelity, seeds, on_epoch=on_epoch)
        np.savez(path, val=np.stack([r.val_probs for r in runs]).astype(np.float32),
                 test=np.stack([r.test_probs for r in runs]).astype(np.float32),
                 acc=np.array([r.val_acc for r in runs], dtype=np.float32))
    with np.load(path) as saved:
        return {k: saved[k] for k in ("val", "test", "acc")}


def setting(args) -> tuple:
    """(space, task, cells, cache folder) of the flags ``--baseline``, ``--dataset``,
    ``--n-samples``, ``--cells``, ``--seed``, ``--device``, ``--batch-size`` and ``--out``; a bad
    baseline or a missing dataset exits with one line (status 2)."""
    space = get_space("nb201")
    try:
        first = load_baseline(args.baseline, space) if args.baseline else space.reference()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        task = load_task(args.dataset, n_samples=args.n_samples, data_dir=args.data_dir,
                         device=args.device, seed=args.seed)
    except (DatasetUnavailable, ValueError) as exc:
        print(f"error: --dataset {args.dataset!r}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    where = "" if args.device == "cpu" else f"-{args.device}"
    where += "" if args.batch_size is None else f"-b{args.batch_size}"
    cache = Path(args.out) / f"{args.dataset}-n{args.n_samples}-seed{args.seed}{where}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: --out {args.out!r}: cannot make {str(cache)!r}: {exc.strerror or exc}",
              file=sys.stderr)
        raise SystemExit(2) from None
    return space, task, walk_cells(space, first, args.cells, args.seed), cache


def measure(args, err: Console) -> dict:
    space, task, cells, cache = setting(args)
    L, T, M = args.learners, args.truth_learners, args.ensemble_size
    decision = list(range(L))
    truth_seeds = [TRUTH_SEED0 + i for i in range(T)]
    rungs = [*args.rung_list, args.top_rung]
    y_val, y_test = task.y_val.cpu().numpy(), task.y_test.cpu().numpy()
    pred = {r.name: [] for r in rungs}
    acc = {r.name: [] for r in rungs}
    truth = []
    jobs = [(r, decision) for r in rungs] + [(args.top_rung, truth_seeds)]
    total = len(cells) * sum(len(s) * r.epochs for r, s in jobs)
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=err) as progress:
        bar = progress.add_task(f"{len(cells)} cells × {len(rungs)} rungs", total=total)
        for spec in cells:
            for rung, seeds in jobs:
                done = progress.tasks[bar].completed
                def tick(t, d=done, e=rung.epochs):
                    progress.update(bar, completed=d + (t.learner - 1) * e + t.epoch)

                out = train_cached(cache, space, spec, task, rung, seeds, on_epoch=tick)
                progress.update(bar, completed=done + len(seeds) * rung.epochs)
                if seeds is truth_seeds:
                    truth.append(es.ensemble_brier(out["test"], y_test))
                else:
                    pred[rung.name].append(es.residual_stats(out["val"], y_val).ens_error(M))
                    acc[rung.name].append(float(out["acc"][:, -1].mean()))
    return {"cells": [space.to_arch_string(c) + f" C{c.channels} N{c.cells_per_stage}" for c in cells],
            "truth": truth, "pred": pred, "acc": acc, "rungs": rungs,
            "n_train": len(task.y_train), "n_test": len(y_test), "M": M}


def tau_interval(x, y, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """90 % bootstrap interval of Kendall τ over the cells (resampled with replacement)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x), np.asarray(y)
    taus = [kendalltau(x[i], y[i])[0] for i in (rng.integers(len(x), size=len(x)) for _ in range(n_boot))]
    lo, hi = np.nanpercentile(taus, [5, 95])
    return float(lo), float(hi)


def summarise(m: dict, args) -> list[dict]:
    rows = []
    for rung in m["rungs"]:
        p, a, t = m["pred"][rung.name], m["acc"][rung.name], m["truth"]
        tau = kendalltau(p, t)[0]
        rows.append({"rung": rung.name, "top": rung.name == args.top_rung.name,
                     "learner_epochs": rung.learner_epochs(), "steps": learner_steps(rung, m["n_train"]),
                     "tau": float(tau), "tau_90": tau_interval(p, t), "spearman": float(spearmanr(p, t)[0]),
                     "tau_last_val_acc": float(kendalltau(-np.asarray(a), t)[0])})
    return rows


def plot(m: dict, rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        ax.scatter(m["pred"][row["rung"]], m["truth"], s=14)
        ax.set_title(f"{row['rung']} ({row['steps']} steps): τ {row['tau']:+.2f}", fontsize=9)
        ax.set_xlabel(f"predicted E_ens({m['M']}) at the rung (validation)", fontsize=8)
        ax.set_ylabel("true top-rung ensemble Brier (test)", fontsize=8)
    fig.suptitle("Does the rung rank as the top rung does? (one point per cell)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True)
    m = measure(args, err)
    rows = summarise(m, args)
    if args.png:
        plot(m, rows, args.png)
    if args.json:
        print(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("rung_list", "top_rung")},
                          "n_train": m["n_train"], "n_test": m["n_test"], "rows": rows,
                          "cells": m["cells"], "truth": m["truth"], "pred": m["pred"]}))
        return 0
    table = Table(title=(
        f"{args.dataset}, {args.n_samples} samples ({m['n_train']} train, {m['n_test']} test), "
        f"{len(m['truth'])} cells: rung Ê_ens({args.ensemble_size}) from {args.learners} learners "
        f"vs the true {args.truth_learners}-ensemble at {args.top_rung.name}"))
    for col in ("rung", "learner-epochs", "steps", "Kendall τ (90 %)", "Spearman", "τ val acc"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["rung"] + (" (top)" if r["top"] else ""), f"{r['learner_epochs']:g}",
                      str(r["steps"]), f"{r['tau']:+.2f} ({r['tau_90'][0]:+.2f}…{r['tau_90'][1]:+.2f})",
                      f"{r['spearman']:+.2f}", f"{r['tau_last_val_acc']:+.2f}")
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
