"""Training fidelity: how much work one learner gets, and what that costs in learner-epochs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spaces.base import first_error_line, quote_value

__all__ = ["Fidelity", "PRESETS", "get_fidelity", "parse_schedule"]


class Fidelity(BaseModel):
    """One training budget for one learner.

    ``resolution`` is the input length/side the data is resized to (``None`` keeps the native
    size); ``width_mult`` scales every channel count of the built network.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    epochs: int = Field(ge=1, le=1000)
    train_fraction: float = Field(gt=0.0, le=1.0)
    resolution: int | None = Field(default=None, ge=4, le=1024)
    width_mult: float = Field(default=1.0, gt=0.0, le=4.0)
    batch_size: int = Field(default=128, ge=1, le=65536)
    lr: float = Field(default=0.01, gt=0.0)

    def learner_epochs(self, learners: int = 1) -> float:
        """Cost of training ``learners`` learners, in full-width, full-data learner-epochs."""
        return learners * self.epochs * self.train_fraction * self.width_mult


PRESETS: dict[str, Fidelity] = {
    "low": Fidelity(name="low", epochs=6, train_fraction=1.0, width_mult=0.5, batch_size=128),
    "medium": Fidelity(name="medium", epochs=15, train_fraction=1.0, width_mult=1.0, batch_size=128),
    "high": Fidelity(name="high", epochs=40, train_fraction=1.0, width_mult=1.0, batch_size=128),
}


def get_fidelity(name: str) -> Fidelity:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown fidelity {name!r}; choose one of: {', '.join(PRESETS)}") from None


def parse_schedule(text: str, batch_size: int | None = None) -> list[Fidelity]:
    """Rungs of a progressive schedule, lowest first: ``low,medium,high`` or with custom epochs
    ``low:3,medium:12,high:40`` (a preset with its epochs replaced, named ``low-3ep``). Rungs must
    be distinct and grow in cost (learner-epochs), at most 6. ``batch_size`` replaces every
    rung's minibatch size (None: the presets' 128); learner-epochs do not depend on it, the
    optimizer steps per epoch do."""
    rungs = []
    for part in str(text).split(","):
        name, _, epochs = part.strip().partition(":")
        quoted = quote_value(part.strip())
        try:
            base = get_fidelity(name)
            rung = base if not epochs else base.model_copy(update={
                "epochs": int(epochs), "name": f"{name}-{int(epochs)}ep"})
            if batch_size is not None:
                rung = rung.model_copy(update={"batch_size": batch_size})
            Fidelity.model_validate(rung.model_dump())
        except ValidationError as err:
            raise ValueError(first_error_line(err, lambda loc: f"rung {quoted}: {loc[0]}")) from None  # noqa: B023 (called at once)
        except ValueError as err:
            raise ValueError(f"rung {quoted}: {err}".splitlines()[0]) from None
        rungs.append(rung)
    if not 1 <= len(rungs) <= 6:
        raise ValueError(f"{text!r}: expected 1 to 6 rungs")
    names = [r.name for r in rungs]
    if len(set(names)) != len(names):
        raise ValueError(f"{text!r}: a rung appears twice")
    costs = [r.learner_epochs() for r in rungs]
    if any(b <= a for a, b in zip(costs, costs[1:], strict=False)):
        raise ValueError(f"{text!r}: each rung must cost more learner-epochs than the one below "
                         f"({', '.join(f'{n} {c:g}' for n, c in zip(names, costs, strict=True))})")
    return rungs
