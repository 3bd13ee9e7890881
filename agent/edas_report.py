"""Plots of ``python -m agent.edas`` runs (matplotlib, Agg): strategy 1's predicted E_ens(M; r)
with r* and the true ensemble points, strategy 2's constraint path."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_run", "plot_closed_form", "plot_differentiable"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_closed_form(result: dict, path: Path) -> Path:
    """Predicted E_ens(M; r) (fitted forms), the dual predictions it was fitted to, r*, and — when
    checked — the true M-ensemble error on validation and test."""
    plt = _plt()
    M = result["M"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curve = result["curve"]
    ax.plot([c["rate"] for c in curve], [c["ens"] for c in curve], "-", color="C0",
            label=f"fitted forms: predicted E_ens({M}; r)")
    obs = result["observations"]
    ax.plot([o["rate"] for o in obs], [o["predicted_ens"] for o in obs], "o", color="C0", mfc="none",
            label="dual-learner prediction (fit input)")
    for key, marker, color, name in (("true_ens", "s", "C3", "validation"),
                                     ("test_true_ens", "^", "C2", "test")):
        checks = sorted(result.get("checks", []), key=lambda c: c["rate"])
        if checks:
            ax.plot([c["rate"] for c in checks], [c[key] for c in checks], marker + "--", color=color,
                    label=f"true {M}-ensemble ({name})")
    ax.axvline(result["r_star"], color="k", ls=":", label=f"r* = {result['r_star']:.3f}")
    ax.set_xlabel("feature-bagging rate r (fraction of fields per learner)")
    ax.set_ylabel("Brier error (2-class)")
    ax.set_title(f"Strategy 1: closed-form bagging rate (M = {M})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_differentiable(result: dict, path: Path) -> Path:
    """Per step: surrogate E_ens(π), the constraint g(π) (feasible ≤ 0), λ and mean π."""
    plt = _plt()
    steps = result["steps"]
    t = [s["step"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].plot(t, [s["constraint"] for s in steps], color="C3")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].axvline(result["final_step"], color="k", ls=":", label="returned π")
    axes[0].set_title("constraint g(π) = E_ens(π) − E_ens(π_old)")
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [s["ens"] for s in steps], label="surrogate E_ens(π)")
    axes[1].plot(t, [s["objective"] for s in steps], label=f"J = E_ens + {result['kappa']}·mean π")
    axes[1].set_title(f"objective (M = {result['M']})")
    axes[1].legend(fontsize=8)
    axes[2].plot(t, [s["mean_pi"] for s in steps], label="mean π")
    axes[2].plot(t, [s["multiplier"] for s in steps], label="λ")
    axes[2].set_title("mean inclusion, multiplier")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle("Strategy 2: constrained differentiable search over per-field inclusion π")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(strategy: str, result: dict, report_dir: Path) -> list[Path]:
    """The plots of one run, written under ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    if strategy == "closed-form":
        return [plot_closed_form(result, report_dir / "closed_form_curve.png")]
    return [plot_differentiable(result, report_dir / "constraint_path.png")]
