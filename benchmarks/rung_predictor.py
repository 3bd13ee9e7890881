"""Which promotion score ranks candidates best? The multi-fidelity predictor, chosen by measurement.

    python benchmarks/rung_predictor.py --n-samples 500 --batch-size 32 --rungs low:3,medium:5 \\
        --top medium --cells 40 --baseline benchmarks/weak_nb201_baseline.json --pairs 8,16,32 \\
        [--png scores.png] [--json]

(the README's figures add ``--pairs 4,8,16,32 --min-pairs 4 --splits 50``: fits from 4 pairs too)

A progressive search promotes candidates on a score read at a cheap rung: the predicted
top-rung M-ensemble error. Issue 11 asks for that predictor to read the candidate's lower-rung
curves ("a small recurrent encoder as in the paper, or engineered features, chosen by
measurement"). This benchmark makes the choice on real training, on the cells a search meets
(the first baseline and a random walk of one-choice mutations from it,
:func:`benchmarks.rung_stability.walk_cells`). Per cell, with the product's own code:

* at every cheap rung and at ``--top``: one evaluation of ``--learners`` learners (seeds
  0…L−1) by :func:`evaluators.dual.evaluate`, the :class:`~evaluators.results.EvalResult` a run
  logs (E, σ², ρ, the learners' per-epoch curves, parameters and FLOPs);
* the truth: ``--truth-learners`` T other learners at the top rung (seeds 10000…), their real
  T-ensemble Brier error on the held-out test split.

Scores compared, each at a cheap rung, on cells the score never learned from:

* ``rung E_ens`` — the rung's own predicted E_ens(M), what a run uses before it has pairs;
* ``ridge (product)`` — :class:`evaluators.promotion.RungPredictor` fitted on n (cheap rung →
  top rung) pairs, as a run refits it on the pairs it has seen (the top rung's L-learner
  E_ens(M) is its target, not the truth); ``--min-pairs`` lowers the pairs it needs to fit, to
  show what fewer would do;
* ``GRU curves`` — a small recurrent encoder (the paper's choice): a GRU over each learner's
  per-epoch (training loss, validation accuracy, gradient norm), averaged over learners, joined
  with the rung's E_ens(M) and log parameters/FLOPs, a linear head, the same n pairs and target.

For each n of ``--pairs``, ``--splits`` random draws of n training cells (the rest held out):
Kendall τ and Pearson r between each score and the truth over the held-out cells, mean ± sd
over draws, and how often each learned score beats ``rung E_ens`` on the same draw. The top
rung's own E_ens (L learners against T others) is printed as the ceiling.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from cli_types import at_least, check_out_file  # this folder
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table
from rung_stability import (  # this folder
    TRUTH_SEED0,
    check_setting,
    setting,
    setting_parser,
    train_cached,
)
from scipy.stats import kendalltau, pearsonr

from evaluators import stats as es
from evaluators.dual import evaluate
from evaluators.promotion import MIN_PAIRS, RungPredictor
from evaluators.results import EvalFailure, EvalResult

SCORES = ("rung E_ens", "ridge (product)", "GRU curves")
#: n of the default --pairs: from the product's MIN_PAIRS (the default --min-pairs) up, within
#: the default 40 cells (n ≤ 36), the n of the README's table from 8 on
DEFAULT_PAIRS = ",".join(str(n) for n in (8, 16, 32) if n >= MIN_PAIRS) or str(MIN_PAIRS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = setting_parser(__doc__.split("\n\n")[0], n_samples=500, cells=40, out="rung_predictor")
    p.add_argument("--pairs", default=DEFAULT_PAIRS,
                   help="training pairs n, comma-separated, each from --min-pairs to --cells − 4")
    p.add_argument("--splits", type=at_least(1, 100000), default=200,
                   help="random draws of training cells per n")
    p.add_argument("--min-pairs", type=at_least(4, 10000), default=MIN_PAIRS,
                   help=f"pairs before the product's predictor fits (its default: {MIN_PAIRS})")
    p.add_argument("--png", help="write τ against n, one panel per cheap rung")
    args = p.parse_args(argv)
    if args.min_pairs + 4 > args.cells:
        p.error(f"--min-pairs {args.min_pairs} with --cells {args.cells}: --cells must be at least "
                f"--min-pairs + 4 = {args.min_pairs + 4} (at least 4 cells are held out)")
    check_setting(p, args, min_cells=args.min_pairs + 4)
    check_out_file(p, "--png", args.png)
    try:
        args.pair_list = sorted({int(n) for n in args.pairs.split(",")})
    except ValueError:
        p.error(f"--pairs {args.pairs!r}: expected comma-separated integers")
    if args.pair_list[0] < args.min_pairs or args.pair_list[-1] > args.cells - 4:
        p.error(f"--pairs {args.pairs!r}: each n must lie in {args.min_pairs}…{args.cells - 4} "
                f"(the predictor fits from --min-pairs {args.min_pairs}; at least 4 cells are held out)")
    return args


def evaluate_cached(cache: Path, space, spec, task, rung, seeds: list[int], M: int) -> EvalResult:
    """The product's evaluation of ``spec`` at ``rung``, read back from ``cache`` when made before."""
    path = cache / f"{space.canonical_hash(spec)[:16]}-{rung.name}-s{seeds[0]}x{len(seeds)}-M{M}.json"
    if path.exists():
        return EvalResult.model_validate_json(path.read_text())
    result = evaluate(spec, space, task, rung, seeds, npz_dir=cache, M=M)
    if isinstance(result, EvalFailure):
        raise RuntimeError(f"{space.to_arch_string(spec)} at {rung.name}: {result.kind}: {result.message}")
    path.write_text(result.model_dump_json())
    return result


def measure(args, err: Console) -> dict:
    space, task, cells, cache = setting(args)
    L, T, M = args.learners, args.truth_learners, args.ensemble_size
    rungs = [*args.rung_list, args.top_rung]
    evals: dict[str, list[EvalResult]] = {r.name: [] for r in rungs}
    truth = []
    y_test = task.y_test.cpu().numpy()
    total = len(cells) * (sum(L * r.epochs for r in rungs) + T * args.top_rung.epochs)
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=err) as progress:
        bar = progress.add_task(f"{len(cells)} cells × {len(rungs)} rungs + truth", total=total)
        for spec in cells:
            for rung in rungs:
                evals[rung.name].append(evaluate_cached(cache, space, spec, task, rung, list(range(L)), M))
                progress.advance(bar, L * rung.epochs)
            out = train_cached(cache, space, spec, task, args.top_rung,
                               [TRUTH_SEED0 + i for i in range(T)])
            truth.append(es.ensemble_brier(out["test"], y_test))
            progress.advance(bar, T * args.top_rung.epochs)
    return {"cells": [space.to_arch_string(c) for c in cells], "evals": evals,
            "truth": np.array(truth), "n_train": len(task.y_train)}


class GRUScore:
    """A small recurrent encoder of the learners' curves (the PMF-NAS contender to the ridge).

    Per learner, the per-epoch (training loss, validation accuracy, gradient norm), standardised
    on the training pairs, go through a one-layer GRU (hidden 8); the last hidden state, averaged
    over learners, joins the rung's E_ens(M) and log₁₀ parameters/FLOPs in a linear head fitted
    with squared error on the standardised target (Adam, weight decay 1e-3, 300 full-batch
    steps); three seeds averaged."""

    def __init__(self, M: int, hidden: int = 8, steps: int = 300, seeds: int = 3):
        self.M, self.hidden, self.steps, self.seeds = M, hidden, steps, seeds

    def _inputs(self, results: list[EvalResult]) -> tuple[torch.Tensor, torch.Tensor]:
        seq = np.array([[[c.train_loss, c.val_acc, c.grad_norm]
                         for c in (lr.curves for lr in r.learners)] for r in results])  # (n, L, 3, T)
        static = np.array([[r.stats.ens_error(self.M), math.log10(max(1, r.params)),
                            math.log10(max(1, r.flops))] for r in results])
        return (torch.as_tensor(seq, dtype=torch.float32).permute(0, 1, 3, 2),  # (n, L, T, 3)
                torch.as_tensor(static, dtype=torch.float32))

    def fit(self, lower: list[EvalResult], y: np.ndarray) -> GRUScore:
        seq, static = self._inputs(lower)
        self.seq_mu, self.seq_sd = seq.mean((0, 1, 2)), seq.std((0, 1, 2)) + 1e-6
        self.st_mu, self.st_sd = static.mean(0), static.std(0) + 1e-6
        self.y_mu, self.y_sd = float(y.mean()), float(y.std() + 1e-9)
        target = torch.as_tensor((y - self.y_mu) / self.y_sd, dtype=torch.float32)
        self.nets = []
        for s in range(self.seeds):
            with torch.random.fork_rng():
                torch.manual_seed(s)
                gru = torch.nn.GRU(3, self.hidden, batch_first=True)
                head = torch.nn.Linear(self.hidden + static.shape[1], 1)
            params = [*gru.parameters(), *head.parameters()]
            opt = torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3)
            for _ in range(self.steps):
                opt.zero_grad()
                loss = torch.mean((self._forward(gru, head, seq, static) - target) ** 2)
                loss.backward()
                opt.step()
            self.nets.append((gru, head))
        return self

    def _forward(self, gru, head, seq, static) -> torch.Tensor:
        n, L, T, F = seq.shape
        _, h = gru(((seq - self.seq_mu) / self.seq_sd).reshape(n * L, T, F))
        code = h[-1].reshape(n, L, -1).mean(1)
        return head(torch.cat([code, (static - self.st_mu) / self.st_sd], 1)).squeeze(1)

    def predict(self, lower: list[EvalResult]) -> np.ndarray:
        seq, static = self._inputs(lower)
        with torch.no_grad():
            out = torch.stack([self._forward(g, h, seq, static) for g, h in self.nets]).mean(0)
        return out.numpy() * self.y_sd + self.y_mu


def compare(m: dict, args) -> tuple[list[dict], dict]:
    """τ and r with the truth of every score at every cheap rung and n, over random splits."""
    M, top, truth = args.ensemble_size, args.top_rung.name, m["truth"]
    y_top = np.array([r.stats.ens_error(M) for r in m["evals"][top]])
    rng = np.random.default_rng(args.seed)
    rows = []
    for rung in args.rung_list:
        lower = m["evals"][rung.name]
        own = np.array([r.stats.ens_error(M) for r in lower])
        for n in args.pair_list:
            taus = {s: [] for s in SCORES}
            rs = {s: [] for s in SCORES}
            for _ in range(args.splits):
                order = rng.permutation(len(lower))
                train, held = order[:n], order[n:]
                ridge = RungPredictor(M, min_pairs=args.min_pairs)
                ridge.fit(rung.name, [(lower[i], m["evals"][top][i]) for i in train])
                gru = GRUScore(M).fit([lower[i] for i in train], y_top[train])
                scores = {"rung E_ens": own[held],
                          "ridge (product)": np.array([ridge.score(rung.name, lower[i]).value for i in held]),
                          "GRU curves": gru.predict([lower[i] for i in held])}
                for s, v in scores.items():
                    taus[s].append(kendalltau(v, truth[held])[0])
                    rs[s].append(pearsonr(v, truth[held])[0] if np.std(v) > 0 else np.nan)
            base = np.array(taus["rung E_ens"])
            for s in SCORES:
                t = np.array(taus[s])
                rows.append({"rung": rung.name, "n": n, "score": s, "held_out": len(lower) - n,
                             "tau": float(np.nanmean(t)), "tau_sd": float(np.nanstd(t)),
                             "r": float(np.nanmean(rs[s])), "r_sd": float(np.nanstd(rs[s])),
                             "beats_rung_E_ens": None if s == "rung E_ens"
                             else float(np.mean(t > base)),
                             "delta_tau": None if s == "rung E_ens" else float(np.nanmean(t - base))})
    ceiling = {"tau": float(kendalltau(y_top, truth)[0]), "r": float(pearsonr(y_top, truth)[0])}
    return rows, ceiling


def plot(rows: list[dict], ceiling: dict, args, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rungs = [r.name for r in args.rung_list]
    fig, axes = plt.subplots(1, len(rungs), figsize=(4.2 * len(rungs), 3.4), squeeze=False)
    for ax, rung in zip(axes[0], rungs, strict=True):
        for s in SCORES:
            pts = [r for r in rows if r["rung"] == rung and r["score"] == s]
            ax.errorbar([p["n"] for p in pts], [p["tau"] for p in pts],
                        yerr=[p["tau_sd"] for p in pts], marker="o", capsize=3, label=s)
        ax.axhline(ceiling["tau"], color="grey", ls="--", lw=1,
                   label=f"top rung's own ({ceiling['tau']:+.2f})")
        ax.set_title(f"score read at {rung}", fontsize=9)
        ax.set_xlabel("training pairs n (cheap rung → top rung)", fontsize=8)
        ax.set_ylabel("Kendall τ with the true top-rung ensemble (held-out cells)", fontsize=7)
        ax.set_xscale("log", base=2)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Promotion scores, {args.dataset} {args.n_samples} samples, {args.cells} cells "
                 f"(mean ± sd over {args.splits} draws)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True)
    m = measure(args, err)
    rows, ceiling = compare(m, args)
    if args.png:
        plot(rows, ceiling, args, args.png)
    if args.json:
        print(json.dumps({"args": {k: v for k, v in vars(args).items()
                                   if k not in ("rung_list", "top_rung", "pair_list")},
                          "n_train": m["n_train"], "ceiling": ceiling, "rows": rows,
                          "cells": m["cells"], "truth": m["truth"].tolist(),
                          "pred": {name: [r.stats.ens_error(args.ensemble_size) for r in results]
                                   for name, results in m["evals"].items()}}))
        return 0
    table = Table(title=(
        f"{args.dataset}, {args.n_samples} samples ({m['n_train']} train), {args.cells} cells: "
        f"promotion scores against the true {args.truth_learners}-ensemble at {args.top_rung.name} "
        f"(ceiling, the top rung's own E_ens: τ {ceiling['tau']:+.2f}, r {ceiling['r']:+.2f})"))
    for col in ("rung", "n", "score", "Kendall τ (sd)", "Pearson r (sd)", "τ − rung E_ens's",
                "beats rung E_ens"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        beats = "" if r["beats_rung_E_ens"] is None else f"{100 * r['beats_rung_E_ens']:.0f} %"
        delta = "" if r["delta_tau"] is None else f"{r['delta_tau']:+.3f}"
        table.add_row(r["rung"], str(r["n"]), r["score"], f"{r['tau']:+.2f} ({r['tau_sd']:.2f})",
                      f"{r['r']:+.2f} ({r['r_sd']:.2f})", delta, beats)
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
