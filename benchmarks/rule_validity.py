"""How often does the two-learner rule agree with the true M-ensemble? (MNIST-1D, CPU)

For each architecture, M learners are trained (seeds 0..M−1); learners 0 and 1 are the dual
pair the search would see. For a pair (π, π_old) the rule decides from the dual statistics
(exact and paper forms, paired-bootstrap SE for near-tie flags); the truth compares the real
M-ensembles (averaged probabilities) by Brier error and by 0-1 error, on the test split.
Architectures: a spread of NB201 cells, and a near-tie family (one cell, different widths, or
one op changed) where diversity rather than accuracy decides.

    python benchmarks/rule_validity.py --pairs 12 --ensemble-size 8 [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
from rich.console import Console
from rich.progress import track

from agent.rule import Stats, decide
from evaluators.data import load_task
from evaluators.dual import train_spec
from evaluators.fidelity import get_fidelity
from evaluators.stats import ensemble_brier, error01, paired_gain_se, residual_stats
from spaces import get_space
from spaces.nb201 import NB201Space

SPREAD = [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|",
]
FAMILY = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def architectures():
    spread = [NB201Space.from_arch_string(a, channels=16, cells_per_stage=1) for a in SPREAD]
    base = NB201Space.from_arch_string(FAMILY, channels=16, cells_per_stage=1)
    family = [base, base.model_copy(update={"channels": 32}), base.model_copy(update={"channels": 8}),
              base.model_copy(update={"edge_2_0": "nor_conv_1x1"}),
              base.model_copy(update={"edge_3_1": "avg_pool_3x3"})]
    return spread, family


def choose_pairs(n_spread, n_family, n_pairs):
    """Unordered pairs, alternating near-tie family pairs and spread pairs."""
    fam = [("family", i, j) for i, j in itertools.combinations(range(n_family), 2)]
    spr = [("spread", i, j) for i, j in itertools.combinations(range(n_spread), 2)]
    out = []
    for a, b in itertools.zip_longest(fam, spr):
        out += [p for p in (a, b) if p is not None]
    return out[:n_pairs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=12, help="unordered architecture pairs")
    p.add_argument("--ensemble-size", type=int, default=8, help="M learners per architecture")
    p.add_argument("--fidelity", default="low")
    p.add_argument("--n-samples", type=int, default=4000)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    err = Console(stderr=True)
    M, space = args.ensemble_size, get_space("nb201")
    task, fidelity = load_task("mnist1d", n_samples=args.n_samples), get_fidelity(args.fidelity)
    spread, family = architectures()
    pairs = choose_pairs(len(spread), len(family), args.pairs)
    needed = sorted({(kind, i) for kind, a, b in pairs for i in (a, b)})
    runs = {}
    for kind, i in track(needed, description=f"training {M} learners per architecture",
                         console=err):
        spec = (spread if kind == "spread" else family)[i]
        learners = train_spec(spec, space, task, fidelity, list(range(M)))
        runs[(kind, i)] = (np.stack([r.val_probs for r in learners]),
                           np.stack([r.test_probs for r in learners]))
    y_val, y_test = task.y_val.numpy(), task.y_test.numpy()
    rows = []
    for kind, a, b in pairs:
        for new, old in (((kind, a), (kind, b)), ((kind, b), (kind, a))):
            (vn, tn), (vo, to) = runs[new], runs[old]
            sn, so = (Stats(**residual_stats(v[:2], y_val)) for v in (vn, vo))
            _, se = paired_gain_se(vn[:2], vo[:2], y_val, M)
            exact, paper = decide(sn, so, M, "exact", gain_se=se), decide(sn, so, M, "paper")
            true_gap = ensemble_brier(to, y_test) - ensemble_brier(tn, y_test)  # > 0: new better
            gap01 = error01(to.mean(0), y_test) - error01(tn.mean(0), y_test)
            rows.append({"kind": kind, "new": new[1], "old": old[1], "exact": exact.accepted,
                         "paper": paper.accepted, "near_tie_flag": exact.near_tie,
                         "true_brier_better": true_gap > 0, "true_gap": true_gap,
                         "true01_better": gap01 > 0, "gap01": gap01,
                         "near_tie_true": abs(true_gap) < 0.01})

    def rate(subset, form, truth):
        return float(np.mean([r[form] == r[truth] for r in subset])) if subset else float("nan")

    summary = []
    for name, subset in (("all", rows), ("near_ties", [r for r in rows if r["near_tie_true"]]),
                         ("clear", [r for r in rows if not r["near_tie_true"]]),
                         ("family", [r for r in rows if r["kind"] == "family"]),
                         ("spread", [r for r in rows if r["kind"] == "spread"])):
        summary.append({"subset": name, "ordered_pairs": len(subset), "M": M,
                        "exact_vs_brier": rate(subset, "exact", "true_brier_better"),
                        "paper_vs_brier": rate(subset, "paper", "true_brier_better"),
                        "exact_vs_01": rate(subset, "exact", "true01_better"),
                        "paper_vs_01": rate(subset, "paper", "true01_better"),
                        "flagged_near_tie": int(sum(r["near_tie_flag"] for r in subset))})
    if args.json:
        for s in summary:
            print(json.dumps(s))
        return 0
    print(f"rule vs true {M}-ensemble on MNIST-1D test split ({args.fidelity} fidelity)")
    print(f"{'subset':10} {'pairs':>6} {'exact/Brier':>12} {'paper/Brier':>12} "
          f"{'exact/0-1':>10} {'paper/0-1':>10} {'flagged':>8}")
    for s in summary:
        print(f"{s['subset']:10} {s['ordered_pairs']:>6} {s['exact_vs_brier']:>12.2f} "
              f"{s['paper_vs_brier']:>12.2f} {s['exact_vs_01']:>10.2f} {s['paper_vs_01']:>10.2f} "
              f"{s['flagged_near_tie']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
