"""Stage 1 of DCL-ENAS: contrastive pretraining of the GIN encoder, without labels.

Unlabelled specs are sampled from a space; each gives two *views* and InfoNCE (NT-Xent) pulls
the two views of one architecture together and pushes the other architectures of the batch
away. A view is built from the spec by

* a **function-preserving rewrite** (:func:`hash_preserving_rewrite`): a random change of one
  spec field kept only when ``space.canonical_hash`` is unchanged (for ``nb201``: an op on a
  dead edge, an edge that stays dead, the depth of an identity cell), or, with probability
  ``p_perturb``, a **light perturbation**: one ``space.mutate`` step (a near neighbour, not the
  same function);
* a **dead branch** (:func:`add_dead_branch`, probability ``p_dead``): op nodes hanging off the
  graph that never reach the output, so they compute nothing the network uses;
* **node relabelling** (:func:`permute_nodes`): a random order of the graph's nodes (the GIN is
  permutation-invariant, so this one checks the invariance rather than teaching it).

The pretrained encoder is cached under ``$EDAS_CACHE`` (default ``~/.cache/edas-agent``) in
``predictor/``, one file per space, pretraining settings and :data:`VERSION`; a second call
loads it instead of training again (``PretrainedEncoder.cached``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from evaluators.predictor.features import schema_slots
from evaluators.predictor.gnn import GINEncoder
from evaluators.train import cpu_threads

if TYPE_CHECKING:
    from pydantic import BaseModel
    from torch_geometric.data import Batch, Data

    from spaces.base import SearchSpace

__all__ = ["VERSION", "PretrainConfig", "PretrainedEncoder", "cache_dir", "hash_preserving_rewrite",
           "add_dead_branch", "permute_nodes", "info_nce", "sample_unique", "make_views",
           "pretrain", "load_or_pretrain"]

#: bump when views, loss or encoder change: cached encoders of older versions are not reused
#: (2: ``nb201``'s canonical hash compares what a cell computes, so more rewrites keep it;
#: 3: so does ``hierarchical``'s, which also ignores a zero cell's attention and, with
#: pre_activation, its depth and downsampling layers)
VERSION = 3


@dataclass(frozen=True)
class PretrainConfig:
    """Stage-1 settings; every field is part of the cache key."""

    specs: int = 2048           # distinct unlabelled architectures (graphs) sampled from the space
    epochs: int = 30
    batch: int = 256
    temperature: float = 0.1    # InfoNCE temperature
    lr: float = 2e-3
    p_perturb: float = 0.3      # a view is one mutation away instead of the same function
    p_dead: float = 0.5         # a view gets a dead branch of 1–2 op nodes
    views_per_spec: int = 4     # spec-level views precomputed per architecture
    hidden: int = 128           # encoder width/depth: must match the fine-tuned GIN
    layers: int = 3
    dropout: float = 0.1
    bidirectional: bool = True  # messages along and against the edges (measured: τ +0.04)
    proj_dim: int = 64
    seed: int = 0

    def key(self, space: SearchSpace) -> str:
        import hashlib

        payload = json.dumps({"space": space.name, "node_dim": space.node_feature_dim,
                              "version": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass
class PretrainedEncoder:
    """A stage-1 encoder: its weights, InfoNCE per epoch, where it is cached and whether this
    call loaded it (``cached``) or trained it (``seconds`` of training)."""

    state: dict[str, torch.Tensor]
    config: PretrainConfig
    space: str
    losses: list[float]
    path: Path
    cached: bool
    seconds: float = 0.0

    def encoder(self, node_dim: int) -> GINEncoder:
        enc = GINEncoder(node_dim, self.config.hidden, self.config.layers, self.config.dropout,
                         self.config.bidirectional)
        enc.load_state_dict(self.state)
        return enc.eval()


def cache_dir() -> Path:
    """``$EDAS_CACHE/predictor`` (default ``~/.cache/edas-agent/predictor``)."""
    return Path(os.environ.get("EDAS_CACHE", Path.home() / ".cache" / "edas-agent")) / "predictor"


# ---- views ---------------------------------------------------------------------------------
def hash_preserving_rewrite(space: SearchSpace, spec: BaseModel, rng: np.random.Generator,
                            tries: int = 12) -> BaseModel:
    """A spec that builds the same function: one field changed at random, kept only if the
    canonical hash is unchanged (a change the spec model refuses is skipped); ``spec`` itself
    when no try keeps it."""
    slots = schema_slots(space)
    data, want = spec.model_dump(), space.canonical_hash(spec)
    for _ in range(tries):
        name, index, values = slots[int(rng.integers(len(slots)))]
        if not values:
            continue
        value = values[int(rng.integers(len(values)))]
        new = json.loads(json.dumps(data))
        if index is None:
            new[name] = value
        else:
            new[name][index] = value
        if new == data:
            continue
        try:
            candidate = space.spec_model.model_validate(new)
        except ValidationError:  # one field changed alone can break a cross-field constraint
            continue
        if space.canonical_hash(candidate) == want:
            return candidate
    return spec


def permute_nodes(graph: Data, rng: np.random.Generator) -> Data:
    """The same graph with its nodes in a random order (a relabelling)."""
    from torch_geometric.data import Data

    perm = torch.as_tensor(rng.permutation(graph.num_nodes))
    where = torch.empty_like(perm)
    where[perm] = torch.arange(len(perm))  # old index -> new index
    return Data(x=graph.x[perm], edge_index=where[graph.edge_index], num_nodes=graph.num_nodes)


def add_dead_branch(graph: Data, rng: np.random.Generator, node_types: tuple[str, ...],
                    max_nodes: int = 2) -> Data:
    """Adds 1–``max_nodes`` op nodes in a chain fed by a random non-output node, feeding nothing:
    their output never reaches the network's output, so the function is unchanged."""
    from torch_geometric.data import Data

    ops = [k for k, t in enumerate(node_types) if t not in ("input", "output")]
    out = node_types.index("output")
    x, n = graph.x, graph.num_nodes
    sources = [k for k in range(n) if x[k, out] == 0]
    src, dst, rows = [], [], []
    feeder = sources[int(rng.integers(len(sources)))]
    for k in range(int(rng.integers(1, max_nodes + 1))):
        row = torch.zeros(x.shape[1])
        row[ops[int(rng.integers(len(ops)))]] = 1.0
        rows.append(row)
        src.append(feeder)
        dst.append(n + k)
        feeder = n + k
    edges = torch.cat([graph.edge_index, torch.tensor([src, dst], dtype=torch.long)], 1)
    return Data(x=torch.cat([x, torch.stack(rows)]), edge_index=edges, num_nodes=n + len(rows))


def _graph_key(graph: Data) -> tuple:
    return (tuple(graph.x.argmax(1).tolist()), tuple(map(tuple, graph.edge_index.tolist())))


def sample_unique(space: SearchSpace, n: int, rng: np.random.Generator, max_draws: int | None = None) -> list:
    """Up to ``n`` specs with distinct graphs (twins would be false negatives for InfoNCE)."""
    specs, keys = [], set()
    for _ in range(max_draws or 20 * n):
        spec = space.sample(rng)
        key = _graph_key(space.to_graph(spec))
        if key not in keys:
            keys.add(key)
            specs.append(spec)
            if len(specs) == n:
                break
    return specs


def make_views(space: SearchSpace, specs: Sequence[BaseModel], rng: np.random.Generator, count: int,
               p_perturb: float) -> list[list]:
    """``count`` spec-level view graphs per spec: hash-preserving rewrites, or with probability
    ``p_perturb`` one mutation."""
    out = []
    for spec in specs:
        views = []
        for _ in range(count):
            if rng.random() < p_perturb:
                view = space.mutate(spec, rng)
            else:
                view = hash_preserving_rewrite(space, spec, rng)
            views.append(space.to_graph(view))
        out.append(views)
    return out


def _view(pool: list, rng: np.random.Generator, node_types: tuple[str, ...], p_dead: float) -> Data:
    graph = pool[int(rng.integers(len(pool)))]
    if rng.random() < p_dead:
        graph = add_dead_branch(graph, rng, node_types)
    return permute_nodes(graph, rng)


# ---- the loss and the training ---------------------------------------------------------------
def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over a batch of B pairs: each of the 2B views must pick its partner among the
    other 2B − 1 (cosine similarity / temperature)."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return nn.functional.cross_entropy(sim, target)


class _Contrastive(nn.Module):
    def __init__(self, node_dim: int, cfg: PretrainConfig):
        super().__init__()
        self.encoder = GINEncoder(node_dim, cfg.hidden, cfg.layers, cfg.dropout, cfg.bidirectional)
        self.proj = nn.Sequential(nn.Linear(self.encoder.out_dim, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, cfg.proj_dim))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.proj(self.encoder(batch))


def pretrain(space: SearchSpace, cfg: PretrainConfig, progress: Callable[[int, float], None] | None = None
             ) -> tuple[dict, list[float]]:
    """Train the encoder with InfoNCE on ``cfg.specs`` sampled architectures; returns its state
    dict and the mean loss per epoch. ``progress(epoch, loss)`` is called after each epoch."""
    from torch_geometric.data import Batch

    rng = np.random.default_rng(cfg.seed)
    specs = sample_unique(space, cfg.specs, rng)
    pools = make_views(space, specs, rng, cfg.views_per_spec, cfg.p_perturb)
    losses: list[float] = []
    with cpu_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = _Contrastive(space.node_feature_dim, cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        model.train()
        for epoch in range(cfg.epochs):
            order, total = rng.permutation(len(specs)), []
            for start in range(0, len(order) - 1, cfg.batch):
                idx = order[start:start + cfg.batch]
                if len(idx) < 2:
                    continue
                a = Batch.from_data_list([_view(pools[i], rng, space.node_types, cfg.p_dead) for i in idx])
                b = Batch.from_data_list([_view(pools[i], rng, space.node_types, cfg.p_dead) for i in idx])
                loss = info_nce(model(a), model(b), cfg.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total.append(loss.item())
            losses.append(float(np.mean(total)))
            if progress is not None:
                progress(epoch, losses[-1])
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}, losses


_MEMO: dict[Path, PretrainedEncoder] = {}


def load_or_pretrain(space: SearchSpace, cfg: PretrainConfig | None = None,
                     progress: Callable[[int, float], None] | None = None) -> PretrainedEncoder:
    """The cached stage-1 encoder for ``space`` and ``cfg``, trained (and cached) on first use.

    A file that cannot be read back (torn, another version of torch) is trained again and
    replaced; the write is atomic (temporary file, then rename)."""
    cfg = cfg or PretrainConfig()
    path = cache_dir() / f"{space.name}-v{VERSION}-{cfg.key(space)}.pt"
    if path in _MEMO and path.exists():
        return replace(_MEMO[path], cached=True, seconds=0.0)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            result = PretrainedEncoder(saved["state"], cfg, space.name, list(saved["losses"]),
                                       path, cached=True)
            _MEMO[path] = result
            return result
        except Exception:  # torch.load of a torn file raises anything from IndexError to
            pass           # UnpicklingError: such a file is trained again below and replaced
    start = time.perf_counter()
    state, losses = pretrain(space, cfg, progress)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state": state, "losses": losses, "config": asdict(cfg), "version": VERSION}, tmp)
    os.replace(tmp, path)
    result = PretrainedEncoder(state, cfg, space.name, losses, path, cached=False, seconds=seconds)
    _MEMO[path] = result
    return result
