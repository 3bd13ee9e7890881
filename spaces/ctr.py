"""CTR models over hashed Criteo-style fields, with feature bagging.

Input: ``(B, 1, F)`` float tensors holding, per field f, a hashed category index in
``[0, VOCAB)`` (0 = missing); Criteo has F = 39 fields (13 bucketised integers, 26 categories).
Each field has its own ``VOCAB``-row block of one embedding table (dimension d) and of one
first-order weight table.

Model (logit z, output logits ``[0, z]`` so the 2-class softmax gives p(click) = sigmoid(z)):

* first order: z₁ = b + Σ_f m_f · w_f[x_f]
* interaction: ``none``; ``fm`` (factorisation machine) z_fm = ½ Σ_k[(Σ_f e_fk)² − Σ_f e_fk²];
  ``cross`` (DCN cross network, 2 layers) x_{l+1} = x₀ · (x_lᵀ w_l) + b_l + x_l on the
  flattened embeddings
* deep: ``mlp_depth`` × (Linear ``mlp_width`` → ReLU → Dropout) on the (crossed) flattened
  embeddings, then Linear → 1.

**Feature bagging.** m ∈ {0, 1}^F is the learner's field mask (embeddings e_f = m_f·E_f[x_f]).
With ``bagging_rate`` r each learner keeps exactly k(r) = max(1, ⌊r·F + ½⌋) fields drawn
uniformly without replacement; with ``field_probs`` π each field is kept independently with
probability π_f (at least one field: the most probable one). The mask is drawn from torch's
global RNG as the first thing the constructor does, so under ``torch.manual_seed(seed)`` (as
``evaluators.train`` builds every learner) it is a deterministic function of the learner's seed
and two learners with different seeds see different fields. :func:`learner_mask` reproduces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from spaces.base import SearchSpace, TaskInfo, hash_payload
from spaces.layers import scaled

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["CTRSpec", "CTRSpace", "CTRNet", "REFERENCE", "VOCAB", "N_INT", "N_CAT", "N_FIELDS",
           "kept_fields", "draw_field_mask", "learner_mask"]

#: hash buckets per field (index 0 is the field's "missing" value)
VOCAB = 1024
N_INT, N_CAT = 13, 26
N_FIELDS = N_INT + N_CAT
EMBED_DIMS = (4, 8, 16, 32)
MLP_WIDTHS = (16, 32, 64, 128, 256)
MLP_DEPTHS = (0, 1, 2, 3)
INTERACTIONS = ("none", "fm", "cross")
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.5)
BAGGING_RATES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CROSS_LAYERS = 2
#: the reference spec (the default first baseline): no bagging
REFERENCE = {"embed_dim": 8, "interaction": "fm", "mlp_width": 64, "mlp_depth": 2, "dropout": 0.1,
             "bagging_rate": 1.0}



class CTRSpec(BaseModel):
    """A CTR network: embedding size, interaction layer, MLP and the feature-bagging rate r.

    Every field but ``field_probs`` is required, so an empty reply is not silently the reference.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    embed_dim: Literal[4, 8, 16, 32] = Field(description="d: embedding size of every field")
    interaction: Literal["none", "fm", "cross"] = Field(
        description="none | fm (factorisation machine) | cross (2-layer cross network)")
    mlp_width: Literal[16, 32, 64, 128, 256] = Field(description="units per MLP hidden layer")
    mlp_depth: Literal[0, 1, 2, 3] = Field(description="MLP hidden layers (0 = no MLP)")
    dropout: float = Field(ge=0.0, le=0.8, description="dropout after each MLP hidden layer")
    bagging_rate: float = Field(gt=0.0, le=1.0, description="r: fraction of the fields each "
                                "learner sees, drawn per learner from its seed (1 = all fields)")
    field_probs: tuple[float, ...] | None = Field(
        None, description=f"optional per-field inclusion probabilities (length {N_FIELDS}); "
        "each learner keeps field f with probability field_probs[f]; needs bagging_rate = 1")

    @model_validator(mode="after")
    def _check_field_probs(self) -> CTRSpec:
        if self.field_probs is None:
            return self
        if len(self.field_probs) != N_FIELDS:
            raise ValueError(f"field_probs must have {N_FIELDS} values, got {len(self.field_probs)}")
        bad = [p for p in self.field_probs if math.isnan(p) or not 0.0 <= p <= 1.0]
        if bad:
            raise ValueError(f"field_probs must lie in [0, 1], got {bad[0]!r}")
        if max(self.field_probs) <= 0.0:
            raise ValueError("field_probs must keep at least one field (all are 0)")
        if self.bagging_rate != 1.0:
            raise ValueError("set either bagging_rate < 1 or field_probs, not both "
                             f"(bagging_rate = {self.bagging_rate!r})")
        return self


def kept_fields(rate: float, n_fields: int = N_FIELDS) -> int:
    """k(r) = max(1, ⌊r·F + ½⌋): how many fields a learner keeps at bagging rate r."""
    return max(1, min(n_fields, int(math.floor(rate * n_fields + 0.5))))


def draw_field_mask(spec: CTRSpec, n_fields: int = N_FIELDS) -> list[float]:
    """A learner's field mask (1.0 = kept), drawn from torch's global CPU RNG.

    ``field_probs``: independent Bernoulli(π_f) per field (the most probable field if none);
    otherwise k(r) fields uniformly without replacement (no draw at all when r = 1).
    """
    if spec.field_probs is not None:
        probs = torch.tensor(spec.field_probs[:n_fields], dtype=torch.float64, device="cpu")
        keep = (torch.rand(n_fields, dtype=torch.float64, device="cpu") < probs).tolist()
        if not any(keep):
            keep[int(torch.argmax(probs))] = True
        return [float(k) for k in keep]
    k = kept_fields(spec.bagging_rate, n_fields)
    if k == n_fields:
        return [1.0] * n_fields
    chosen = set(torch.randperm(n_fields, device="cpu")[:k].tolist())
    return [float(f in chosen) for f in range(n_fields)]


def learner_mask(spec: CTRSpec, seed: int, n_fields: int = N_FIELDS) -> np.ndarray:
    """The mask the learner with ``seed`` gets (what :class:`CTRNet` draws under
    ``torch.manual_seed(seed)``), as a bool array of length F; torch's RNG state is restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return np.asarray(draw_field_mask(spec, n_fields), dtype=bool)


class _Cross(nn.Module):
    """DCN cross layers on x₀ (B, D): x_{l+1} = x₀ · (x_l w_l) + b_l + x_l."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.w = nn.ParameterList(nn.Parameter(torch.randn(dim) / math.sqrt(dim)) for _ in range(layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.w, self.b, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x


class CTRNet(nn.Module):
    """``(B, 1, F)`` hashed field indices → ``(B, 2)`` logits ``[0, z]`` (see the module doc)."""

    def __init__(self, spec: CTRSpec, task: TaskInfo, width_mult: float = 1.0):
        super().__init__()
        F = task.input_shape[-1]
        self.register_buffer("mask", torch.tensor(draw_field_mask(spec, F)))  # drawn first
        self.register_buffer("offsets", torch.arange(F) * VOCAB)
        d = scaled(spec.embed_dim, width_mult)
        self.embedding = nn.Embedding(F * VOCAB, d)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.first_order = nn.Embedding(F * VOCAB, 1)
        nn.init.zeros_(self.first_order.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        self.interaction = spec.interaction
        self.cross = _Cross(F * d, CROSS_LAYERS) if spec.interaction == "cross" else None
        layers: list[nn.Module] = []
        width_in = F * d
        for _ in range(spec.mlp_depth):
            width = scaled(spec.mlp_width, width_mult)
            layers += [nn.Linear(width_in, width), nn.ReLU(), nn.Dropout(spec.dropout)]
            width_in = width
        self.mlp = nn.Sequential(*layers, nn.Linear(width_in, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x[:, 0, :].long().clamp(0, VOCAB - 1) + self.offsets  # (B, F)
        mask = self.mask.unsqueeze(-1)  # (F, 1)
        e = self.embedding(idx) * mask  # (B, F, d)
        z = self.bias + (self.first_order(idx) * mask).sum(dim=(1, 2))
        if self.interaction == "fm":
            z = z + 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(-1)
        deep = e.flatten(1)
        if self.cross is not None:
            deep = self.cross(deep)
        z = z + self.mlp(deep).squeeze(-1)
        return torch.stack([torch.zeros_like(z), z], dim=-1)


class CTRSpace(SearchSpace):
    """CTR networks over F hashed fields (Criteo: 39), with per-learner feature bagging."""

    name = "ctr"
    spec_model = CTRSpec
    node_types: tuple[str, ...] = ("input", "output", "embedding", "fm", "cross", "mlp")

    @property
    def node_feature_dim(self) -> int:
        return len(self.node_types)

    def describe(self) -> str:
        # not the reference: it is the usual baseline, and a small model that echoes the example
        # would only re-propose it
        example = CTRSpec(embed_dim=16, interaction="cross", mlp_width=128, mlp_depth=1, dropout=0.2,
                          bagging_rate=0.7).model_dump_json()
        return (
            f"CTR (click-through-rate) network over {N_FIELDS} hashed fields ({N_INT} bucketised "
            f"integers, {N_CAT} categories). Every field has an embedding of size embed_dim "
            f"({list(EMBED_DIMS)}) plus a first-order weight; interaction is 'none', 'fm' "
            "(factorisation machine over the field embeddings) or 'cross' (2 cross layers on the "
            f"flattened embeddings); then mlp_depth ({list(MLP_DEPTHS)}) hidden layers of "
            f"mlp_width ({list(MLP_WIDTHS)}) units with ReLU and dropout (0 to 0.8). "
            "bagging_rate r in (0, 1] is feature bagging: each learner of the ensemble sees its "
            "own random round(r*39) fields, which makes learners less accurate but less "
            "correlated. Leave field_probs null. Example spec: " + example)

    def reference(self) -> CTRSpec:
        return CTRSpec(**REFERENCE)

    def sample(self, rng: np.random.Generator) -> CTRSpec:
        def pick(options: Sequence[Any]) -> Any:
            return options[int(rng.integers(len(options)))]

        return CTRSpec(embed_dim=pick(EMBED_DIMS), interaction=pick(INTERACTIONS),
                       mlp_width=pick(MLP_WIDTHS), mlp_depth=pick(MLP_DEPTHS),
                       dropout=pick(DROPOUTS), bagging_rate=pick(BAGGING_RATES))

    def mutate(self, spec: CTRSpec, rng: np.random.Generator) -> CTRSpec:
        """Change one choice (the bagging rate to another grid value, or one layer setting) so
        that the built network family changes; per-field probabilities are dropped."""
        options = {"embed_dim": EMBED_DIMS, "interaction": INTERACTIONS, "mlp_width": MLP_WIDTHS,
                   "mlp_depth": MLP_DEPTHS, "dropout": DROPOUTS, "bagging_rate": BAGGING_RATES}
        names = list(options)
        old, candidate = self.canonical_hash(spec), spec
        base = spec.model_dump() | {"field_probs": None}
        for _ in range(20):
            name = names[int(rng.integers(len(names)))]
            values = [v for v in options[name] if v != getattr(spec, name)]
            candidate = CTRSpec.model_validate(base | {name: values[int(rng.integers(len(values)))]})
            if self.canonical_hash(candidate) != old:
                break
        return candidate

    def canonical_hash(self, spec: CTRSpec) -> str:
        """Equal for specs that build the same family of learners: the bagging rate counts as
        k(r) fields, MLP width and dropout are ignored without an MLP, π is rounded to 1e-3."""
        deep = spec.mlp_depth > 0
        probs = None if spec.field_probs is None else [round(p, 3) for p in spec.field_probs]
        return hash_payload({
            "space": self.name, "d": spec.embed_dim, "inter": spec.interaction,
            "width": spec.mlp_width if deep else 0, "depth": spec.mlp_depth,
            "dropout": round(spec.dropout, 4) if deep else 0.0,
            "k": kept_fields(spec.bagging_rate) if probs is None else None, "pi": probs})

    def to_graph(self, spec: CTRSpec) -> Data:
        """input → embedding → [cross] → mlp × depth → output, plus embedding → [fm] → output and
        the first-order path input → output. ``global_features``: [log2 d / 5, log2 width / 8,
        depth / 3, dropout, mean inclusion probability]."""
        from torch_geometric.data import Data

        nodes, edges = ["input", "output", "embedding"], [(0, 2), (0, 1)]
        last = 2
        if spec.interaction == "fm":
            nodes.append("fm")
            edges += [(2, len(nodes) - 1), (len(nodes) - 1, 1)]
        elif spec.interaction == "cross":
            nodes.append("cross")
            edges.append((last, len(nodes) - 1))
            last = len(nodes) - 1
        for _ in range(spec.mlp_depth):
            nodes.append("mlp")
            edges.append((last, len(nodes) - 1))
            last = len(nodes) - 1
        edges.append((last, 1))
        x = torch.zeros(len(nodes), len(self.node_types))
        for k, t in enumerate(nodes):
            x[k, self.node_types.index(t)] = 1.0
        inclusion = (float(np.mean(spec.field_probs)) if spec.field_probs is not None
                     else kept_fields(spec.bagging_rate) / N_FIELDS)
        glob = [math.log2(spec.embed_dim) / 5, math.log2(spec.mlp_width) / 8, spec.mlp_depth / 3,
                spec.dropout, inclusion]
        return Data(x=x, edge_index=torch.tensor(edges, dtype=torch.long).t().contiguous(),
                    num_nodes=len(nodes), global_features=torch.tensor([glob]))

    def construct(self, spec: CTRSpec, task: TaskInfo, width_mult: float = 1.0) -> nn.Module:
        return CTRNet(spec, task, width_mult)
