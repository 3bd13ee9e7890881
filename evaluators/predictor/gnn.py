"""A GIN over ``space.to_graph(spec)`` trained with a pairwise ranking loss (DCL-ENAS: rank,
don't regress), with MC-dropout for uncertainty.

:class:`GINEncoder` (graph → embedding) is the part that contrastive pretraining
(:mod:`evaluators.predictor.contrastive`, stage 1) trains without labels; :class:`GINRanker`
puts a scoring head on it and fine-tunes both on labelled records (stage 2), from random
weights or from a pretrained encoder's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from evaluators.train import cpu_threads

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

__all__ = ["GINEncoder", "GINRanker", "pairwise_rank_loss"]

# The graphs are tiny: intra-op threads only add overhead, and on a loaded machine OpenMP
# spinning makes one ``scatter_add_`` ~1000x slower (measured: 0.02 ms vs 90 ms), so the GIN
# trains and predicts on one thread.


class GINEncoder(nn.Module):
    """``layers`` GIN convolutions, then mean and (scaled) sum pooling: ``2·hidden`` features.

    ``bidirectional``: each layer also passes messages against the edges (its own weights), so
    a node learns what follows it (what reaches the output) as well as what feeds it."""

    def __init__(self, node_dim: int, hidden: int = 128, layers: int = 3, dropout: float = 0.1,
                 bidirectional: bool = False):
        super().__init__()
        from torch_geometric.nn import GINConv

        dims = [node_dim] + [hidden] * layers

        def convs():
            return nn.ModuleList(
                GINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b)), train_eps=True)
                for a, b in zip(dims[:-1], dims[1:], strict=True))

        self.convs = convs()
        self.back = convs() if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, batch: Batch) -> torch.Tensor:
        from torch_geometric.nn import global_add_pool, global_mean_pool

        h, edges = batch.x, batch.edge_index
        for k, conv in enumerate(self.convs):
            z = conv(h, edges)
            if self.back is not None:
                z = z + self.back[k](h, edges.flip(0))
            h = self.dropout(torch.relu(z))
        return torch.cat([global_mean_pool(h, batch.batch), global_add_pool(h, batch.batch) / 8], 1)


class _Net(nn.Module):
    def __init__(self, encoder: GINEncoder, extra_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(encoder.out_dim + extra_dim, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, batch: Batch, extra: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(batch), extra], 1)).squeeze(1)


def pairwise_rank_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss over ordered pairs: ``softplus(−sign(yᵢ − yⱼ)·(sᵢ − sⱼ))``; higher
    score ↔ higher target; tied pairs are left out."""
    sign = torch.sign(target[:, None] - target[None, :])
    diff = score[:, None] - score[None, :]
    return nn.functional.softplus(-sign * diff)[sign != 0].mean()


class GINRanker:
    """Scores graphs so that higher score ↔ higher target (the target is minimised elsewhere).

    ``extra`` are per-graph features (global features, low-fidelity score) fed to the head.
    ``encoder_state`` (a :class:`GINEncoder` state dict from stage-1 pretraining, same
    ``hidden``/``layers``) initialises the encoder; ``encoder_lr_scale`` scales its learning
    rate against the head's during the fine-tune.
    """

    def __init__(self, hidden: int = 128, layers: int = 3, dropout: float = 0.1, epochs: int = 150,
                 lr: float = 3e-3, seed: int = 0, mc_samples: int = 10,
                 encoder_state: dict | None = None, encoder_lr_scale: float = 1.0,
                 bidirectional: bool = False):
        self.bidirectional = bidirectional
        self.hidden, self.layers, self.dropout, self.epochs = hidden, layers, dropout, epochs
        self.lr, self.seed, self.mc_samples = lr, seed, mc_samples
        self.encoder_state, self.encoder_lr_scale = encoder_state, encoder_lr_scale
        self.net = None

    def fit(self, graphs: list[Data], extra: np.ndarray, y: np.ndarray) -> GINRanker:
        from torch_geometric.data import Batch

        with cpu_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            encoder = GINEncoder(graphs[0].x.shape[1], self.hidden, self.layers, self.dropout,
                                 self.bidirectional)
            if self.encoder_state is not None:
                encoder.load_state_dict(self.encoder_state)
            self.net = _Net(encoder, extra.shape[1], self.hidden, self.dropout)
            self.mu, self.sd = extra.mean(0), extra.std(0) + 1e-6
            batch = Batch.from_data_list(graphs)
            ex = torch.as_tensor((extra - self.mu) / self.sd, dtype=torch.float32)
            target = torch.as_tensor(y, dtype=torch.float32)
            opt = torch.optim.AdamW([
                {"params": self.net.encoder.parameters(), "lr": self.lr * self.encoder_lr_scale},
                {"params": self.net.head.parameters(), "lr": self.lr}], weight_decay=1e-4)
            self.net.train()
            for _ in range(self.epochs):
                loss = pairwise_rank_loss(self.net(batch, ex), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def predict(self, graphs: list[Data], extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the score over MC-dropout samples."""
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(graphs)
        ex = torch.as_tensor((extra - self.mu) / self.sd, dtype=torch.float32)
        with cpu_threads(1):
            self.net.eval()
            deterministic = self.net(batch, ex).numpy()
            self.net.train()  # dropout on: MC samples
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 1)
                samples = np.stack([self.net(batch, ex).numpy() for _ in range(self.mc_samples)])
            self.net.eval()
        return deterministic, samples.std(0)
