import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from agent.tabular_search import tabular_search
from evaluators.tabular import TableError, TabularBenchmark
from spaces.nb201 import EDGES, OPS, NB201Space

FIXTURE = Path(__file__).parents[1] / "fixtures" / "nb201_excerpt.csv"


@pytest.fixture(scope="module")
def full_table(tmp_path_factory):
    """Every NB201 cell with a synthetic accuracy: more 3x3 convs and fewer `none` edges score higher."""
    path = tmp_path_factory.mktemp("nb201") / "synthetic.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            spec = NB201Space.from_arch_string(_arch(ops))
            acc = 80 + 2 * spec.ops().count("nor_conv_3x3") - 1.5 * spec.ops().count("none")
            w.writerow([_arch(ops), f"{acc:.3f}"])
    return TabularBenchmark([path], "acc")


def _arch(ops) -> str:
    cells = {(d, s): o for (_, d, s), o in zip(EDGES, ops, strict=True)}
    return "+".join("|" + "|".join(f"{cells[(d, s)]}~{s}" for s in range(d)) + "|" for d in (1, 2, 3))


def test_tabular_search_counts_every_query_and_improves(full_table):
    full_table.queries = 0
    curve = tabular_search(full_table, queries=14, seed=0, n_init=8, proposals=12, refit_every=3,
                           gnn_epochs=15)
    assert len(curve) == 14 and full_table.queries == 14
    assert all(b <= a for a, b in zip(curve, curve[1:], strict=False))  # best loss never rises
    assert curve[-1] < curve[7]  # the filtered phase found something better than the random start
    off = tabular_search(full_table, queries=5, seed=0, n_init=3, use_predictor=False)
    assert len(off) == 5 and full_table.queries == 19


def test_table_joins_on_arch_and_names_bad_input(tmp_path):
    rows = list(csv.DictReader(FIXTURE.open()))
    second = tmp_path / "second.csv"
    with second.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "extra"])
        for r in rows[:50]:
            w.writerow([r["arch"], "1.5"])
    t = TabularBenchmark([FIXTURE, second], "cifar10_test_acc_200ep", "cifar10_val_acc_12ep")
    assert len(t.archs) == 50 and t.queries == 0
    arch = rows[0]["arch"]
    assert t.query(arch) == pytest.approx(float(rows[0]["cifar10_test_acc_200ep"]))
    assert t.low(arch) == pytest.approx(float(rows[0]["cifar10_val_acc_12ep"])) and t.queries == 1
    with pytest.raises(TableError, match="not_a_column"):
        TabularBenchmark([FIXTURE], "not_a_column")
    bad = tmp_path / "bad.csv"
    bad.write_text("cell,acc\nfoo,1\n")
    with pytest.raises(TableError, match="bad.csv: no 'arch' column"):
        TabularBenchmark([bad], "acc")
    text = tmp_path / "text.csv"
    text.write_text(f"arch,acc\n{arch},high\n")
    with pytest.raises(TableError, match="'acc' holds a non-number"):
        TabularBenchmark([text], "acc")
    with pytest.raises(TableError, match="not in the tables"):
        t.query("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|x")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x8e\xff arch,acc\n")
    with pytest.raises(TableError, match=r"binary.csv: not UTF-8 text \(invalid start byte at byte 0\)"):
        TabularBenchmark([binary], "acc")
    short = tmp_path / "short.csv"
    short.write_text(f"arch,acc,extra\n{arch},1\n")
    with pytest.raises(TableError, match=r"short.csv line 2: 2 fields where the header has 3"):
        TabularBenchmark([short], "acc")
    long = tmp_path / "long.csv"
    long.write_text(f"arch,acc\n{arch},1,2,3\n")
    with pytest.raises(TableError, match=r"long.csv line 2: 4 fields where the header has 2"):
        TabularBenchmark([long], "acc")
    huge = tmp_path / "huge.csv"  # one field over the csv module's limit
    huge.write_text("arch,acc\n" + "x" * 200_000 + ",1\n")
    with pytest.raises(TableError, match=r"huge.csv: not a CSV table \(field larger than field limit"):
        TabularBenchmark([huge], "acc")
    assert np.isfinite(t.columns["cifar10_test_acc_200ep"]).all()


def test_a_partial_table_is_searched_within_its_rows():
    table = TabularBenchmark([FIXTURE], "cifar10_test_acc_200ep")  # 300 of 15,625 cells
    asked = []
    query = table.query
    table.query = lambda arch: asked.append(arch) or query(arch)
    curve = tabular_search(table, queries=12, seed=1, n_init=4, proposals=16, refit_every=4,
                           gnn_epochs=10, to_loss=lambda acc: 100 - acc)
    assert len(curve) == 12 and len(set(asked)) == 12 and all(a in table for a in asked)
    with pytest.raises(TableError, match="all asked"):
        tabular_search(table, queries=len(table) + 1, seed=0, n_init=len(table) + 1,
                       use_predictor=False)


def test_bad_cell_strings_and_nan_values_are_named(tmp_path):
    arch = next(csv.DictReader(FIXTURE.open()))["arch"]
    for text, needle in [("arch,acc\n|conv~0|+|x|,1\n", "not a NAS-Bench-201 cell string"),
                         (f"arch,acc\n{arch}  ,1\n", "not written the benchmark's way"),
                         (f"arch,acc\n{arch},nan\n", "NaN or infinite")]:
        path = tmp_path / "t.csv"
        path.write_text(text)
        with pytest.raises(TableError, match=needle):
            TabularBenchmark([path], "acc")
