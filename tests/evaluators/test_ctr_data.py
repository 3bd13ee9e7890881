"""CTR data: the Criteo-format reader, the synthetic generator, the task and the metrics."""

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.ctr.criteo import (
    CTRFormatError,
    hash_token,
    int_token,
    load_ctr_task,
    parse_lines,
    read_criteo,
)
from evaluators.ctr.metrics import ctr_metrics
from evaluators.ctr.synthetic import TARGET_POSITIVE_RATE, generate, generate_lines
from evaluators.data import load_task
from evaluators.stats import brier
from spaces.ctr import N_FIELDS, N_INT, VOCAB

FIXTURE = Path(__file__).parent / "data" / "criteo_tiny.txt"


def test_reader_parses_the_fixture_with_missing_values_into_the_bounded_vocabulary():
    x, y = read_criteo(FIXTURE)
    lines = FIXTURE.read_text().splitlines()
    assert x.shape == (12, N_FIELDS) and y.tolist() == [int(line.split("\t")[0]) for line in lines]
    cols = [line.split("\t")[1:] for line in lines]
    missing = np.array([[c == "" for c in row] for row in cols])
    assert missing.any() and (x[missing] == 0).all()  # missing -> index 0
    assert ((x[~missing] >= 1) & (x[~missing] < VOCAB)).all()
    # the same token in the same field always gets the same index; C1's hex value is hashed
    row, field = 1, N_INT  # line 2, C1 = 68fd1e64
    assert cols[row][field] == "68fd1e64"
    assert x[row, field] == hash_token("C1", "68fd1e64")
    assert x[2, 2] == hash_token("I3", "2")  # line 3: only I3 (= 2) of the integers is present
    assert (x[2, :N_INT][np.arange(N_INT) != 2] == 0).all()


def test_integer_buckets_follow_log_squared():
    assert int_token(-1) == "-1" and int_token(2) == "2"
    assert int_token(1000) == int_token(1010) == f"L{int(np.log(1000) ** 2)}"  # ln² = 47.7, 47.9
    assert int_token(5) != int_token(6)  # ln² = 2.59 vs 3.21


@pytest.mark.parametrize("line, needle", [
    ("0\t1\t2", "expected 40 tab-separated columns"),
    ("2" + "\t" * 39, "label must be 0 or 1, got '2'"),
    ("1\tabc" + "\t" * 38, "integer field I1 is not an integer: 'abc'"),
])
def test_a_bad_line_gives_one_line_naming_file_and_line(tmp_path, line, needle):
    good = FIXTURE.read_text().splitlines()[:2]
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(good + [line]) + "\n")
    with pytest.raises(CTRFormatError) as err:
        read_criteo(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ") and needle in message and "\n" not in message


def test_generator_is_deterministic_and_seeded():
    assert generate_lines(50, seed=3) == generate_lines(50, seed=3)
    assert generate_lines(50, seed=3) != generate_lines(50, seed=4)


def test_generator_has_about_25_percent_positives():
    # bias calibrated on 50,000 rows of the structure seed; 20,000 rows have a binomial SD of
    # 0.003, so ±0.015 is 5 SD and still far from a badly calibrated generator
    for seed in (0, 1):
        _, y = generate(20_000, seed=seed)
        assert abs(y.mean() - TARGET_POSITIVE_RATE) < 0.015, y.mean()


def test_generator_writes_criteo_format_that_the_reader_reads_back():
    values, labels = generate(300, seed=2)
    x, y = parse_lines(generate_lines(300, seed=2), "synthetic")
    assert np.array_equal(y, labels)
    assert np.array_equal(x == 0, values < 0)  # missing cells stay missing
    assert 0.02 < (values < 0).mean() < 0.1  # 8 % of integer cells, 4 % of categories


def test_synthetic_task_shapes_and_split():
    task = load_task("synthetic-ctr", n_samples=200, seed=1)
    assert task.info.input_shape == (1, N_FIELDS) and task.info.num_classes == 2
    assert task.sizes() == {"train": 160, "val": 40, "test": 50}
    assert float(task.x_train.max()) < VOCAB and float(task.x_train.min()) >= 0


def test_a_larger_synthetic_test_split_leaves_train_and_validation_unchanged():
    small = load_task("synthetic-ctr", n_samples=200, seed=1)
    big = load_task("synthetic-ctr", n_samples=200, seed=1, test_rows=900)
    assert big.sizes() == {"train": 160, "val": 40, "test": 900}
    assert torch.equal(small.x_train, big.x_train) and torch.equal(small.y_val, big.y_val)
    with pytest.raises(ValueError, match="test_rows must be in 1..1000000, got 0"):
        load_task("synthetic-ctr", n_samples=200, test_rows=0)
    with pytest.raises(ValueError, match="CTR datasets only"):
        load_task("digits", n_samples=200, test_rows=10)


def test_criteo_task_from_a_folder(tmp_path):
    (tmp_path / "train.txt").write_text(FIXTURE.read_text())
    task = load_ctr_task("criteo", data_dir=str(tmp_path), n_samples=10)
    assert task.sizes() == {"train": 8, "val": 2, "test": 2}  # the file's last rows are the test


def test_metrics_match_their_definitions():
    p = np.array([0.9, 0.2, 0.6, 0.1])
    y = np.array([1, 0, 0, 0])
    m = ctr_metrics(p, y)
    assert m["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.9])), rel=1e-9)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    assert m["auc"] == pytest.approx(1.0)  # the positive outranks every negative
    two_class = np.stack([1 - p, p], axis=1)
    assert brier(two_class, y) == pytest.approx(2 * m["brier"], rel=1e-12)  # the rule's E
