"""The online UCB filter: decides which proposals are worth training, before any training.

Score for a quantity to minimise: ``score = −μ + β(t)·σ`` (higher is better), with
β(t) = β₀·(1 − t/T) decaying over the run (explore early, exploit late). Below ``min_labels``
labelled records it passes proposals through (first k) and says so; it refits after every
``refit_every`` new records, and when ``min_labels`` is first reached. ``gnn`` picks the
ensemble's GIN (see :class:`~evaluators.predictor.ensemble.EnsemblePredictor`): ``pretrained``
loads (or, the first time for a space, trains and caches) the stage-1 contrastive encoder.
``low_fidelity_pretrain``: cheap scores given to :meth:`UCBFilter.observe_screened` (candidates
asked only at a cheap rung) pretrain the GIN before each fit, from four such scores on
(:class:`~evaluators.predictor.ensemble.EnsemblePredictor`, ``low_fidelity_pretrain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from evaluators.predictor.base import FilterScore
from evaluators.predictor.ensemble import EnsemblePredictor, Record
from evaluators.predictor.zero_cost import ZeroCostProxy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from spaces.base import SearchSpace, TaskInfo

__all__ = ["UCBFilter", "ucb_scores"]


def ucb_scores(mean: np.ndarray, std: np.ndarray, beta: float) -> np.ndarray:
    """−μ + β·σ for a target to minimise."""
    return -np.asarray(mean) + beta * np.asarray(std)


class UCBFilter:
    def __init__(self, space: SearchSpace, task_info: TaskInfo | None = None, *, refit_every: int = 20,
                 min_labels: int = 8, seed: int = 0, total_iterations: int = 10, beta0: float = 1.0,
                 gnn_epochs: int = 150, gnn: str = "scratch", zero_cost: ZeroCostProxy | None = None,
                 weighting: str = "equal", low_fidelity_pretrain: bool = False) -> None:
        self.space, self.task_info, self.gnn, self.zero_cost = space, task_info, gnn, zero_cost
        self.weighting = weighting
        self.refit_every, self.min_labels = refit_every, min_labels
        self.total_iterations, self.beta0, self.seed = max(1, total_iterations), beta0, seed
        self.gnn_epochs = gnn_epochs
        self.records: list[Record] = []
        self.low_fidelity_pretrain = low_fidelity_pretrain
        self.screened: list[tuple[object, float]] = []  # (spec, cheap score): no target
        self.predictor: EnsemblePredictor | None = None
        self._since_fit = 0

    def beta(self, iteration: int) -> float:
        return self.beta0 * max(0.0, 1.0 - iteration / self.total_iterations)

    def observe(self, spec: BaseModel, target: float) -> None:
        self.records.append(Record(spec, float(target)))
        self._since_fit += 1
        first = self.predictor is None and len(self.records) >= self.min_labels
        if first or (self.predictor is not None and self._since_fit >= self.refit_every):
            self.predictor = EnsemblePredictor(self.space, self.task_info, seed=self.seed,
                                               gnn_epochs=self.gnn_epochs, gnn=self.gnn,
                                               zero_cost=self.zero_cost,
                                               weighting=self.weighting,
                                               low_fidelity_pretrain=self.pretrains()
                                               ).fit(self.records, self.screened)
            self._since_fit = 0

    def observe_screened(self, spec: BaseModel, low_fidelity: float) -> None:
        """A cheap score (lower is better, like the target) of a candidate with no target yet;
        read only by low-fidelity pretraining, at the next fit."""
        self.screened.append((spec, float(low_fidelity)))

    def pretrains(self) -> bool:
        """Whether the next fit pretrains on the cheap scores (on, and at least four of them)."""
        return self.low_fidelity_pretrain and len(self.screened) >= 4

    def keep(self, specs: Sequence[BaseModel], k: int, iteration: int) -> list[FilterScore]:
        if self.predictor is None:
            note = (f"predictor warming up ({len(self.records)}/{self.min_labels} labels): "
                    "kept the first k proposals")
            return [FilterScore(None, None, None, i < k, note) for i in range(len(specs))]
        mean, std = self.predictor.predict(list(specs))
        beta = self.beta(iteration)
        scores = ucb_scores(mean, std, beta)
        kept = set(np.argsort(-scores, kind="stable")[:k].tolist())
        note = (f"UCB −μ+β·σ with β={beta:.3f}, fit on {len(self.predictor_records())} labels"
                + (" with the SynFlow proxy" if self.zero_cost is not None else ""))
        return [FilterScore(float(m), float(s), float(sc), i in kept, note)
                for i, (m, s, sc) in enumerate(zip(mean, std, scores, strict=True))]

    def predictor_records(self) -> list[Record]:
        return self.records[: len(self.records) - self._since_fit]
