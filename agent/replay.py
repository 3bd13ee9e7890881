"""``python -m agent.replay RUN_DIR``: re-decide a logged run with no LLM call and no training.

The logged statistics (E, σ², ρ) and the saved probabilities (for the gain's standard error)
are enough to apply the rule again with another M, rule form or margin; the baseline moves as
the new decisions say, so later comparisons may pair other candidates. ``--reevaluate``
instead retrains the logged proposals into a new run (``--model replay:RUN_DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.loop import gain_and_se
from agent.rule import Stats, decide
from agent.trajectory import CONFIG, RunFolderError, read_events

__all__ = ["redecide", "main"]


def redecide(run_dir: Path, M: int, rule: str, margin: float) -> list[dict]:
    """Decisions for every successfully evaluated candidate, in logged order, under new settings.

    Returns one dict per candidate: proposal_id, new ``Decision`` fields, the new baseline id,
    and the logged decision (or None) for comparison.
    """
    events = read_events(run_dir).events
    evaluated = {e["proposal_id"]: e for e in events
                 if e["event"] == "evaluated" and not e.get("failure")}
    logged = {e["proposal_id"]: e for e in events if e["event"] == "decision"}
    if "baseline" not in evaluated:
        raise RunFolderError(f"{run_dir}: the baseline was never evaluated")
    baseline_id, out = "baseline", []
    order = [e["proposal_id"] for e in events if e["event"] == "decision"]
    for pid in order:
        new_ev, old_ev = evaluated[pid], evaluated[baseline_id]
        _, gain_se = gain_and_se(run_dir, new_ev, old_ev, M)
        d = decide(Stats(new_ev["E"], new_ev["sigma2"], new_ev["rho"]),
                   Stats(old_ev["E"], old_ev["sigma2"], old_ev["rho"]), M, rule, margin, gain_se)
        out.append({"proposal_id": pid, "baseline_id": baseline_id, **d.to_dict(),
                    "logged": logged.get(pid)})
        if d.accepted:
            baseline_id = pid
    return out


def _table(rows: list[dict], M: int, rule: str) -> Table:
    t = Table(title=f"replayed decisions (M={M}, rule={rule})")
    for col in ("proposal", "vs (replay)", "vs (logged)", "replay", "logged", "near tie", "changed"):
        t.add_column(col)
    for r in rows:
        logged = r["logged"]
        was = "accepted" if logged and logged["accepted"] else "rejected"
        now = "accepted" if r["accepted"] else "rejected"
        changed = (now != was) or (logged and logged["baseline_id"] != r["baseline_id"])
        t.add_row(r["proposal_id"], r["baseline_id"], logged["baseline_id"] if logged else "-",
                  now, was, "yes" if r["near_tie"] else "", "[bold]yes[/]" if changed else "")
    return t


def reevaluate(run_dir: Path, config: dict, args) -> int:
    """Retrain every logged proposal at another fidelity/dataset into a new run folder."""
    from agent.run import main as run_main

    events = read_events(run_dir).events
    base = next(e for e in events if e["event"] == "proposal" and e["proposal_id"] == "baseline")
    n = sum(1 for e in events if e["event"] == "proposal" and e["proposal_id"] != "baseline")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(base["spec"], f)
    per_call = max(1, int(config["proposals"]))
    argv = ["--model", f"replay:{run_dir}", "--space", config["space"],
            "--dataset", args.dataset or config["dataset"],
            "--fidelity", args.fidelity or config["fidelity"],
            "--ensemble-size", str(args.ensemble_size or config["ensemble_size"]),
            "--rule", args.rule or config["rule"], "--margin", str(args.margin or config["margin"]),
            "--predictor", "none", "--proposals", str(per_call), "--keep", str(per_call),
            "--iterations", str(-(-n // per_call)), "--baseline", f.name, "--seed",
            str(config["seed"]), "--out", args.out]
    if config.get("n_samples"):
        argv += ["--n-samples", str(config["n_samples"])]
    if config.get("data_dir"):
        argv += ["--data-dir", config["data_dir"]]
    return run_main(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.replay", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--ensemble-size", type=int, default=None, help="M (default: the run's)")
    p.add_argument("--rule", choices=["exact", "paper"], default=None, help="default: the run's")
    p.add_argument("--margin", type=float, default=None, help="z (default: the run's)")
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
        if M < 2 or margin < 0:
            raise ValueError("--ensemble-size must be >= 2 and --margin >= 0")
        rows = redecide(run_dir, M, rule, margin)
    except (RunFolderError, OSError, KeyError, ValueError) as err:
        print(f"error: {args.run_dir}: cannot replay ({err})", file=sys.stderr)
        return 2
    final = next((r["proposal_id"] for r in reversed(rows) if r["accepted"]), "baseline")
    logged_final = next((r["proposal_id"] for r in reversed(rows)
                         if r["logged"] and r["logged"]["accepted"]), "baseline")
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k != "logged"}
                             | {"logged_accepted": bool(r["logged"] and r["logged"]["accepted"])}))
        print(json.dumps({"final_baseline": final, "logged_final_baseline": logged_final}))
        return 0
    console.print(_table(rows, M, rule))
    changed = sum(1 for r in rows if bool(r["accepted"]) != bool(r["logged"] and r["logged"]["accepted"]))
    console.print(f"{changed} of {len(rows)} decisions differ; final baseline: {final} "
                  f"(logged: {logged_final}){' — differs' if final != logged_final else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
