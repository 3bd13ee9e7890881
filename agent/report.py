"""``python -m agent.report RUN_DIR``: ``report/report.md`` and PNG plots from the trajectory.

Plots: the decision plane (``paper``: ΔE/σ² against ρ − ρ_old with the rule's boundary;
``exact``: each candidate's predicted ensemble error against its baseline's, with the diagonal),
the baseline's predicted ensemble error over iterations, and predicted against true ensemble
error when the run was validated. The markdown lists every decision and where the two rule
forms disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from agent.trajectory import CONFIG, REPORT, RunFolderError, read_events  # noqa: E402

__all__ = ["write_report", "main"]

_COLOURS = {True: "#1a9850", False: "#d73027"}


def _decisions(events):
    return [e for e in events if e["event"] == "decision"]


def plot_decision_plane(decisions, rule: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    if rule == "paper":
        xs = [d["delta_E"] / d["sigma2"] if d["sigma2"] else 0.0 for d in decisions]
        ys = [d["rho"] - d["rho_old"] for d in decisions]
        M = decisions[0]["M"] if decisions else 50
        lim = max([abs(v) for v in xs + ys] + [1e-3]) * 1.15
        line = [-lim, lim]
        ax.plot(line, [-M / (M - 1) * v for v in line], "k--", lw=1,
                label="boundary ρ − ρ_old = −M/(M−1)·ΔE/σ²")
        ax.set_xlabel("ΔE / σ²(π)")
        ax.set_ylabel("ρ(π) − ρ(π_old)")
        ax.set_title("decision plane (paper rule): accept below the line")
    else:
        xs = [d["baseline_predicted_ens_error"] for d in decisions]
        ys = [d["predicted_ens_error"] for d in decisions]
        vals = xs + ys or [0.0, 1.0]
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.1 + 1e-4
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="equal")
        ax.set_xlabel("baseline's predicted ensemble error E_ens(π_old)")
        ax.set_ylabel("candidate's predicted ensemble error E_ens(π)")
        ax.set_title(f"decision plane (exact rule, M={decisions[0]['M'] if decisions else '?'})"
                     ": accept below the diagonal")
    for acc in (True, False):
        pts = [(x, y, d) for x, y, d in zip(xs, ys, decisions, strict=True) if d["accepted"] == acc]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=_COLOURS[acc], s=36,
                   label="accepted" if acc else "rejected", zorder=3)
    ties = [(x, y) for x, y, d in zip(xs, ys, decisions, strict=True) if d.get("near_tie")]
    if ties:
        ax.scatter(*zip(*ties, strict=True), s=140, facecolors="none", edgecolors="#555555",
                   label="near tie (uncertain)", zorder=4)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_baseline_curve(events, path: Path) -> None:
    base = next((e for e in events if e["event"] == "evaluated" and e["proposal_id"] == "baseline"
                 and not e.get("failure")), None)
    decisions = _decisions(events)
    M = decisions[0]["M"] if decisions else None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if base is not None and M is not None:
        its = [0]
        vals = [decisions[0]["baseline_predicted_ens_error"]]
        for d in decisions:
            its.append(d["iteration"])
            vals.append(d["predicted_ens_error"] if d["accepted"] else vals[-1])
        ax.step(its, vals, where="post", color="#4575b4")
        ax.scatter([d["iteration"] for d in decisions], [d["predicted_ens_error"] for d in decisions],
                   c=[_COLOURS[d["accepted"]] for d in decisions], s=18, zorder=3)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"predicted E_ens (M={M})")
    ax.set_title("baseline's predicted ensemble error (dots: candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_validation(validated, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for key, true_key, label, marker in (
            ("predicted_ens_brier", "true_ens_brier", "validation", "o"),
            ("test_predicted_ens_brier", "test_true_ens_brier", "test", "s")):
        pts = [(v[key], v[true_key]) for v in validated if key in v]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=label, s=40)
    vals = [v[k] for v in validated for k in ("predicted_ens_brier", "true_ens_brier") if k in v]
    if vals:
        lo, hi = min(vals), max(vals)
        ax.plot([lo * 0.9, hi * 1.1], [lo * 0.9, hi * 1.1], "k--", lw=1)
    ax.set_xlabel("predicted ensemble Brier (from 2 learners)")
    ax.set_ylabel("true ensemble Brier (M learners)")
    ax.set_title("predicted vs true ensemble error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    read = read_events(run_dir)
    events = read.events
    config = json.loads((run_dir / CONFIG).read_text())["config"]
    out = run_dir / REPORT
    out.mkdir(exist_ok=True)
    decisions = _decisions(events)
    validated = [e for e in events if e["event"] == "validated"]
    plot_decision_plane(decisions, config["rule"], out / "decision_plane.png")
    plot_baseline_curve(events, out / "baseline_curve.png")
    lines = [f"# Search report: {run_dir.name}", "",
             f"space `{config['space']}`, dataset `{config['dataset']}`, fidelity "
             f"`{config['fidelity']}`, model `{config['model']}`, rule `{config['rule']}`, "
             f"M={config['ensemble_size']}, margin z={config['margin']}", ""]
    finished = next((e for e in events if e["event"] == "run_finished"), None)
    if finished:
        lines += [f"finished: **{finished['reason']}** after {finished['iterations']} iterations, "
                  f"{finished['evaluations']} evaluations, {finished['accepted']} accepted, "
                  f"device {finished['device_s']:.1f}s, wall {finished['wall_s']:.1f}s, "
                  f"tokens {finished['tokens_in']}/{finished['tokens_out']}, "
                  f"${finished['cost_usd']:.4f}", ""]
    if read.truncated_line:
        lines += ["> the trajectory ends with a torn line (crash mid-write); it was ignored", ""]
    lines += ["![decision plane](decision_plane.png)", "", "![baseline](baseline_curve.png)", "",
              "## Decisions", "",
              "| proposal | vs | E | σ² | ρ | E_ens | baseline E_ens | gain ± SE | exact | paper "
              "| accepted | explanation |", "|" + "---|" * 12]
    for d in decisions:
        se = d.get("gain_se")
        lines.append(
            f"| {d['proposal_id']} | {d['baseline_id']} | {_fmt(d['E'])} | {_fmt(d['sigma2'])} | "
            f"{_fmt(d['rho'])} | {_fmt(d['predicted_ens_error'])} | "
            f"{_fmt(d['baseline_predicted_ens_error'])} | {d['gain']:.4f}"
            f"{f' ± {se:.4f}' if se is not None else ''} | {d['accepted_exact']} | "
            f"{d['accepted_paper']} | {'**yes**' if d['accepted'] else 'no'}"
            f"{' (near tie)' if d.get('near_tie') else ''} | {d['explanation']} |")
    disagree = [d for d in decisions if d["accepted_exact"] != d["accepted_paper"]]
    lines += ["", "## Where the exact and paper forms disagree", ""]
    if disagree:
        lines += [f"- {d['proposal_id']}: exact {'accepts' if d['accepted_exact'] else 'rejects'}, "
                  f"paper {'accepts' if d['accepted_paper'] else 'rejects'} (σ² {d['sigma2']:.4f} "
                  f"vs σ²_old {d['sigma2_old']:.4f})" for d in disagree]
    else:
        lines.append("none")
    ties = [d for d in decisions if d.get("near_tie")]
    lines += ["", f"## Near ties: {len(ties)} of {len(decisions)} decisions", "",
              "Two learners cannot settle these (|gain| < 2 SE); treat them as uncertain."]
    rejected = [e for e in events if e["event"] == "proposal_rejected"]
    failures = [e for e in events if e["event"] == "evaluated" and e.get("failure")]
    lines += ["", f"## Rejected proposals ({len(rejected)}) and failed evaluations ({len(failures)})", ""]
    lines += [f"- {e['proposal_id']}: {e['reason']}" for e in rejected]
    lines += [f"- {e['proposal_id']}: {e['failure']['kind']}: {e['failure']['message']}"
              for e in failures]
    if validated:
        plot_validation(validated, out / "validation.png")
        lines += ["", "## True ensemble vs prediction", "", "![validation](validation.png)", "",
                  "| proposal | M | predicted (val) | true (val) | true 0-1 (val) | predicted (test) "
                  "| true (test) | true 0-1 (test) |", "|" + "---|" * 8]
        lines += [f"| {v.get('proposal_id', v['spec_hash'])} | {v['M']} | "
                  f"{_fmt(v['predicted_ens_brier'])} | {_fmt(v['true_ens_brier'])} | "
                  f"{_fmt(v['true_ens_error01'])} | {_fmt(v.get('test_predicted_ens_brier'))} | "
                  f"{_fmt(v.get('test_true_ens_brier'))} | {_fmt(v.get('test_true_ens_error01'))} |"
                  for v in validated]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.report",
                                description="Write report/report.md and PNG plots for a run.")
    p.add_argument("run_dir")
    args = p.parse_args(argv)
    try:
        path = write_report(args.run_dir)
    except (RunFolderError, OSError, KeyError, ValueError) as err:
        print(f"error: {args.run_dir}: not a readable run ({err})", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
