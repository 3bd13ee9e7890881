"""Predictor quality on NAS-Bench-201 tables, counted strictly, per number of training labels.

    python benchmarks/predictor_nb201.py --table ../shared/data/nb201/cifar10_200ep.csv \\
        --table ../shared/data/nb201/all_12ep.csv --target cifar10_test_acc_200ep \\
        --low-fidelity cifar10_val_acc_12ep --labels 20,50,100 --seeds 5 [--png tau.png] [--json]

Protocol, per seed: a random permutation of the table; the first ``n`` architectures are the
labelled training set; the held-out set is the next ``--held-out`` architectures that are **not
canonical twins** (same ``canonical_hash``: same function) of any training architecture.
Metrics on the held-out set: Kendall τ and Spearman between predicted and true target; **strict
top-10 % recall** = |true top 10 % ∩ predicted top 10 %| / |true top 10 %| (both sets of size
⌊n/10⌋); **τ within the true top 10 %** (how well it orders the architectures a search decides
between). Printed as mean ± standard deviation over seeds.

Predictors (``--predictors``; a ``+lowfi`` suffix adds the low-fidelity column as a feature, a
``+zc`` suffix the data-free SynFlow score of the NB201 network at the target's image size and
class count, ``evaluators/predictor/zero_cost.py``, computed once per table and cached; a
``+cv`` suffix weights an ensemble's members by cross-validation instead of equally,
``EnsemblePredictor(weighting="cv")``; a ``+mf`` suffix first trains the GINs to
rank the low-fidelity scores (never the targets) of the training architectures and of
``--screened`` others (default 1,000; neither held out nor a twin of a held-out one), as a
multi-fidelity search has many cells screened at the cheap rung for each one with a target,
``EnsemblePredictor(low_fidelity_pretrain=True)``):
``gnn-ensemble`` (forest + boosted trees + GIN trained from scratch), ``dcl-ensemble`` (the GIN
initialised from the stage-1 contrastive encoder instead: DCL-ENAS), ``dcl+gnn-ensemble`` (both
GINs), ``gin`` / ``dcl-gin`` (one GIN alone, for the ablation), ``rf-onehot`` (a random forest on
a one-hot of the six edges), ``lowfi-only`` (the low-fidelity value itself). The low-fidelity
column must be a validation column, never a test column.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from cli_types import at_least, int_list  # this folder
from rich.console import Console
from rich.progress import Progress
from sklearn.ensemble import RandomForestRegressor

from evaluators.predictor.contrastive import PretrainConfig, load_or_pretrain
from evaluators.predictor.ensemble import EnsemblePredictor, Record
from evaluators.predictor.metrics import METRICS, ranking_scores, split_without_twins
from evaluators.predictor.zero_cost import ZeroCostProxy, cache_path
from evaluators.tabular import TableError, TabularBenchmark
from spaces.base import TaskInfo
from spaces.nb201 import EDGES, OPS, NB201Space

#: name -> EnsemblePredictor settings (gnn mode, trees)
MODELS = {"gnn-ensemble": ("scratch", True), "dcl-ensemble": ("pretrained", True),
          "dcl+gnn-ensemble": ("both", True), "gin": ("scratch", False),
          "dcl-gin": ("pretrained", False)}


def onehot(spec) -> np.ndarray:
    return np.array([float(getattr(spec, n) == o) for n, _, _ in EDGES for o in OPS])


class Variant(NamedTuple):
    """A ``--predictors`` name taken apart: the model and its suffixes."""
    base: str
    low: bool   # +lowfi: the low-fidelity column as a feature
    zc: bool    # +zc: the SynFlow score as a feature
    cv: bool    # +cv: members weighted by cross-validation
    mf: bool    # +mf: GINs pretrained to rank the low-fidelity column of other cells first


#: extensions matplotlib's Agg backend saves (``--png``)
PNG_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "pgf", "raw",
               "rgba")

SUFFIXES = ("+lowfi", "+zc", "+cv", "+mf")


def parse_name(name: str) -> Variant:
    """``base[+lowfi][+zc][+cv][+mf]`` (suffixes in any order) → :class:`Variant`."""
    flags = dict.fromkeys(SUFFIXES, False)
    base = name
    while any(base.endswith(f) for f in flags):
        suffix = next(f for f in flags if base.endswith(f))
        flags[suffix], base = True, base.removesuffix(suffix)
    return Variant(base, *(flags[f] for f in SUFFIXES))


def proxy_task(target: str) -> TaskInfo:
    """The image size and class count of the benchmark a target column belongs to."""
    for prefix, task in (("cifar100", TaskInfo((3, 32, 32), 100)), ("cifar10", TaskInfo((3, 32, 32), 10)),
                         ("imagenet16", TaskInfo((3, 16, 16), 120))):
        if target.lower().startswith(prefix):
            return task
    raise ValueError(f"target {target!r}: no cifar10/cifar100/ImageNet16 prefix to size the proxy's network")


def screened_cells(hashes: list[str], tr, te, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random architectures for ``+mf`` to read the low-fidelity scores of: neither
    training nor held-out, nor a canonical twin of a held-out one (whose cheap score it would
    repeat)."""
    held = {hashes[i] for i in te}
    taken = set(map(int, tr)) | set(map(int, te))
    pool = [i for i in range(len(hashes)) if i not in taken and hashes[i] not in held]
    return rng.choice(np.asarray(pool), size=min(n, len(pool)), replace=False)


def predict(name: str, space, seed: int, specs, loss, low, tr, te, pretrain: PretrainConfig,
            proxy: ZeroCostProxy | None = None, screened=()):
    """Predicted loss of the held-out architectures ``te`` after fitting on ``tr`` (and, for
    ``+mf``, the low-fidelity scores of ``screened``)."""
    base, use_low, use_zc, use_cv, use_mf = parse_name(name)
    proxy = proxy if use_zc else None
    if base == "lowfi-only":
        return low[te]
    if base == "rf-onehot":
        def design(rows):
            cols = [np.stack([onehot(specs[i]) for i in rows])]
            cols += [low[rows, None]] if use_low else []
            cols += [proxy.scores([specs[i] for i in rows])[:, None]] if proxy else []
            return np.concatenate(cols, 1)

        rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
        return rf.fit(design(tr), loss[tr]).predict(design(te))
    gnn, trees = MODELS[base]
    model = EnsemblePredictor(space, use_low_fidelity=use_low, seed=seed, gnn=gnn, use_trees=trees,
                              pretrain=pretrain, zero_cost=proxy, weighting="cv" if use_cv else "equal",
                              low_fidelity_pretrain=use_mf)
    records = [Record(specs[i], loss[i], low[i] if use_low or use_mf else None) for i in tr]
    model.fit(records, [(specs[i], low[i]) for i in screened] if use_mf else ())
    return model.predict([specs[i] for i in te], low[te] if use_low else None)[0]


def warm_proxy(space, specs, task: TaskInfo, console: Console) -> ZeroCostProxy:
    """SynFlow of every table architecture, read from or written to the cache
    (``$EDAS_CACHE/predictor/zero-cost-…json``): about 5 CPU minutes for the 15,625 cells."""
    proxy = ZeroCostProxy(space, task, cache_path(space, task))
    known, start = len(proxy), time.perf_counter()
    with Progress(console=console) as progress:
        bar = progress.add_task("SynFlow per architecture (cached after the first time)", total=len(specs))
        for spec in specs:
            proxy(spec)
            progress.advance(bar)
    proxy.save()
    console.print(f"SynFlow: {len(proxy)} canonical cells, {len(proxy) - known} computed now "
                  f"({time.perf_counter() - start:.0f} s), cache {proxy.path}")
    return proxy


def summarise(results: dict[tuple[str, int], list[dict]]) -> list[dict]:
    rows = []
    for (name, n), runs in results.items():
        row = {"predictor": name, "labels": n, "seeds": len(runs)}
        for k in METRICS:
            values = np.array([r[k] for r in runs])
            row[k] = float(values.mean())
            row[k + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def plot(rows: list[dict], path: str, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, title in zip(axes, ("kendall_tau", "top10_recall_strict", "tau_top10"),
                                 ("Kendall τ", "strict top-10 % recall", "τ within true top 10 %"),
                                 strict=True):
        names = list(dict.fromkeys(r["predictor"] for r in rows))
        bases = list(dict.fromkeys(parse_name(n).base for n in names))
        for name in names:  # colour: the model; marker: +lowfi; line: +zc dashed, +cv dotted
            base, use_low, use_zc, use_cv, _ = parse_name(name)
            mine = [r for r in rows if r["predictor"] == name]
            ax.errorbar([r["labels"] for r in mine], [r[metric] for r in mine],
                        yerr=[r[metric + "_std"] for r in mine], capsize=3, label=name,
                        color=f"C{bases.index(base) % 10}", marker="s" if use_low else "o",
                        linestyle={(False, False): "-", (True, False): "--", (False, True): ":",
                                   (True, True): "-."}[use_zc, use_cv])
        ticks = sorted({r["labels"] for r in rows})
        ax.set(xlabel="training labels", title=title, xscale="log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{target}: held-out without canonical twins, mean ± sd over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="append", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--low-fidelity", default=None)
    p.add_argument("--labels", type=int_list(2), default=[20, 50, 100])
    p.add_argument("--seeds", type=at_least(1), default=5)
    p.add_argument("--first-seed", type=at_least(0), default=0,
                   help="seeds first … first + seeds − 1 (fresh seeds check a choice made on others)")
    p.add_argument("--held-out", type=at_least(1), default=1000)
    p.add_argument("--screened", type=at_least(0), default=1000,
                   help="+mf: how many other architectures' low-fidelity scores (no targets) it reads")
    p.add_argument("--predictors", default=None,
                   help="comma-separated; default: gnn-ensemble, dcl-ensemble, rf-onehot "
                        "(and their +lowfi forms and lowfi-only with --low-fidelity)")
    p.add_argument("--pretrain-epochs", type=at_least(1), default=PretrainConfig.epochs)
    p.add_argument("--png", default=None, help="write τ, strict recall and top-10 %% τ per label count")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.low_fidelity and "test" in args.low_fidelity:
        p.error(f"--low-fidelity {args.low_fidelity!r} must be a validation column, not a test column")
    labels = args.labels
    if args.png is not None:
        png = Path(args.png)
        if png.suffix.lower().lstrip(".") not in PNG_FORMATS:
            p.error(f"--png {args.png!r}: the extension must be one matplotlib writes "
                    f"({', '.join('.' + e for e in PNG_FORMATS)})")
        if not png.parent.is_dir():
            p.error(f"--png {args.png!r}: no folder {str(png.parent)!r} to write it in")
    if args.predictors is not None:
        names = args.predictors.split(",")
        if not all(n.strip() for n in names):
            p.error(f"--predictors {args.predictors!r}: expected comma-separated predictor names")
    else:
        names = ["gnn-ensemble", "dcl-ensemble", "rf-onehot"]
        if args.low_fidelity:
            names += [n + "+lowfi" for n in names] + ["lowfi-only"]
    known = (*MODELS, "rf-onehot", "lowfi-only")
    for name in names:
        base, use_low, use_zc, use_cv, use_mf = parse_name(name)
        if base not in known:
            p.error(f"unknown predictor {name!r}; choose from {', '.join(known)} with optional "
                    "+lowfi, +zc, +cv and +mf")
        if use_mf and base not in MODELS:
            p.error(f"predictor {name!r}: +mf pretrains an ensemble's GIN; {base!r} has none")
        if use_mf and not args.low_fidelity:
            p.error(f"predictor {name!r} needs --low-fidelity (+mf pretrains on that column)")
        if use_cv and base not in MODELS:
            p.error(f"predictor {name!r}: +cv weights the members of an ensemble; {base!r} has none")
        if (use_low or base == "lowfi-only") and not args.low_fidelity:
            p.error(f"predictor {name!r} needs --low-fidelity")
    try:
        table = TabularBenchmark(args.table, args.target, args.low_fidelity)
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if max(labels) + args.held_out > len(table):
        p.error(f"--labels {max(labels)} with --held-out {args.held_out} need "
                f"{max(labels) + args.held_out:,} architectures; the tables hold {len(table):,}")
    space = NB201Space()
    specs = [NB201Space.from_arch_string(a) for a in table.archs]
    hashes = [space.canonical_hash(s) for s in specs]
    loss = 100.0 - table.columns[args.target]
    low = 100.0 - table.columns[args.low_fidelity] if args.low_fidelity else None
    pretrain = PretrainConfig(epochs=args.pretrain_epochs)
    console = Console(stderr=True)
    if any(MODELS.get(parse_name(n).base, ("",))[0] in ("pretrained", "both") for n in names):
        start = time.perf_counter()
        with Progress(console=console) as progress:
            task = progress.add_task("stage-1 pretraining (skipped when cached)", total=pretrain.epochs)
            enc = load_or_pretrain(space, pretrain, lambda epoch, loss: progress.advance(task))
        console.print(f"stage-1 encoder: {'loaded from' if enc.cached else 'trained and cached in'} "
                      f"{enc.path} ({time.perf_counter() - start:.1f} s; InfoNCE "
                      f"{enc.losses[0]:.3f} → {enc.losses[-1]:.3f})")
    proxy = None
    if any(parse_name(n).zc for n in names):
        try:
            proxy_info = proxy_task(args.target)
        except ValueError as err:
            p.error(str(err))
        proxy = warm_proxy(space, specs, proxy_info, console)
    results: dict[tuple[str, int], list[dict]] = {}
    twins: list[int] = []
    with Progress(console=console) as progress:
        task = progress.add_task("fitting", total=len(labels) * args.seeds * len(names))
        for n in labels:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                tr, te, skipped = split_without_twins(hashes, n, args.held_out,
                                                      np.random.default_rng(seed))
                twins.append(skipped)
                screened = (screened_cells(hashes, tr, te, args.screened,
                                           np.random.default_rng(10_000 + seed))
                            if any(parse_name(x).mf for x in names) else ())
                for name in names:
                    pred = predict(name, space, seed, specs, loss, low, tr, te, pretrain, proxy,
                                   screened)
                    results.setdefault((name, n), []).append(ranking_scores(pred, loss[te]))
                    progress.advance(task)
    rows = summarise(results)
    report(rows, args, twins)
    if args.png:
        try:  # after the table is printed: a plot that fails loses no results
            plot(rows, args.png, args.target)
        except (OSError, ValueError) as err:
            print(f"error: --png {args.png!r}: {err}", file=sys.stderr)
            return 2
    return 0


def report(rows: list[dict], args: argparse.Namespace, twins: list[int]) -> None:
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"target {args.target}; held-out: {args.held_out} architectures per seed with no canonical "
          f"twin of a training one ({np.mean(twins):.0f} twins skipped on average); "
          f"mean ± sd over {args.seeds} seeds")
    print(f"{'predictor':24} {'labels':>6} {'tau':>13} {'spearman':>13} {'recall@10% strict':>18} "
          f"{'tau in top 10%':>15}")
    for r in sorted(rows, key=lambda r: r["labels"]):
        cells = [f"{r[k]:.3f}±{r[k + '_std']:.3f}" for k in METRICS]
        print(f"{r['predictor']:24} {r['labels']:>6} {cells[0]:>13} {cells[1]:>13} {cells[2]:>18} "
              f"{cells[3]:>15}")


if __name__ == "__main__":
    sys.exit(main())
