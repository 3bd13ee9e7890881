"""``python -m agent.replay RUN_DIR``: re-decide a logged run with no LLM call and no training.

The logged learners' saved probabilities are enough to apply the rule again with another M,
rule form, margin, ``--confidence`` or ``--learners MIN:MAX``: for each logged decision the
sequential rule is replayed on the first L learners of each side, adding learners as the live
run would, and where it would need more learners than the log holds the replay says so. The
baseline moves as the new decisions say, so later comparisons may pair other candidates.
``--reevaluate`` instead retrains the logged proposals into a new run (``--model replay:RUN_DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.cli import UsageError, parse_learners
from agent.config import first_baseline_learners
from agent.events import DecisionEvent
from agent.rule import Decision, decide, learner_schedule, next_learners, verdict_text
from agent.state import SearchState
from agent.trajectory import CONFIG, EVALS, RunFolderError, read_events
from evaluators.evaluator import load_probs
from evaluators.stats import (
    gain_estimate,
    pool_seed_variance,
    residual_stats,
    residuals,
    seed_variance,
)

__all__ = ["Replayed", "redecide", "main"]


@dataclass(frozen=True)
class Replayed:
    """One decision replayed: the new decision, against which baseline, whether the sequential
    rule wanted more learners than the log holds, and the logged decision."""

    proposal_id: str
    baseline_id: str
    decision: Decision
    needs_more: bool
    logged: DecisionEvent | None


def replay_pool(run_dir: Path, state: SearchState, M: int,
                fidelity: str) -> tuple[float, int] | None:
    """The pooled seed variance at ``M`` from every logged evaluation at ``fidelity`` with three
    or more learners (all of them, as the run ended: the live run's pool grew as it went)."""
    items = []
    for (_, f), result in state.results.items():
        if f == fidelity and len(result.seeds) >= 3:
            probs, labels = load_probs(run_dir / EVALS, result)
            items.append((len(probs), seed_variance(residuals(probs, labels), M)))
    return pool_seed_variance(items)


def redecide(run_dir: Path, M: int, rule: str, margin: float, confidence: float,
             learners: tuple[int, int], reject_confidence: float | None = None,
             futility: float = 0.0) -> list[Replayed]:
    """Every logged decision (every rung), in logged order, re-made under new settings from the
    logged learners at its rung; the baseline moves only on a decision the run made final."""
    state = SearchState.from_events(read_events(run_dir).events)
    if state.candidates.get("baseline") is None or state.candidates["baseline"].result is None:
        raise RunFolderError(f"{run_dir}: the baseline was never evaluated")
    lo, hi = learners
    looks = learner_schedule(lo, hi)  # the information at each look, for z
    pools: dict[str, tuple[float, int] | None] = {}
    baseline_id, out = "baseline", []
    for logged in state.decisions():
        rung = logged.fidelity or state.candidates[logged.proposal_id].rung
        new, old = state.candidates[logged.proposal_id], state.candidates[baseline_id]
        if rung not in old.results:  # the replay's baseline was never trained at this rung
            continue
        if rung not in pools:
            pools[rung] = replay_pool(run_dir, state, M, rung)
        pool = pools[rung]
        p_new, labels = load_probs(run_dir / EVALS, new.results[rung])
        p_old, _ = load_probs(run_dir / EVALS, old.results[rung])
        L = lo
        while True:  # the live loop's looks, on the first L learners of each side
            L_old = max(L, first_baseline_learners(lo) if baseline_id == "baseline" else lo)
            short = len(p_new) < L or len(p_old) < L_old
            a, b = p_new[:L], p_old[:L_old]
            more = next_learners(L, lo, hi)
            d = decide(residual_stats(a, labels), residual_stats(b, labels), M, rule, margin,
                       gain_estimate(a, b, labels, M, pool=pool), confidence=confidence,
                       looks=looks, final=more is None or short,
                       reject_confidence=reject_confidence, futility=futility)
            if d.confident or more is None or short or d.futile:
                break
            L = more
        out.append(Replayed(logged.proposal_id, baseline_id, d, short and not d.confident, logged))
        if d.accepted and logged.final:
            baseline_id = logged.proposal_id
    return out


def _table(rows: list[Replayed], M: int, rule: str) -> Table:
    t = Table(title=f"replayed decisions (M={M}, rule={rule})")
    for col in ("proposal", "vs (replay)", "vs (logged)", "replay", "logged", "learners",
                "gain ± SE", "changed"):
        t.add_column(col)
    for r in rows:
        d, logged = r.decision, r.logged
        changed = d.verdict != logged.verdict or logged.baseline_id != r.baseline_id
        now = verdict_text(d) + (" (needs more learners than logged)" if r.needs_more else "")
        t.add_row(r.proposal_id, r.baseline_id, logged.baseline_id, now, verdict_text(logged),
                  f"{d.learners}/{d.learners_old}",
                  f"{d.gain:+.4f} ± {d.gain_se_total:.4f}" if d.gain_se_total is not None else "-",
                  "[bold]yes[/]" if changed else "")
    return t


def reevaluate(run_dir: Path, config: dict, args) -> int:
    """Retrain every logged proposal at another fidelity/dataset into a new run folder."""
    from agent.run import main as run_main

    state = SearchState.from_events(read_events(run_dir).events)
    base = state.candidates["baseline"]
    n = sum(1 for pid in state.order if pid != "baseline")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(base.spec, f)
    per_call = max(1, int(config["proposals"]))
    argv = ["--model", f"replay:{run_dir}", "--space", config["space"],
            "--dataset", args.dataset or config["dataset"],
            "--fidelity", args.fidelity or config["fidelity"],
            "--ensemble-size", str(args.ensemble_size or config["ensemble_size"]),
            "--rule", args.rule or config["rule"], "--margin", str(args.margin or config["margin"]),
            "--predictor", "none", "--proposals", str(per_call), "--keep", str(per_call),
            "--iterations", str(-(-n // per_call)), "--baseline", f.name, "--seed",
            str(config["seed"]), "--out", args.out]
    for flag, key in (("--n-samples", "n_samples"), ("--data-dir", "data_dir")):
        if config.get(key):
            argv += [flag, str(config[key])]
    if args.learners or "min_learners" in config:
        argv += ["--learners", args.learners or f"{config['min_learners']}:{config['max_learners']}"]
    if args.confidence is not None or "confidence" in config:
        argv += ["--confidence", str(config["confidence"] if args.confidence is None
                                     else args.confidence)]
    reject = config.get("reject_confidence") if args.reject_confidence is None else args.reject_confidence
    if reject is not None:
        argv += ["--reject-confidence", str(reject)]
    futility = config.get("futility", 0.0) if args.futility is None else args.futility
    return run_main(argv + ["--futility", str(futility)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.replay", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--ensemble-size", type=int, default=None, help="M (default: the run's)")
    p.add_argument("--rule", choices=["exact", "paper"], default=None, help="default: the run's")
    p.add_argument("--margin", type=float, default=None, help="z (default: the run's)")
    p.add_argument("--confidence", type=float, default=None, help="default: the run's")
    p.add_argument("--reject-confidence", type=float, default=None,
                   help="the lower bound's level alone (default: the run's)")
    p.add_argument("--futility", type=float, default=None,
                   help="stop undecided below this chance of a confident call at MAX "
                        "(default: the run's; 0 in logs written before it existed)")
    p.add_argument("--learners", default=None, metavar="MIN:MAX", help="default: the run's")
    p.add_argument("--json", action="store_true", help="print one JSON object per decision")
    p.add_argument("--reevaluate", action="store_true", help="retrain the logged proposals")
    p.add_argument("--fidelity", default=None, help="with --reevaluate")
    p.add_argument("--dataset", default=None, help="with --reevaluate")
    p.add_argument("--out", default="runs", help="with --reevaluate: folder for the new run")
    args = p.parse_args(argv)
    console = Console()
    run_dir = Path(args.run_dir)
    try:
        config = json.loads((run_dir / CONFIG).read_text())["config"]
        if args.reevaluate:
            return reevaluate(run_dir, config, args)
        M = args.ensemble_size or config["ensemble_size"]
        rule = args.rule or config["rule"]
        margin = config["margin"] if args.margin is None else args.margin
        confidence = config.get("confidence", 0.0) if args.confidence is None else args.confidence
        learners = (parse_learners(args.learners) if args.learners else
                    (config.get("min_learners", 2), config.get("max_learners", 2)))
        reject = (config.get("reject_confidence") if args.reject_confidence is None
                  else args.reject_confidence)
        futility = config.get("futility", 0.0) if args.futility is None else args.futility
        if M < 2 or margin < 0 or not 0 <= confidence < 1 or not 0 <= (reject or 0) < 1 \
                or not 0 <= futility < 1:
            raise ValueError("--ensemble-size must be >= 2, --margin >= 0 and --confidence, "
                             "--reject-confidence and --futility in [0, 1)")
        rows = redecide(run_dir, M, rule, margin, confidence, learners, reject, futility)
    except (RunFolderError, OSError, KeyError, ValueError, UsageError) as err:
        print(f"error: {args.run_dir}: cannot replay ({err})", file=sys.stderr)
        return 2
    final = next((r.proposal_id for r in reversed(rows)
                  if r.decision.accepted and r.logged.final), "baseline")
    logged_final = next((r.proposal_id for r in reversed(rows)
                         if r.logged.accepted and r.logged.final), "baseline")
    if args.json:
        for r in rows:
            print(json.dumps(r.decision.to_dict() | {
                "proposal_id": r.proposal_id, "baseline_id": r.baseline_id,
                "fidelity": r.logged.fidelity, "final": r.logged.final,
                "needs_more_learners": r.needs_more, "logged_verdict": r.logged.verdict}))
        print(json.dumps({"final_baseline": final, "logged_final_baseline": logged_final}))
        return 0
    console.print(_table(rows, M, rule))
    changed = sum(1 for r in rows if r.decision.verdict != r.logged.verdict)
    short = sum(1 for r in rows if r.needs_more)
    console.print(f"{changed} of {len(rows)} decisions differ; {short} would have needed more "
                  f"learners than the log holds; final baseline: {final} (logged: {logged_final})"
                  f"{' — differs' if final != logged_final else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
