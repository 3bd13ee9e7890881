"""The PMF-NAS hierarchical space: a searchable macro skeleton around a searchable cell.

Macro: ``depth`` cells (14–50, step 2) with ``initial_channels`` × ``width_multiplier`` channels
after a 3×3 stem; two downsampling transitions (Norm-Act-Conv3×3 stride 2, channels ×2) at
layer round(depth/3) + ``downsample_offset_1`` and round(2·depth/3) + ``downsample_offset_2``
(offsets −2…2), making 3 stages; then Norm-Act, global average pooling and a linear classifier.

Cell: four intermediate nodes. Node k (1..4) sums one op applied to each of its inputs: the
cell input and nodes 1..k−1 (``node_k`` lists k ops in that order; ``zero`` drops an input).
Ops: ``conv3x3``, ``conv5x5`` (Conv-Norm), ``sepconv3x3``, ``sepconv5x5`` (depthwise +
pointwise conv, Norm), ``maxpool3x3``, ``avgpool3x3`` (stride 1), ``identity``, ``zero``.
The cell output is the **sum of the leaf nodes** (intermediate nodes no later node reads
through a non-zero op; node 4 is always one), then ``attention`` (SE or CBAM) is applied.
``residual``: ``pre_activation`` computes x + cell(Act(Norm(x))); ``post_activation`` computes
Act(Norm(x + cell(x))). Norms: BatchNorm; LayerNorm as GroupNorm(1, C) (normalises over
channels and positions, the usual conv form); GroupNorm with gcd(32, C) groups.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from spaces.base import SearchSpace, TaskInfo, hash_payload
from spaces.layers import avg_pool, conv, global_pool, max_pool, norm_layer, scaled

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
    activation: Literal["relu", "swish", "gelu"]
    norm: Literal["batchnorm", "layernorm", "groupnorm"]
    attention: Literal["none", "se", "cbam"]
    residual: Literal["pre_activation", "post_activation"]
    node_1: list[CellOp] = _node(1)
    node_2: list[CellOp] = _node(2)
    node_3: list[CellOp] = _node(3)
    node_4: list[CellOp] = _node(4)

    @field_validator("node_1", "node_2", "node_3", "node_4", mode="before")
    @classmethod
    def _tuple_ok(cls, value):
        return list(value) if isinstance(value, tuple) else value

    def cell(self) -> list[list[str]]:
        return [list(self.node_1), list(self.node_2), list(self.node_3), list(self.node_4)]

    def downsample_layers(self) -> tuple[int, int]:
        return (round(self.depth / 3) + self.downsample_offset_1,
                round(2 * self.depth / 3) + self.downsample_offset_2)


def _live_cell(spec: HierarchicalSpec) -> list[list[str]]:
    """The cell with ops reading a node that carries no signal (all its inputs zero) zeroed."""
    cell, alive = spec.cell(), [True]
    for k, ops in enumerate(cell):
        ops[:] = [op if alive[i] else "zero" for i, op in enumerate(ops)]
        alive.append(any(op != "zero" for op in ops))
    return cell


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU}[name]()


class _SepConv(nn.Sequential):
    def __init__(self, dims, c, k, norm):
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


class _SE(nn.Module):
    def __init__(self, dims: int, c: int):
        super().__init__()
        hidden = max(1, c // 4)
        self.pool = global_pool(dims)
        self.fc = nn.Sequential(conv(dims, c, hidden, 1, bias=True), nn.ReLU(),
                                conv(dims, hidden, c, 1, bias=True), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(self.pool(x))


class _CBAM(nn.Module):
    def __init__(self, dims: int, c: int):
        super().__init__()
        self.channel = _SE(dims, c)
        self.spatial = nn.Sequential(conv(dims, 2, 1, 7, bias=True), nn.Sigmoid())

    def forward(self, x):
        x = self.channel(x)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * self.spatial(pooled)


class _Cell(nn.Module):
    def __init__(self, spec: HierarchicalSpec, cell: list[list[str]], dims: int, c: int):
        super().__init__()
        self.ops = nn.ModuleList(nn.ModuleList(
            m if (m := _cell_op(op, dims, c, spec.norm)) is not None else nn.Identity()
            for op in ops) for ops in cell)
        self.active = [[op != "zero" for op in ops] for ops in cell]
        read = {i for ops in cell for i, op in enumerate(ops) if op != "zero"}
        self.leaves = [k + 1 for k in range(4) if k + 1 not in read or k == 3]
        self.attention = {"none": nn.Identity(), "se": _SE(dims, c),
                          "cbam": _CBAM(dims, c)}[spec.attention]
        self.pre = spec.residual == "pre_activation"
        self.norm, self.act = norm_layer(spec.norm, dims, c), _activation(spec.activation)

    def forward(self, x):
        h = self.act(self.norm(x)) if self.pre else x
        nodes = [h]
        for ops, active in zip(self.ops, self.active, strict=True):
            terms = [op(nodes[i]) for i, (op, on) in enumerate(zip(ops, active, strict=True)) if on]
            nodes.append(sum(terms) if terms else torch.zeros_like(h))
        out = self.attention(sum(nodes[k] for k in self.leaves))
        return x + out if self.pre else self.act(self.norm(x + out))


class HierarchicalNetwork(nn.Module):
    def __init__(self, spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0):
        super().__init__()
        dims, cell = task.spatial_dims, _live_cell(spec)
        c = scaled(spec.initial_channels * spec.width_multiplier, width_mult)
        layers: list[nn.Module] = [conv(dims, task.input_shape[0], c, 3),
                                   norm_layer(spec.norm, dims, c)]
        down = set(spec.downsample_layers())
        for layer in range(spec.depth):
            if layer in down:
                layers += [norm_layer(spec.norm, dims, c), _activation(spec.activation),
                           conv(dims, c, 2 * c, 3, stride=2)]
                c *= 2
            layers.append(_Cell(spec, cell, dims, c))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(norm_layer(spec.norm, dims, c), _activation(spec.activation),
                                  global_pool(dims), nn.Flatten(), nn.Linear(c, task.num_classes))

    def forward(self, x):
        return self.head(self.features(x))


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
            "applies the attention; the residual form wraps the cell. Example spec: "
            + self.reference().model_dump_json())

    def reference(self) -> HierarchicalSpec:
        return HierarchicalSpec(
            depth=14, initial_channels=16, width_multiplier=1.0, downsample_offset_1=0,
            downsample_offset_2=0, activation="relu", norm="batchnorm", attention="none",
            residual="pre_activation", node_1=["conv3x3"], node_2=["zero", "conv3x3"],
            node_3=["identity", "zero", "zero"], node_4=["zero", "zero", "identity", "identity"])

    def sample(self, rng: np.random.Generator) -> HierarchicalSpec:
        macro = {k: v[int(rng.integers(len(v)))] for k, v in self._macro.items()}
        cell = {f"node_{k}": [CELL_OPS[int(rng.integers(len(CELL_OPS)))] for _ in range(k)]
                for k in range(1, 5)}
        return HierarchicalSpec(**macro, **cell)

    def mutate(self, spec: HierarchicalSpec, rng: np.random.Generator) -> HierarchicalSpec:
        """Change one choice: one cell op (10 slots, most often) or one macro choice."""
        data, old = spec.model_dump(), self.canonical_hash(spec)
        slots = [(f"node_{k}", i) for k in range(1, 5) for i in range(k)] * 2
        slots += [(name, None) for name in self._macro]
        candidate = spec
        for _ in range(20):
            field, index = slots[int(rng.integers(len(slots)))]
            new = {k: (list(v) if isinstance(v, list) else v) for k, v in data.items()}
            if index is None:
                options = [v for v in self._macro[field] if v != data[field]]
                new[field] = options[int(rng.integers(len(options)))]
            else:
                options = [o for o in CELL_OPS if o != data[field][index]]
                new[field][index] = options[int(rng.integers(len(options)))]
            candidate = HierarchicalSpec(**new)
            if self.canonical_hash(candidate) != old:
                break
        return candidate

    def canonical_hash(self, spec: HierarchicalSpec) -> str:
        data = spec.model_dump()
        data.update({f"node_{k + 1}": ops for k, ops in enumerate(_live_cell(spec))})
        return hash_payload({"space": self.name, **data})

    def to_graph(self, spec: HierarchicalSpec):
        """Input node, output node and one node per non-zero live cell op; ``global_features``
        encode the macro choices (depth, channels, width, one-hots)."""
        from torch_geometric.data import Data

        cell = _live_cell(spec)
        nodes, src, dst = ["input", "output"], [], []
        into: dict[int, list[int]] = {}  # intermediate node -> its op nodes
        read = {i for ops in cell for i, op in enumerate(ops) if op != "zero"}
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
            if k not in read or k == 4:
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

    def construct(self, spec: HierarchicalSpec, task: TaskInfo, width_mult: float = 1.0):
        return HierarchicalNetwork(spec, task, width_mult)
