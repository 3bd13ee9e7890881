"""The committed first baselines of the real-training benchmarks (``--baseline``) are valid
NB201 specs and are the cells the README says they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spaces.nb201 import NB201Spec

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
BASELINES = sorted(BENCH.glob("*_baseline.json"))


def _spec(name: str) -> NB201Spec:
    return NB201Spec.model_validate_json((BENCH / name).read_text())


def _convolutions(spec: dict) -> list[str]:
    return [k for k, v in spec.items() if k.startswith("edge_") and "conv" in v]


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_committed_baseline_is_a_valid_nb201_spec_that_names_every_field(path: Path) -> None:
    NB201Spec.model_validate_json(path.read_text())
    assert set(json.loads(path.read_text())) == set(NB201Spec.model_fields)  # no silent defaults


def test_noconv_baseline_is_the_weak_one_with_its_only_convolution_turned_into_a_pooling() -> None:
    weak = _spec("weak_nb201_baseline.json").model_dump()
    noconv = _spec("noconv_nb201_baseline.json").model_dump()
    assert _convolutions(weak) == ["edge_3_2"] and _convolutions(noconv) == []
    assert weak.pop("edge_3_2") == "nor_conv_1x1" and noconv.pop("edge_3_2") == "avg_pool_3x3"
    assert noconv == weak  # every other edge, the width and the depth
