"""NAS-Bench-201: a 4-node cell DAG with 6 edges in the benchmark's macro skeleton.

Cell: node 0 is the cell input; node j (1..3) is the sum over i < j of ``op_{j,i}(node i)``;
node 3 is the cell output. Ops: ``none`` (zero), ``skip_connect`` (identity), ``nor_conv_1x1``
and ``nor_conv_3x3`` (ReLU-Conv-BN), ``avg_pool_3x3`` (stride 1).

Macro (as in the benchmark): stem Conv3x3 + BN; stage 1: N cells with C channels; a residual
reduction block (ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut AvgPool/2 + Conv1x1; channels x2);
stage 2: N cells with 2C; reduction; stage 3: N cells with 4C; BN-ReLU, global average pool,
linear. The benchmark uses C=16, N=5; both are spec fields so fidelity can scale them.

The spec reads and writes the benchmark's own cell strings,
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from spaces.base import SearchSpace, TaskInfo, hash_payload
from spaces.cellterms import LINEAR, PASS, WEIGHTED, Terms, cell_key, dag_terms
from spaces.cost import CostCache, Plan, expand, plan_cost
from spaces.layers import Zero, avg_pool, batch_norm, conv, global_pool, scaled

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["NB201Spec", "NB201Space", "OPS", "EDGES"]

Op = Literal["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (field name, target node j, source node i) in the benchmark string's order.
EDGES: tuple[tuple[str, int, int], ...] = (
    ("edge_1_0", 1, 0), ("edge_2_0", 2, 0), ("edge_2_1", 2, 1),
    ("edge_3_0", 3, 0), ("edge_3_1", 3, 1), ("edge_3_2", 3, 2),
)
CHANNELS = (8, 16, 32, 64)
CELLS_PER_STAGE = (1, 2, 3, 4, 5)


def _edge(j: int, i: int):
    return Field(description=f"operation on the edge from node {i} into node {j}")


class NB201Spec(BaseModel):
    """A NAS-Bench-201 architecture: six edge operations plus the macro's width and depth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edge_1_0: Op = _edge(1, 0)
    edge_2_0: Op = _edge(2, 0)
    edge_2_1: Op = _edge(2, 1)
    edge_3_0: Op = _edge(3, 0)
    edge_3_1: Op = _edge(3, 1)
    edge_3_2: Op = _edge(3, 2)
    channels: Literal[8, 16, 32, 64] = Field(
        16, description="C: channels of the first stage (stages use C, 2C, 4C); benchmark: 16")
    cells_per_stage: Literal[1, 2, 3, 4, 5] = Field(
        5, description="N: cells per stage; benchmark: 5")

    def ops(self) -> list[str]:
        return [getattr(self, name) for name, _, _ in EDGES]


_NODE_RE = re.compile(r"^(\w+)~(\d+)$")


def _live_ops(spec: NB201Spec) -> list[str]:
    """The six ops with dead edges replaced by ``none``.

    An edge i→j is live when it is not ``none``, node i is reachable from the input (node 0)
    and node j reaches the output (node 3) through non-``none`` edges.
    """
    ops = spec.ops()
    active = [(j, i) for (_, j, i), op in zip(EDGES, ops, strict=True) if op != "none"]
    reach_in = {0}
    for j in (1, 2, 3):
        if any(jj == j and i in reach_in for jj, i in active):
            reach_in.add(j)
    reach_out = {3}
    for i in (2, 1, 0):
        if any(ii == i and j in reach_out for j, ii in active):
            reach_out.add(i)
    return [op if (op != "none" and i in reach_in and j in reach_out) else "none"
            for (_, j, i), op in zip(EDGES, ops, strict=True)]


#: how each live op acts on its input's terms (:mod:`spaces.cellterms`)
_KINDS = {"skip_connect": PASS, "avg_pool_3x3": LINEAR, "nor_conv_1x1": WEIGHTED,
          "nor_conv_3x3": WEIGHTED}


def _cell_terms(live_ops: list[str]) -> tuple[Terms, list[str]]:
    """What the cell computes, written canonically: its output as a sorted multiset of terms
    (``()`` when it outputs zeros, ``("x",)`` for the identity), and the definition of each
    convolution it holds, one per live convolution edge.

    Node j is the sum of ``op(node i)`` over its live edges, so a node is a multiset of terms
    and sums flatten (:func:`spaces.cellterms.dag_terms`). ``skip_connect`` passes its input's
    terms through (a chain of skips is one skip), ``avg_pool_3x3`` is linear and parameter-free
    so it applies to each term, and a convolution (ReLU-Conv-BN, its own weights) is one new
    term, ``op(its whole input)``.
    """
    incoming = [[(i, op) for (_, jj, i), op in zip(EDGES, live_ops, strict=True)
                 if jj == j and op != "none"] for j in (1, 2, 3)]
    nodes, convs = dag_terms(incoming, _KINDS)
    return nodes[3], convs


def _depth_matters(terms: tuple[str, ...]) -> bool:
    """False when stacking the cell N times computes the same as once (``terms``: the cell's
    output, :func:`_cell_terms`): a cell that outputs zeros or the identity (its only live path
    is skip connections)."""
    return terms not in ((), ("x",))


class _Cell(nn.Module):
    """Node j sums its live incoming edges; ``none`` edges are not computed (a node with no
    live input is zero)."""

    def __init__(self, ops: list[str], channels: int, dims: int):
        super().__init__()
        self.edges = nn.ModuleList(_make_op(op, channels, dims) for op in ops)
        self.live = [(j, i, k) for k, ((_, j, i), op) in enumerate(zip(EDGES, ops, strict=True))
                     if op != "none"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for j, i, k in self.live:
            out = self.edges[k](nodes[i])
            nodes[j] = out if nodes[j] is None else nodes[j] + out
        return nodes[3] if nodes[3] is not None else torch.zeros_like(x)


def _make_op(op: str, channels: int, dims: int) -> nn.Module:
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return avg_pool(dims, 3, 1)
    kernel = 1 if op == "nor_conv_1x1" else 3
    return nn.Sequential(nn.ReLU(), conv(dims, channels, channels, kernel), batch_norm(dims, channels))


class _Reduction(nn.Module):
    """The benchmark's ResNet basic block with stride 2 between stages."""

    def __init__(self, c_in: int, c_out: int, dims: int):
        super().__init__()
        self.a = nn.Sequential(nn.ReLU(), conv(dims, c_in, c_out, 3, stride=2), batch_norm(dims, c_out))
        self.b = nn.Sequential(nn.ReLU(), conv(dims, c_out, c_out, 3), batch_norm(dims, c_out))
        self.shortcut = nn.Sequential(_pool2(dims), conv(dims, c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


def _pool2(dims: int) -> nn.Module:
    # kernel 2, stride 2, ceil_mode so odd lengths match the strided conv's output size
    cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
    return cls(2, stride=2, ceil_mode=True, padding=0)


def _plan(spec: NB201Spec, task: TaskInfo, width_mult: float = 1.0) -> Plan:
    """Stem, 3 stages of N identical cells with reductions between them, then the head."""
    dims, ops = task.spatial_dims, _live_ops(spec)
    c = scaled(spec.channels, width_mult)
    plan: list = [(partial(_stem, dims, task.input_shape[0], c), 1)]
    for stage in range(3):
        width = c * 2**stage
        if stage > 0:
            plan.append((partial(_Reduction, width // 2, width, dims), 1))
        plan.append((partial(_Cell, ops, width, dims), spec.cells_per_stage))
    plan.append((partial(_head, dims, c * 4, task.num_classes), 1))
    return plan


def _stem(dims: int, c_in: int, c: int) -> nn.Module:
    return nn.Sequential(conv(dims, c_in, c, 3), batch_norm(dims, c))


def _head(dims: int, c: int, num_classes: int) -> nn.Module:
    return nn.Sequential(batch_norm(dims, c), nn.ReLU(), global_pool(dims), nn.Flatten(),
                         nn.Linear(c, num_classes))


class NB201Network(nn.Sequential):
    """The expanded plan: stem, cells and reductions, head; ``(B, C, *S)`` → ``(B, classes)``."""

    def __init__(self, spec: NB201Spec, task: TaskInfo, width_mult: float = 1.0):
        super().__init__(*expand(_plan(spec, task, width_mult)))


class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space (15,625 cells) with adjustable C and N."""

    name = "nb201"
    spec_model = NB201Spec
    op_names: tuple[str, ...] = OPS
    #: node types of :meth:`to_graph`: input, output, then the four non-``none`` ops
    node_types: tuple[str, ...] = ("input", "output", "skip_connect", "nor_conv_1x1",
                                   "nor_conv_3x3", "avg_pool_3x3")

    _costs = CostCache()

    @property
    def node_feature_dim(self) -> int:
        return len(self.node_types)

    # ---- benchmark strings -----------------------------------------------------------
    @staticmethod
    def to_arch_string(spec: NB201Spec) -> str:
        ops = spec.ops()
        return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)

    @staticmethod
    def from_arch_string(arch: str, channels: int = 16, cells_per_stage: int = 5) -> NB201Spec:
        """Parse a benchmark cell string; raises ``ValueError`` naming what is wrong."""
        if not isinstance(arch, str):
            raise ValueError(f"cell string must be a str, got {type(arch).__name__}")
        nodes = arch.strip().split("+")
        if len(nodes) != 3:
            raise ValueError(f"cell string {arch!r} must have 3 nodes separated by '+', "
                             f"found {len(nodes)}")
        values: dict[str, str] = {}
        for j, node in enumerate(nodes, start=1):
            parts = [p for p in node.strip().strip("|").split("|")]
            if len(parts) != j:
                raise ValueError(f"node {j} of {arch!r} must have {j} edge(s), found {len(parts)}")
            for expected_i, part in enumerate(parts):
                m = _NODE_RE.match(part)
                if not m or int(m.group(2)) != expected_i:
                    raise ValueError(f"edge {part!r} into node {j} of {arch!r} must read "
                                     f"'<op>~{expected_i}'")
                if m.group(1) not in OPS:
                    raise ValueError(f"unknown op {m.group(1)!r} in {arch!r}; allowed: "
                                     f"{', '.join(OPS)}")
                values[f"edge_{j}_{expected_i}"] = m.group(1)
        return NB201Spec(**values, channels=channels, cells_per_stage=cells_per_stage)

    # ---- SearchSpace -----------------------------------------------------------------
    def describe(self) -> str:
        example = self.reference().model_dump_json()
        return (
            "NAS-Bench-201 cell space. A cell is a DAG of 4 nodes: node 0 is the cell input, "
            "node j (1..3) sums one operation applied to every earlier node, node 3 is the cell "
            "output. Choose the operation on each of the 6 edges (edge_J_I: from node I into "
            f"node J) from: {', '.join(OPS)}. 'none' removes the edge; 'nor_conv_*' is "
            "ReLU-Conv-BatchNorm; 'avg_pool_3x3' has stride 1. The network is a stem conv, "
            "3 stages of `cells_per_stage` identical cells (channels C, 2C, 4C with "
            "C = `channels`) joined by residual stride-2 reduction blocks, then global pooling "
            f"and a linear classifier. channels in {list(CHANNELS)}; cells_per_stage in "
            f"{list(CELLS_PER_STAGE)}. Edges that cannot carry signal from input to output are "
            "dead and count as 'none'; a chain of skip_connect edges is one skip, so two cells "
            "that differ only in how skips are wired are the same architecture, and a cell whose "
            f"only live path is skips is the identity. Example spec: {example}"
        )

    def reference(self) -> NB201Spec:
        # ResNet-like cell: two 3x3 convs in series plus a skip from the input
        return self.from_arch_string(
            "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
            channels=16, cells_per_stage=1)

    def sample(self, rng: np.random.Generator) -> NB201Spec:
        ops = {name: OPS[int(rng.integers(len(OPS)))] for name, _, _ in EDGES}
        return NB201Spec(**ops, channels=int(rng.choice(CHANNELS)),
                         cells_per_stage=int(rng.choice(CELLS_PER_STAGE)))

    def mutate(self, spec: NB201Spec, rng: np.random.Generator) -> NB201Spec:
        """Change one choice: an edge op (most often), the width or the depth.

        Prefers a change that alters the built network (not only a dead edge); falls back to
        any different spec after a few tries.
        """
        fields = [name for name, _, _ in EDGES] * 3 + ["channels", "cells_per_stage"]
        choices = {"channels": CHANNELS, "cells_per_stage": CELLS_PER_STAGE}
        old_hash, candidate = self.canonical_hash(spec), spec
        for _ in range(20):
            field = fields[int(rng.integers(len(fields)))]
            options = [v for v in choices.get(field, OPS) if v != getattr(spec, field)]
            candidate = spec.model_copy(update={field: options[int(rng.integers(len(options)))]})
            candidate = NB201Spec.model_validate(candidate.model_dump())
            if self.canonical_hash(candidate) != old_hash:
                break
        return candidate

    def canonical_hash(self, spec: NB201Spec) -> str:
        """Equal for specs that build the same function: dead edges count as ``none``, the cell
        is compared by what it computes (:func:`spaces.cellterms.cell_key`: a chain of skips is one skip, so
        cells wired differently can be twins), and N is ignored when the cell is the identity or
        outputs zeros; C is ignored too when the cell outputs zeros (the network then predicts a
        constant, whatever its width)."""
        ops = _live_ops(spec)
        terms, convs = _cell_terms(ops)
        depth = spec.cells_per_stage if _depth_matters(terms) else 1
        width = spec.channels if terms else 0
        return hash_payload({"space": self.name, "cell": cell_key(ops, terms, convs),
                             "C": width, "N": depth})

    def inert_fields(self, spec: NB201Spec) -> list[str]:
        """Dead edges that are not ``none`` (no path from the input reaches them, or none from
        them reaches the output), ``cells_per_stage`` when the cell is the identity or outputs
        zeros (so any N computes the same), and ``channels`` when it outputs zeros."""
        live = _live_ops(spec)
        dead = [name for (name, _, _), op, kept in zip(EDGES, spec.ops(), live, strict=True)
                if op != kept]
        terms, _ = _cell_terms(live)
        return (dead + ([] if _depth_matters(terms) else ["cells_per_stage"])
                + ([] if terms else ["channels"]))

    def canonical_arch_string(self, spec: NB201Spec) -> str:
        """The cell string with dead edges written as ``none``."""
        live = NB201Spec(**dict(zip([n for n, _, _ in EDGES], _live_ops(spec), strict=True)))
        return self.to_arch_string(live)

    def to_graph(self, spec: NB201Spec) -> Data:
        """Operation-node graph: an input node, an output node and one node per live op.

        Node features ``x`` are one-hot over :attr:`node_types`; an op node on edge i→j is fed
        by the input node (i = 0) or by every live op node into node i, and feeds the output
        node (j = 3) or every live op node leaving node j. ``global_features`` holds
        [log2(C)/6, N/5].
        """
        from torch_geometric.data import Data

        live = _live_ops(spec)
        nodes = ["input", "output"]
        op_nodes: list[tuple[int, int, int]] = []  # (node index, j, i)
        for (_, j, i), op in zip(EDGES, live, strict=True):
            if op != "none":
                op_nodes.append((len(nodes), j, i))
                nodes.append(op)
        src, dst = [], []
        for idx, j, i in op_nodes:
            feeders = [0] if i == 0 else [k for k, jj, _ in op_nodes if jj == i]
            src += feeders
            dst += [idx] * len(feeders)
            if j == 3:
                src.append(idx)
                dst.append(1)
        x = torch.zeros(len(nodes), len(self.node_types))
        for k, t in enumerate(nodes):
            x[k, self.node_types.index(t)] = 1.0
        return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                    num_nodes=len(nodes),
                    global_features=torch.tensor([[np.log2(spec.channels) / 6.0,
                                                   spec.cells_per_stage / 5.0]]))

    def construct(self, spec: NB201Spec, task: TaskInfo, width_mult: float = 1.0) -> nn.Module:
        return NB201Network(spec, task, width_mult)

    def cost(self, spec: NB201Spec, task: TaskInfo, width_mult: float = 1.0) -> dict[str, int]:
        """Exact params and FLOPs of :meth:`construct`'s network, counted on the meta device
        once per distinct block (the N cells of a stage are identical). Cached by the network as
        built (live ops, C and N), not by :meth:`canonical_hash`: a zero cell's twins at other
        widths compute the same constant with other parameter counts."""
        built = (tuple(_live_ops(spec)), spec.channels, spec.cells_per_stage)
        key = (built, task.input_shape, task.num_classes, float(width_mult))
        return self._costs.get(key, lambda: plan_cost(_plan(spec, task, width_mult),
                                                      task.input_shape))

