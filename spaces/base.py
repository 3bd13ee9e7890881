"""The search-space interface every space implements, and the small values it works with.

A *spec* is a pydantic model (one class per space) that an LLM writes as JSON. A
:class:`SearchSpace` knows how to validate, sample, mutate, hash, export as a graph, cost and
build the specs of its class. Nothing here touches datasets: a builder only needs a
:class:`TaskInfo` (input shape and class count).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from torch import nn
    from torch_geometric.data import Data

__all__ = [
    "quote_value",
    "first_error_line",
    "TaskInfo",
    "SizeCap",
    "SpecTooLarge",
    "SearchSpace",
    "hash_payload",
]


@dataclass(frozen=True)
class TaskInfo:
    """What a model builder needs to know about a task.

    ``input_shape`` excludes the batch dimension: ``(C, L)`` for 1-D sequences (MNIST-1D) or
    ``(C, H, W)`` for images. Its length picks Conv1d or Conv2d.
    """

    input_shape: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.input_shape) not in (2, 3):
            raise ValueError(
                f"input_shape must be (C, L) or (C, H, W), got {self.input_shape!r}"
            )
        if any(int(d) < 1 for d in self.input_shape):
            raise ValueError(f"input_shape dimensions must be positive, got {self.input_shape!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")

    @property
    def spatial_dims(self) -> int:
        """1 for sequences, 2 for images."""
        return len(self.input_shape) - 1


@dataclass(frozen=True)
class SizeCap:
    """Upper bounds checked on a spec's computed cost before any tensor is allocated."""

    max_params: int = 50_000_000
    max_flops: int = 20_000_000_000  # per sample, forward pass, 1 MAC = 2 FLOPs


class SpecTooLarge(ValueError):
    """A valid spec whose computed parameters or FLOPs exceed the :class:`SizeCap` for a task."""

    def __init__(self, what: str, value: int, limit: int) -> None:
        self.what, self.value, self.limit = what, int(value), int(limit)
        super().__init__(f"spec too large: {what} = {value:,} exceeds the cap of {limit:,}")


def hash_payload(payload: Any) -> str:
    """Stable hex digest (sha256, 16 hex chars) of a JSON-serialisable payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SearchSpace(ABC):
    """A discrete architecture space whose points are pydantic specs.

    Subclasses set :attr:`name` and :attr:`spec_model` and implement the abstract methods.
    Every method that takes a spec takes an instance of :attr:`spec_model`.
    """

    name: ClassVar[str]
    spec_model: ClassVar[type[BaseModel]]

    # ---- validation -------------------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of :attr:`spec_model` (used in prompts and structured output)."""
        return self.spec_model.model_json_schema()

    def parse(self, data: str | bytes | dict[str, Any]) -> BaseModel:
        """Validate JSON text or a dict into a spec; raises ``pydantic.ValidationError``."""
        if isinstance(data, (str, bytes)):
            return self.spec_model.model_validate_json(data)
        return self.spec_model.model_validate(data)

    def refusal(self, spec: BaseModel, task: TaskInfo, cap: SizeCap | None = None,
                width_mult: float = 1.0) -> str | None:
        """Why a parsed spec cannot be trained (re-validated, then size-capped), or None."""
        try:
            self.check_size(self.parse(spec.model_dump()), task, cap, width_mult)
        except ValidationError as err:
            return f"invalid spec: {self.validation_error_text(err)}"
        except SpecTooLarge as err:
            return str(err)
        return None

    def check_size(self, spec: BaseModel, task: TaskInfo, cap: SizeCap | None = None,
                   width_mult: float = 1.0) -> dict[str, int]:
        """Compute the cost and raise :class:`SpecTooLarge` if it exceeds ``cap``."""
        cap = cap or SizeCap()
        cost = self.cost(spec, task, width_mult=width_mult)
        if cost["params"] > cap.max_params:
            raise SpecTooLarge("params", cost["params"], cap.max_params)
        if cost["flops"] > cap.max_flops:
            raise SpecTooLarge("flops", cost["flops"], cap.max_flops)
        return cost

    # ---- the space's own behaviour ---------------------------------------------------
    @abstractmethod
    def describe(self) -> str:
        """Plain text for a prompt: the ops, the constraints and one example spec as JSON."""

    @abstractmethod
    def reference(self) -> BaseModel:
        """A sensible reference spec, the default first baseline of a search."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> BaseModel:
        """A uniformly random valid spec."""

    @abstractmethod
    def mutate(self, spec: BaseModel, rng: np.random.Generator) -> BaseModel:
        """A valid spec that differs from ``spec`` in one random choice."""

    @abstractmethod
    def canonical_hash(self, spec: BaseModel) -> str:
        """Hex string, equal for specs that build the same network."""

    def inert_fields(self, spec: BaseModel) -> list[str]:
        """Fields of ``spec`` set to a value the built network does not depend on (another value
        of one of them alone gives the same canonical hash). A repeat's repair turn names them,
        so a proposer learns why its "change" was none. Default: none known."""
        return []

    @abstractmethod
    def to_graph(self, spec: BaseModel) -> Data:
        """A ``torch_geometric.data.Data``: one node per operation, typed features, DAG edges."""

    @abstractmethod
    def construct(self, spec: BaseModel, task: TaskInfo, width_mult: float = 1.0) -> nn.Module:
        """The ``nn.Module`` for ``spec``, with no size check (use :meth:`build`)."""

    def cost(self, spec: BaseModel, task: TaskInfo, width_mult: float = 1.0) -> dict[str, int]:
        """``{"params": int, "flops": int}`` per sample, forward pass, 1 MAC = 2 FLOPs.

        Computed on the ``meta`` device: no real tensor is allocated, whatever the widths.
        """
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = self.construct(spec, task, width_mult)
            params = sum(p.numel() for p in model.parameters())
            x = torch.empty((1, *task.input_shape))
            model.eval()
            with FlopCounterMode(display=False) as counter:
                model(x)
        return {"params": int(params), "flops": int(counter.get_total_flops())}

    def build(self, spec: BaseModel, task: TaskInfo, width_mult: float = 1.0,
              cap: SizeCap | None = None) -> nn.Module:
        """A ``torch.nn.Module`` mapping ``(B, *task.input_shape)`` to ``(B, num_classes)`` logits.

        The size is checked first (:meth:`check_size`): an oversized spec never allocates a tensor.
        """
        self.check_size(spec, task, cap, width_mult=width_mult)
        return self.construct(spec, task, width_mult)

    # ---- helpers shared by all spaces ------------------------------------------------
    def validation_error_text(self, err: ValidationError) -> str:
        """One readable line per validation problem, naming the field, what is allowed and the
        value that was sent (quoted, at most 60 characters; a missing field has none)."""
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<root>"
            sent = _sent(e)
            lines.append(f"{loc}: {e['msg']}" + ("" if sent is None else f" (sent {sent})"))
        return "; ".join(lines)


def quote_value(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (an untrusted value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def first_error_line(err: ValidationError, where: Callable[[tuple], str]) -> str:
    """One line for the first problem pydantic found: ``where(loc)``, the value that was sent
    (quoted and bounded, none for a missing field), then pydantic's message. The one format
    for flags, rungs and log lines: ``--eta 20: Input should be less than or equal to 16``."""
    e = err.errors()[0]
    sent = _sent(e)
    return f"{where(tuple(e['loc']))}{'' if sent is None else ' ' + sent}: {e['msg']}"


def _sent(error: dict) -> str | None:
    """The quoted value one pydantic error was about; None for a missing field (nothing sent)."""
    if error.get("type") == "missing" or "input" not in error:
        return None
    return quote_value(error["input"])
