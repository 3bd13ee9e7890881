"""The committed first baselines of the real-training benchmarks (``--baseline``) are valid
NB201 specs and are the cells the README says they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from spaces.nb201 import NB201Spec

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
BASELINES = sorted(BENCH.glob("*_baseline.json"))


def _spec(name: str) -> NB201Spec:
    return NB201Spec.model_validate_json((BENCH / name).read_text())


def _edges(spec: NB201Spec) -> dict[str, str]:
    return {k: v for k, v in spec.model_dump().items() if k.startswith("edge_")}


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_committed_baseline_is_a_valid_nb201_spec(path: Path) -> None:
    spec = NB201Spec.model_validate_json(path.read_text())
    assert len(_edges(spec)) == 6


def test_noconv_baseline_is_the_weak_one_with_its_only_convolution_turned_into_a_pooling() -> None:
    weak, noconv = _edges(_spec("weak_nb201_baseline.json")), _edges(_spec("noconv_nb201_baseline.json"))
    assert [k for k, v in weak.items() if "conv" in v] == ["edge_3_2"]
    assert weak["edge_3_2"] == "nor_conv_1x1" and noconv["edge_3_2"] == "avg_pool_3x3"
    assert not any("conv" in v for v in noconv.values())
    del weak["edge_3_2"], noconv["edge_3_2"]
    assert noconv == weak
