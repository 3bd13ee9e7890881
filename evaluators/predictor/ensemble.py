"""The multi-fidelity ensemble predictor (PMF-NAS style) with an Archai-like interface.

``fit(records)`` / ``predict(specs, ...) -> (mean, std)`` / ``rank(specs, ...)``. A record is a
spec with its target (the quantity the search minimises) and optionally a low-fidelity score
and an early learning curve. Base predictors: a GIN ranker over the spec graph (pairwise
ranking loss, MC-dropout), a random forest and gradient-boosted trees on static features
(one-hot choices, op counts, graph statistics, params/FLOPs when a task is given) plus the
dynamic features when present; with a low-fidelity score, also the **low-fidelity line**: the
score itself on the target's scale (least squares on the training records). Each base
prediction is put on the target's scale (the GIN's score through a linear fit on the training
records) and averaged; ``std`` combines the spread between base predictors, the forest's tree
spread and the GIN's MC-dropout spread.

Why the line: the structural models see the low-fidelity score as one feature among many and
order the architectures a search decides between (the top 10 %) worse than the score alone
does. On NAS-Bench-201 with 100 labels (3 seeds) adding the line raised τ within the true top
10 % from 0.28 to about 0.45 and strict top-10 % recall by 0.02–0.04, at an overall τ within
0.01 (``benchmarks/predictor_nb201.py``; the README has the 5-seed figures).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import kendalltau
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.model_selection import KFold

from evaluators.predictor import WEIGHTINGS
from evaluators.predictor.contrastive import PretrainConfig, load_or_pretrain
from evaluators.predictor.features import curve_features, static_features
from evaluators.predictor.gnn import GINRanker
from evaluators.predictor.zero_cost import ZeroCostProxy

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from pydantic import BaseModel
    from torch_geometric.data import Data

    from spaces.base import SearchSpace, TaskInfo

__all__ = ["Record", "EnsemblePredictor", "rank_weights"]

#: ``cv`` weighting: folds, and the fewest records it needs (fewer: equal weights)
CV_FOLDS, CV_MIN_RECORDS = 5, 20


def _simplex(k: int, steps: int):
    """Every k-vector of non-negative multiples of 1/steps that sums to 1."""
    if k == 1:
        yield (steps,)
        return
    for first in range(steps + 1):
        for rest in _simplex(k - 1, steps - first):
            yield (first, *rest)


def rank_weights(oof: np.ndarray, y: np.ndarray, steps: int = 10) -> np.ndarray:
    """Weights of the base predictors that rank the records best when combined: the point of
    the simplex grid (multiples of 1/``steps``) whose weighted out-of-fold prediction
    ``w @ oof`` (``oof``: base × record, each row from fits that never saw its record) has the
    highest Kendall τ with the target ``y``; equal weights win ties."""
    oof = np.asarray(oof, dtype=float)
    k = len(oof)
    best_w = np.full(k, 1.0 / k)
    best = np.nan_to_num(kendalltau(best_w @ oof, y)[0], nan=-1.0)
    for point in _simplex(k, steps):
        w = np.asarray(point, dtype=float) / steps
        tau = np.nan_to_num(kendalltau(w @ oof, y)[0], nan=-1.0)
        if tau > best + 1e-12:
            best, best_w = tau, w
    return best_w


def _global_features(graphs: Sequence[Data]) -> np.ndarray:
    """Each graph's global features (size, depth, …) as one row."""
    return np.stack([g.global_features.numpy().ravel() for g in graphs])


@dataclass
class Record:
    spec: object
    target: float
    low_fidelity: float | None = None
    curves: dict | None = None


class EnsemblePredictor:
    """``gnn``: which GIN rankers join the forest and the boosted trees: ``scratch`` (random
    initialisation), ``pretrained`` (the stage-1 contrastive encoder, fine-tuned: DCL-ENAS),
    ``both``, or ``none``. ``use_trees=False`` leaves the forest and the boosted trees out.
    ``zero_cost``: a :class:`ZeroCostProxy` whose score (log₁₀ SynFlow) joins the static
    features of the trees and the GIN's head. ``weighting``: ``equal`` averages the base
    predictors; ``cv`` refits the ensemble on ``CV_FOLDS`` folds of the records (``CV_FOLDS``
    more fits, from ``CV_MIN_RECORDS`` records; equal weights below) and weights the base
    predictors so that their combined held-out predictions rank the target best
    (:func:`rank_weights`). ``low_fidelity_pretrain``: multi-fidelity transfer, below.

    **Low-fidelity pretraining** (``low_fidelity_pretrain=True``). Before the fine-tune on the
    target, each GIN (from random weights or the stage-1 encoder) is trained with the same
    pairwise ranking loss to order the *low-fidelity* scores of every architecture whose score
    is known: the records that carry one, and the ``screened`` architectures given to
    :meth:`fit` (asked only at the cheap rung, so they have no target). The fine-tune on the
    targets then starts from that encoder. It uses no target of a screened architecture, only
    its cheap score; cheap scores are plentiful in a multi-fidelity search (most architectures
    never leave the first rung) while targets are few. Measured on NAS-Bench-201 (100 targets,
    the 12-epoch accuracy of those and of 1,000 other cells, ``benchmarks/predictor_nb201.py``
    ``+mf``): the GIN alone ranks the target at τ 0.795 instead of 0.756; the README has the table.
    """

    GNN_MODES = ("scratch", "pretrained", "both", "none")

    def __init__(self, space: SearchSpace, task_info: TaskInfo | None = None, *,
                 use_low_fidelity: bool = False, use_curves: bool = False, seed: int = 0,
                 gnn_epochs: int = 150, use_gnn: bool = True, gnn: str = "scratch", use_trees: bool = True,
                 pretrain: PretrainConfig | None = None, zero_cost: ZeroCostProxy | None = None,
                 weighting: str = "equal", low_fidelity_pretrain: bool = False):
        if gnn not in self.GNN_MODES:
            raise ValueError(f"gnn mode {gnn!r}: choose one of {', '.join(self.GNN_MODES)}")
        if not use_trees and (gnn == "none" or not use_gnn):
            raise ValueError("a predictor with neither trees nor a GIN predicts nothing")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")
        self.weighting = weighting
        self.weights: np.ndarray | None = None  # None: equal
        self.space, self.task_info, self.seed = space, task_info, seed
        self.use_low_fidelity, self.use_curves = use_low_fidelity, use_curves
        self.gnn_epochs, self.use_trees = gnn_epochs, use_trees
        self.gnn_mode = gnn if use_gnn else "none"
        self.pretrain = pretrain or PretrainConfig()
        self.zero_cost = zero_cost
        self.low_fidelity_pretrain = low_fidelity_pretrain
        self._cache: dict[str, np.ndarray] = {}
        self.fitted = False

    # ---- features ------------------------------------------------------------------------
    def _static(self, spec: BaseModel) -> np.ndarray:
        key = repr(spec.model_dump())  # the whole spec: dead edges still change the one-hot
        if key not in self._cache:
            self._cache[key] = static_features(self.space, spec, self.task_info)
        return self._cache[key]

    def _dynamic(self, n: int, low_fidelity: ArrayLike | None, curves: Sequence[dict | None] | None
                 ) -> np.ndarray:
        cols = []
        if self.use_low_fidelity:
            if low_fidelity is None:
                raise ValueError("this predictor was built with the low-fidelity feature: pass it")
            cols.append(np.asarray(low_fidelity, dtype=np.float32)[:, None])
        if self.use_curves:
            cols.append(np.stack([curve_features(c) for c in (curves or [None] * n)]))
        return np.concatenate(cols, 1) if cols else np.zeros((n, 0), np.float32)

    def _design(self, specs: Sequence[BaseModel], low_fidelity: ArrayLike | None,
                curves: Sequence[dict | None] | None) -> tuple[np.ndarray, np.ndarray, list]:
        graphs = [self.space.to_graph(s) for s in specs]
        static = np.stack([self._static(s) for s in specs])
        dynamic = self._dynamic(len(specs), low_fidelity, curves)
        glob = _global_features(graphs)
        if self.zero_cost is not None:  # label-free, so it joins the static side
            proxy = self.zero_cost.scores(specs)[:, None]
            static, glob = np.concatenate([static, proxy], 1), np.concatenate([glob, proxy], 1)
        X = np.nan_to_num(np.concatenate([static, dynamic], 1))
        extra = np.nan_to_num(np.concatenate([glob, dynamic], 1))
        return X, extra, graphs

    # ---- the interface --------------------------------------------------------------------
    def fit(self, records: list[Record], screened: Sequence[tuple[object, float]] = ()
            ) -> EnsemblePredictor:
        """Fit every base predictor on ``records``; ``screened``: (spec, low-fidelity score) of
        architectures without a target, read only by low-fidelity pretraining."""
        if len(records) < 2:
            raise ValueError(f"fit needs at least 2 records, got {len(records)}")
        with_gins = len(records) >= 4 or not self.use_trees
        return self._fit(records, self._low_fidelity_states(records, screened) if with_gins else [])

    def _fit(self, records: list[Record], states: list[dict | None]) -> EnsemblePredictor:
        """:meth:`fit` with the GINs' starting encoder states given (one GIN per state)."""
        specs = [r.spec for r in records]
        y = np.asarray([r.target for r in records], dtype=np.float64)
        low = [r.low_fidelity for r in records] if self.use_low_fidelity else None
        curves = [r.curves for r in records] if self.use_curves else None
        X, extra, graphs = self._design(specs, low, curves)
        if self.use_trees:
            self.forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=1, max_features=0.5,
                                                random_state=self.seed, n_jobs=1).fit(X, y)
            self.boost = GradientBoostingRegressor(n_estimators=150, max_depth=3, learning_rate=0.05,
                                                   subsample=0.8, random_state=self.seed).fit(X, y)
        self.low_line = (np.linalg.lstsq(np.stack([np.asarray(low, float), np.ones(len(y))], 1), y,
                                         rcond=None)[0] if self.use_low_fidelity else None)
        self.gnns: list[tuple[GINRanker, np.ndarray]] = []
        for state in states:
            gnn = self._gin(state).fit(graphs, extra, y)
            score, _ = gnn.predict(graphs, extra)
            A = np.stack([score, np.ones_like(score)], 1)
            self.gnns.append((gnn, np.linalg.lstsq(A, y, rcond=None)[0]))  # target ≈ a·score + b
        self.y_std = float(y.std()) or 1.0
        self.fitted = True
        self.weights = (self._cv_weights(records, states) if self.weighting == "cv"
                        and len(records) >= CV_MIN_RECORDS else None)
        return self

    def _cv_weights(self, records: list[Record], states: list[dict | None]) -> np.ndarray:
        """:func:`rank_weights` from out-of-fold base predictions (one fold's fit never sees
        the records it predicts). Each fold is a shallow copy of this predictor: ``_fit`` rebinds
        every fitted attribute, so the folds leave this one's models untouched. The folds start
        their GINs from the full fit's ``states``: low-fidelity pretraining reads no target, so
        it is done once, not once per fold (and every fold has ≥ 16 records, enough for GINs)."""
        y = np.asarray([r.target for r in records], dtype=np.float64)
        oof: np.ndarray | None = None
        folds = KFold(CV_FOLDS, shuffle=True, random_state=self.seed).split(np.arange(len(records)))
        for train, held in folds:
            fold = copy.copy(self)  # same settings and the same static-feature cache
            fold.weighting = "equal"  # a fold only supplies out-of-fold predictions
            fold._fit([records[i] for i in train], states)
            rows = [records[i] for i in held]
            preds = np.stack(fold.base_predictions(
                [r.spec for r in rows], [r.low_fidelity for r in rows] if self.use_low_fidelity else None,
                [r.curves for r in rows] if self.use_curves else None)[0])
            oof = np.zeros((len(preds), len(records))) if oof is None else oof
            oof[:, held] = preds
        return rank_weights(oof, y)

    def _low_fidelity_states(self, records: list[Record], screened: Sequence[tuple[object, float]]
                             ) -> list[dict | None]:
        """The encoder states the GINs start their fine-tune from: :meth:`_encoder_states`, each
        first trained to rank the known low-fidelity scores when ``low_fidelity_pretrain`` is on
        (an architecture in both ``records`` and ``screened`` counts once)."""
        states = self._encoder_states()
        if not self.low_fidelity_pretrain:
            return states
        known: dict[str, tuple[object, float]] = {}
        for spec, low in [(r.spec, r.low_fidelity) for r in records] + list(screened):
            if low is not None and np.isfinite(low):
                known.setdefault(repr(spec.model_dump()), (spec, float(low)))
        if len(known) < 4:
            raise ValueError(f"low-fidelity pretraining needs at least 4 architectures with a "
                             f"low-fidelity score, got {len(known)}")
        graphs = [self.space.to_graph(spec) for spec, _ in known.values()]
        low = np.asarray([score for _, score in known.values()])
        return [self._gin(state).fit(graphs, _global_features(graphs), low).net.encoder.state_dict()
                for state in states]

    def _gin(self, state: dict | None) -> GINRanker:
        """A GIN ranker of the stage-1 encoder's shape, starting from encoder ``state``."""
        return GINRanker(hidden=self.pretrain.hidden, layers=self.pretrain.layers,
                         dropout=self.pretrain.dropout, bidirectional=self.pretrain.bidirectional,
                         epochs=self.gnn_epochs, seed=self.seed, encoder_state=state)

    def _encoder_states(self) -> list[dict | None]:
        states: list[dict | None] = []
        if self.gnn_mode in ("scratch", "both"):
            states.append(None)
        if self.gnn_mode in ("pretrained", "both"):
            states.append(load_or_pretrain(self.space, self.pretrain).state)
        return states

    def base_predictions(self, specs: Sequence[BaseModel], low_fidelity: ArrayLike | None = None,
                         curves: Sequence[dict | None] | None = None
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every base predictor's prediction on the target's scale, and the variances that come
        with some of them (the forest's tree spread, the GINs' MC dropout)."""
        if not self.fitted:
            raise RuntimeError("predict before fit")
        X, extra, graphs = self._design(specs, low_fidelity, curves)
        preds, variances = [], []
        if self.use_trees:
            trees = np.stack([t.predict(X) for t in self.forest.estimators_])
            preds += [trees.mean(0), self.boost.predict(X)]
            variances.append(trees.var(0))
        for gnn, (a, b) in self.gnns:
            score, mc_std = gnn.predict(graphs, extra)
            preds.append(a * score + b)
            variances.append((a * mc_std) ** 2)
        if self.low_line is not None:
            a, b = self.low_line
            preds.append(a * np.asarray(low_fidelity, float) + b)
        return preds, variances

    def predict(self, specs: Sequence[BaseModel], low_fidelity: ArrayLike | None = None,
                curves: Sequence[dict | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted target (mean) and uncertainty (std) per spec."""
        preds, variances = self.base_predictions(specs, low_fidelity, curves)
        preds = np.stack(preds)
        w = self.weights if self.weights is not None else np.full(len(preds), 1.0 / len(preds))
        mean = w @ preds
        std = np.sqrt(w @ (preds - mean) ** 2 + np.mean(variances, 0))
        return mean, std

    def rank(self, specs: Sequence[BaseModel], low_fidelity: ArrayLike | None = None,
             curves: Sequence[dict | None] | None = None) -> np.ndarray:
        """Indices of ``specs`` from best (lowest predicted target) to worst."""
        mean, _ = self.predict(specs, low_fidelity, curves)
        return np.argsort(mean, kind="stable")
