"""Typed trajectory events: the public JSONL contract as pydantic models.

``parse_event(dict)`` turns one line of ``trajectory.jsonl`` into its model; only
:class:`agent.state.SearchState` calls it (Optuna's journal style: one typed operation per
line, one apply method per event). Unknown extra fields are ignored so newer logs stay readable;
a missing or mistyped field raises :class:`LogInconsistent` naming the event.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.rule import Decision
from agent.trajectory import EVALS
from evaluators.results import EvalFailure, EvalResult, LearnerResult
from spaces.base import first_error_line, quote_value

__all__ = ["Event", "parse_event", "LogInconsistent", "RunStarted", "Resumed", "ProposalEvent",
           "Repair", "ProposalRejected", "Filtered", "Evaluated", "Extended", "DecisionEvent",
           "Promoted", "Validated", "RunFinished", "Failure", "evaluation_fields", "failure_fields"]


class LogInconsistent(ValueError):
    """A trajectory line that parses as JSON but does not fit the contract or the run so far."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    time: str
    iteration: int = 0


class RunStarted(_Event):
    event: Literal["run_started"]
    config: dict[str, Any]


class Resumed(_Event):
    event: Literal["resumed"]
    from_event: int = 0
    truncated_line: str | None = None
    #: the settings this resume gave (budgets, --api-base, where learners train); {} for none
    settings: dict[str, Any] = {}


class ProposalEvent(_Event):
    event: Literal["proposal"]
    proposal_id: str
    call_id: str | None = None
    source: str
    raw: str | None = None
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class Repair(_Event):
    event: Literal["repair"]
    proposal_id: str
    error: str


class ProposalRejected(_Event):
    event: Literal["proposal_rejected"]
    proposal_id: str
    reason: str


class Filtered(_Event):
    event: Literal["filtered"]
    proposal_id: str
    predicted_mean: float | None = None
    predicted_std: float | None = None
    score: float | None = None
    kept: bool
    note: str | None = None


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["nan", "oom", "timeout", "error"]
    message: str


class _Statistics(_Event):
    """The statistics of every learner an evaluation holds after this event."""

    proposal_id: str
    spec_hash: str
    fidelity: str
    seeds: list[int]
    failure: Failure | None = None
    E: float | None = None
    sigma2: float | None = None
    rho: float | None = None
    ci: dict[str, tuple[float, float]] | None = None
    se: dict[str, float] | None = None
    seed_var: float | None = None
    predicted_ens_error: float | None = None
    npz: str | None = None
    wall_s: float = 0.0
    device_s: float = 0.0
    learner_epochs: float = 0.0  #: what this event's training cost (full-width learner-epochs)


def _name(npz: str | None) -> str | None:
    """The file name inside the run's ``evals/`` folder (the log stores ``evals/<name>``)."""
    return PurePosixPath(npz).name if npz else npz


class Evaluated(_Statistics):
    """A candidate's first evaluation at a fidelity (or a copy of a logged one: ``cached``)."""

    event: Literal["evaluated"]
    rung: int = 0  #: index of ``fidelity`` in the run's schedule
    learners: list[LearnerResult] = Field(default_factory=list)
    params: int | None = None
    flops: int | None = None
    cached: bool = False

    def result(self) -> EvalResult | EvalFailure:
        if self.failure is not None:
            return EvalFailure(spec_hash=self.spec_hash, fidelity=self.fidelity,
                               seeds=tuple(self.seeds), kind=self.failure.kind,
                               message=self.failure.message, wall_s=self.wall_s)
        return EvalResult(spec_hash=self.spec_hash, fidelity=self.fidelity, seeds=tuple(self.seeds),
                          E=self.E, sigma2=self.sigma2, rho=self.rho, ci=self.ci, se=self.se,
                          seed_var=self.seed_var, learners=self.learners, npz=_name(self.npz),
                          wall_s=self.wall_s, device_s=self.device_s, params=self.params,
                          flops=self.flops)


class Extended(_Statistics):
    """More learners for a logged evaluation: ``new_learners`` were trained (their seeds are the
    tail of ``seeds``), and the statistics and ``npz`` now cover all of them. A ``failure``
    means the new learners could not be trained; the evaluation keeps what it had."""

    event: Literal["extended"]
    new_learners: list[LearnerResult] = Field(default_factory=list)

    def extend(self, previous: EvalResult) -> EvalResult:
        if self.failure is not None:
            return previous
        return previous.model_copy(update={
            "seeds": tuple(self.seeds), "E": self.E, "sigma2": self.sigma2, "rho": self.rho,
            "ci": self.ci, "se": self.se, "seed_var": self.seed_var, "npz": _name(self.npz),
            "learners": [*previous.learners, *self.new_learners], "wall_s": self.wall_s,
            "device_s": self.device_s})


class DecisionEvent(_Event, Decision):
    """:class:`agent.rule.Decision` as logged, with the two proposal ids and the rung it was
    made at. Only a ``final`` decision (top rung, or the highest rung the budget allowed) can
    move the baseline; at a lower rung ``accepted`` means "ahead of the baseline there"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: Literal["decision"]
    proposal_id: str
    baseline_id: str
    fidelity: str | None = None
    rung: int = 0
    final: bool = True
    seq: int = 0  #: position in the log (set when read; not written)


class Promoted(_Event):
    """A candidate moves up a rung: ``score`` is its predicted top-rung ensemble error,
    ``reason`` the rule that promoted it (successive halving, opportunistic, conservative)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event: Literal["promoted"]
    proposal_id: str
    from_: str = Field(alias="from")
    to: str
    score: float | None = None
    fitted: bool | None = None  # False: score is the lower rung's own E_ens; None: not logged
    reason: str


class Validated(_Event):
    event: Literal["validated"]
    proposal_id: str | None = None
    spec_hash: str
    M: int
    predicted_ens_brier: float
    #: the rung ``predicted_ens_brier`` was read at: the top rung, where the real ensemble is
    #: trained, unless the budget stopped the baseline lower (None: logs from before it was named)
    fidelity: str | None = None
    true_ens_brier: float
    true_ens_error01: float
    test_predicted_ens_brier: float | None = None
    test_true_ens_brier: float | None = None
    test_true_ens_error01: float | None = None
    single_brier: float | None = None
    wall_s: float = 0.0


class RunFinished(_Event):
    event: Literal["run_finished"]
    reason: str
    iterations: int = 0
    evaluations: int = 0
    accepted: int = 0
    best_spec_hash: str | None = None
    device_s: float = 0.0
    wall_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


Event = Annotated[RunStarted | Resumed | ProposalEvent | Repair | ProposalRejected | Filtered
                  | Evaluated | Extended | DecisionEvent | Promoted | Validated | RunFinished,
                  Field(discriminator="event")]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: dict[str, Any]) -> Event:
    """The typed event of one trajectory line; :class:`LogInconsistent` if it breaks the contract."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as err:
        of = f" of {quote_value(raw['proposal_id'])}" if "proposal_id" in raw else ""
        raise LogInconsistent(first_error_line(err, lambda loc: (
            f"event {quote_value(raw.get('event'))}{of}: " + ".".join(map(str, loc))))) from None


def evaluation_fields(proposal_id: str, result: EvalResult, M: int) -> dict[str, Any]:
    """The fields an ``evaluated`` or ``extended`` event shares (statistics over all learners;
    E_ens at the run's ensemble size ``M``)."""
    return {"proposal_id": proposal_id, "spec_hash": result.spec_hash,
            "fidelity": result.fidelity, "seeds": list(result.seeds), "E": result.E,
            "sigma2": result.sigma2, "rho": result.rho, "ci": result.ci, "se": result.se,
            "seed_var": result.seed_var, "predicted_ens_error": result.stats.ens_error(M),
            "npz": f"{EVALS}/{result.npz}", "wall_s": result.wall_s, "device_s": result.device_s}


def failure_fields(proposal_id: str, result: EvalFailure) -> dict[str, Any]:
    """The fields of an ``evaluated`` or ``extended`` event that logs a failed training."""
    return {"proposal_id": proposal_id, "spec_hash": result.spec_hash,
            "fidelity": result.fidelity, "seeds": list(result.seeds),
            "failure": {"kind": result.kind, "message": result.message},
            "wall_s": result.wall_s, "device_s": 0.0}
