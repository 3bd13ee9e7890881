import csv
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spaces import SearchSpace, SizeCap, SpecTooLarge, TaskInfo, get_space
from spaces.nb201 import EDGES, OPS, NB201Space, NB201Spec

FIXTURE = Path(__file__).parents[1] / "fixtures" / "nb201_excerpt.csv"
SPACE = get_space("nb201")
TASK_1D = TaskInfo((1, 40), 10)
TASK_2D = TaskInfo((3, 16, 16), 7)
seeds = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small(spec: NB201Spec) -> NB201Spec:
    """Same cell, cheapest macro: keeps forward passes in the test fast."""
    return spec.model_copy(update={"channels": 8, "cells_per_stage": 1})


@FAST
@given(seeds)
def test_sampled_and_mutated_specs_are_valid_and_round_trip(seed):
    rng = np.random.default_rng(seed)
    spec = SPACE.sample(rng)
    child = SPACE.mutate(spec, rng)
    for s in (spec, child):
        again = SPACE.parse(s.model_dump_json())
        assert again == s
        assert SPACE.canonical_hash(again) == SPACE.canonical_hash(s)
        assert json.loads(s.model_dump_json()) == s.model_dump()
    changed = [k for k in spec.model_dump() if spec.model_dump()[k] != child.model_dump()[k]]
    assert len(changed) == 1


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_a_field_is_inert_exactly_when_changing_it_alone_keeps_the_hash(seed):
    """inert_fields names the set fields whose every other value gives the same network (a
    dead non-'none' edge, or N of an identity/zero cell); every other non-'none' edge changes
    the hash when switched off."""
    rng = np.random.default_rng(seed)
    spec = SPACE.sample(rng)
    if rng.random() < 0.5:  # identity-like cells are rare in uniform samples
        spec = spec.model_copy(update={"edge_3_0": "skip_connect", "edge_3_1": "none",
                                       "edge_3_2": "none"})
    inert, h = SPACE.inert_fields(spec), SPACE.canonical_hash(spec)
    for name, _, _ in EDGES:
        if getattr(spec, name) == "none":
            assert name not in inert
            continue
        others = [SPACE.canonical_hash(spec.model_copy(update={name: op}))
                  for op in OPS if op != getattr(spec, name)]
        assert (name in inert) == all(o == h for o in others), name
    depths = {SPACE.canonical_hash(spec.model_copy(update={"cells_per_stage": n}))
              for n in (1, 2, 3, 4, 5)}
    assert ("cells_per_stage" in inert) == (len(depths) == 1)
    widths = {SPACE.canonical_hash(spec.model_copy(update={"channels": c})) for c in (8, 16, 32, 64)}
    assert ("channels" in inert) == (len(widths) == 1)


@FAST
@given(seeds)
def test_graph_has_one_node_per_live_op_and_builds(seed):
    spec = small(SPACE.sample(np.random.default_rng(seed)))
    graph = SPACE.to_graph(spec)
    live_ops = [o for o in SPACE.canonical_arch_string(spec).replace("+", "|").split("|")
                if o and not o.startswith("none")]
    assert graph.num_nodes == 2 + len(live_ops)
    assert graph.x.shape == (graph.num_nodes, SPACE.node_feature_dim)
    assert torch.all(graph.x.sum(1) == 1)
    if graph.edge_index.numel():
        assert int(graph.edge_index.max()) < graph.num_nodes
    for task in (TASK_1D, TASK_2D):
        model = SPACE.build(spec, task)
        out = model(torch.randn(3, *task.input_shape))
        assert out.shape == (3, task.num_classes)


def test_benchmark_strings_round_trip_on_the_committed_excerpt():
    rows = list(csv.DictReader(FIXTURE.open()))
    assert len(rows) >= 200
    for row in rows:
        spec = NB201Space.from_arch_string(row["arch"])
        assert NB201Space.to_arch_string(spec) == row["arch"]


def test_dead_edges_do_not_change_the_hash():
    # node 1 is fed by nothing: the edges leaving it are dead
    a = NB201Space.from_arch_string(
        "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    b = NB201Space.from_arch_string(
        "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    assert SPACE.canonical_hash(a) == SPACE.canonical_hash(b)
    live = NB201Space.from_arch_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    assert SPACE.canonical_hash(live) != SPACE.canonical_hash(a)
    wider = a.model_copy(update={"channels": 32})
    assert SPACE.canonical_hash(wider) != SPACE.canonical_hash(a)


def _cells_by_hash() -> dict[str, list[NB201Spec]]:
    """Every one of the 5⁶ cells (C = 8, N = 2) grouped by canonical hash."""
    names = [n for n, _, _ in EDGES]
    groups: dict[str, list[NB201Spec]] = {}
    for ops in itertools.product(OPS, repeat=6):
        spec = NB201Spec(**dict(zip(names, ops, strict=True)), channels=8, cells_per_stage=2)
        groups.setdefault(SPACE.canonical_hash(spec), []).append(spec)
    return groups


def _constant_output(spec: NB201Spec) -> torch.Tensor:
    """The network's output with every parameter set by its shape alone (so two convolutions
    of one kernel size compute the same), BN in eval mode: twins must agree exactly."""
    model = SPACE.build(spec, TASK_1D).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.3, 0.5, p.numel()).reshape(p.shape))
    x = torch.linspace(-1, 1, 2 * 40).reshape(2, 1, 40)
    with torch.no_grad():
        return model(x)


def test_twins_wired_differently_compute_the_same_function():
    """A chain of skips is one skip (x + x either way, found trained twice in a default run):
    such cells hash alike, have the same parameter count, and with the same parameter values
    give the same output; cells that hash apart (sampled) give different outputs."""
    a = NB201Space.from_arch_string(
        "|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|skip_connect~2|")
    b = NB201Space.from_arch_string(
        "|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|skip_connect~2|")
    assert SPACE.canonical_hash(a) == SPACE.canonical_hash(b)
    # one convolution used twice is not two convolutions: conv(x) + conv1(conv(conv(x)))
    shared = NB201Space.from_arch_string(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|skip_connect~1|nor_conv_1x1~2|")
    separate = NB201Space.from_arch_string(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|")
    assert SPACE.canonical_hash(shared) != SPACE.canonical_hash(separate)
    groups = _cells_by_hash()
    # of 15,625 cells: NAS-Bench-201's own count of unique architectures (the edge-level hash
    # this replaced saw 9,445)
    assert len(groups) == 6466
    rng = np.random.default_rng(0)
    keys = [k for k, g in groups.items() if len({tuple(s.ops()) for s in g}) > 1]
    checked = 0
    for k in rng.choice(keys, 25, replace=False):
        group = groups[k]
        first, other = group[0], group[int(rng.integers(1, len(group)))]
        params = [sum(p.numel() for p in SPACE.build(s, TASK_1D).parameters()) for s in (first, other)]
        assert params[0] == params[1], (first, other)
        assert torch.allclose(_constant_output(first), _constant_output(other), rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == 25
    apart = [groups[k][0] for k in rng.choice(list(groups), 25, replace=False)]
    outputs = [_constant_output(s) for s in apart]
    same = sum(torch.allclose(outputs[i], outputs[i + 1], rtol=1e-5, atol=1e-6) for i in range(24))
    assert same == 0


def test_depth_is_ignored_only_when_the_cell_is_the_identity_or_zero():
    identity = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    chain = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    zero = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    for arch in (identity, chain, zero):
        one = NB201Space.from_arch_string(arch, cells_per_stage=1)
        five = NB201Space.from_arch_string(arch, cells_per_stage=5)
        assert SPACE.canonical_hash(one) == SPACE.canonical_hash(five), arch
        built = [sum(p.numel() for p in SPACE.build(s, TASK_1D).parameters()) for s in (one, five)]
        assert built[0] == built[1]
    # a zero cell makes the network a constant whatever its width (found trained twice, C=32
    # and C=64, to identical numbers in a default run); any other cell's width matters
    wide = NB201Space.from_arch_string(zero, channels=64)
    assert SPACE.canonical_hash(wide) == SPACE.canonical_hash(NB201Space.from_arch_string(zero, channels=8))
    wide_id = NB201Space.from_arch_string(identity, channels=64)
    assert SPACE.canonical_hash(wide_id) != SPACE.canonical_hash(NB201Space.from_arch_string(identity))
    doubled = "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|"  # 2x
    for arch in (doubled, "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"):
        one = NB201Space.from_arch_string(arch, cells_per_stage=1)
        five = one.model_copy(update={"cells_per_stage": 5})
        assert SPACE.canonical_hash(one) != SPACE.canonical_hash(five), arch


@pytest.mark.parametrize("bad, field", [
    ({"edge_1_0": "conv_7x7"}, "edge_1_0"),
    ({"channels": 4096}, "channels"),
    ({"cells_per_stage": 9}, "cells_per_stage"),
    ({"edge_4_0": "none"}, "edge_4_0"),
])
def test_invalid_fields_name_the_field_and_the_allowed_values(bad, field):
    data = SPACE.reference().model_dump() | bad
    with pytest.raises(ValidationError) as err:
        SPACE.parse(data)
    text = SPACE.validation_error_text(err.value)
    assert field in text
    if field == "edge_1_0":
        assert "nor_conv_3x3" in text  # lists what is allowed
        assert f"(sent {bad[field]!r})" in text  # and quotes what was sent


def test_missing_edge_and_malformed_json_are_validation_errors():
    data = SPACE.reference().model_dump()
    data.pop("edge_3_2")
    with pytest.raises(ValidationError, match="edge_3_2"):
        SPACE.parse(data)
    with pytest.raises(ValidationError, match="(?i)json"):
        SPACE.parse('{"edge_1_0": "none",')


@pytest.mark.parametrize("arch, says", [
    ("|nor_conv_3x3~0|+|none~0|", "3 nodes"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'<op>~0'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2"),
    ("garbage", "3 nodes"),
])
def test_bad_cell_strings_raise_clear_errors(arch, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        NB201Space.from_arch_string(arch)


def test_oversized_spec_is_refused_before_any_real_allocation(monkeypatch, param_devices):
    spec = SPACE.parse(SPACE.reference().model_dump() | {"channels": 64, "cells_per_stage": 5})
    constructed = []
    monkeypatch.setattr(SPACE, "construct", lambda *a, **k: constructed.append(a))
    with pytest.raises(SpecTooLarge, match="params"):
        SPACE.build(spec, TaskInfo((3, 32, 32), 10), cap=SizeCap(max_params=1_000_000))
    assert constructed == []
    assert param_devices and set(param_devices) == {"meta"}  # only the meta cost count ran


def test_short_sequences_and_tiny_images_survive_both_reductions():
    for shape in ((1, 1), (1, 3), (1, 40), (3, 1, 1), (3, 5, 5)):
        task = TaskInfo(shape, 4)
        assert SPACE.build(SPACE.reference(), task)(torch.randn(2, *shape)).shape == (2, 4)


@FAST
@given(seeds)
def test_cost_equals_a_count_of_the_whole_expanded_network(seed):
    # the space counts one cell per stage and multiplies; the base class counts everything
    spec = SPACE.sample(np.random.default_rng(seed))
    task = TASK_1D if seed % 2 else TASK_2D
    assert SPACE.cost(spec, task) == SearchSpace.cost(SPACE, spec, task)


def test_cost_of_hash_twins_is_their_own_count():
    # a zero cell's width is not in the hash (the network is a constant); its cost still is
    zero = dict.fromkeys((name for name, _, _ in EDGES), "none")
    narrow, wide = NB201Spec(**zero, channels=8), NB201Spec(**zero, channels=64)
    assert SPACE.canonical_hash(narrow) == SPACE.canonical_hash(wide)
    for spec in (narrow, wide):
        assert SPACE.cost(spec, TASK_2D) == SearchSpace.cost(SPACE, spec, TASK_2D)


def test_cost_counts_two_flops_per_mac():
    cost = SPACE.cost(SPACE.reference(), TASK_2D)
    model = SPACE.build(SPACE.reference(), TASK_2D)
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    stem_macs = 3 * 16 * 9 * 16 * 16  # 3x3 conv, 3 -> 16 channels, 16x16 outputs
    assert cost["flops"] > 2 * stem_macs
    assert cost["flops"] % 2 == 0


def test_describe_lists_ops_and_an_example():
    text = SPACE.describe()
    for op in OPS:
        assert op in text
    assert all(name in text for name, _, _ in EDGES[:1])
    assert SPACE.json_schema()["properties"]["edge_1_0"]["enum"] == list(OPS)
