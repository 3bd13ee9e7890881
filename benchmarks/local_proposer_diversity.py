"""How many new architectures does the offline local model propose, per sampling temperature?

For each seed and temperature: ``--calls`` proposal calls of k = ``--k`` specs (each with the
proposer's repair turn, as in a run) against the NB201 reference cell as the baseline on
MNIST-1D, the run's seen set growing as in a run. Counted: valid specs returned, and *new*
architectures (canonical hashes neither the baseline nor an earlier spec of this sequence had:
cells that differ only in dead edges are one architecture). Needs the ``[local]`` extra.

    python benchmarks/local_proposer_diversity.py --temperatures 1.0 1.5 2.0 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from cli_types import at_least, finite_at_least  # this folder

from agent.proposers.base import HistoryItem, ProposalContext
from agent.proposers.local import make_local_proposer
from spaces import TaskInfo, get_space

#: E, σ², ρ and predicted E_ens(50) the prompt shows for the baseline (a low-fidelity learner's)
BASELINE_STATS = (0.3, 0.1, 0.5, 0.25)


def one_sequence(proposer, calls: int, k: int) -> tuple[int, int, float]:
    """(new architectures, valid specs, wall seconds) over ``calls`` calls of ``k``."""
    space = get_space("nb201")
    base = space.reference()
    seen = {space.canonical_hash(base)}
    new = valid = 0
    start = time.perf_counter()
    for it in range(1, calls + 1):
        context = ProposalContext(
            space=space, task=TaskInfo((1, 40), 10), task_name="mnist1d", iteration=it,
            ensemble_size=50, rule="exact",
            baseline=HistoryItem("baseline", base.model_dump(), *BASELINE_STATS, True, "baseline"),
            best_accepted=[], last_rejected=[], budget_left={"iterations": calls - it + 1},
            seen_hashes=frozenset(seen))
        hashes = [p.spec_hash for p in proposer.propose(context, k) if p.spec is not None]
        valid += len(hashes)
        new += len({h for h in hashes if h not in seen})
        seen |= set(hashes)
    return new, valid, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--temperatures", type=finite_at_least(0), nargs="+", default=[1.0, 1.5, 2.0])
    p.add_argument("--seeds", type=at_least(0, 2**31 - 1), nargs="+", default=[0, 1, 2])
    p.add_argument("--calls", type=at_least(1, 100), default=4, help="proposal calls per sequence")
    p.add_argument("--k", type=at_least(1, 32), default=4, help="specs asked for per call")
    args = p.parse_args(argv)
    rows: dict[float, list[tuple[int, int, float]]] = {t: [] for t in args.temperatures}
    for seed in args.seeds:
        proposer = make_local_proposer(api_base=None, prompt=None, seed=seed)
        try:
            for t in args.temperatures:
                proposer.temperature = t
                rows[t].append(one_sequence(proposer, args.calls, args.k))
                new, valid, wall = rows[t][-1]
                print(f"seed {seed} T={t}: {new} new architectures, {valid} valid specs, "
                      f"{wall:.0f} s", flush=True)
        finally:
            proposer.close()
    print(f"\n{args.calls} calls × k = {args.k} per sequence; mean over seeds {args.seeds}")
    for t, r in rows.items():
        print(f"T={t}: new architectures {statistics.mean(x[0] for x in r):.1f} "
              f"(each: {', '.join(str(x[0]) for x in r)}), valid specs "
              f"{statistics.mean(x[1] for x in r):.1f}, {statistics.mean(x[2] for x in r):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
