"""A deterministic synthetic CTR data set written in Criteo format (the offline default).

Generative model (one fixed model, drawn once from ``STRUCTURE_SEED``; ``seed`` only draws rows):

* **Values.** Field f takes value j ∈ {0, …, c_f − 1} with Zipf-like probability ∝ (j + 1)^−1.1;
  cardinalities c_f are 4–24 for the 13 integer fields (written as the integer j) and 8–120 for
  the 26 categorical fields (written as an 8-hex-digit token of (f, j)). Each cell is missing
  (an empty column) with probability 8 % (integers) or 4 % (categories); a missing value adds 0.
* **Informative fields** I = {I1–I4, C1–C6}: value j of field f has a first-order weight
  w_f[j] ~ N(0, 0.45²) and an embedding u_f[j] ~ N(0, 0.06·I_4) (h = 4).
* **Echo fields** I5, I6 and C7–C12 copy the value of I1, I2 and C1–C6 with probability 0.75
  (else a fresh draw): redundant views of the signal, as real CTR logs have, so a learner that
  misses an informative field can partly recover it — what makes feature bagging worth trying.
  Their own weights are 0. **Noise fields** (the other 21) carry no signal.
* **Label.** logit = b + Σ_{f∈I} w_f[x_f] + Σ_{f<g∈I} ⟨u_f[x_f], u_g[x_g]⟩ (pairwise, FM-style
  interactions), click ~ Bernoulli(sigmoid(logit)); b is set by bisection so that the mean
  click probability over 50,000 rows drawn from ``STRUCTURE_SEED`` is 0.25 (≈ 25 % positives).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spaces.ctr import N_CAT, N_FIELDS, N_INT

__all__ = ["generate", "generate_lines", "STRUCTURE_SEED", "INFORMATIVE", "ECHOES",
           "TARGET_POSITIVE_RATE"]

STRUCTURE_SEED = 20_241_114
TARGET_POSITIVE_RATE = 0.25
INFORMATIVE = (0, 1, 2, 3) + tuple(N_INT + i for i in range(6))  # I1-I4, C1-C6
#: echo field -> the informative field it copies
ECHOES = {4: 0, 5: 1, **{N_INT + 6 + i: N_INT + i for i in range(6)}}
ECHO_P = 0.75
MISSING_P = (0.08,) * N_INT + (0.04,) * N_CAT
LATENT = 4


@dataclass(frozen=True)
class _Model:
    cards: np.ndarray  # (F,)
    weights: list[np.ndarray]  # per field, (c_f,)
    latents: list[np.ndarray]  # per field, (c_f, h)
    bias: float


def _draw_values(model_cards: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Values (n, F) int64, −1 = missing."""
    x = np.empty((n, N_FIELDS), dtype=np.int64)
    for f, c in enumerate(model_cards):
        p = (np.arange(c) + 1.0) ** -1.1
        x[:, f] = rng.choice(c, size=n, p=p / p.sum())
    for echo, source in ECHOES.items():
        same = rng.random(n) < ECHO_P
        x[:, echo] = np.where(same, x[:, source] % model_cards[echo], x[:, echo])
    missing = rng.random((n, N_FIELDS)) < np.asarray(MISSING_P)
    x[missing] = -1
    return x


def _logits(model: _Model, x: np.ndarray) -> np.ndarray:
    z = np.zeros(len(x))
    emb = np.zeros((len(x), LATENT))
    sq = np.zeros(len(x))
    for f in INFORMATIVE:
        present = x[:, f] >= 0
        j = np.where(present, x[:, f], 0)
        z += np.where(present, model.weights[f][j], 0.0)
        u = np.where(present[:, None], model.latents[f][j], 0.0)
        emb += u
        sq += (u**2).sum(1)
    return z + 0.5 * ((emb**2).sum(1) - sq)  # Σ_{f<g} ⟨u_f, u_g⟩


@lru_cache(maxsize=1)
def _model() -> _Model:
    rng = np.random.default_rng(STRUCTURE_SEED)
    cards = np.concatenate([rng.integers(3, 11, N_INT), rng.integers(5, 41, N_CAT)])
    for echo, source in ECHOES.items():
        cards[echo] = cards[source]
    weights = [rng.normal(0, 0.7, c) if f in INFORMATIVE else np.zeros(c) for f, c in enumerate(cards)]
    latents = [rng.normal(0, np.sqrt(0.08), (c, LATENT)) if f in INFORMATIVE else np.zeros((c, LATENT))
               for f, c in enumerate(cards)]
    model = _Model(cards, weights, latents, 0.0)
    z = _logits(model, _draw_values(cards, 50_000, rng))
    lo, hi = -20.0, 20.0
    for _ in range(60):  # bisection: mean sigmoid(z + b) = target
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < TARGET_POSITIVE_RATE:
            lo = mid
        else:
            hi = mid
    return _Model(cards, weights, latents, (lo + hi) / 2)


def generate(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows: values (n, 39) int64 (−1 = missing) and clicks (n,) int64."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    model = _model()
    rng = np.random.default_rng([STRUCTURE_SEED, 1 + seed])
    x = _draw_values(model.cards, n, rng)
    p = 1 / (1 + np.exp(-(_logits(model, x) + model.bias)))
    return x, (rng.random(n) < p).astype(np.int64)


def _token(f: int, j: int) -> str:
    return f"{zlib.crc32(f'syn{f}:{j}'.encode()):08x}"


def generate_lines(n: int, seed: int = 0) -> list[str]:
    """:func:`generate`'s rows as Criteo-format lines (label, I1–I13, C1–C26, tab-separated)."""
    x, y = generate(n, seed)
    tokens = [[_token(f, j) for j in range(c)] for f, c in enumerate(_model().cards)]
    lines = []
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        cols = [str(label)]
        for f, j in enumerate(row):
            cols.append("" if j < 0 else (str(j) if f < N_INT else tokens[f][j]))
        lines.append("\t".join(cols))
    return lines
