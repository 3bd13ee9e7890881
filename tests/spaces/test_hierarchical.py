import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spaces import SearchSpace, SizeCap, SpecTooLarge, TaskInfo, get_space
from spaces.hierarchical import CELL_OPS

SPACE = get_space("hierarchical")
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cheap(spec):
    """Same cell and choices, smallest macro: keeps the forward pass fast."""
    return spec.model_copy(update={"depth": 14, "initial_channels": 16, "width_multiplier": 1.0})


@FAST
@given(st.integers(0, 2**32 - 1))
def test_sampled_and_mutated_specs_validate_round_trip_and_build(seed):
    rng = np.random.default_rng(seed)
    spec = SPACE.sample(rng)
    child = SPACE.mutate(spec, rng)
    for s in (spec, child):
        assert SPACE.parse(s.model_dump_json()) == s
        assert SPACE.canonical_hash(SPACE.parse(s.model_dump())) == SPACE.canonical_hash(s)
    diff = [k for k, v in spec.model_dump().items() if child.model_dump()[k] != v]
    assert len(diff) == 1
    small = cheap(spec)
    graph = SPACE.to_graph(small)
    assert graph.num_nodes == 2 + len(live_ops(small))
    assert graph.x.shape == (graph.num_nodes, SPACE.node_feature_dim)
    assert graph.x[2:].argmax(1).tolist() == [SPACE.node_types.index(op) for op in live_ops(small)]
    for task in (TaskInfo((1, 40), 10), TaskInfo((3, 8, 8), 5)):
        out = SPACE.build(small, task, width_mult=0.25)(torch.randn(2, *task.input_shape))
        assert out.shape == (2, task.num_classes)


def live_ops(spec):
    """Non-zero ops whose input node carries signal (the cell input, or a node with a live op)."""
    alive, out = [True], []
    for ops in spec.cell():
        live = [op for i, op in enumerate(ops) if op != "zero" and alive[i]]
        out += live
        alive.append(bool(live))
    return out


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_cost_equals_a_count_of_the_whole_expanded_network(seed):
    spec = SPACE.sample(np.random.default_rng(seed))
    spec = SPACE.parse(spec.model_dump() | {"depth": min(spec.depth, 22)})  # the full count is slow
    task = TaskInfo((1, 40), 10) if seed % 2 else TaskInfo((3, 8, 8), 10)
    assert SPACE.cost(spec, task) == SearchSpace.cost(SPACE, spec, task)


def test_colliding_downsampling_layers_are_refused_and_never_sampled():
    with pytest.raises(ValidationError, match="downsample_offset_1 and downsample_offset_2"):
        SPACE.parse(SPACE.reference().model_dump() | {"downsample_offset_1": 2,
                                                      "downsample_offset_2": -2})
    rng = np.random.default_rng(0)
    for _ in range(300):
        first, second = SPACE.sample(rng).downsample_layers()
        assert first < second
    spec = SPACE.reference().model_copy(update={"downsample_offset_1": 1, "downsample_offset_2": -2})
    for _ in range(100):  # (7, 7) is one step away: mutation must never produce it
        assert len(set(SPACE.mutate(spec, rng).downsample_layers())) == 2


def test_graph_nodes_match_the_live_ops_of_the_reference():
    ref = SPACE.reference()
    graph = SPACE.to_graph(ref)
    assert graph.num_nodes == 2 + sum(op != "zero" for ops in ref.cell() for op in ops)


@pytest.mark.parametrize("update, field", [
    ({"depth": 15}, "depth"), ({"depth": 60}, "depth"), ({"initial_channels": 4096}, "initial_channels"),
    ({"node_2": ["conv3x3"]}, "node_2"), ({"node_1": ["conv9x9"]}, "node_1"),
    ({"activation": "tanh"}, "activation"), ({"norm": "instancenorm"}, "norm"),
    ({"downsample_offset_1": 5}, "downsample_offset_1"), ({"extra": 1}, "extra"),
])
def test_invalid_fields_are_named(update, field):
    with pytest.raises(ValidationError) as err:
        SPACE.parse(SPACE.reference().model_dump() | update)
    assert field in SPACE.validation_error_text(err.value)


def test_groupnorm_uses_gcd_groups_and_downsampling_positions():
    spec = SPACE.reference().model_copy(update={"norm": "groupnorm", "initial_channels": 48})
    model = SPACE.build(spec, TaskInfo((1, 40), 10))
    groups = {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups <= {math.gcd(32, c) for c in (48, 96, 192)} and 16 in groups
    assert spec.downsample_layers() == (5, 9)


def test_oversized_spec_is_refused_before_any_real_allocation(monkeypatch, param_devices):
    big = SPACE.reference().model_copy(update={"depth": 50, "initial_channels": 64,
                                               "width_multiplier": 2.5})
    constructed = []
    monkeypatch.setattr(SPACE, "construct", lambda *a, **k: constructed.append(a))
    with pytest.raises(SpecTooLarge, match="params"):
        SPACE.build(big, TaskInfo((3, 32, 32), 10), cap=SizeCap(max_params=2_000_000))
    with pytest.raises(SpecTooLarge, match="flops"):
        SPACE.build(SPACE.reference(), TaskInfo((3, 32, 32), 10), cap=SizeCap(max_flops=1000))
    assert constructed == [] and param_devices and set(param_devices) == {"meta"}


def test_residual_forms_and_leaf_sum():
    # node_1 = identity(x), node_2 = identity(x) + identity(node_1): node 1 is read, so the
    # output is node_2 only = 2*h; pre-activation adds the input, post-activation normalises
    cell = {"node_1": ["identity"], "node_2": ["identity", "identity"],
            "node_3": ["zero"] * 3, "node_4": ["zero"] * 4}
    pre = SPACE.reference().model_copy(update=cell)
    model = SPACE.build(pre, TaskInfo((1, 40), 10))
    block = model[1]  # the first cell, after the stem
    x = torch.randn(2, 16, 40)
    block.eval()
    h = block.act(block.norm(x))
    torch.testing.assert_close(block(x), x + 2 * h)
    post = SPACE.build(pre.model_copy(update={"residual": "post_activation"}), TaskInfo((1, 40), 10))
    block = post[1].eval()
    torch.testing.assert_close(block(x), block.act(block.norm(x + 2 * x)))


def test_describe_and_schema_list_the_ops():
    text = SPACE.describe()
    assert all(op in text for op in CELL_OPS)
    schema = SPACE.json_schema()
    assert schema["properties"]["node_3"]["minItems"] == 3
