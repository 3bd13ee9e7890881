"""A zero-cost proxy: the architecture's SynFlow score, computed with no data, no labels and no
training (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
conserving synaptic flow"; used as a NAS proxy by Abdelfattah et al. 2021, "Zero-Cost Proxies
for Lightweight NAS").

SynFlow of a network f with parameters θ: take |θ| for every weight (batch norm at its initial
statistics, so an affine identity), feed an all-ones input x = 1 of the task's shape in float64,
let R = Σ f(1), and sum the synaptic saliency over every parameter:

    S(θ) = Σ_θ |θ ⊙ ∂R/∂θ|

S grows with the number of parameters on live paths from input to output and with their depth,
and is 0 for a parameter no path reaches (a dead edge), so twins (same ``canonical_hash``)
score alike. The predictor uses log₁₀ S as one more static feature (``features.py`` has the
others). On NAS-Bench-201 CIFAR-10 it ranks 200-epoch test accuracy at τ ≈ 0.57 on its own
(300 random cells), below a 100-label predictor but with information the encoding's trees and
GIN do not extract alone (``benchmarks/predictor_nb201.py``, ``+zc`` rows; the README has
the figures).

Cost: one forward and backward pass of batch 1 (about 35 ms for an NB201 network at 32×32 on
one CPU thread). Weights are drawn under a fixed seed inside ``torch.random.fork_rng`` so a
score is reproducible and the caller's random state is untouched. Scores are memoised per
canonical hash; :class:`ZeroCostProxy` can keep them in a JSON file (``save``, which writes only
when there are scores the file lacks), read back only when every entry is a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from spaces.base import TaskInfo

if TYPE_CHECKING:
    from pydantic import BaseModel

    from spaces.base import SearchSpace

__all__ = ["synflow", "cache_path", "ZeroCostProxy"]

#: bump when the score's definition changes: cache files of older versions are not reused
VERSION = 1
_FLOOR = -30.0  # log₁₀ of a score of 0 (no parameter on a live path)


def synflow(space: SearchSpace, spec: BaseModel, task_info: TaskInfo, seed: int = 0) -> float:
    """log₁₀ S(θ) of ``space.construct(spec, task_info)`` (see the module docstring); the spec
    must already have passed the space's size cap."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = space.construct(spec, task_info).to(torch.float64).eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *task_info.input_shape), dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        score = sum(float((p * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)
    if not math.isfinite(score):
        return float(np.log10(np.finfo(np.float64).max))
    return math.log10(score) if score > 0 else _FLOOR


def cache_path(space: SearchSpace, task_info: TaskInfo) -> Path:
    """Where a space's scores at a task's shape are kept: ``$EDAS_CACHE/predictor/``."""
    from evaluators.predictor.contrastive import cache_dir

    shape = "x".join(map(str, task_info.input_shape))
    return cache_dir() / f"zero-cost-synflow-v{VERSION}-{space.name}-{shape}-{task_info.num_classes}.json"


class ZeroCostProxy:
    """SynFlow per spec for one space and task, memoised per canonical hash; ``path``, when
    given, is read at construction (if present and well-formed) and written by :meth:`save`."""

    def __init__(self, space: SearchSpace, task_info: TaskInfo, path: str | Path | None = None):
        self.space, self.task_info = space, task_info
        self.path = Path(path) if path else None
        self._scores: dict[str, float] = {}
        if self.path and self.path.exists():
            self._scores = self._read(self.path)
        self._on_disk = len(self._scores)  # scores are only ever added, so a count suffices

    @staticmethod
    def _read(path: Path) -> dict[str, float]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        ok = (isinstance(data, dict) and data.get("version") == VERSION
              and isinstance(data.get("scores"), dict)
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in data["scores"].values()))
        return {str(k): float(v) for k, v in data["scores"].items()} if ok else {}

    def __call__(self, spec: BaseModel) -> float:
        key = self.space.canonical_hash(spec)
        if key not in self._scores:
            self._scores[key] = synflow(self.space, spec, self.task_info)
        return self._scores[key]

    def scores(self, specs: Iterable[BaseModel]) -> np.ndarray:
        return np.asarray([self(s) for s in specs], dtype=np.float32)

    def __len__(self) -> int:
        return len(self._scores)

    def save(self) -> None:
        """Write the scores to ``path`` if any was computed since it was read or last written."""
        if self.path is None:
            raise ValueError("this proxy has no cache path to save to")
        if len(self._scores) == self._on_disk:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "space": self.space.name,
                                   "input_shape": list(self.task_info.input_shape),
                                   "num_classes": self.task_info.num_classes, "scores": self._scores}))
        tmp.replace(self.path)
        self._on_disk = len(self._scores)
