"""``python -m agent.report RUN_DIR``: ``report/report.md`` and PNG plots from the trajectory.

Plots: the decision plane (``exact``: each candidate's predicted ensemble error against its
baseline's, with the gain's ±SE_total as error bars and the diagonal; ``paper``: ΔE/σ² against
ρ − ρ_old with the rule's boundary), the baseline's predicted ensemble error over iterations,
and predicted against true ensemble error when the run was validated. The markdown lists every
decision with its learners and uncertainty, counts confident and undecided decisions and the
learners spent, and where the two rule forms disagree. Everything is read through
:class:`agent.state.SearchState`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from agent.events import DecisionEvent, Validated  # noqa: E402
from agent.report_rungs import rung_lines  # noqa: E402
from agent.rule import row_name, verdict_text  # noqa: E402
from agent.state import SearchState  # noqa: E402
from agent.trajectory import REPORT, TRAJECTORY, RunFolderError, read_events, resume_command  # noqa: E402

__all__ = ["write_report", "main"]

_AHEAD = "ahead at a lower rung (not final)"
_STYLE = {"accepted": ("#1a9850", "o"), _AHEAD: ("#1a9850", "o"), "rejected": ("#d73027", "o"),
          "undecided": ("#777777", "D")}


def _plane_label(d: DecisionEvent) -> str:
    """A decision's series in the decision plane: its verdict, except that a win below the top
    rung (which only lets the candidate go up, never moves the baseline) is drawn apart."""
    return _AHEAD if d.accepted and not d.final else d.verdict


def plot_decision_plane(decisions: list[DecisionEvent], rule: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    M = decisions[0].M if decisions else 50
    if rule == "paper":
        xs = [d.delta_E / d.sigma2 if d.sigma2 else 0.0 for d in decisions]
        ys = [d.rho - d.rho_old for d in decisions]
        errs = [0.0] * len(decisions)
        lim = max([abs(v) for v in xs + ys] + [1e-3]) * 1.15
        ax.plot([-lim, lim], [M / (M - 1) * lim, -M / (M - 1) * lim], "k--", lw=1,
                label="boundary ρ − ρ_old = −M/(M−1)·ΔE/σ²")
        ax.set_xlabel("ΔE / σ²(π)")
        ax.set_ylabel("ρ(π) − ρ(π_old)")
        ax.set_title("decision plane (paper rule): accept below the line")
    else:
        xs = [d.baseline_predicted_ens_error for d in decisions]
        ys = [d.predicted_ens_error for d in decisions]
        errs = [d.gain_se_total or 0.0 for d in decisions]
        vals = xs + ys or [0.0, 1.0]
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.1 + max(errs + [1e-4])
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="equal")
        ax.set_xlabel("baseline's predicted ensemble error E_ens(π_old)")
        ax.set_ylabel("candidate's predicted ensemble error E_ens(π)")
        ax.set_title(f"decision plane (exact rule, M={M}): accept below the diagonal\n"
                     "error bars: ±1 SE of the gain (samples and seeds)", fontsize=10)
    for label, (colour, marker) in _STYLE.items():
        pts = [(x, y, e) for x, y, e, d in zip(xs, ys, errs, decisions, strict=True)
               if _plane_label(d) == label]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                        fmt=marker, color=colour, ms=6, capsize=3, label=label, zorder=3,
                        mfc="none" if label == _AHEAD else colour)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_baseline_curve(decisions: list[DecisionEvent], path: Path) -> None:
    M = decisions[0].M if decisions else None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if decisions:
        its, vals = [0], [decisions[0].baseline_predicted_ens_error]
        for d in decisions:
            its.append(d.iteration)
            vals.append(d.predicted_ens_error if d.accepted else vals[-1])
        ax.step(its, vals, where="post", color="#4575b4")
        ax.scatter([d.iteration for d in decisions], [d.predicted_ens_error for d in decisions],
                   c=[_STYLE[d.verdict][0] for d in decisions], s=18, zorder=3)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"predicted E_ens (M={M})")
    ax.set_title("baseline's predicted ensemble error (dots: candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_validation(validated: list[Validated], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for split, marker in (("validation", "o"), ("test", "s")):
        pts = [(v.predicted_ens_brier, v.true_ens_brier) if split == "validation" else
               (v.test_predicted_ens_brier, v.test_true_ens_brier) for v in validated]
        pts = [p for p in pts if None not in p]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=split, s=40)
    vals = [x for v in validated for x in (v.predicted_ens_brier, v.true_ens_brier)]
    if vals:
        lo, hi = min(vals), max(vals)
        ax.plot([lo * 0.9, hi * 1.1], [lo * 0.9, hi * 1.1], "k--", lw=1)
    ax.set_xlabel("predicted ensemble Brier (from the search's learners)")
    ax.set_ylabel("true ensemble Brier (M learners)")
    ax.set_title("predicted vs true ensemble error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fidelity_text(config: dict, several: bool) -> str:
    """The header's fidelity: the schedule (and η when it has ``several`` rungs to promote
    between) of a run that set one, else the single ``--fidelity``."""
    schedule = config.get("fidelity_schedule")
    if not schedule:
        return f"fidelity `{config.get('fidelity')}`"
    return f"fidelity schedule `{schedule}`" + (f" (η={config.get('eta')})" if several else "")


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _decision_lines(state: SearchState, decisions: list[DecisionEvent], several: bool
                    ) -> list[str]:
    confident = [d for d in decisions if d.confident and d.verdict != "undecided"]
    undecided = [d for d in decisions if d.verdict == "undecided"]
    spend = [d.learners for d in decisions]
    futile = sum(1 for d in decisions if d.futile)
    lines = [f"## Decisions: {len(confident)} confident, {len(undecided)} undecided, "
             f"{len(decisions) - len(confident) - len(undecided)} on the point estimate", "",
             f"Learners: {state.learners_trained} trained in all; "
             + (f"{sum(spend) / len(spend):.2f} per decided candidate on average "
                f"(min {min(spend)}, max {max(spend)})" if spend else "no decision yet")
             + (f"; {futile} undecided stopped before MAX by the futility bound." if futile
                else "."),
             "A decision is *confident* when |gain| exceeds z standard errors (samples and "
             "seeds); an *undecided* one stayed inside that bound with the most learners allowed, "
             "or stopped before them because even they were unlikely to decide it (futility), so "
             "the baseline stayed.", "",
             "| proposal | vs | learners | E | σ² | ρ | E_ens | baseline E_ens | gain ± SE "
             "(sample, seed) | exact | paper | decision | explanation |", "|" + "---|" * 13]
    for d in decisions:
        se = (f" ± {d.gain_se_total:.4f} ({d.gain_se_sample:.4f}, "
              f"{_fmt(d.gain_se_seed) if d.gain_se_seed is not None else 'unknown'})"
              if d.gain_se_total is not None else "")
        lines.append(
            f"| {row_name(d.proposal_id, d.fidelity, several)} | "
            f"{d.baseline_id} | {d.learners}/{d.learners_old} | "
            f"{_fmt(d.E)} | {_fmt(d.sigma2)} | {_fmt(d.rho)} | {_fmt(d.predicted_ens_error)} | "
            f"{_fmt(d.baseline_predicted_ens_error)} | {d.gain:.4f}{se} | {d.accepted_exact} | "
            f"{d.accepted_paper} | **{verdict_text(d)}** | {d.explanation} |")
    return lines


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    read = read_events(run_dir)
    state = SearchState.from_events(read.events)
    if state.config is None:  # e.g. an empty log: there is no run to report
        raise RunFolderError(f"{TRAJECTORY} holds no run_started event")
    config = state.config
    out = run_dir / REPORT
    out.mkdir(exist_ok=True)
    decisions = state.decisions()
    several = len(state.schedule()) > 1  # rows are named `id @ rung` (agent.rule.row_name)
    plot_decision_plane(decisions, config.get("rule", "exact"), out / "decision_plane.png")
    plot_baseline_curve(state.final_decisions(), out / "baseline_curve.png")
    lines = [f"# Search report: {run_dir.name}", "",
             f"space `{config.get('space')}`, dataset `{config.get('dataset')}`, "
             f"{_fidelity_text(config, several)}, model `{config.get('model')}`, rule "
             f"`{config.get('rule')}`, M={config.get('ensemble_size')}, learners "
             f"{config.get('min_learners')}:{config.get('max_learners')}, confidence "
             f"{config.get('confidence')}"
             + (f" (rejections {config['reject_confidence']})"
                if config.get("reject_confidence") is not None else "")
             + (f", futility {config['futility']}" if config.get("futility") else "")
             + f", margin z={config.get('margin')}", ""]
    if (f := state.finished) is not None:
        lines += [f"finished: **{f.reason}** after {f.iterations} iterations, {f.evaluations} "
                  f"evaluations, {f.accepted} accepted, device {f.device_s:.1f}s, wall "
                  f"{f.wall_s:.1f}s, tokens {f.tokens_in}/{f.tokens_out}, ${f.cost_usd:.4f}", ""]
    else:
        lines += [f"**not finished**: the log ends in iteration {state.iteration} without "
                  "`run_finished` (the run was killed, or is still running); "
                  f"`{resume_command(run_dir)}` continues it", ""]
    if read.truncated_line:
        lines += ["> the trajectory ends with a torn line (crash mid-write); it was ignored", ""]
    lines += ["![decision plane](decision_plane.png)", "", "![baseline](baseline_curve.png)", ""]
    lines += _decision_lines(state, decisions, several)
    lines += rung_lines(state, out, config.get("ensemble_size", 50))
    disagree = [d for d in decisions if d.accepted_exact != d.accepted_paper]
    lines += ["", "## Where the exact and paper forms disagree", ""]
    lines += [f"- {d.proposal_id}: exact {'accepts' if d.accepted_exact else 'rejects'}, "
              f"paper {'accepts' if d.accepted_paper else 'rejects'} (σ² {d.sigma2:.4f} "
              f"vs σ²_old {d.sigma2_old:.4f})" for d in disagree] or ["none"]
    cands = [state.candidates[p] for p in state.order]
    rejected = [c for c in cands if c.rejected]
    failures = [c for c in cands if c.failure is not None]
    lines += ["", f"## Rejected proposals ({len(rejected)}) and failed evaluations "
              f"({len(failures)})", ""]
    lines += [f"- {c.proposal_id}: {c.rejected}" for c in rejected]
    lines += [f"- {c.proposal_id}: {c.failure.kind}: {c.failure.message}" for c in failures]
    if state.validated:
        plot_validation(state.validated, out / "validation.png")
        lines += ["", "## True ensemble vs prediction", "", "![validation](validation.png)", "",
                  "| proposal | M | predicted at | predicted (val) | true (val) | true 0-1 (val) "
                  "| predicted (test) | true (test) | true 0-1 (test) |", "|" + "---|" * 9]
        lines += [f"| {v.proposal_id or v.spec_hash} | {v.M} | {v.fidelity or 'not logged'} | "
                  f"{_fmt(v.predicted_ens_brier)} | "
                  f"{_fmt(v.true_ens_brier)} | {_fmt(v.true_ens_error01)} | "
                  f"{_fmt(v.test_predicted_ens_brier)} | {_fmt(v.test_true_ens_brier)} | "
                  f"{_fmt(v.test_true_ens_error01)} |" for v in state.validated]
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
