"""Predictors that rank proposals before any training, and the filters the loop uses."""

from __future__ import annotations

from evaluators.predictor.base import CandidateFilter, FilterScore, PassThroughFilter

__all__ = ["list_predictors", "make_filter", "CandidateFilter", "FilterScore", "PassThroughFilter"]


def list_predictors() -> list[str]:
    return ["gnn-ensemble", "none"]


def make_filter(name: str, space, task_info, *, refit_every: int = 20, min_labels: int = 8,
                seed: int = 0, total_iterations: int = 10) -> CandidateFilter:
    if name == "none":
        return PassThroughFilter()
    if name == "gnn-ensemble":
        from evaluators.predictor.filter import UCBFilter

        return UCBFilter(space, task_info, refit_every=refit_every, min_labels=min_labels,
                         seed=seed, total_iterations=total_iterations)
    raise ValueError(f"unknown predictor {name!r}; choose one of: {', '.join(list_predictors())}")
