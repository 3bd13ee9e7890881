"""``python -m agent.edas``: EDAS strategies 1–3 on a CTR ensemble, one run folder each.

* ``--strategy closed-form`` (strategy 1): dual learners of the base spec at a few bagging rates
  → fitted E(r), σ²(r), ρ(r) → r* minimising the predicted E_ens(M; r)
  (:mod:`evaluators.edas.closed_form`); ``--check-grid`` trains the true M-ensemble on a grid of
  r (and at r*) to check it.
* ``--strategy differentiable`` (strategy 2): dual learners of the baseline (π_old: every field)
  plus a pool of learners with random field masks → per-field surrogate → constrained gradient
  search over π (:mod:`evaluators.edas.differentiable`), every step logged; the final π is checked
  with ``--final-learners`` learners of π and of π_old and the acceptance rule at
  ``--confidence``, which has the last word (a rejected or undecided π leaves the baseline in
  place: ``returned``), and with true M-ensembles with ``--check``.
* ``--strategy llm`` (strategy 3): the search loop, ``python -m agent.run --space ctr``.

Each run writes ``config.json``, ``trajectory.jsonl`` (``agent.trajectory.Trajectory``),
``result.json`` and ``report/*.png`` under ``--out/<stamp>-edas-<strategy>-<dataset>-s<seed>/``.
Learner trainings are counted in ``result.json`` (``trainings``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.cli import HelpFormatter, load_baseline
from agent.trajectory import CONFIG, REPORT, Trajectory

__all__ = ["main", "build_parser"]


def _rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    bad = [v for v in values if not 0 < v <= 1]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"rates must lie in (0, 1], got {text!r}")
    return values


class _ErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _ErrorParser(prog="python -m agent.edas", description=__doc__.split("\n\n")[0],
                     formatter_class=HelpFormatter)
    a = p.add_argument
    a("--strategy", required=True, choices=["closed-form", "differentiable", "llm"])
    a("--dataset", default="synthetic-ctr", choices=["synthetic-ctr", "criteo"])
    a("--data-dir", default=None, help="Criteo-format file or folder (criteo)")
    a("--n-samples", type=int, default=None, help="train+validation rows")
    a("--test-rows", type=int, default=None,
      help="test rows (default: a quarter of --n-samples); the checks' true ensembles use them")
    a("--fidelity", default="low", help="low | medium | high")
    a("--ensemble-size", "-M", type=int, default=8, help="M, the ensemble size decided about")
    a("--baseline", default=None, help="JSON file with the base CTR spec (default: the reference)")
    a("--rates", type=_rates, default=[0.2, 0.4, 0.6, 0.8, 1.0],
      help="closed-form: bagging rates of the dual evaluations")
    a("--check-grid", type=_rates, default=None,
      help="closed-form: rates at which to train the true M-ensemble (and at r*)")
    a("--check-repeats", type=int, default=1,
      help="--check-grid / --check: disjoint true M-ensembles per checked spec, averaged")
    a("--pool", type=int, default=10, help="differentiable: learners with random masks")
    a("--pool-rate", type=float, default=0.5, help="differentiable: inclusion prob. of the pool")
    a("--steps", type=int, default=150, help="differentiable: gradient steps")
    a("--kappa", type=float, default=0.01, help="differentiable: price of mean inclusion")
    a("--final-learners", type=int, default=4,
      help="differentiable: learners of π and of π_old behind the final check (>= 3 gives the "
      "gain a seed SE; 2 with --confidence 0 is the point-estimate check)")
    a("--confidence", type=float, default=0.95,
      help="differentiable: level of the final check's bound; not confident = undecided, the "
      "baseline stays (0: the point estimate decides)")
    a("--check", action="store_true", help="differentiable: true M-ensembles of π_old and π")
    a("--model", default="builtin", help="llm: proposer (see python -m agent.run --help)")
    a("--iterations", type=int, default=3, help="llm: iterations")
    a("--seed", type=int, default=0)
    a("--out", default="runs")
    return p


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.ensemble_size < 2:
        parser.error(f"--ensemble-size must be >= 2, got {args.ensemble_size}")
    if args.n_samples is not None and args.n_samples < 20:
        parser.error(f"--n-samples must be >= 20, got {args.n_samples}")
    if args.pool < 1 or args.steps < 1 or args.kappa < 0 or not 0 < args.pool_rate <= 1:
        parser.error(f"need --pool >= 1, --steps >= 1, --kappa >= 0, 0 < --pool-rate <= 1; got "
                     f"{args.pool}, {args.steps}, {args.kappa}, {args.pool_rate}")
    if not 2 <= args.final_learners <= 50 or not 0 <= args.confidence < 1:
        parser.error(f"need 2 <= --final-learners <= 50 and 0 <= --confidence < 1, got "
                     f"{args.final_learners} and {args.confidence}")
    if not 1 <= args.check_repeats <= 100:
        parser.error(f"--check-repeats must be in 1..100, got {args.check_repeats}")
    if args.ensemble_size * args.check_repeats > 900:  # check seeds are 1000·seed + 100 …
        parser.error(f"--ensemble-size × --check-repeats must be <= 900, got "
                     f"{args.ensemble_size} × {args.check_repeats}")
    if not 2 <= len(args.rates) <= 40 or len(set(args.rates)) < 2:
        parser.error(f"--rates needs 2 to 40 rates, >= 2 of them distinct, got {args.rates}")


def _run_dir(args: argparse.Namespace) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(args.out) / f"{stamp}-edas-{args.strategy}-{args.dataset}-s{args.seed}"
    for n in range(1000):
        run_dir = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise ValueError(f"--out {args.out}: too many runs named {base.name}")


def _llm(args: argparse.Namespace) -> int:
    from agent.run import main as run_main

    argv = ["--space", "ctr", "--dataset", args.dataset, "--fidelity", args.fidelity,
            "--ensemble-size", str(args.ensemble_size), "--model", args.model,
            "--iterations", str(args.iterations), "--seed", str(args.seed), "--out", args.out,
            "--predictor", "none"]
    for flag, value in (("--data-dir", args.data_dir), ("--n-samples", args.n_samples),
                        ("--baseline", args.baseline)):
        if value is not None:
            argv += [flag, str(value)]
    return run_main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(args, parser)
    if args.strategy == "llm":
        return _llm(args)
    import torch

    from evaluators.data import DatasetUnavailable, load_task
    from evaluators.fidelity import get_fidelity
    from spaces import get_space

    torch.set_num_threads(1)  # tiny models: threads cost more than they save (evaluators.dual)
    space = get_space("ctr")
    try:
        fidelity = get_fidelity(args.fidelity)
        base = load_baseline(args.baseline, space) if args.baseline else space.reference()
        task = load_task(args.dataset, data_dir=args.data_dir, n_samples=args.n_samples,
                         seed=args.seed, test_rows=args.test_rows)
        run_dir = _run_dir(args)
    except (ValueError, DatasetUnavailable, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    config = {k: v for k, v in vars(args).items()} | {"base_spec": base.model_dump()}
    (run_dir / CONFIG).write_text(json.dumps({"config": config, "command": [
        "python", "-m", "agent.edas", *(argv if argv is not None else sys.argv[1:])]}, indent=2))
    log = Trajectory(run_dir).open()
    log.append("run_started", 0, config=config, task=task.sizes())
    started = time.monotonic()
    from agent.edas_strategies import run_closed_form, run_differentiable

    runner = run_closed_form if args.strategy == "closed-form" else run_differentiable
    result = runner(args, space, task, fidelity, base, log)
    result["wall_s"] = time.monotonic() - started
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    from agent.edas_report import plot_run

    plots = plot_run(args.strategy, result, run_dir / REPORT)
    log.append("run_finished", 0, reason="done", result=result, plots=[str(p) for p in plots])
    log.close()
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
    summary |= {k: result[k] for k in ("verdict_val", "verdict_test") if k in result}
    print(json.dumps(summary, indent=2))
    print(f"run folder: {run_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
