"""Table-backed evaluation for the ``nb201`` space: answers from benchmark CSVs, not training.

Tables are CSV files joined on the ``arch`` column (the benchmark's cell strings); column names
are arguments, never hard-wired. Every target lookup counts as one query.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from evaluators.userfiles import not_utf8

__all__ = ["TabularBenchmark", "TableError"]


class TableError(ValueError):
    """A table that cannot be used; the message names the file and the column."""


def _check_archs(path: str | Path, rows: dict[str, dict[str, str]]) -> None:
    """Every key must be a NAS-Bench-201 cell string (the search writes them the same way)."""
    from spaces.nb201 import NB201Space

    for arch in rows:
        try:
            spec = NB201Space.from_arch_string(arch)
        except ValueError as err:
            raise TableError(f"{path}: {arch!r} is not a NAS-Bench-201 cell string "
                             f"({' '.join(str(err).split())[:200]})") from None
        if NB201Space.to_arch_string(spec) != arch:
            raise TableError(f"{path}: {arch!r} is not written the benchmark's way "
                             f"(expected {NB201Space.to_arch_string(spec)!r})")


class TabularBenchmark:
    def __init__(self, tables: list[str | Path], target: str, low_fidelity: str | None = None,
                 arch_column: str = "arch"):
        if not tables:
            raise TableError("at least one --table is needed")
        joined: dict[str, dict[str, str]] | None = None
        for path in tables:
            try:
                with open(path, newline="") as f:
                    reader = csv.DictReader(f)
                    if reader.fieldnames is None or arch_column not in reader.fieldnames:
                        raise TableError(f"{path}: no {arch_column!r} column (columns: {reader.fieldnames})")
                    rows = {}
                    for r in reader:  # a short row reads None, a long one puts its rest under None
                        if None in r or None in r.values():
                            found = sum(v is not None for k, v in r.items() if k is not None)
                            found += len(r.get(None) or [])
                            raise TableError(f"{path} line {reader.line_num}: {found} fields where the "
                                             f"header has {len(reader.fieldnames)}")
                        rows[r[arch_column]] = r
                _check_archs(path, rows)
            except OSError as err:
                raise TableError(f"{path}: cannot read it ({err.strerror})") from None
            except UnicodeDecodeError as err:
                raise TableError(f"{path}: {not_utf8(err)}") from None
            except csv.Error as err:  # e.g. a field over the csv module's 128 kB limit
                raise TableError(f"{path}: not a CSV table ({err})") from None
            joined = rows if joined is None else {a: joined[a] | r for a, r in rows.items() if a in joined}
        self.archs = sorted(joined)
        if not self.archs:
            raise TableError("the tables share no architecture")
        self.columns = {}
        for name in (target, low_fidelity):
            if name is None:
                continue
            if name not in joined[self.archs[0]]:
                raise TableError(f"column {name!r} is in none of the tables; available: "
                                 f"{', '.join(sorted(joined[self.archs[0]]))}")
            try:
                self.columns[name] = np.array([float(joined[a][name]) for a in self.archs])
            except ValueError as err:
                raise TableError(f"column {name!r} holds a non-number: {err}") from None
            if not np.isfinite(self.columns[name]).all():
                bad = self.archs[int(np.flatnonzero(~np.isfinite(self.columns[name]))[0])]
                raise TableError(f"column {name!r} holds a NaN or infinite value (arch {bad})")
        self.target, self.low_fidelity = target, low_fidelity
        self.index = {a: i for i, a in enumerate(self.archs)}
        self.queries = 0

    def __contains__(self, arch: str) -> bool:
        return arch in self.index

    def __len__(self) -> int:
        return len(self.archs)

    def value(self, arch: str, column: str) -> float:
        try:
            return float(self.columns[column][self.index[arch]])
        except KeyError:
            raise TableError(f"architecture {arch!r} is not in the tables") from None

    def query(self, arch: str) -> float:
        """The target value of ``arch``; counts one query."""
        self.queries += 1
        return self.value(arch, self.target)

    def low(self, arch: str) -> float:
        if self.low_fidelity is None:
            raise TableError("no --low-fidelity column was given")
        return self.value(arch, self.low_fidelity)
