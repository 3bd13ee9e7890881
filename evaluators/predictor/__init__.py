"""Predictors that rank proposals before any training, and the filters the loop uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evaluators.predictor.base import CandidateFilter, FilterScore, PassThroughFilter

if TYPE_CHECKING:
    from spaces.base import SearchSpace, TaskInfo

#: ``--zero-cost`` names (kept here so the CLI can list them without importing torch)
PROXIES = ("synflow", "none")
#: ``--predictor-weights`` names: how the ensemble combines its members (``EnsemblePredictor``)
WEIGHTINGS = ("equal", "cv")

__all__ = ["PREDICTORS", "PROXIES", "WEIGHTINGS", "list_predictors", "make_filter", "CandidateFilter",
           "FilterScore", "PassThroughFilter"]

#: ``--predictor`` name -> the ensemble's GIN (``EnsemblePredictor(gnn=...)``); ``none`` filters nothing
PREDICTORS: dict[str, str | None] = {
    "gnn-ensemble": "scratch",   # forest + boosted trees + a GIN trained from random weights
    "dcl-ensemble": "pretrained",  # the GIN starts from the stage-1 contrastive encoder (DCL-ENAS)
    "none": None,
}


def list_predictors() -> list[str]:
    return list(PREDICTORS)


def make_filter(name: str, space: SearchSpace, task_info: TaskInfo | None, *, refit_every: int = 20,
                min_labels: int = 8, seed: int = 0, total_iterations: int = 10, zero_cost: str = "none",
                weighting: str = "equal") -> CandidateFilter:
    """The filter ``--predictor name`` selects (UCB over the ensemble's mean and std);
    ``zero_cost`` = ``synflow`` adds that proxy to the predictor's features; ``weighting``
    (``equal`` or ``cv``) is how the ensemble combines its members."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; choose one of: {', '.join(list_predictors())}")
    if zero_cost not in PROXIES:
        raise ValueError(f"unknown zero-cost proxy {zero_cost!r}; choose one of: {', '.join(PROXIES)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")
    if PREDICTORS[name] is None:
        return PassThroughFilter()
    from evaluators.predictor.filter import UCBFilter
    from evaluators.predictor.zero_cost import ZeroCostProxy

    proxy = ZeroCostProxy(space, task_info) if zero_cost == "synflow" and task_info is not None else None
    return UCBFilter(space, task_info, refit_every=refit_every, min_labels=min_labels, seed=seed,
                     total_iterations=total_iterations, gnn=PREDICTORS[name], zero_cost=proxy,
                     weighting=weighting)
