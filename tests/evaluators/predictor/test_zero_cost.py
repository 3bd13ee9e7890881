import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from evaluators.predictor import make_filter, zero_cost
from evaluators.predictor.ensemble import EnsemblePredictor, Record
from evaluators.predictor.zero_cost import ZeroCostProxy, synflow
from spaces import TaskInfo
from spaces.nb201 import EDGES, NB201Space

FIXTURE = Path(__file__).parents[2] / "fixtures" / "nb201_excerpt.csv"
CIFAR = TaskInfo((3, 32, 32), 10)
SPACE = NB201Space()


def cell(**ops) -> object:
    """An NB201 cell at the benchmark's C = 16, N = 5; unnamed edges are ``none``."""
    op = {(j, i): ops.get(name, "none") for name, j, i in EDGES}
    return NB201Space.from_arch_string("+".join(
        "|" + "|".join(f"{op[j, i]}~{i}" for i in range(j)) + "|" for j in (1, 2, 3)))


def uniform(op: str) -> object:
    return cell(**{name: op for name, _, _ in EDGES})


def test_synflow_grows_with_the_parameters_on_live_paths():
    conv3, conv1, skip = (synflow(SPACE, uniform(op), CIFAR)
                          for op in ("nor_conv_3x3", "nor_conv_1x1", "skip_connect"))
    assert conv3 > conv1 + 1.0 > skip + 1.0  # log10: each step is more than 10×


def test_canonical_twins_score_alike_and_the_caller_rng_is_untouched():
    spec = cell(edge_3_0="nor_conv_3x3")
    twin = cell(edge_3_0="nor_conv_3x3", edge_1_0="nor_conv_3x3")  # node 1 feeds nothing: dead
    assert SPACE.canonical_hash(spec) == SPACE.canonical_hash(twin)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b = synflow(SPACE, spec, CIFAR), synflow(SPACE, twin, CIFAR)
    assert torch.equal(torch.rand(3), expected)
    assert a == pytest.approx(b, abs=1e-9)


@pytest.fixture(scope="module")
def excerpt():
    rows = list(csv.DictReader(FIXTURE.open()))
    specs = [NB201Space.from_arch_string(r["arch"]) for r in rows]
    loss = np.array([100 - float(r["cifar10_test_acc_200ep"]) for r in rows])
    return specs, loss, ZeroCostProxy(SPACE, CIFAR).scores(specs)


def test_synflow_alone_ranks_nb201_accuracy_without_labels(excerpt):
    specs, loss, proxy = excerpt
    # 0.57 on 300 random cells of the full table; higher SynFlow = lower loss
    assert kendalltau(-proxy, loss)[0] > 0.4


def test_the_proxy_feature_reaches_the_predictor(excerpt):
    specs, loss, proxy = excerpt
    records = [Record(s, t) for s, t in zip(specs[:80], loss[:80], strict=True)]
    plain = EnsemblePredictor(SPACE, seed=0, gnn="none").fit(records)
    with_zc = EnsemblePredictor(SPACE, seed=0, gnn="none", zero_cost=ZeroCostProxy(SPACE, CIFAR)).fit(records)
    assert with_zc.forest.n_features_in_ == plain.forest.n_features_in_ + 1
    importance = with_zc.forest.feature_importances_[-1]
    assert importance > np.median(with_zc.forest.feature_importances_)


def test_cache_round_trip_and_a_bad_file_is_recomputed(tmp_path, monkeypatch):
    path = tmp_path / "zc.json"
    proxy = ZeroCostProxy(SPACE, CIFAR, path)
    value = proxy(uniform("nor_conv_1x1"))
    proxy.save()
    monkeypatch.setattr(zero_cost, "synflow", lambda *a, **k: pytest.fail("recomputed a cached score"))
    reread = ZeroCostProxy(SPACE, CIFAR, path)
    assert reread(uniform("nor_conv_1x1")) == value
    written = path.stat().st_mtime_ns
    reread.save()  # nothing new: the file is not rewritten
    assert path.stat().st_mtime_ns == written
    data = json.loads(path.read_text())
    data["scores"] = {k: "NaN" for k in data["scores"]}
    path.write_text(json.dumps(data))
    assert len(ZeroCostProxy(SPACE, CIFAR, path)) == 0
    path.write_text("{not json")
    assert len(ZeroCostProxy(SPACE, CIFAR, path)) == 0


def test_make_filter_builds_the_proxy_and_refuses_an_unknown_one():
    f = make_filter("gnn-ensemble", SPACE, CIFAR, zero_cost="synflow")
    assert isinstance(f.zero_cost, ZeroCostProxy) and f.zero_cost.task_info == CIFAR
    assert make_filter("gnn-ensemble", SPACE, CIFAR).zero_cost is None
    with pytest.raises(ValueError, match="'jacov'"):
        make_filter("gnn-ensemble", SPACE, CIFAR, zero_cost="jacov")


@pytest.mark.parametrize("name,task", [("hierarchical", TaskInfo((1, 40), 10)),
                                       ("nb201", TaskInfo((1, 40), 10)), ("ctr", TaskInfo((1, 39), 2))])
def test_synflow_is_a_finite_reproducible_score_in_every_space(name, task):
    from spaces import get_space

    space = get_space(name)
    specs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    scores = [synflow(space, s, task) for s in specs]
    assert all(np.isfinite(scores)) and len(set(scores)) > 1
    assert scores == [synflow(space, s, task) for s in specs]
