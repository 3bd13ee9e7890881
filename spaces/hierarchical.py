"""The PMF-NAS hierarchical space: a searchable macro skeleton around a searchable cell.

Macro: ``depth`` cells (14–50, step 2) with ``initial_channels`` × ``width_multiplier`` channels
after a 3×3 stem; two downsampling transitions (Norm-Act-Conv3×3 stride 2, channels ×2) at
layer round(depth/3) + ``downsample_offset_1`` and round(2·depth/3) + ``downsample_offset_2``
(offsets −2…2; the two layers must differ, which only rules out offsets +2/−2 at depth 14),
making 3 stages; then Norm-Act, global average pooling and a linear classifier.

Cell: four intermediate nodes. Node k (1..4) sums one op applied to each of its inputs: the
cell input and nodes 1..k−1 (``node_k`` lists k ops in that order; ``zero`` drops an input).
Ops: ``conv3x3``, ``conv5x5`` (Conv-Norm), ``sepconv3x3``, ``sepconv5x5`` (depthwise +
pointwise conv, Norm), ``maxpool3x3``, ``avgpool3x3`` (stride 1), ``identity``, ``zero``.
The cell output is the **sum of the leaf nodes** (intermediate nodes no later node reads
through a non-zero op; node 4 is always one), then ``attention`` (SE or CBAM) is applied.
``residual``: ``pre_activation`` computes x + cell(Act(Norm(x))); ``post_activation`` computes
Act(Norm(x + cell(x))). Norms: BatchNorm; LayerNorm as GroupNorm(1, C) (normalises over
channels and positions, the usual conv form); GroupNorm with gcd(32, C) groups.

``canonical_hash`` compares what the network computes: the cell as a multiset of terms
(:mod:`spaces.cellterms`), the width as initial_channels × width_multiplier, and the macro
choices except those a zero cell makes inert (:meth:`HierarchicalSpace.inert_fields`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from spaces.base import SearchSpace, TaskInfo, hash_payload
from spaces.cellterms import HOMOGENEOUS, LINEAR, PASS, WEIGHTED, Terms, cell_key, loose_end_terms, loose_ends
from spaces.cost import CostCache, Plan, expand, plan_cost
from spaces.layers import CBAM, SqueezeExcite, avg_pool, conv, global_pool, max_pool, norm_layer, scaled

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["HierarchicalSpec", "HierarchicalSpace", "CELL_OPS"]

CellOp = Literal["conv3x3", "conv5x5", "sepconv3x3", "sepconv5x5", "maxpool3x3", "avgpool3x3",
                 "identity", "zero"]
CELL_OPS: tuple[str, ...] = CellOp.__args__
DEPTHS = tuple(range(14, 51, 2))
Depth = Literal[DEPTHS]  # type: ignore[valid-type]
OFFSETS = (-2, -1, 0, 1, 2)


def _node(k: int):
    inputs = "the cell input" + "".join(f", node {i}" for i in range(1, k))
    return Field(min_length=k, max_length=k,
                 description=f"exactly {k} op(s), applied to {inputs} (in that order) and summed")


class HierarchicalSpec(BaseModel):
    """A PMF-NAS architecture: macro choices plus a 4-node cell."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: Depth = Field(description="number of cells, 14 to 50 in steps of 2")
    initial_channels: Literal[16, 32, 48, 64] = Field(description="channels of the first stage")
    width_multiplier: Literal[1.0, 1.5, 2.0, 2.5] = Field(description="scales every channel count")
    downsample_offset_1: Literal[-2, -1, 0, 1, 2] = Field(
        description="first downsampling at layer round(depth/3) + this offset")
    downsample_offset_2: Literal[-2, -1, 0, 1, 2] = Field(
        description="second downsampling at layer round(2*depth/3) + this offset")
    activation: Literal["relu", "swish", "gelu"] = Field(
        description="activation used throughout (swish = SiLU)")
    norm: Literal["batchnorm", "layernorm", "groupnorm"] = Field(
        description="normalisation layer; layernorm = GroupNorm(1, C), groupnorm = "
                    "GroupNorm(gcd(32, C), C)")
    attention: Literal["none", "se", "cbam"] = Field(
        description="attention on each cell's output: squeeze-excitation or CBAM")
    residual: Literal["pre_activation", "post_activation"] = Field(
        description="pre_activation: x + cell(act(norm(x))); post_activation: "
                    "act(norm(x + cell(x)))")
    node_1: list[CellOp] = _node(1)
    node_2: list[CellOp] = _node(2)
    node_3: list[CellOp] = _node(3)
    node_4: list[CellOp] = _node(4)

    @field_validator("node_1", "node_2", "node_3", "node_4", mode="before")
    @classmethod
    def _tuple_ok(cls, value: object) -> object:
        return list(value) if isinstance(value, tuple) else value

    @model_validator(mode="after")
    def _distinct_downsamplings(self):
        first, second = self.downsample_layers()
        if first >= second:
            gap = round(2 * self.depth / 3) - round(self.depth / 3)
            raise ValueError(
                f"downsample_offset_1 and downsample_offset_2 (each one of {list(OFFSETS)}) put both "
                f"downsamplings at layers {first} and {second}; they must be distinct and in order: "
                f"with depth={self.depth}, downsample_offset_1 - downsample_offset_2 must be "
                f"below {gap}")
        return self

    def cell(self) -> list[list[str]]:
        return [list(self.node_1), list(self.node_2), list(self.node_3), list(self.node_4)]

    def downsample_layers(self) -> tuple[int, int]:
        return _downsample_layers(self.depth, self.downsample_offset_1, self.downsample_offset_2)


def _live_cell(spec: HierarchicalSpec) -> list[list[str]]:
    """The cell with ops reading a node that carries no signal (all its inputs zero) zeroed."""
    cell, alive = spec.cell(), [True]
    for ops in cell:
        ops[:] = [op if alive[i] else "zero" for i, op in enumerate(ops)]
        alive.append(any(op != "zero" for op in ops))
    return cell


#: how each op acts on its input's terms (:mod:`spaces.cellterms`): the stride-1 average pool
#: divides by a count fixed per position (count_include_pad=False), so it is linear; the max pool
#: (padding never wins) is parameter-free and positively homogeneous; the convs carry weights
_KINDS = {"identity": PASS, "avgpool3x3": LINEAR, "maxpool3x3": HOMOGENEOUS, "conv3x3": WEIGHTED,
          "conv5x5": WEIGHTED, "sepconv3x3": WEIGHTED, "sepconv5x5": WEIGHTED}


def _cell_terms(cell: list[list[str]]) -> tuple[Terms, list[str]]:
    """What the live ``cell`` (:func:`_live_cell`) outputs before attention, as sorted terms of
    its input ``x`` (``()``: zeros), and one definition per conv it holds: node k sums its
    non-zero ops, the output sums the loose ends (:func:`spaces.cellterms.loose_end_terms`)."""
    return loose_end_terms(cell, _KINDS, "zero")


def _identity_cells(spec: HierarchicalSpec, terms: Terms) -> bool:
    """Whether every cell computes x exactly: the cell outputs zeros (``terms`` empty), and
    attention(0) = 0 for SE and CBAM (they scale their input), so pre_activation gives x + 0.
    The network is then stem, two transitions and head whatever the depth and the downsampling
    layers. (post_activation still computes Act(Norm(x)) per cell.)"""
    return not terms and spec.residual == "pre_activation"


def _downsample_layers(depth: int, offset_1: int, offset_2: int) -> tuple[int, int]:
    """The layers of the two transitions: round(depth/3) + offset_1, round(2·depth/3) + offset_2."""
    return round(depth / 3) + offset_1, round(2 * depth / 3) + offset_2


def _positions_ok(macro: dict) -> bool:
    """Whether the two downsampling layers are distinct and in order (only depth 14 can fail)."""
    first, second = _downsample_layers(macro["depth"], macro["downsample_offset_1"],
                                       macro["downsample_offset_2"])
    return first < second


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU}[name]()


class _SepConv(nn.Sequential):
    def __init__(self, dims: int, c: int, k: int, norm: str) -> None:
        super().__init__(conv(dims, c, c, k, groups=c), conv(dims, c, c, 1), norm_layer(norm, dims, c))


def _cell_op(op: str, dims: int, c: int, norm: str) -> nn.Module | None:
    if op == "zero":
        return None
    if op == "identity":
        return nn.Identity()
    if op.startswith("maxpool"):
        return max_pool(dims, 3, 1)
    if op.startswith("avgpool"):
        return avg_pool(dims, 3, 1)
    k = 3 if op.endswith("3x3") else 5
    if op.startswith("sepconv"):
        return _SepConv(dims, c, k, norm)
    return nn.Sequential(conv(dims, c, c, k), norm_layer(norm, dims, c))


class _Cell(nn.Module):
    def __init__(self, spec: HierarchicalSpec, cell: list[list[str]], dims: int, c: int):
        super().__init__()
        self.ops = nn.ModuleList(nn.ModuleList(
            m if (m := _cell_op(op, dims, c, spec.norm)) is not None else nn.Identity()
            for op in ops) for ops in cell)
        self.active = [[op != "zero" for op in ops] for ops in cell]
        self.leaves = loose_ends(cell, "zero")
        self.attention = {"none": nn.Identity(), "se": SqueezeExcite(dims, c),
                          "cbam": CBAM(dims, c)}[spec.attention]
        self.pre = spec.residual == "pre_activation"
        self.norm, self.act = norm_layer(spec.norm, dims, c), _activation(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(x)) if self.pre else x
        nodes = [h]
        for ops, active in zip(self.ops, self.active, strict=True):
            terms = [op(nodes[i]) for i, (op, on) in enumerate(zip(ops, active, strict=True)) if on]
            nodes.append(_total(terms) if terms else torch.zeros_like(h))
        out = self.attention(_total([nodes[k] for k in self.leaves]))
        return x + out if self.pre else self.act(self.norm(x + out))


def _plan(spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0) -> Plan:
    """Stem; runs of identical cells split by the two transitions; head."""
    dims, cell = task.spatial_dims, _live_cell(spec)
    c = scaled(spec.initial_channels * spec.width_multiplier, width_mult)
    plan: list = [(partial(_stem, spec.norm, dims, task.input_shape[0], c), 1)]
    start = 0
    for stop in (*spec.downsample_layers(), spec.depth):
        plan.append((partial(_Cell, spec, cell, dims, c), stop - start))
        if stop < spec.depth:
            plan.append((partial(_transition, spec, dims, c), 1))
            c *= 2
        start = stop
    plan.append((partial(_head, spec, dims, c, task.num_classes), 1))
    return [(factory, times) for factory, times in plan if times > 0]


def _stem(norm: str, dims: int, c_in: int, c: int) -> nn.Module:
    return nn.Sequential(conv(dims, c_in, c, 3), norm_layer(norm, dims, c))


def _transition(spec: HierarchicalSpec, dims: int, c: int) -> nn.Module:
    return nn.Sequential(norm_layer(spec.norm, dims, c), _activation(spec.activation),
                         conv(dims, c, 2 * c, 3, stride=2))


def _head(spec: HierarchicalSpec, dims: int, c: int, num_classes: int) -> nn.Module:
    return nn.Sequential(norm_layer(spec.norm, dims, c), _activation(spec.activation),
                         global_pool(dims), nn.Flatten(), nn.Linear(c, num_classes))


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class HierarchicalNetwork(nn.Sequential):
    """The expanded plan: stem, ``depth`` cells with two transitions, head."""

    def __init__(self, spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0):
        super().__init__(*expand(_plan(spec, task, width_mult)))


class HierarchicalSpace(SearchSpace):
    """PMF-NAS macro + cell space (Tables 3–5 of the paper)."""

    name = "hierarchical"
    spec_model = HierarchicalSpec
    op_names = CELL_OPS
    node_types: tuple[str, ...] = ("input", "output") + tuple(o for o in CELL_OPS if o != "zero")
    _macro = {"depth": DEPTHS, "initial_channels": (16, 32, 48, 64),
              "width_multiplier": (1.0, 1.5, 2.0, 2.5), "downsample_offset_1": OFFSETS,
              "downsample_offset_2": OFFSETS, "activation": ("relu", "swish", "gelu"),
              "norm": ("batchnorm", "layernorm", "groupnorm"), "attention": ("none", "se", "cbam"),
              "residual": ("pre_activation", "post_activation")}

    _costs = CostCache()

    @property
    def node_feature_dim(self) -> int:
        return len(self.node_types)

    def describe(self) -> str:
        macro = "; ".join(f"{k} in {list(v) if k != 'depth' else '14..50 step 2'}"
                          for k, v in self._macro.items())
        return (
            "PMF-NAS hierarchical space. Macro choices: " + macro + ". The network is a stem "
            "conv, `depth` cells, with two stride-2 downsamplings (channels x2) at layers "
            "round(depth/3)+downsample_offset_1 and round(2*depth/3)+downsample_offset_2. The "
            "cell has 4 intermediate nodes; node_k lists exactly k ops applied to the cell input "
            "and nodes 1..k-1 (in that order), summed; 'zero' drops an input. Ops: "
            f"{', '.join(CELL_OPS)}. The cell output sums the nodes no later node reads, then "
            "applies the attention; the residual form wraps the cell. An op reading a node with "
            "no non-zero input is dead; cells wired differently that compute the same sum are "
            "the same architecture (a chain of identity ops is one identity, two maxpool3x3 of "
            "one input are one function), only initial_channels*width_multiplier matters, and "
            "a cell with no live op outputs zeros, so its attention does not matter (nor, with "
            "pre_activation, depth and the downsampling offsets). Example spec: "
            + self.reference().model_dump_json())

    def reference(self) -> HierarchicalSpec:
        return HierarchicalSpec(
            depth=14, initial_channels=16, width_multiplier=1.0, downsample_offset_1=0,
            downsample_offset_2=0, activation="relu", norm="batchnorm", attention="none",
            residual="pre_activation", node_1=["conv3x3"], node_2=["zero", "conv3x3"],
            node_3=["identity", "zero", "zero"], node_4=["zero", "zero", "identity", "identity"])

    def sample(self, rng: np.random.Generator) -> HierarchicalSpec:
        while True:
            macro = {k: v[int(rng.integers(len(v)))] for k, v in self._macro.items()}
            if _positions_ok(macro):
                break
        cell = {f"node_{k}": [CELL_OPS[int(rng.integers(len(CELL_OPS)))] for _ in range(k)]
                for k in range(1, 5)}
        return HierarchicalSpec(**macro, **cell)

    def mutate(self, spec: HierarchicalSpec, rng: np.random.Generator) -> HierarchicalSpec:
        """Change one choice: one cell op (10 slots, most often) or one macro choice.

        Prefers a change that alters the built network; falls back to any different valid spec.
        """
        data, old = spec.model_dump(), self.canonical_hash(spec)
        slots = [(f"node_{k}", i) for k in range(1, 5) for i in range(k)] * 2
        slots += [(name, None) for name in self._macro]
        fallback = None
        for attempt in range(200):
            field, index = slots[int(rng.integers(len(slots)))]
            new = {k: (list(v) if isinstance(v, list) else v) for k, v in data.items()}
            if index is None:
                options = [v for v in self._macro[field] if v != data[field]]
                new[field] = options[int(rng.integers(len(options)))]
            else:
                options = [o for o in CELL_OPS if o != data[field][index]]
                new[field][index] = options[int(rng.integers(len(options)))]
            if not _positions_ok(new):
                continue
            candidate = HierarchicalSpec(**new)
            if self.canonical_hash(candidate) != old:
                return candidate  # prefer a change that alters the built network
            fallback = fallback or candidate
            if attempt >= 20:
                break
        assert fallback is not None, "every field has at least one other valid value"
        return fallback

    def canonical_hash(self, spec: HierarchicalSpec) -> str:
        """Equal for specs that build the same function. The cell is compared by what it
        computes (:func:`_cell_terms`; by its live edges when two convs share a definition:
        never a false twin), the width by initial_channels × width_multiplier (the only way the
        network uses them), activation, norm and residual as set; attention is ignored when the
        cell outputs zeros (attention(0) = 0), and depth and the downsampling layers too when,
        besides, the residual is pre_activation (every cell is then x + 0)."""
        cell = _live_cell(spec)
        terms, convs = _cell_terms(cell)
        layers = None if _identity_cells(spec, terms) else [spec.depth, *spec.downsample_layers()]
        return hash_payload({"space": self.name, "cell": cell_key(cell, terms, convs),
                             "channels": spec.initial_channels * spec.width_multiplier,
                             "activation": spec.activation, "norm": spec.norm,
                             "residual": spec.residual, "attention": spec.attention if terms else None,
                             "layers": layers})

    def inert_fields(self, spec: HierarchicalSpec) -> list[str]:
        """Non-zero ops reading a node that carries no signal (named ``node_k[i]``: any other op
        there is dead too), ``attention`` when the cell outputs zeros, and ``depth``,
        ``downsample_offset_1`` and ``downsample_offset_2`` when besides the residual is
        pre_activation (every cell is the identity). ``zero`` ops are never named."""
        cell = _live_cell(spec)
        dead = [f"node_{k}[{i}]" for k, (ops, live) in enumerate(zip(spec.cell(), cell, strict=True), 1)
                for i, (op, kept) in enumerate(zip(ops, live, strict=True)) if op != kept]
        terms, _ = _cell_terms(cell)
        return (dead + ([] if terms else ["attention"])
                + (["depth", "downsample_offset_1", "downsample_offset_2"]
                   if _identity_cells(spec, terms) else []))

    def to_graph(self, spec: HierarchicalSpec) -> Data:
        """Input node, output node and one node per non-zero live cell op; ``global_features``
        encode the macro choices (depth, channels, width, one-hots)."""
        from torch_geometric.data import Data

        cell = _live_cell(spec)
        nodes, src, dst = ["input", "output"], [], []
        into: dict[int, list[int]] = {}  # intermediate node -> its op nodes
        leaves = loose_ends(cell, "zero")
        for k, ops in enumerate(cell, start=1):
            into[k] = []
            for i, op in enumerate(ops):
                if op == "zero":
                    continue
                idx = len(nodes)
                nodes.append(op)
                into[k].append(idx)
                feeders = [0] if i == 0 else into[i]
                src += feeders
                dst += [idx] * len(feeders)
            if k in leaves:
                src += into[k]
                dst += [1] * len(into[k])
        x = torch.zeros(len(nodes), len(self.node_types))
        for n, t in enumerate(nodes):
            x[n, self.node_types.index(t)] = 1.0
        g = [spec.depth / 50, spec.initial_channels / 64, spec.width_multiplier / 2.5,
             (spec.downsample_offset_1 + 2) / 4, (spec.downsample_offset_2 + 2) / 4]
        for name in ("activation", "norm", "attention", "residual"):
            g += [float(getattr(spec, name) == v) for v in self._macro[name]]
        return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                    num_nodes=len(nodes), global_features=torch.tensor([g]))

    def construct(self, spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0) -> nn.Module:
        return HierarchicalNetwork(spec, task, width_mult)

    def cost(self, spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0) -> dict[str, int]:
        """Exact params and FLOPs of :meth:`construct`'s network, counted on the meta device
        once per distinct block (the cells of a stage are identical). Cached by the network as
        built (the spec with dead ops zeroed), not by :meth:`canonical_hash`: twins can differ in
        weights they never use (a zero cell's attention, the depth of identity cells)."""
        built = hash_payload({**spec.model_dump(), "cell": _live_cell(spec)})
        key = (built, task.input_shape, task.num_classes, float(width_mult))
        return self._costs.get(key, lambda: plan_cost(_plan(spec, task, width_mult),
                                                      task.input_shape))
