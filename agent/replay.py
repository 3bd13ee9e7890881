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

from rich.table import Table

from agent.cli import UsageError, parse_learners
from agent.config import first_baseline_learners
from agent.events import DecisionEvent, Evaluated, parse_event
from agent.progress import console_for
from agent.rule import Decision, decide, learner_schedule, next_learners, row_name, verdict_text
from agent.state import SearchState, logged_schedule
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


class _World:
    """The replay's own view of the run: how many learners each evaluation holds *in the replay*
    (evaluations enter with MIN, the first baseline with its larger start, and grow only when
    the replayed rule grows them), and the pooled seed variance those counts give at a rung,
    as the live loop's :meth:`agent.state.SearchState.seed_pool` gave it at that moment. With
    the run's own settings every look therefore sees the numbers the live look saw."""

    def __init__(self, run_dir: Path, final: SearchState, M: int, lo: int) -> None:
        self.run_dir, self.final, self.M, self.lo = run_dir, final, M, lo
        self.held: dict[tuple[str, str], int] = {}
        self._probs: dict[tuple[str, str], tuple] = {}
        self._var: dict[tuple[tuple[str, str], int], float | None] = {}

    def entered(self, event: Evaluated) -> None:
        """An evaluation's first learners: a baseline's start (the live loop gave it more than
        the run's MIN) or the replay's MIN."""
        key = (event.spec_hash, event.fidelity)
        if event.failure is None and key not in self.held and key in self.final.results:
            run_min = (self.final.config or {}).get("min_learners", 2)
            self.held[key] = first_baseline_learners(self.lo) if len(event.seeds) > run_min \
                else self.lo

    def probs(self, key: tuple[str, str]):
        if key not in self._probs:
            self._probs[key] = load_probs(self.run_dir / EVALS, self.final.results[key])
        return self._probs[key]

    def pool(self, fidelity: str, now: dict[tuple[str, str], int]) -> tuple[float, int] | None:
        """(φ, ν) from every evaluation at ``fidelity`` with its replayed count (``now``
        overriding the two sides of the look in progress), three learners or more."""
        items = []
        for key, L in (self.held | now).items():
            if key[1] != fidelity or L < 3:  # only these can count: load nothing else
                continue
            L = min(L, len(self.probs(key)[0]))
            if L < 3:
                continue
            if (key, L) not in self._var:
                p, labels = self.probs(key)
                self._var[key, L] = seed_variance(residuals(p[:L], labels), self.M)
            items.append((L, self._var[key, L]))
        return pool_seed_variance(items)


def redecide(run_dir: Path, M: int, rule: str, margin: float, confidence: float,
             learners: tuple[int, int], reject_confidence: float | None = None,
             futility: float = 0.0) -> list[Replayed]:
    """Every logged decision (every rung), in logged order, re-made under new settings from the
    logged learners at its rung; the baseline moves only on a decision the run made final.
    Events are walked in log order, so each look's pooled seed variance is the one the live
    loop had then (:class:`_World`); with the run's own settings the replay repeats the log."""
    events = read_events(run_dir).events
    final = SearchState.from_events(events)
    if final.candidates.get("baseline") is None or final.candidates["baseline"].result is None:
        raise RunFolderError(f"{run_dir}: the baseline was never evaluated")
    lo, hi = learners
    looks = learner_schedule(lo, hi)  # the information at each look, for z
    world = _World(run_dir, final, M, lo)
    baseline_id, out = "baseline", []
    for raw in events:
        event = parse_event(raw)
        if isinstance(event, Evaluated):
            world.entered(event)
        if not isinstance(event, DecisionEvent):
            continue
        logged = event
        rung = logged.fidelity or final.candidates[logged.proposal_id].rung
        new, old = final.candidates[logged.proposal_id], final.candidates[baseline_id]
        if rung not in old.results:  # the replay's baseline was never trained at this rung
            continue
        k_new, k_old = (new.results[rung].spec_hash, rung), (old.results[rung].spec_hash, rung)
        (p_new, labels), (p_old, _) = world.probs(k_new), world.probs(k_old)
        L = world.held.get(k_new, lo)
        while True:  # the live loop's looks, on the first L learners of each side
            L_old = max(L, world.held.get(k_old, lo))
            short = len(p_new) < L or len(p_old) < L_old
            a, b = p_new[:L], p_old[:L_old]
            more = next_learners(L, lo, hi)
            pool = world.pool(rung, {k_new: L, k_old: L_old})
            d = decide(residual_stats(a, labels), residual_stats(b, labels), M, rule, margin,
                       gain_estimate(a, b, labels, M, pool=pool), confidence=confidence,
                       looks=looks, final=more is None or short,
                       reject_confidence=reject_confidence, futility=futility)
            if d.confident or more is None or short or d.futile:
                break
            L = more
        world.held[k_new], world.held[k_old] = L, L_old
        out.append(Replayed(logged.proposal_id, baseline_id, d, short and not d.confident, logged))
        if d.accepted and logged.final:
            baseline_id = logged.proposal_id
    return out


def _table(rows: list[Replayed], M: int, rule: str, several_rungs: bool) -> Table:
    t = Table(title=f"replayed decisions (M={M}, rule={rule})")
    for col in ("proposal", "vs (replay)", "vs (logged)", "replay", "logged", "learners",
                "gain ± SE", "changed"):
        t.add_column(col)
    for r in rows:
        d, logged = r.decision, r.logged
        changed = d.verdict != logged.verdict or logged.baseline_id != r.baseline_id
        now = (verdict_text(d, None if logged.final else logged.fidelity)
               + (" (needs more learners than logged)" if r.needs_more else ""))
        t.add_row(row_name(r.proposal_id, logged.fidelity, several_rungs), r.baseline_id,
                  logged.baseline_id, now, verdict_text(logged),
                  f"{d.learners}/{d.learners_old}",
                  f"{d.gain:+.4f} ± {d.gain_se_total:.4f}" if d.gain_se_total is not None else "-",
                  "[bold]yes[/]" if changed else "")
    return t


def _setting(args: argparse.Namespace, config: dict, name: str, default: float | None = None
             ) -> float | None:
    """A rule setting for the replay: the flag when given, else the run's, else ``default``
    (logs written before the setting existed)."""
    value = getattr(args, name)
    return config.get(name, default) if value is None else value


def reevaluate(run_dir: Path, config: dict, args: argparse.Namespace) -> int:
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
    for flag, name in (("--confidence", "confidence"), ("--reject-confidence", "reject_confidence")):
        if (value := _setting(args, config, name)) is not None:
            argv += [flag, str(value)]
    return run_main(argv + ["--futility", str(_setting(args, config, "futility", 0.0))])


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
    console = console_for()
    run_dir = Path(args.run_dir)
    try:
        config = json.loads((run_dir / CONFIG).read_text())["config"]
        if args.reevaluate:
            return reevaluate(run_dir, config, args)
        M = args.ensemble_size or config["ensemble_size"]
        rule = args.rule or config["rule"]
        margin = config["margin"] if args.margin is None else args.margin
        confidence = _setting(args, config, "confidence", 0.0)
        learners = (parse_learners(args.learners) if args.learners else
                    (config.get("min_learners", 2), config.get("max_learners", 2)))
        reject = _setting(args, config, "reject_confidence")
        futility = _setting(args, config, "futility", 0.0)
        for flag, value, ok, want in (
                ("--ensemble-size", M, M >= 2, "M >= 2"), ("--margin", margin, margin >= 0, ">= 0"),
                ("--confidence", confidence, 0 <= confidence < 1, "a level in [0, 1)"),
                ("--reject-confidence", reject, 0 <= (reject or 0) < 1, "a level in [0, 1)"),
                ("--futility", futility, 0 <= futility < 1, "a chance in [0, 1)")):
            if not ok:
                raise ValueError(f"{flag} {value}: expected {want}")
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
    console.print(_table(rows, M, rule, len(logged_schedule(config)) > 1))
    changed = sum(1 for r in rows if r.decision.verdict != r.logged.verdict)
    short = sum(1 for r in rows if r.needs_more)
    console.print(f"{changed} of {len(rows)} decisions differ; {short} would have needed more "
                  f"learners than the log holds; final baseline: {final} (logged: {logged_final})"
                  f"{' — differs' if final != logged_final else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
