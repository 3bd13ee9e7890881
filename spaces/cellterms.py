"""What a cell computes, written canonically: the term algebra the cell spaces hash by.

A cell here is a DAG whose node 0 is the cell input and whose node k is the *sum* of
``op(node i)`` over its incoming ops. Its function is written as a sorted multiset of terms
(a tuple of strings; ``()`` is zero, ``("x",)`` the input), so sums flatten and the order in
which a node adds its inputs does not matter. How an op acts on its input's terms depends only
on the op's kind:

* :data:`PASS` (a skip or identity): the input's terms pass through, so a chain of skips is one
  skip;
* :data:`LINEAR` (linear and parameter-free, e.g. an average pool with a fixed divisor per
  position): applies term by term, ``op(a + b) = op(a) + op(b)``;
* :data:`HOMOGENEOUS` (parameter-free, deterministic and positively homogeneous, e.g. a max
  pool, ``op(c·a) = c·op(a)`` for c > 0): one term of its whole input, with the input's
  multiplicities divided by their common divisor g and the term repeated g times
  (``maxpool(x + x)`` is ``maxpool(x) + maxpool(x)``). Two such ops of one input are one
  function, since they have no weights;
* :data:`WEIGHTED` (its own parameters, e.g. Conv-Norm): one new term ``op(its whole input)``,
  recorded as a *definition*. A term cannot tell one shared weighted op from two separate ones
  with the same definition, so :func:`cell_key` compares such a cell by its live edges.

Assumption: every op is applied to a node that carries signal (non-empty terms); the spaces
zero an op reading a dead node before building, and do the same here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from math import gcd
from typing import Any

__all__ = ["PASS", "LINEAR", "HOMOGENEOUS", "WEIGHTED", "Terms", "INPUT", "apply_op",
           "dag_terms", "loose_ends", "loose_end_terms", "cell_key"]

Terms = tuple[str, ...]
PASS, LINEAR, HOMOGENEOUS, WEIGHTED = "pass", "linear", "homogeneous", "weighted"
#: the terms of the cell input
INPUT: Terms = ("x",)


def apply_op(op: str, kind: str, terms: Terms, definitions: list[str]) -> list[str]:
    """The terms of ``op`` applied to a node whose terms are ``terms`` (sorted, non-empty);
    a :data:`WEIGHTED` op also appends its definition to ``definitions``."""
    if not terms:
        raise ValueError(f"{op!r} applied to a node that carries no signal")
    if kind == PASS:
        return list(terms)
    if kind == LINEAR:
        return [f"{op}({t})" for t in terms]
    if kind == HOMOGENEOUS:
        counts = Counter(terms)
        g = gcd(*counts.values())
        inner = sorted(t for t, n in counts.items() for _ in range(n // g))
        return [f"{op}({'+'.join(inner)})"] * g
    if kind == WEIGHTED:
        definitions.append(f"{op}({'+'.join(terms)})")
        return [definitions[-1]]
    raise ValueError(f"unknown op kind {kind!r} for {op!r}")


def dag_terms(incoming: Sequence[Iterable[tuple[int, str]]], kinds: Mapping[str, str]
              ) -> tuple[list[Terms], list[str]]:
    """The terms of every node of a cell and the definitions of its weighted ops.

    ``incoming[k - 1]`` lists node k's live ops as ``(source node, op)`` with source < k (ops
    that compute zeros left out); ``kinds`` maps each op to its kind. Returns the terms of nodes
    0..len(incoming) (node 0 is :data:`INPUT`; a node with no live op is ``()``) and one
    definition per weighted op, in the order met.
    """
    nodes: list[Terms] = [INPUT]
    definitions: list[str] = []
    for ops in incoming:
        terms: list[str] = []
        for i, op in ops:
            terms += apply_op(op, kinds[op], nodes[i], definitions)
        nodes.append(tuple(sorted(terms)))
    return nodes, definitions


def loose_ends(cell: Sequence[Sequence[str]], zero: str) -> list[int]:
    """The nodes a loose-end cell sums into its output: ``cell[k - 1][i]`` is node k's op on
    node i (node 0 the input), and the output sums the nodes no later node reads through an op
    other than ``zero``, and the last node."""
    read = {i for ops in cell for i, op in enumerate(ops) if op != zero}
    return [k for k in range(1, len(cell) + 1) if k not in read or k == len(cell)]


def loose_end_terms(cell: Sequence[Sequence[str]], kinds: Mapping[str, str], zero: str
                    ) -> tuple[Terms, list[str]]:
    """What a loose-end cell (:func:`loose_ends`) outputs, as sorted terms, and the definitions
    of its weighted ops. Ops reading a node that carries no signal must already be ``zero``; a
    dead loose end adds no term, so it never tells twins apart."""
    nodes, definitions = dag_terms([[(i, op) for i, op in enumerate(ops) if op != zero]
                                    for ops in cell], kinds)
    return tuple(sorted(t for k in loose_ends(cell, zero) for t in nodes[k])), definitions


def cell_key(live_edges: Any, terms: Terms, definitions: list[str]) -> dict[str, list]:
    """The cell's part of a canonical hash: ``{"terms": [...]}`` when every weighted op has its
    own definition (a term then names its weighted ops unambiguously, so equal terms mean the
    same function with the same set of weights: cells wired differently can be twins), else
    ``{"edges": live_edges}`` (one shared op or two separate ones with one definition cannot be
    told apart by terms: never a false twin, only a missed one). ``live_edges`` must be
    JSON-serialisable and equal for specs that build the same cell."""
    if len(set(definitions)) < len(definitions):
        return {"edges": list(live_edges)}
    return {"terms": list(terms)}
