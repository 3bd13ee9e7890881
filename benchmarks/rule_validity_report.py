"""The rule-validity benchmark's output: the Markdown tables, the target lines and the PNG curve
of clear-pair agreement against MAX (``benchmarks/rule_validity.py`` computes what they show)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fmt(v: tuple[float, float], pct: bool = True) -> str:
    return f"{100 * v[0]:.1f} ± {100 * v[1]:.1f} %" if pct else f"{v[0]:.2f} ± {v[1]:.2f}"


ROWS = (("agreement, all pairs (undecided = baseline stays)", "agree_all", True),
        ("agreement, clear pairs (undecided = miss)", "agree_clear", True),
        ("agreement, pairs clear with the truth's seed SE (undecided = miss)", "agree_clear_seed",
         True),
        ("false accepts (share of all pairs)", "false_accepts", True),
        ("called confident (share of all pairs)", "confident", True),
        ("confident decisions right", "confident_right", True),
        ("undecided (share of all pairs)", "undecided", True),
        ("learners per candidate", "learners_cand", False),
        ("learners per pair (candidate + baseline added)", "learners_pair", False))


def score(rows: list[dict], gap: np.ndarray, clear: np.ndarray, clear_seed: np.ndarray
          ) -> dict[str, float]:
    """Agreement and errors of one rule's decisions against the true gaps (> 0: new better)."""
    verdict = np.array([r["verdict"] for r in rows])
    acc, rej = verdict == "accepted", verdict == "rejected"
    right = (acc & (gap > 0)) | (rej & (gap < 0))  # undecided is never right
    conf = np.array([r["confident"] for r in rows])
    return {"agree_all": float(np.mean(acc == (gap > 0))),  # undecided: baseline stays
            "agree_clear": float(np.mean(right[clear])) if clear.any() else float("nan"),
            "agree_clear_seed": (float(np.mean(right[clear_seed])) if clear_seed.any()
                                 else float("nan")),
            "false_accepts": float(np.mean(acc & (gap < 0))),
            "confident": float(np.mean(conf)),
            "confident_right": float(np.mean(right[conf])) if conf.any() else float("nan"),
            "undecided": float(np.mean(verdict == "undecided")),
            "learners_cand": float(np.mean([r["L_new"] for r in rows])),
            "learners_pair": float(np.mean([r["L_new"] + r["L_old_extra"] for r in rows]))}


def spread(runs: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and SD (ddof 1) of every figure over the seed orderings."""
    return {k: (float(np.mean([s[k] for s in runs])),
                float(np.std([s[k] for s in runs], ddof=1)) if len(runs) > 1 else 0.0)
            for k in runs[0]}


def plot(path: Path, curve: dict[int, dict], fixed: dict, oracle: dict[int, float],
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted(curve)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.errorbar(xs, [100 * curve[x]["agree_clear"][0] for x in xs],
                  yerr=[100 * curve[x]["agree_clear"][1] for x in xs], marker="o", capsize=3,
                  label="sequential, clear on test samples")
    left.errorbar(xs, [100 * curve[x]["agree_clear_seed"][0] for x in xs],
                  yerr=[100 * curve[x]["agree_clear_seed"][1] for x in xs], marker="s", capsize=3,
                  label="sequential, clear with the truth's seeds")
    left.plot(xs, [100 * oracle[x] for x in xs], "k:", marker="^",
              label="an oracle at the stated SE (clear with seeds)")
    left.axhline(100 * fixed["agree_clear"][0], color="grey", ls="--",
                 label="fixed two-learner (clear on samples)")
    left.axhline(90, color="red", lw=0.8, ls=":", label="target 90 %")
    left.set(xscale="log", xlabel="MAX learners", ylim=(0, 101),
             ylabel="agreement on clear pairs, undecided = miss (%)", title=title)
    left.legend(fontsize=8)
    right.errorbar(xs, [curve[x]["learners_pair"][0] for x in xs],
                   yerr=[curve[x]["learners_pair"][1] for x in xs], marker="o", capsize=3,
                   label="learners per pair")
    right.errorbar(xs, [curve[x]["learners_cand"][0] for x in xs],
                   yerr=[curve[x]["learners_cand"][1] for x in xs], marker="s", capsize=3,
                   label="learners per candidate")
    right.set(xscale="log", xlabel="MAX learners", ylim=(0, None), ylabel="learners",
              title="learners spent")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(s: dict, png: Path) -> None:
    """The side-by-side table, the curve table and the checks, as Markdown."""
    lo, hi = s["learners"]
    T, fixed, seq = s["truth_learners"], s["fixed"], s["sequential"]
    print(f"rule vs the real {T}-ensemble on the {s['dataset']} test split: {s['cells']} cells, "
          f"{s['ordered_pairs']} ordered pairs ({s['clear_pairs']} clear, "
          f"{s.get('clear_pairs_seed', '?')} clear with seeds, {s['one_edge_pairs']} "
          f"one-edge); fidelity {s['fidelity']}, n_samples {s['n_samples']}; both rules decide "
          f"at M = {T}; mean ± SD over {s['fixed_pairs']} learner pairs (fixed) and "
          f"{s['orderings']} learner orders (sequential)\n")
    rc = s.get("reject_confidence")
    level = (f"confidence {s['confidence']}" + ("" if rc is None else f", rejections {rc}")
             + (f", futility {s['futility']}" if s.get("futility") else "")
             + (", pool: the baseline's own learners" if s.get("pool") == "baseline" else ""))
    print(f"| figure | fixed two-learner | sequential {lo}:{hi}, {level} |")
    print("|---|---|---|")
    for label, key, pct in ROWS:
        print(f"| {label} | {fmt(fixed[key], pct)} | {fmt(seq[key], pct)} |")
    print(f"| one-edge pairs: agreement on the clear ones (n = {s['one_edge_clear']}) | "
          f"{fmt(s['one_edge_fixed']['agree_clear'])} | "
          f"{fmt(s['one_edge_sequential']['agree_clear'])} |")
    print(f"\nsequential rule against MAX ({lo}:MAX, {level}, M = {T}):\n")
    print("| MAX | agreement, clear pairs (undecided = miss) | clear with seeds | oracle at the stated SE "
          "| confident right | false accepts | undecided | learners per candidate | learners "
          "per pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, c in s["curve"].items():
        print(f"| {m} | {fmt(c['agree_clear'])} | {fmt(c['agree_clear_seed'])} | "
              f"{100 * s['oracle_clear_seed'][m]:.1f} % | "
              f"{fmt(c['confident_right'])} | "
              f"{fmt(c['false_accepts'])} | {fmt(c['undecided'])} | "
              f"{fmt(c['learners_cand'], False)} | {fmt(c['learners_pair'], False)} |")
    p = s["at_product_M"]
    print(f"\ndeciding at the product's M = {s['product_M']} instead (first order, same "
          f"{T}-ensemble truth): agreement on clear pairs {100 * p['agree_clear'][0]:.1f} %, "
          f"false accepts {100 * p['false_accepts'][0]:.1f} %, confident "
          f"{100 * p['confident'][0]:.1f} %, confident right {100 * p['confident_right'][0]:.1f} %")
    for name, part in (("first", s["se_first_look"]), ("last", s["se_last_look"])):
        if part:
            print(f"gain SE at the {name} look ({part['looks']} pairs reached it, first order): "
                  f"median sample part {part['se_sample']:.4f}, seed part {part['se_seed']:.4f}")
    print(f"one learner's validation Brier error varies {100 * s['single_brier_rel_sd']:.0f} % "
          f"(SD/mean over seeds, median cell); predicted E_ens({T}) from "
          f"{s['decision_learners']} learners (validation) − real {T}-ensemble Brier (test): "
          f"{s['pred_minus_true_ens_mean']:+.4f} ± {s['pred_minus_true_ens_sd']:.4f} over cells; "
          f"correlation of predicted and true gaps {s['gap_correlation']:.2f}; median SE of a "
          f"true gap: test samples {s['truth_gap_se_median']:.4f}, the truth's seeds "
          f"{s.get('truth_gap_seed_se_median', float('nan')):.4f}")
    targets = ((seq["confident_right"][0] >= 0.95, "confident decisions right ≥ 95 %"),
               (seq["false_accepts"][0] <= 0.01, "false accepts ≤ 1 %"),
               (seq["agree_clear"][0] >= 0.90, "clear-pair agreement ≥ 90 % (undecided = miss)"),
               (seq["agree_clear_seed"][0] >= 0.90, "the same on pairs clear with seeds"))
    print(f"targets at {lo}:{hi}: " + "; ".join(f"{t}: {'met' if ok else 'MISSED'}"
                                              for ok, t in targets))
    print(f"oracle (clear with seeds): one that knows each true gap, deciding once at z = 1.96 "
          f"on the stated SE at MAX learners, expects {100 * s['oracle_clear_seed'][hi]:.1f} "
          f"% at {lo}:{hi} if that SE is exact; the sequential rule reaches "
          f"{100 * seq['agree_clear_seed'][0]:.1f} %"
          + (" (above it: the SE is conservative here)"
             if seq["agree_clear_seed"][0] > s["oracle_clear_seed"][hi] else ""))
    print(f"curve: {png}; figures: {png.with_suffix('.json')}")
