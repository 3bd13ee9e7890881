"""Every setting of a run, as one validated value written to ``config.json``."""

from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluators.fidelity import Fidelity, parse_schedule
from spaces.base import SizeCap

__all__ = ["RunConfig", "package_versions", "SECRET_MARKERS", "BASELINE_LEARNERS",
           "DEFAULT_SCHEDULE", "first_baseline_learners"]

#: the embedded default run's progressive schedule (2-epoch rung, then the 6-epoch low preset)
DEFAULT_SCHEDULE = "low:2,low"
#: learners of the first baseline at least (the pooled seed variance needs three or more)
BASELINE_LEARNERS = 4


def first_baseline_learners(min_learners: int) -> int:
    """Learners of the first baseline with ``--learners MIN:…``: at least 4, so the run's pooled
    seed variance has a jackknife estimate before the first decision (``evaluators.stats``)."""
    return max(min_learners, BASELINE_LEARNERS)


#: substrings of setting names never written to disk
SECRET_MARKERS = ("key", "token", "secret", "password")


class RunConfig(BaseModel):
    """The settings of one search. Defaults fit a 3-minute offline run on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="proposer: local (default), builtin, "
                              "replay:RUN_DIR, or a litellm model name")
    api_base: str | None = None
    prompt: str | None = None
    space: str = "nb201"
    dataset: str = "mnist1d"
    data_dir: str | None = None
    download: bool = False
    n_samples: int | None = Field(None, ge=20)
    device: str = "auto"
    fidelity: str = "low"
    fidelity_schedule: str | None = Field(None, description="rungs, lowest first (low:2,low); "
                                          "None: the single --fidelity")
    batch_size: int | None = Field(None, ge=1, le=65536)  #: every rung's minibatch; None: 128
    eta: int = Field(3, ge=2, le=16)
    halving: Literal["asynchronous", "capped"] = "asynchronous"  #: agent.rungs.plan_promotions
    max_learner_epochs: float | None = Field(None, gt=0)
    ensemble_size: int = Field(50, ge=2)
    rule: Literal["exact", "paper"] = "exact"
    margin: float = Field(0.0, ge=0.0)
    min_learners: int = Field(2, ge=2, le=64)
    max_learners: int = Field(4, ge=2, le=64)
    confidence: float = Field(0.95, ge=0.0, lt=1.0)
    reject_confidence: float | None = Field(None, ge=0.0, lt=1.0)  #: None: = confidence
    futility: float = Field(0.05, ge=0.0, lt=1.0)  #: γ: stop undecided when P(confident at MAX) < γ
    predictor: str = "gnn-ensemble"
    zero_cost: Literal["synflow", "none"] = "none"  #: a data-free proxy feature for the predictor
    predictor_weights: Literal["equal", "cv"] = "equal"  #: how the predictor combines its members
    predictor_refit: int = Field(20, ge=1)
    predictor_min_labels: int = Field(8, ge=2)
    iterations: int = Field(5, ge=0)
    proposals: int = Field(4, ge=1, le=64)
    keep: int = Field(2, ge=1, le=64)
    max_device_seconds: float | None = Field(None, gt=0)
    max_wall_seconds: float | None = Field(135.0, gt=0)
    max_cost_usd: float | None = Field(None, ge=0)
    eval_time_limit: float | None = Field(None, gt=0)
    compile: bool = False
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="empty: start a local Ray; auto or "
                                    "host:port: join a cluster")
    gpus_per_learner: float | None = Field(None, ge=0, le=1, description="None: 1/min_learners "
                                           "on CUDA, 0 on CPU")
    max_concurrent: int | None = Field(None, ge=1)
    pipeline: bool = Field(False, description="ask the proposer for the next iteration while "
                           "this one's candidates train (the prompt reflects decided history)")
    max_params: int = Field(50_000_000, ge=1)
    max_flops: int = Field(20_000_000_000, ge=1)
    baseline: str | None = None
    baseline_spec: dict[str, Any] | None = None
    validate_ensemble: bool = False
    seed: int = 0
    out: str = "runs"

    @model_validator(mode="after")
    def _learners_in_order(self) -> RunConfig:
        if self.max_learners < self.min_learners:
            raise ValueError(f"learners: MAX {self.max_learners} is below MIN {self.min_learners}")
        return self

    def learner_seeds(self, n: int) -> tuple[int, ...]:
        """The seeds of a candidate's first ``n`` learners; every candidate uses the same ones
        (common random numbers), so learner i of two architectures shares its data order."""
        return tuple(1000 * self.seed + i for i in range(n))

    def rungs(self) -> list[Fidelity]:
        """The fidelity schedule, lowest rung first (ValueError naming a bad rung)."""
        return parse_schedule(self.fidelity_schedule or self.fidelity, self.batch_size)

    @property
    def size_cap(self) -> SizeCap:
        """``--max-params`` / ``--max-flops`` as the spaces' cap."""
        return SizeCap(max_params=self.max_params, max_flops=self.max_flops)

    @property
    def baseline_learners(self) -> int:
        """Learners of the first baseline (:func:`first_baseline_learners`)."""
        return first_baseline_learners(self.min_learners)

    def safe_dump(self) -> dict[str, Any]:
        """The settings without anything that looks like a secret, plus package versions."""
        data = self.model_dump()
        for name in list(data):
            if any(m in name.lower() for m in SECRET_MARKERS):
                data.pop(name)
        return data


def package_versions() -> dict[str, str]:
    names = ("torch", "torchvision", "torch-geometric", "numpy", "scipy", "scikit-learn",
             "pydantic", "litellm", "openai", "jinja2", "tenacity", "mnist1d", "rich",
             "matplotlib", "llama-cpp-python")
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            continue
    return out
