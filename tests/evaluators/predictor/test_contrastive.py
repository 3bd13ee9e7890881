"""Stage 1 (contrastive pretraining of the GIN encoder): views, InfoNCE, the cache."""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

from evaluators.predictor import contrastive as C
from evaluators.predictor.gnn import GINEncoder
from spaces import get_space
from spaces.nb201 import NB201Space

NB201 = get_space("nb201")
#: small enough for a test (a few seconds), large enough to learn
SMALL = C.PretrainConfig(specs=384, epochs=12, batch=128, hidden=64, proj_dim=32, views_per_spec=3)
#: for the cache tests: what is trained does not matter, only whether it is trained again
TINY = C.PretrainConfig(specs=64, epochs=2, batch=32, hidden=16, proj_dim=8, views_per_spec=1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDAS_CACHE", str(tmp_path))
    monkeypatch.setattr(C, "_MEMO", {})


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
@example(13950906)  # CI: a one-field rewrite put both hierarchical downsamplings on one layer
def test_hash_preserving_rewrite_keeps_the_function(seed):
    rng = np.random.default_rng(seed)
    for space in (NB201, get_space("hierarchical")):
        spec = space.sample(rng)
        view = C.hash_preserving_rewrite(space, spec, rng)
        assert space.canonical_hash(view) == space.canonical_hash(spec)


def test_rewrite_inserts_dead_edges_and_graph_views_keep_the_live_graph():
    # node 1 feeds nothing into the output: edge_1_0 is dead, so any op on it is a rewrite
    spec = NB201Space.from_arch_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|")
    rng = np.random.default_rng(0)
    views = {C.hash_preserving_rewrite(NB201, spec, rng) for _ in range(40)}
    assert len(views) > 3 and all(NB201.canonical_hash(v) == NB201.canonical_hash(spec) for v in views)
    g = NB201.to_graph(spec)
    dead = C.add_dead_branch(g, rng, NB201.node_types)
    new = set(range(g.num_nodes, dead.num_nodes))
    assert 1 <= len(new) <= 2
    # every edge touching the branch ends inside it: nothing it computes reaches the output
    touching = [(s, d) for s, d in dead.edge_index.T.tolist() if s in new or d in new]
    assert touching and all(d in new for _, d in touching)
    assert torch.equal(dead.edge_index[:, : g.edge_index.shape[1]], g.edge_index)
    perm = C.permute_nodes(g, rng)
    enc = GINEncoder(NB201.node_feature_dim, 32, 2, 0.0).eval()
    with torch.no_grad():
        a, b = enc(Batch.from_data_list([g])), enc(Batch.from_data_list([perm]))
    assert torch.allclose(a, b, atol=1e-5)  # a relabelling is the same graph to the GIN


def _embed(encoder, graphs) -> torch.Tensor:
    with torch.no_grad():
        return torch.nn.functional.normalize(encoder(Batch.from_data_list(graphs)), dim=1)


@pytest.mark.slow
def test_pretraining_lowers_info_nce_and_pulls_function_preserving_views_together():
    rng = np.random.default_rng(123)  # architectures and views the pretraining never saw
    specs = C.sample_unique(NB201, 200, rng)
    graphs = [NB201.to_graph(s) for s in specs]
    views = [C.permute_nodes(C.add_dead_branch(NB201.to_graph(C.hash_preserving_rewrite(NB201, s, rng)),
                                               rng, NB201.node_types), rng) for s in specs]
    torch.manual_seed(SMALL.seed)
    before = C._Contrastive(NB201.node_feature_dim, SMALL).encoder.eval()
    enc = C.load_or_pretrain(NB201, SMALL)
    after = enc.encoder(NB201.node_feature_dim)
    assert not enc.cached and enc.path.exists()
    # the training loss fell by at least a fifth
    assert enc.losses[-1] < 0.8 * enc.losses[0]

    def held_out_loss(encoder):
        return float(C.info_nce(_embed(encoder, graphs), _embed(encoder, views), SMALL.temperature))

    assert held_out_loss(after) < held_out_loss(before) - 0.5  # measured 5.84 -> 4.38

    def margin_and_hits(encoder):
        za, zv = _embed(encoder, graphs), _embed(encoder, views)
        sim = zv @ za.T  # view i against every original architecture
        own = sim.diag()
        others = sim.masked_fill(torch.eye(len(specs), dtype=torch.bool), float("nan"))
        hits = (sim.argmax(1) == torch.arange(len(specs))).float().mean()
        return float((own - others.nanmean(1)).mean()), float(hits)

    margin_before, hits_before = margin_and_hits(before)
    margin_after, hits_after = margin_and_hits(after)
    # a function-preserving view (rewrite + dead branch + relabelling) is closer to its own
    # architecture than the other architectures are, by a wider cosine margin than before
    # pretraining, and is more often its nearest neighbour
    # (measured: margin 0.02 -> 0.24, nearest-neighbour hits 0.30 -> 0.63 of 200)
    assert margin_after > margin_before + 0.1
    assert hits_after >= 0.5 and hits_after > hits_before + 0.15


def test_cached_encoder_is_reused_not_retrained(monkeypatch):
    first = C.load_or_pretrain(NB201, TINY)
    assert not first.cached and first.seconds > 0
    mtime = first.path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("pretrain() called although the encoder is cached")

    monkeypatch.setattr(C, "pretrain", no_training)
    again = C.load_or_pretrain(NB201, TINY)  # same process
    monkeypatch.setattr(C, "_MEMO", {})
    from_disk = C.load_or_pretrain(NB201, TINY)  # as a new process would: read from the file
    assert again.cached and from_disk.cached and from_disk.path == first.path
    assert first.path.stat().st_mtime_ns == mtime
    assert all(torch.equal(first.state[k], from_disk.state[k]) for k in first.state)
    # another setting or another space is another file
    other = C.PretrainConfig(**{**TINY.__dict__, "seed": 1})
    assert other.key(NB201) != TINY.key(NB201)
    assert TINY.key(get_space("hierarchical")) != TINY.key(NB201)


def test_an_unreadable_cache_file_is_trained_again():
    first = C.load_or_pretrain(NB201, TINY)
    first.path.write_bytes(b"torn")
    C._MEMO.clear()
    again = C.load_or_pretrain(NB201, TINY)
    assert not again.cached and again.path.stat().st_size > 1000
