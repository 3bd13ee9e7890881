"""The CTR space: spec validation, bagging masks per learner, the network, hashing, graphs."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spaces import get_space
from spaces.base import TaskInfo
from spaces.ctr import N_FIELDS, REFERENCE, VOCAB, CTRSpec, kept_fields, learner_mask

SPACE = get_space("ctr")
TASK = TaskInfo((1, N_FIELDS), 2)


def spec_with(**update) -> CTRSpec:
    """The reference spec with some fields changed (validated)."""
    return CTRSpec(**(REFERENCE | update))


def _x(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, 1, N_FIELDS), generator=g).float()


@pytest.mark.parametrize("update, needle", [
    ({"field_probs": (0.5,) * 3}, f"field_probs must have {N_FIELDS} values, got 3"),
    ({"field_probs": (1.5,) + (0.5,) * (N_FIELDS - 1)}, "must lie in [0, 1], got 1.5"),
    ({"field_probs": (0.0,) * N_FIELDS}, "at least one field"),
    ({"field_probs": (0.5,) * N_FIELDS, "bagging_rate": 0.5}, "not both"),
    ({"bagging_rate": 0.0}, "bagging_rate"),
])
def test_bad_specs_are_refused_with_the_reason(update, needle):
    with pytest.raises(ValidationError) as err:
        spec_with(**update)
    assert needle in SPACE.validation_error_text(err.value)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.77, 1.0])
def test_bagging_masks_have_the_expected_size_and_differ_per_seed(rate):
    spec = spec_with(bagging_rate=rate)
    masks = np.stack([learner_mask(spec, seed) for seed in range(20)])
    assert (masks.sum(1) == kept_fields(rate)).all()
    assert kept_fields(rate) == max(1, int(np.floor(rate * N_FIELDS + 0.5)))
    distinct = {m.tobytes() for m in masks}
    assert len(distinct) == (1 if rate == 1.0 else 20)


def test_the_built_network_uses_the_mask_of_its_seed():
    spec = spec_with(bagging_rate=0.4)
    for seed in (3, 4):
        torch.manual_seed(seed)
        net = SPACE.construct(spec, TASK)
        assert np.array_equal(net.mask.numpy().astype(bool), learner_mask(spec, seed))


def test_field_probs_masks_are_bernoulli_per_field():
    probs = tuple(np.linspace(0.05, 0.95, N_FIELDS).round(3))
    spec = spec_with(field_probs=probs)
    masks = np.stack([learner_mask(spec, seed) for seed in range(800)])
    # 800 draws: SD of a frequency <= 0.018; 0.07 is about 4 SD
    assert np.abs(masks.mean(0) - np.asarray(probs)).max() < 0.07


@pytest.mark.parametrize("interaction", ["none", "fm", "cross"])
def test_dropped_fields_do_not_change_the_output(interaction):
    spec = spec_with(interaction=interaction, bagging_rate=0.3, dropout=0.0)
    torch.manual_seed(11)
    net = SPACE.build(spec, TASK).eval()
    x = _x(16)
    out = net(x)
    assert out.shape == (16, 2) and torch.all(out[:, 0] == 0)  # logits [0, z]
    dropped = ~net.mask.bool()
    x2 = x.clone()
    x2[:, 0, dropped] = _x(16, seed=1)[:, 0, dropped]
    assert torch.allclose(net(x2), out)
    kept = int(torch.nonzero(net.mask)[0])
    x3 = x.clone()
    x3[:, 0, kept] = (x3[:, 0, kept] + 1) % VOCAB
    assert not torch.allclose(net(x3), out)


def test_cost_counts_parameters_without_allocating(param_devices):
    spec = spec_with(embed_dim=8, mlp_width=64, mlp_depth=2, interaction="fm")
    cost = SPACE.cost(spec, TASK)
    tables = N_FIELDS * VOCAB * 8 + N_FIELDS * VOCAB  # embeddings (d = 8) + first-order weights
    mlp = (N_FIELDS * 8 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert cost["params"] == tables + mlp + 1
    assert set(param_devices) == {"meta"}


def test_canonical_hash_counts_fields_not_the_rate():
    def h(rate: float) -> str:
        return SPACE.canonical_hash(spec_with(bagging_rate=rate))

    assert h(0.50) == h(0.51)  # both keep 20 of 39 fields
    assert h(0.5) != h(0.6)
    no_mlp = SPACE.canonical_hash(spec_with(mlp_depth=0, mlp_width=16, dropout=0.3))
    assert no_mlp == SPACE.canonical_hash(spec_with(mlp_depth=0, mlp_width=256, dropout=0.0))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sample_and_mutate_give_valid_distinct_specs(seed):
    rng = np.random.default_rng(seed)
    spec = SPACE.sample(rng)
    assert SPACE.parse(spec.model_dump_json()) == spec
    child = SPACE.mutate(spec, rng)
    assert SPACE.parse(child.model_dump()) == child
    assert SPACE.canonical_hash(child) != SPACE.canonical_hash(spec)
    graph = SPACE.to_graph(child)
    assert graph.x.shape == (graph.num_nodes, len(SPACE.node_types))
    assert int(graph.edge_index.max()) < graph.num_nodes


def test_describe_and_registry():
    assert get_space("ctr").name == "ctr"
    text = SPACE.describe()
    assert "bagging_rate" in text and str(N_FIELDS) in text


def test_an_empty_reply_is_not_the_reference():
    """LLMs answer '{}' at times: with defaults it would silently be the baseline again."""
    with pytest.raises(ValidationError) as err:
        SPACE.parse("{}")
    text = SPACE.validation_error_text(err.value)
    assert "embed_dim: Field required" in text and "bagging_rate: Field required" in text
    assert "field_probs" not in text  # the one optional field
