"""Progressive fidelity on NB201 tables (issue 11): a cheap low rung, a costly top rung.

Two rungs read from the same :class:`~evaluators.tabular.TabularBenchmark`: the **low rung** is
its ``low_fidelity`` column (for the README's figures the 12-epoch CIFAR-10 *validation*
accuracy, cost 12/200 of a query) and the **top rung** its target column (the 200-epoch test
accuracy, cost 1). Costs are counted exactly (as fractions) in top-rung query-equivalents.

* Candidates come from :class:`agent.tabular_search.TableChooser` (builtin proposer + the
  predictor's UCB filter) and are asked at the low rung. ``steer`` says what the chooser learns:
  ``top`` (default) only the top-rung loss of promoted candidates (the others are marked seen,
  never re-asked), so it climbs the top rung's landscape — the ranking the issue asks
  promotions to serve — and the low rung only screens; ``low`` every low-rung loss, so the
  search climbs the low rung's landscape (τ 0.58 with the 200-epoch test accuracy on NB201);
  ``mf`` learns as ``top`` does, and the filter's GIN also learns to rank every low-rung answer
  before each fit (low-fidelity pretraining, ``EnsemblePredictor(low_fidelity_pretrain=True)``).
  Measured over 50 seeds at 25 / 50 / 100 equivalents: ``top`` 94.13 / 94.34 / 94.36, ``low``
  93.96 / 94.22 / 94.29 (README).
* Asynchronous successive halving (:func:`evaluators.promotion.successive_halving`): before each
  new low-rung query, a candidate in the top ⌊n/η⌋ of the n low-rung answers so far that has
  not gone up yet is asked at the top rung. Candidates are ranked on their low-rung loss (in a
  table the low rung's value is all there is to read; no curves).
* Opportunistic (:func:`evaluators.promotion.opportunistic`): a new low-rung answer below
  μ − 2σ of the others' goes up at once.
* Conservative: under ``conservative_share`` (20 %) of the budget left, no new low-rung query
  is made; the best waiting candidates go up while a top-rung query is affordable.

The result is the best top-rung value among the candidates asked there. With the README's
columns that is the **test** accuracy: the oracle protocol of the NB201 benchmarks (the search
steers and reports on the same column; no separate validation at the top rung).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from agent.tabular_search import TableChooser
from evaluators.promotion import CONSERVATIVE_SHARE, halving_quota, opportunistic, successive_halving
from evaluators.tabular import TableError, TabularBenchmark
from spaces.nb201 import NB201Space

__all__ = ["RungQuery", "ProgressiveResult", "progressive_tabular_search", "LOW_COST_12EP", "STEERS"]

#: cost of a 12-epoch answer in 200-epoch query-equivalents
LOW_COST_12EP = Fraction(12, 200)
#: the filter's β(t) decays over this many steps, stepped by the share of the budget spent
_BETA_STEPS = 1000
#: what the chooser learns from (module docstring)
STEERS = ("top", "low", "mf")


@dataclass(frozen=True)
class RungQuery:
    """One table lookup: ``rung`` is ``low`` or ``top``; ``spent`` is the budget used after it;
    ``n_low`` the low-rung answers when it was made and ``rank`` (1 = best) the candidate's place
    among them by low-rung loss (for a promotion); ``reason`` why it was made."""

    arch: str
    rung: str
    cost: Fraction
    spent: Fraction
    value: float
    best: float
    reason: str
    n_low: int
    rank: int | None = None


@dataclass
class ProgressiveResult:
    budget: Fraction
    eta: int
    queries: list[RungQuery] = field(default_factory=list)

    @property
    def spent(self) -> Fraction:
        return self.queries[-1].spent if self.queries else Fraction(0)

    @property
    def best(self) -> float:
        """Best top-rung value (NaN when nothing reached the top rung)."""
        return self.queries[-1].best if self.queries else math.nan

    def best_at(self, equivalents: float) -> float:
        """Best top-rung value once no more than ``equivalents`` were spent."""
        done = [q for q in self.queries if q.spent <= Fraction(equivalents)]
        return done[-1].best if done else math.nan

    def count(self, rung: str) -> int:
        return sum(1 for q in self.queries if q.rung == rung)


def progressive_tabular_search(table: TabularBenchmark, budget: float, seed: int, *,
                               low_cost: float | Fraction = LOW_COST_12EP, eta: int = 3,
                               conservative_share: float = CONSERVATIVE_SHARE, n_init: int = 10,
                               proposals: int = 64, refit_every: int = 10, gnn_epochs: int = 80,
                               use_predictor: bool = True, steer: str = "top",
                               halving: str = "asynchronous") -> ProgressiveResult:
    """Search ``table`` with two rungs within ``budget`` top-rung query-equivalents.

    ``low_cost``: a low-rung answer's cost in top-rung queries (0 < cost < 1); ``eta``: η, the
    successive-halving ratio; ``conservative_share``: share of the budget under which no new
    low-rung work starts. The chooser's settings (``n_init``, ``proposals``, ``refit_every``,
    ``gnn_epochs``, ``use_predictor``) are those of :func:`agent.tabular_search.tabular_search`;
    ``steer`` (``low`` | ``top`` | ``mf``) is what the chooser learns from (module docstring);
    ``halving`` as in :func:`agent.rungs.plan_promotions` (``capped``: successive halving
    promotes only while fewer than ⌊n/η⌋ of the n low-rung cells have gone up).
    Values are accuracies (higher is better); the filter and the promotions read 100 − value.
    """
    if table.low_fidelity is None:
        raise TableError("the progressive search needs a low-fidelity column for its low rung")
    budget_q, cost = Fraction(budget).limit_denominator(10**6), Fraction(low_cost).limit_denominator(10**6)
    if budget_q <= 0:
        raise ValueError(f"budget must be positive, got {budget!r}")
    if not 0 < cost < 1:
        raise ValueError(f"low_cost must lie strictly between 0 and 1, got {low_cost!r}")
    if eta < 2:
        raise ValueError(f"eta must be at least 2, got {eta!r}")
    if steer not in STEERS:
        raise ValueError(f"steer must be one of {', '.join(STEERS)}, got {steer!r}")
    halving_quota(0, eta, 0, halving)  # an unknown variant is refused before any query
    chooser = TableChooser(table, seed, n_init=n_init, proposals=proposals, refit_every=refit_every,
                           gnn_epochs=gnn_epochs, use_predictor=use_predictor,
                           total_iterations=_BETA_STEPS, low_fidelity_pretrain=steer == "mf")
    out = ProgressiveResult(budget_q, eta)
    low: dict[str, float] = {}  # arch -> low-rung loss, in the order asked
    specs: dict[str, object] = {}
    promoted: set[str] = set()
    floor = Fraction(conservative_share).limit_denominator(10**6) * budget_q
    exhausted = False

    best = -math.inf

    def record(arch: str, rung: str, price: Fraction, value: float, reason: str,
               rank: int | None = None) -> None:
        nonlocal best
        if rung == "top":
            best = max(best, value)
        out.queries.append(RungQuery(arch, rung, price, out.spent + price, value,
                                     best if best > -math.inf else math.nan, reason, len(low),
                                     rank))

    def promote(arch: str, reason: str) -> None:
        rank = 1 + sorted(low, key=low.__getitem__).index(arch)
        promoted.add(arch)
        record(arch, "top", Fraction(1), table.query(arch), reason, rank)
        if steer != "low":
            chooser.observe(specs[arch], 100.0 - out.queries[-1].value)

    while True:
        left = budget_q - out.spent
        if left < floor or exhausted:  # conservative: the best waiting candidates go up
            waiting = [a for a in sorted(low, key=low.__getitem__) if a not in promoted]
            if not waiting or left < 1:
                break
            promote(waiting[0], "exhausted: every table row is asked" if exhausted and left >= floor
                    else f"conservative: under {conservative_share:.0%} of the budget left")
            continue
        top = successive_halving(low, eta)
        quota, capped = halving_quota(len(low), eta, len(promoted), halving)
        due = [a for a in top if a not in promoted][:max(0, quota)]
        if due and left >= 1:
            promote(due[0], f"successive halving: in the top {len(top)} of {len(low)} at η={eta}{capped}")
            continue
        if left < cost:
            break
        try:
            spec = chooser.next(int(_BETA_STEPS * out.spent / budget_q), float(left))
        except TableError:  # a partial table with every row asked
            exhausted = True
            continue
        arch = NB201Space.to_arch_string(spec)
        why = ("random start" if len(chooser.history) < n_init else
               "chosen by the filter" if use_predictor else "proposed by the builtin proposer")
        value = table.low(arch)
        if steer == "low":
            chooser.observe(spec, 100.0 - value)
        else:  # a target only if promoted (never asked again); mf pretrains on it meanwhile
            chooser.observe_screened(spec, 100.0 - value)
        low[arch], specs[arch] = 100.0 - value, spec
        record(arch, "low", cost, value, why)
        if (arch not in successive_halving(low, eta) and budget_q - out.spent >= 1
                and budget_q - out.spent >= floor and opportunistic(low, arch)):
            promote(arch, "opportunistic: low-rung loss below μ − 2σ of the others'")
    return out
