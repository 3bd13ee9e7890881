"""A GIN over ``space.to_graph(spec)`` trained with a pairwise ranking loss (DCL-ENAS: rank,
don't regress), with MC-dropout for uncertainty."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from evaluators.train import cpu_threads

__all__ = ["GINRanker"]

# The graphs are tiny: intra-op threads only add overhead, and on a loaded machine OpenMP
# spinning makes one ``scatter_add_`` ~1000x slower (measured: 0.02 ms vs 90 ms), so the GIN
# trains and predicts on one thread.


class _Net(nn.Module):
    def __init__(self, node_dim: int, extra_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GINConv

        dims = [node_dim] + [hidden] * layers
        self.convs = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b)), train_eps=True)
            for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = nn.Sequential(nn.Linear(hidden * 2 + extra_dim, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, batch, extra):
        from torch_geometric.nn import global_add_pool, global_mean_pool

        h = batch.x
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(h, batch.edge_index)))
        pooled = torch.cat([global_mean_pool(h, batch.batch), global_add_pool(h, batch.batch) / 8], 1)
        return self.head(torch.cat([pooled, extra], 1)).squeeze(1)


class GINRanker:
    """Scores graphs so that higher score ↔ higher target (the target is minimised elsewhere).

    ``extra`` are per-graph features (global features, low-fidelity score) fed to the head.
    """

    def __init__(self, hidden: int = 128, layers: int = 3, dropout: float = 0.1, epochs: int = 150,
                 lr: float = 3e-3, seed: int = 0, mc_samples: int = 10):
        self.hidden, self.layers, self.dropout, self.epochs = hidden, layers, dropout, epochs
        self.lr, self.seed, self.mc_samples = lr, seed, mc_samples
        self.net = None

    def fit(self, graphs, extra: np.ndarray, y: np.ndarray) -> GINRanker:
        from torch_geometric.data import Batch

        with cpu_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _Net(graphs[0].x.shape[1], extra.shape[1], self.hidden, self.layers, self.dropout)
            self.mu, self.sd = extra.mean(0), extra.std(0) + 1e-6
            batch = Batch.from_data_list(graphs)
            ex = torch.as_tensor((extra - self.mu) / self.sd, dtype=torch.float32)
            target = torch.as_tensor(y, dtype=torch.float32)
            sign = torch.sign(target[:, None] - target[None, :])  # +1 where i should score higher
            mask = sign != 0
            opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=1e-4)
            self.net.train()
            for _ in range(self.epochs):
                s = self.net(batch, ex)
                diff = s[:, None] - s[None, :]
                loss = nn.functional.softplus(-sign * diff)[mask].mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def predict(self, graphs, extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
