import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spaces import SearchSpace, SizeCap, SpecTooLarge, TaskInfo, get_space
from spaces.cellterms import cell_key
from spaces.hierarchical import CELL_OPS, _cell_terms, _live_cell

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


# ---- the function-level canonical hash -------------------------------------------------------
TINY = TaskInfo((1, 40), 10)
Z = "zero"
#: outputs of twins agree to this (float64; they differ only in the order of additions)
TWIN_RTOL, TWIN_ATOL = 1e-9, 1e-12


def with_cell(spec, *nodes, **macro):
    return spec.model_copy(update={f"node_{k}": list(ops) for k, ops in enumerate(nodes, 1)} | macro)


def constant_output(spec) -> torch.Tensor:
    """The network's output (float64, width × 1/8, train-mode norms so that deep stacks stay
    finite) with every parameter set by its shape alone, so two convs of one kind compute the
    same: twins must agree up to the order of additions."""
    model = SPACE.construct(spec, TINY, width_mult=0.125).double().train()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.3, 0.5, p.numel(), dtype=torch.float64).reshape(p.shape))
        return model(torch.linspace(-1, 1, 2 * 40, dtype=torch.float64).reshape(2, 1, 40))


def n_params(spec) -> int:
    return sum(p.numel() for p in SPACE.construct(spec, TINY).parameters())


def same_output(a, b) -> bool:
    return torch.allclose(constant_output(a), constant_output(b), rtol=TWIN_RTOL, atol=TWIN_ATOL)


def test_twins_wired_differently_hash_alike_and_compute_the_same_function():
    """Hand-made twins: identity chains (x read through node 1 and 2, or directly), two maxpools
    of x against maxpool(x + x) (the max pool is positively homogeneous) against one maxpool read
    twice, an average pool of a conv on either side of an identity, avgpool(x + conv(x)) against
    avgpool(x) + avgpool(conv(x)) (the average pool is linear), and the width written as
    16 × 2.0 or 32 × 1.0. Each pair hashes alike, has the same parameter count, and gives the
    same constant-parameter output within rtol 1e-9, atol 1e-12 (float64)."""
    ref = SPACE.reference()
    conv = ["conv5x5", Z, Z, Z]
    groups = [
        [with_cell(ref, ["identity"], [Z, "identity"], [Z] * 3, conv),
         with_cell(ref, ["identity"], [Z, Z], [Z] * 3, conv),
         with_cell(ref, [Z], [Z, Z], ["identity", Z, Z], conv)],
        [with_cell(ref, ["maxpool3x3"], ["maxpool3x3", Z], [Z] * 3, [Z] * 4),
         with_cell(ref, ["identity"], ["identity", "identity"], [Z, Z, "maxpool3x3"], [Z] * 4),
         with_cell(ref, ["maxpool3x3"], [Z, "identity"], [Z, "identity", Z], [Z] * 4)],
        [with_cell(ref, ["conv3x3"], [Z, "identity"], [Z, Z, "avgpool3x3"], [Z] * 4),
         with_cell(ref, ["conv3x3"], [Z, "avgpool3x3"], [Z] * 3, [Z] * 4)],
        [with_cell(ref, ["conv3x3"], ["identity", "identity"], [Z, Z, "avgpool3x3"], [Z] * 4),
         with_cell(ref, ["conv3x3"], ["avgpool3x3", "avgpool3x3"], [Z] * 3, [Z] * 4)],
        [ref.model_copy(update={"initial_channels": 16, "width_multiplier": 2.0}),
         ref.model_copy(update={"initial_channels": 32, "width_multiplier": 1.0})],
    ]
    for group in groups:
        assert len({SPACE.canonical_hash(s) for s in group}) == 1, group
        assert len({s.model_dump_json() for s in group}) == len(group)
        assert len({n_params(s) for s in group}) == 1
        first = constant_output(group[0])
        for other in group[1:]:
            torch.testing.assert_close(constant_output(other), first, rtol=TWIN_RTOL, atol=TWIN_ATOL)


def test_one_shared_conv_and_two_separate_ones_hash_apart():
    """conv(x) read by two leaves is one conv used twice; two conv3x3 of x are two convs with
    their own weights. Their terms are alike, so the cell falls back to its live edges: the
    hashes differ (as do the parameter counts)."""
    ref = SPACE.reference()
    shared = with_cell(ref, ["conv3x3"], [Z, "identity"], [Z, "identity", Z], [Z] * 4)
    separate = with_cell(ref, ["conv3x3"], ["conv3x3", Z], [Z] * 3, [Z] * 4)
    assert SPACE.canonical_hash(shared) != SPACE.canonical_hash(separate)
    assert n_params(shared) < n_params(separate)


def test_a_maxpool_of_a_sum_is_not_the_sum_of_maxpools():
    """The max pool is not linear: maxpool(x + conv(x)) and maxpool(x) + maxpool(conv(x)) hash
    apart and give different constant-parameter outputs (beyond rtol 1e-9, atol 1e-12)."""
    ref = SPACE.reference()
    of_sum = with_cell(ref, ["conv3x3"], ["identity", "identity"], [Z, Z, "maxpool3x3"], [Z] * 4)
    sum_of = with_cell(ref, ["conv3x3"], ["maxpool3x3", "maxpool3x3"], [Z] * 3, [Z] * 4)
    assert SPACE.canonical_hash(of_sum) != SPACE.canonical_hash(sum_of)
    assert not same_output(of_sum, sum_of)


def test_a_zero_cell_ignores_attention_and_with_pre_activation_depth_and_downsampling():
    """A cell with no live op outputs zeros and SE/CBAM of zeros is zeros: attention is inert.
    With pre_activation every cell is then x + 0, so depth and the downsampling layers are inert
    too (exactly equal outputs); with post_activation each cell is Act(Norm(x)), so depth counts."""
    zero = with_cell(SPACE.reference(), [Z], [Z, "conv3x3"], [Z] * 3, [Z] * 4)
    pre = [zero.model_copy(update=u) for u in (
        {"attention": "none"}, {"attention": "se", "depth": 50},
        {"attention": "cbam", "depth": 20, "downsample_offset_1": 2, "downsample_offset_2": -2})]
    assert len({SPACE.canonical_hash(s) for s in pre}) == 1
    for s in pre[1:]:
        assert torch.equal(constant_output(s), constant_output(pre[0]))
    assert set(SPACE.inert_fields(pre[1])) == {"node_2[1]", "attention", "depth",
                                               "downsample_offset_1", "downsample_offset_2"}
    post = [s.model_copy(update={"residual": "post_activation"}) for s in pre[:2]]
    assert SPACE.canonical_hash(post[0]) != SPACE.canonical_hash(post[1])
    attention_only = post[0].model_copy(update={"attention": "cbam"})
    assert SPACE.canonical_hash(attention_only) == SPACE.canonical_hash(post[0])
    assert torch.equal(constant_output(attention_only), constant_output(post[0]))
    assert set(SPACE.inert_fields(post[0])) == {"node_2[1]", "attention"}


def neighbours(spec):
    """Every valid spec one field away: each cell op to each other op, each macro choice to each
    other value."""
    data = spec.model_dump()
    for field, values in SPACE._macro.items():
        for v in values:
            if v != data[field]:
                try:
                    yield field, SPACE.parse(data | {field: v})
                except ValidationError:  # colliding downsampling layers
                    pass
    for k in range(1, 5):
        for i in range(k):
            for op in CELL_OPS:
                if op != data[f"node_{k}"][i]:
                    ops = list(data[f"node_{k}"])
                    ops[i] = op
                    yield f"node_{k}[{i}]", SPACE.parse(data | {f"node_{k}": ops})


def built(spec) -> str:
    """The spec with dead ops zeroed (the live-edge key the hash used to be): equal only for
    specs that build the very same network."""
    cell = {f"node_{k}": ops for k, ops in enumerate(_live_cell(spec), 1)}
    return spec.model_copy(update=cell).model_dump_json()


#: cell ops for :func:`sampled_cell`: parameter-free ops and zeros often, so rewirings meet
CELL_WEIGHTS = {"identity": 0.3, "zero": 0.3, "maxpool3x3": 0.1, "avgpool3x3": 0.1,
                "conv3x3": 0.05, "conv5x5": 0.05, "sepconv3x3": 0.05, "sepconv5x5": 0.05}


def sampled_cell(rng: np.random.Generator):
    """A sampled spec, depth 14, whose cell ops are drawn by :data:`CELL_WEIGHTS`."""
    ops, weights = list(CELL_WEIGHTS), list(CELL_WEIGHTS.values())
    spec = SPACE.parse(SPACE.sample(rng).model_dump() | {"depth": 14, "downsample_offset_1": 0,
                                                         "downsample_offset_2": 0})
    return with_cell(spec, *[[str(rng.choice(ops, p=weights)) for _ in range(k)]
                             for k in range(1, 5)])


def test_twins_among_sampled_single_op_mutations_compute_the_same_function():
    """For 40 sampled specs and each of their single-op mutations: 16 pairs the hash calls twins
    but that build different networks give the same constant-parameter output (rtol 1e-9, atol
    1e-12, float64), and 16 pairs it tells apart give different outputs. Pairs where a cell
    falls back to its live edges are left out of the second check: constant parameters make two
    convs of one definition equal by construction."""
    rng = np.random.default_rng(0)
    twins, apart = [], []
    for _ in range(40):
        spec = sampled_cell(rng)
        h = SPACE.canonical_hash(spec)
        for name, other in neighbours(spec):
            if not name.startswith("node_"):
                continue
            if SPACE.canonical_hash(other) == h:
                if built(other) != built(spec):
                    twins.append((spec, other))
            elif "edges" not in (_key(spec), _key(other)):
                apart.append((spec, other))
    assert len(twins) >= 16 and len(apart) >= 16
    for i in rng.choice(len(twins), 16, replace=False):
        a, b = twins[i]
        torch.testing.assert_close(constant_output(b), constant_output(a), rtol=TWIN_RTOL,
                                   atol=TWIN_ATOL, msg=lambda m, a=a, b=b: f"{a}\n{b}\n{m}")
    for i in rng.choice(len(apart), 16, replace=False):
        a, b = apart[i]
        assert not same_output(a, b), (a, b)


def _key(spec) -> str:
    cell = _live_cell(spec)
    return next(iter(cell_key(cell, *_cell_terms(cell))))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_field_is_inert_exactly_when_changing_it_alone_keeps_the_hash(seed):
    """inert_fields names the set fields whose every other valid value gives the same hash (a
    non-zero op on a dead node; attention of a zero cell; depth and offsets of a zero
    pre_activation cell); a ``zero`` op is never named."""
    rng = np.random.default_rng(seed)
    spec = SPACE.sample(rng)
    if rng.random() < 0.5:  # dead ops: node 1 carries nothing
        spec = spec.model_copy(update={"node_1": [Z]})
    if rng.random() < 0.3:  # a zero cell: no op reads the cell input
        spec = with_cell(spec, *[[Z] + ops[1:] for ops in spec.cell()])
    inert, h = SPACE.inert_fields(spec), SPACE.canonical_hash(spec)
    by_field: dict[str, set[str]] = {}
    for name, other in neighbours(spec):
        by_field.setdefault(name, set()).add(SPACE.canonical_hash(other))
    expected = {name for name, hashes in by_field.items() if hashes == {h}}
    zero_slots = {f"node_{k}[{i}]" for k, ops in enumerate(spec.cell(), 1)
                  for i, op in enumerate(ops) if op == Z}
    assert set(inert) == expected - zero_slots
    assert len(inert) == len(set(inert))
