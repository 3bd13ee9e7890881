import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spaces import SizeCap, SpecTooLarge, TaskInfo, get_space
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
    live = sum(op != "zero" for ops in small.cell() for op in ops)
    assert graph.num_nodes <= 2 + live and graph.x.shape[1] == SPACE.node_feature_dim
    for task in (TaskInfo((1, 40), 10), TaskInfo((3, 12, 12), 5)):
        out = SPACE.build(small, task, width_mult=0.5)(torch.randn(2, *task.input_shape))
        assert out.shape == (2, task.num_classes)


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


def test_oversized_spec_is_refused():
    big = SPACE.reference().model_copy(update={"depth": 50, "initial_channels": 64,
                                               "width_multiplier": 2.5})
    with pytest.raises(SpecTooLarge):
        SPACE.build(big, TaskInfo((3, 32, 32), 10), cap=SizeCap(max_params=2_000_000))


def test_describe_and_schema_list_the_ops():
    text = SPACE.describe()
    assert all(op in text for op in CELL_OPS)
    schema = SPACE.json_schema()
    assert schema["properties"]["node_3"]["minItems"] == 3
