"""Argument types and path checks for the benchmark scripts' flags: a bad value is one argparse
line that quotes it (``argument --seeds: expected an integer >= 1, got '-3'``), exit code 2,
before any work starts. Use the types as ``p.add_argument("--seeds", type=at_least(1), ...)``
and the checks (:func:`check_folder`, :func:`check_out_file`) right after parsing."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["at_least", "int_list", "finite_at_least", "check_folder", "check_out_file"]


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


def check_folder(p: argparse.ArgumentParser, flag: str, path: str) -> None:
    """Refuse (``p.error``) a folder flag that names a file, or lies under one, or cannot be written."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        p.error(f"{flag} {path!r}: is a file, not a folder")
    ancestor = target
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        p.error(f"{flag} {path!r}: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        p.error(f"{flag} {path!r}: {str(ancestor)!r} is not writable")


def check_out_file(p: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """Refuse (``p.error``) an output file flag whose folder is missing or not writable, or that
    names a folder: found before the long work, not after it."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        p.error(f"{flag} {path!r}: is a folder, not a file")
    folder = target.parent
    if not folder.is_dir():
        p.error(f"{flag} {path!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        p.error(f"{flag} {path!r}: not writable")
