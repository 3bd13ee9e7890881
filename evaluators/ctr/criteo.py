"""Criteo-format CTR files → hashed field indices, and CTR tasks.

Format (Criteo Display Advertising Challenge ``train.txt``): one example per line, 40
tab-separated columns: the label (0 or 1), 13 integer fields I1–I13 and 26 categorical fields
C1–C26 (hex strings); an empty column is a missing value.

Encoding: every field becomes one index in ``[0, VOCAB)`` (``spaces.ctr.VOCAB`` buckets per
field): 0 is "missing"; a present value's token is hashed with CRC-32 of ``"<field>\\x1f<token>"``
into ``1 + h mod (VOCAB − 1)``. Integers are bucketised first as in the Criteo competition's
winning solution: v ≤ 2 stays v, larger values become ``⌊ln(v)²⌋``. Inputs are ``(N, 1, F)``
float32 tensors of these indices (exact: VOCAB < 2²⁴), labels int64, 2 classes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from evaluators.data import DatasetUnavailable, Task
from evaluators.userfiles import not_utf8
from spaces.base import TaskInfo
from spaces.ctr import N_CAT, N_FIELDS, N_INT, VOCAB

__all__ = ["CTRFormatError", "CTR_DATASETS", "FIELD_NAMES", "hash_token", "int_token",
           "parse_lines", "read_criteo", "load_ctr_task", "find_criteo_file"]

CTR_DATASETS = ("synthetic-ctr", "criteo")
FIELD_NAMES = tuple(f"I{i}" for i in range(1, N_INT + 1)) + tuple(f"C{i}" for i in range(1, N_CAT + 1))
#: rows read from a real Criteo file when --n-samples is not given (train+val; test is a quarter more)
DEFAULT_CRITEO_ROWS = 100_000
DEFAULT_SYNTHETIC_ROWS = 4000
MAX_TEST_ROWS = 1_000_000
TEST_STREAM = 1_000_000_000  #: synthetic test rows come from generator seed TEST_STREAM + seed


class CTRFormatError(DatasetUnavailable):
    """A line of a Criteo-format file that cannot be read; the message names file and line."""


def hash_token(field: str, token: str) -> int:
    """Index in ``[1, VOCAB)`` of a present value (stable across runs and machines)."""
    return 1 + zlib.crc32(f"{field}\x1f{token}".encode()) % (VOCAB - 1)


def int_token(value: int) -> str:
    """Bucket of an integer field value: itself up to 2, else ⌊ln(v)²⌋ (prefixed ``L``)."""
    return str(value) if value <= 2 else f"L{int(math.log(value) ** 2)}"


def parse_lines(lines: Iterable[str], source: str = "<lines>", max_rows: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Parse Criteo lines into indices ``(N, F)`` int64 and labels ``(N,)`` int64.

    Raises :class:`CTRFormatError` with ``"<source>:<line>: ..."`` quoting the bad value.
    """
    rows: list[list[int]] = []
    labels: list[int] = []
    for number, raw in enumerate(lines, start=1):
        if max_rows is not None and len(rows) >= max_rows:
            break
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 1 + N_FIELDS:
            raise CTRFormatError(f"{source}:{number}: expected {1 + N_FIELDS} tab-separated "
                                 f"columns (label, {N_INT} integers, {N_CAT} categories), found "
                                 f"{len(cols)}: {_clip(line)!r}")
        if cols[0] not in ("0", "1"):
            raise CTRFormatError(f"{source}:{number}: label must be 0 or 1, got {_clip(cols[0])!r}")
        labels.append(int(cols[0]))
        row = []
        for f, (name, value) in enumerate(zip(FIELD_NAMES, cols[1:], strict=True)):
            if value == "":
                row.append(0)
                continue
            if f < N_INT:
                try:
                    value = int_token(int(value))
                except ValueError:
                    raise CTRFormatError(f"{source}:{number}: integer field {name} is not an "
                                         f"integer: {_clip(value)!r}") from None
            row.append(hash_token(name, value))
        rows.append(row)
    if not rows:
        raise CTRFormatError(f"{source}: no examples found")
    return np.asarray(rows, dtype=np.int64).reshape(-1, N_FIELDS), np.asarray(labels, dtype=np.int64)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def find_criteo_file(data_dir: str | Path) -> Path:
    """``data_dir`` itself if it is a file, else its ``train.txt`` (the challenge's name), else
    its only ``*.txt``/``*.tsv`` file."""
    root = Path(data_dir)
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetUnavailable(f"criteo: --data-dir {root} does not exist")
    if (root / "train.txt").is_file():
        return root / "train.txt"
    hits = sorted(p for p in root.iterdir() if p.suffix in (".txt", ".tsv") and p.is_file())
    if len(hits) != 1:
        raise DatasetUnavailable(f"criteo: expected train.txt (or exactly one .txt/.tsv file) in "
                                 f"{root}, found {len(hits)} candidates")
    return hits[0]


def read_criteo(path: str | Path, max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read up to ``max_rows`` examples of a Criteo-format file (see :func:`parse_lines`)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", errors="strict") as fh:
            return parse_lines(fh, str(path), max_rows)
    except UnicodeDecodeError as err:
        raise CTRFormatError(f"{path}: {not_utf8(err)}") from None
    except OSError as err:
        raise DatasetUnavailable(f"{path}: cannot read it ({err.strerror})") from None


def load_ctr_task(name: str, *, device: str | torch.device = "cpu", data_dir: str | None = None,
                  n_samples: int | None = None, seed: int = 0, val_fraction: float = 0.2,
                  test_rows: int | None = None) -> Task:
    """A CTR :class:`Task` with inputs ``(N, 1, 39)`` (hashed indices as floats), 2 classes.

    ``synthetic-ctr``: ``n_samples`` (default 4000) train+validation rows from
    :func:`evaluators.ctr.synthetic.generate_lines` with ``seed``, and ``test_rows`` (default a
    quarter as many) test rows from an independent stream of the same generative model
    (``TEST_STREAM`` + ``seed``), so the train and validation rows do not depend on the test
    size; all parsed by the same reader as real files. ``criteo``: the first ``n_samples``
    (default 100,000) rows of the file from :func:`find_criteo_file` for train+validation, the
    next ``test_rows`` (default a quarter as many) for test (the file's order is time order, so
    the test rows come later). The validation rows are a ``seed``-fixed random
    ``val_fraction`` of train+validation.
    """
    if test_rows is not None and not 1 <= test_rows <= MAX_TEST_ROWS:
        raise ValueError(f"test_rows must be in 1..{MAX_TEST_ROWS}, got {test_rows}")
    if name not in CTR_DATASETS:
        raise ValueError(f"unknown CTR dataset {name!r}; choose one of: {', '.join(CTR_DATASETS)}")
    if name == "synthetic-ctr":
        from evaluators.ctr.synthetic import generate_lines

        n = n_samples or DEFAULT_SYNTHETIC_ROWS
        x, y = parse_lines(generate_lines(n, seed=seed), "synthetic-ctr")
        x_t, y_t = parse_lines(generate_lines(test_rows or max(1, n // 4), seed=TEST_STREAM + seed),
                               "synthetic-ctr test")
        x, y = np.concatenate([x, x_t]), np.concatenate([y, y_t])
    else:
        if data_dir is None:
            raise DatasetUnavailable("criteo needs --data-dir: a Criteo-format file or a folder "
                                     "with train.txt (tab-separated label, I1-I13, C1-C26)")
        n = n_samples or DEFAULT_CRITEO_ROWS
        n_test = test_rows or n // 4
        x, y = read_criteo(find_criteo_file(data_dir), max_rows=n + n_test)
        if len(y) < 10:
            raise DatasetUnavailable(f"criteo: only {len(y)} examples under {data_dir}; need >= 10")
        if len(y) < n + n_test:  # a short file: keep a fifth of it for the test
            n = len(y) * 4 // 5
    pool, test = np.arange(n), np.arange(n, len(y))
    order = np.random.default_rng(seed).permutation(pool)
    n_val = max(1, int(round(n * val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]

    def to(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype).to(device)

    def xs(idx: np.ndarray) -> torch.Tensor:
        return to(x[idx][:, None, :].astype(np.float32))

    return Task(name=name, info=TaskInfo((1, N_FIELDS), 2),
                x_train=xs(train_idx), y_train=to(y[train_idx], torch.long),
                x_val=xs(val_idx), y_val=to(y[val_idx], torch.long),
                x_test=xs(test), y_test=to(y[test], torch.long))
