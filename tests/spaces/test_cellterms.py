import pytest
import torch

from spaces.cellterms import (
    HOMOGENEOUS,
    INPUT,
    LINEAR,
    PASS,
    WEIGHTED,
    apply_op,
    cell_key,
    dag_terms,
    loose_end_terms,
    loose_ends,
)
from spaces.layers import avg_pool, max_pool

KINDS = {"skip": PASS, "avg": LINEAR, "max": HOMOGENEOUS, "conv": WEIGHTED}


def test_each_kind_acts_on_terms_as_documented():
    defs: list[str] = []
    assert apply_op("skip", PASS, ("a", "b"), defs) == ["a", "b"]
    assert apply_op("avg", LINEAR, ("a", "b"), defs) == ["avg(a)", "avg(b)"]
    # multiplicities 2, 4 share the divisor 2: max(2a + 4b) = 2·max(a + 2b)
    assert apply_op("max", HOMOGENEOUS, ("a", "a", "b", "b", "b", "b"), defs) == ["max(a+b+b)"] * 2
    assert apply_op("max", HOMOGENEOUS, ("a", "b", "b"), defs) == ["max(a+b+b)"]
    assert defs == []
    assert apply_op("conv", WEIGHTED, ("a", "a"), defs) == ["conv(a+a)"]
    assert defs == ["conv(a+a)"]
    with pytest.raises(ValueError, match="no signal"):
        apply_op("conv", WEIGHTED, (), defs)
    with pytest.raises(ValueError, match="unknown op kind"):
        apply_op("conv", "other", ("a",), defs)


def test_a_chain_of_skips_is_one_skip_and_sums_flatten():
    chain, defs = dag_terms([[(0, "skip")], [(1, "skip")], [(2, "conv"), (0, "avg")]], KINDS)
    direct, defs2 = dag_terms([[], [], [(0, "avg"), (0, "conv")]], KINDS)
    assert chain[0] == INPUT and chain[3] == direct[3] == ("avg(x)", "conv(x)")
    assert defs == defs2 == ["conv(x)"]
    assert direct[1] == direct[2] == ()


def test_loose_ends_are_the_unread_nodes_and_the_last():
    cell = [["skip"], ["zero", "skip"], ["zero", "zero", "zero"], ["max", "zero", "zero", "zero"]]
    assert loose_ends(cell, "zero") == [2, 3, 4]
    terms, defs = loose_end_terms(cell, KINDS, "zero")
    assert terms == ("max(x)", "x") and defs == []


def test_two_weighted_ops_with_one_definition_fall_back_to_the_edges():
    assert cell_key(["e"], ("conv(x)", "conv(x)"), ["conv(x)"]) == {"terms": ["conv(x)", "conv(x)"]}
    assert cell_key(["e"], ("conv(x)", "conv(x)"), ["conv(x)", "conv(x)"]) == {"edges": ["e"]}


@pytest.mark.parametrize("shape", [(2, 3, 11), (2, 3, 7, 5)])
def test_the_pools_of_layers_are_linear_and_positively_homogeneous(shape):
    """The assumptions the spaces' kinds rest on, for the stride-1 pools of spaces.layers: the
    average pool is additive (within float rounding, atol 1e-6) and the max pool commutes with
    a positive scale (exactly, for a power of two; within 1e-6 for 3)."""
    dims = len(shape) - 2
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    avg, mx = avg_pool(dims, 3, 1), max_pool(dims, 3, 1)
    torch.testing.assert_close(avg(a + b), avg(a) + avg(b), rtol=0, atol=1e-6)
    assert torch.equal(mx(2 * a), 2 * mx(a))
    torch.testing.assert_close(mx(a + a + a), mx(a) + mx(a) + mx(a), rtol=0, atol=1e-6)
    assert not torch.allclose(mx(a + b), mx(a) + mx(b))  # but not additive
