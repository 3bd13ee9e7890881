"""Argument types for the benchmark scripts' flags: a bad value is one argparse line that
quotes it (``argument --seeds: expected an integer >= 1, got '-3'``), exit code 2, before any
work starts. Use them as ``p.add_argument("--seeds", type=at_least(1), ...)``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["at_least", "int_list", "finite_at_least"]


def at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high] (no upper bound when ``high`` is None)."""
    span = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def finite_at_least(low: float) -> Callable[[str], float]:
    """A finite number >= low (nan and inf are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number >= {low:g}, got {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected a finite number >= {low:g}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def int_list(low: int, high: int | None = None) -> Callable[[str], list[int]]:
    """A comma-separated list of integers, each in [low, high]."""
    one = at_least(low, high)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",")]
        if not parts or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        return [one(p) for p in parts]

    parse.__name__ = "integer list"
    return parse
